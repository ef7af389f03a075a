"""Engagement event types: the built-in ones, a programme's custom ones, and validation
of an event's ``attributes`` against its type's JSON Schema (draft 2020-12).

Built-in types live here in code (``BUILTIN``), custom types in ``event_types`` rows.
Names are shared: a programme cannot define a custom type named like a built-in one, nor
``purchase`` or ``return`` (those have their own event shapes).

Where the store of a ``store_visit`` goes: in the event's top-level ``store`` field, the
same field a purchase uses, so a rule's condition on ``event.store`` reads one place for
every event type. ``attributes.store`` is refused with a hint, rather than accepted as a
second spelling that rules would have to look at too.

Validation is on the ingestion hot path (hundreds of events per second): built-in
validators are compiled once at import, custom ones once per (programme, name, schema
hash), and a batch reads all custom types it uses in one query.

Differences from a plain ``Draft202012Validator``, on purpose:

* ``integer`` means a JSON integer: ``5.0`` is refused (jsonschema would accept it), so
  no float reaches points arithmetic through an attribute.
* ``$ref`` may only point inside the schema (``#...``): the validator never fetches a
  URL (jsonschema's default registry would, on the server, for any admin-supplied URL).
* ``format`` is an annotation and not checked (the draft's default); use ``pattern``.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.errors import Conflict, Invalid, NotFound
from treu.rules.models import EventType

Lang = Literal["en", "de"]

NAME_PATTERN = r"^[a-z][a-z0-9_]{1,63}$"
"""The same pattern as an engagement event's ``type``."""
COMMERCE_TYPES = frozenset({"purchase", "return"})
MAX_SCHEMA_BYTES = 32_768
MAX_ERRORS = 20
"""At most this many complaints per event: a 10,000-key attributes object with a bad
schema should not produce a 10,000-entry problem."""
_CACHE_LIMIT = 4096
UNKNOWN_TYPE_MESSAGE = "unknown event type (see GET /v1/event-types)"

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


# ------------------------------------------------------------------------------ errors


class UnknownEventType(Invalid):
    code = "unknown_event_type"
    title = "Unknown event type"


class InvalidAttributes(Invalid):
    code = "invalid_attributes"
    title = "Invalid event attributes"


class InvalidEventTypeSchema(Invalid):
    code = "invalid_event_type_schema"
    title = "Invalid JSON Schema"


class EventTypeExists(Conflict):
    code = "event_type_exists"
    title = "Event type already exists"


class EventTypeNotFound(NotFound):
    code = "event_type_not_found"
    title = "Event type not found"


# ------------------------------------------------------------------------------ validator


def _is_integer(_checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


_StrictValidator: type[Validator] = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)
_NO_RETRIEVAL: referencing.Registry[Any] = referencing.Registry()
"""An empty registry: ``$ref`` resolves inside the schema only, nothing is fetched."""
_ROOT_URI = "urn:treu:attributes-schema"


def _compile(schema: Mapping[str, Any]) -> Validator:
    return _StrictValidator(schema, registry=_NO_RETRIEVAL)


def schema_hash(schema: Mapping[str, Any]) -> str:
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# ------------------------------------------------------------------------------ built-ins


@dataclass(frozen=True)
class BuiltinType:
    name: str
    description: dict[str, str]
    """Per language (``en``, ``de``)."""
    attributes_schema: dict[str, Any]
    needs_store: bool = False
    """The event's top-level ``store`` is required (``store_visit``)."""
    hints: dict[str, str] = field(default_factory=dict)
    """Extra words for an attribute that is refused as unknown (where it belongs instead)."""
    validator: Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "validator", _compile(self.attributes_schema))


def _object(
    properties: dict[str, Any],
    *,
    required: Sequence[str] = (),
    examples: Sequence[dict[str, Any]] = (),
    **extra: Any,
) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = builtins.list(required)
    schema.update(extra)
    if examples:
        schema["examples"] = builtins.list(examples)
    return schema


def _text(max_length: int = 64, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_length, **extra}


def _count(minimum: int = 0, **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": 1_000_000_000, **extra}


_URL = _text(2048, pattern=r"^https?://", description="http(s) URL of what was shared")
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

_BUILTIN_LIST = [
    BuiltinType(
        "review_submitted",
        {
            "en": "The member wrote a product review.",
            "de": "Das Mitglied hat eine Produktbewertung geschrieben.",
        },
        _object(
            {
                "product_sku": _text(description="SKU of the reviewed product"),
                "rating": {"type": "integer", "minimum": 1, "maximum": 5},
                "length": _count(description="Characters of review text"),
                "verified_purchase": {"type": "boolean"},
                "review_id": _text(200, description="The review's id in your shop"),
            },
            required=["product_sku", "rating"],
            examples=[{"product_sku": "4001", "rating": 5, "length": 240}],
        ),
    ),
    BuiltinType(
        "social_share",
        {
            "en": "The member shared a product or post on a social network.",
            "de": "Das Mitglied hat ein Produkt oder einen Beitrag in sozialen Medien geteilt.",
        },
        _object(
            {
                "network": {
                    "enum": [
                        "facebook",
                        "instagram",
                        "tiktok",
                        "x",
                        "pinterest",
                        "whatsapp",
                        "other",
                    ]
                },
                "url": _URL,
            },
            required=["network"],
            examples=[{"network": "instagram", "url": "https://shop.example.com/p/4001"}],
        ),
    ),
    BuiltinType(
        "app_installed",
        {
            "en": "The member installed the app and signed in.",
            "de": "Das Mitglied hat die App installiert und sich angemeldet.",
        },
        _object(
            {
                "platform": {"enum": ["ios", "android"]},
                "app_version": _text(32),
            },
            required=["platform"],
            examples=[{"platform": "ios", "app_version": "3.2.0"}],
        ),
    ),
    BuiltinType(
        "store_visit",
        {
            "en": "The member checked in at a store (the event's store says which).",
            "de": "Das Mitglied hat in einer Filiale eingecheckt (welche, sagt das Feld store).",
        },
        _object(
            {
                "method": {"enum": ["app_checkin", "qr_code", "beacon", "wifi", "staff"]},
                "duration_minutes": _count(),
            },
            examples=[{"method": "qr_code"}],
        ),
        needs_store=True,
        hints={"store": "send the store as the event's top-level 'store'"},
    ),
    BuiltinType(
        "profile_completed",
        {
            "en": "The member filled in a profile field.",
            "de": "Das Mitglied hat ein Profilfeld ausgefüllt.",
        },
        _object(
            {
                "field": {
                    "enum": [
                        "birthday",
                        "phone",
                        "size",
                        "address",
                        "preferences",
                        "email",
                        "name",
                        "other",
                    ]
                }
            },
            required=["field"],
            examples=[{"field": "birthday"}],
        ),
    ),
    BuiltinType(
        "survey_answered",
        {
            "en": "The member answered a survey.",
            "de": "Das Mitglied hat an einer Umfrage teilgenommen.",
        },
        _object(
            {
                "survey_id": _text(200),
                "questions": _count(1, description="Questions answered"),
            },
            required=["survey_id"],
            examples=[{"survey_id": "nps-2026-q4", "questions": 8}],
        ),
    ),
    BuiltinType(
        "newsletter_subscribed",
        {
            "en": "The member subscribed to the newsletter (confirmed opt-in).",
            "de": "Das Mitglied hat den Newsletter abonniert (bestätigte Anmeldung).",
        },
        _object({"topic": _text()}, examples=[{"topic": "weekly-offers"}, {}]),
    ),
    BuiltinType(
        "community_answer",
        {
            "en": "The member answered another customer's question.",
            "de": "Das Mitglied hat die Frage einer anderen Kundin oder eines Kunden beantwortet.",
        },
        _object(
            {
                "question_id": _text(200),
                "helpful_votes": _count(),
                "accepted": {"type": "boolean"},
            },
            required=["question_id"],
            examples=[{"question_id": "q-5512", "helpful_votes": 3, "accepted": True}],
        ),
    ),
    BuiltinType(
        "referral_converted",
        {
            "en": "Someone the member referred joined and made a first purchase.",
            "de": "Eine vom Mitglied geworbene Person ist beigetreten und hat erstmals gekauft.",
        },
        _object(
            {
                "referred_member_id": {"type": "string", "pattern": _UUID},
                "referral_code": _text(),
                "first_purchase_event_id": _text(200),
            },
            anyOf=[{"required": ["referred_member_id"]}, {"required": ["referral_code"]}],
            examples=[
                {
                    "referred_member_id": "01937a5e-3c1b-7cc2-9d1e-2f5a8b7c6d41",
                    "first_purchase_event_id": "pos-4711-0107",
                },
                {"referral_code": "ANNA-7K2Q"},
            ],
        ),
    ),
]
_BUILTIN_LIST.append(
    BuiltinType(
        "membership_purchased",
        {
            "en": "The member bought a paid tier membership for a period (treu.tiers).",
            "de": "Das Mitglied hat eine bezahlte Stufen-Mitgliedschaft für einen Zeitraum "
            "gekauft.",
        },
        _object(
            {
                "tier": _text(32, pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="Tier code"),
                "months": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 120,
                    "description": "Period bought; a renewal extends from the current end",
                },
                "amount_minor": _count(description="Price paid, in minor units"),
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            },
            required=["tier", "months"],
            dependentRequired={"amount_minor": ["currency"]},
            examples=[{"tier": "gold", "months": 12, "amount_minor": 4900, "currency": "EUR"}],
        ),
    )
)
BUILTIN: dict[str, BuiltinType] = {t.name: t for t in _BUILTIN_LIST}
RESERVED_NAMES = frozenset(BUILTIN) | COMMERCE_TYPES


# ------------------------------------------------------------------------------ schemas


class EventTypeCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "workshop_attended",
                    "description": "Attended an in-store workshop",
                    "attributes_schema": {
                        "type": "object",
                        "properties": {
                            "workshop_id": {"type": "string", "minLength": 1},
                            "minutes": {"type": "integer", "minimum": 0},
                        },
                        "required": ["workshop_id"],
                        "additionalProperties": False,
                    },
                }
            ]
        },
    )

    name: str = Field(pattern=NAME_PATTERN, description="Lowercase, digits and _")
    description: str | None = Field(default=None, max_length=500)
    attributes_schema: dict[str, Any] = Field(
        description="JSON Schema (draft 2020-12) of the events' attributes; type object"
    )


class EventTypeOut(BaseModel):
    name: str
    builtin: bool
    description: str | None = Field(
        description="Built-in types: in the requested language; custom: as defined"
    )
    attributes_schema: dict[str, Any]
    created_at: datetime | None = Field(description="None for built-in types")


# ------------------------------------------------------------------------------ service


class EngagementLike(Protocol):
    """What validation reads of an engagement event (``treu.events.schemas``)."""

    @property
    def type(self) -> str: ...

    @property
    def store(self) -> str | None: ...

    @property
    def attributes(self) -> dict[str, Any]: ...


class EventTypeService:
    def __init__(self) -> None:
        self._validators: dict[tuple[uuid.UUID, str, str], Validator] = {}
        self._lock = threading.Lock()

    # --- reading ----------------------------------------------------------------------

    def list(
        self, session: Session, programme_id: uuid.UUID, *, lang: Lang = "en"
    ) -> builtins.list[EventTypeOut]:
        """Built-in types first (in ``BUILTIN`` order), then the custom ones by name."""
        rows = session.scalars(
            select(EventType).where(EventType.programme_id == programme_id).order_by(EventType.name)
        )
        return [_builtin_out(t, lang) for t in BUILTIN.values()] + [_custom_out(r) for r in rows]

    def get(
        self, session: Session, programme_id: uuid.UUID, name: str, *, lang: Lang = "en"
    ) -> EventTypeOut | None:
        if name in BUILTIN:
            return _builtin_out(BUILTIN[name], lang)
        row = session.scalar(
            select(EventType).where(EventType.programme_id == programme_id, EventType.name == name)
        )
        return _custom_out(row) if row is not None else None

    # --- writing ----------------------------------------------------------------------

    def create(
        self, session: Session, *, programme_id: uuid.UUID, data: EventTypeCreate, actor: str
    ) -> EventTypeOut:
        if data.name in RESERVED_NAMES:
            kind = "a built-in event type" if data.name in BUILTIN else "a commerce event"
            raise EventTypeExists(f"{data.name!r} is {kind}; choose another name", name=data.name)
        check_schema(data.attributes_schema)
        exists = session.scalar(
            select(EventType.id).where(
                EventType.programme_id == programme_id, EventType.name == data.name
            )
        )
        if exists is not None:
            raise EventTypeExists(
                f"this programme has an event type {data.name!r} already", name=data.name
            )
        row = EventType(
            programme_id=programme_id,
            name=data.name,
            description=data.description,
            attributes_schema=data.attributes_schema,
        )
        session.add(row)
        try:
            session.flush()
        except IntegrityError as exc:  # a concurrent create won the race
            raise EventTypeExists(
                f"this programme has an event type {data.name!r} already", name=data.name
            ) from exc
        audit.record(
            session,
            actor=actor,
            action="event_type.created",
            subject_type="event_type",
            subject_id=str(row.id),
            programme_id=programme_id,
            data={"name": data.name, "schema_sha256": schema_hash(data.attributes_schema)},
        )
        return _custom_out(row)

    # --- validation -------------------------------------------------------------------

    def validate(
        self,
        session: Session,
        *,
        programme_id: uuid.UUID,
        type: str,
        attributes: Mapping[str, Any],
        store: str | None,
    ) -> None:
        """Raise ``UnknownEventType`` or ``InvalidAttributes`` (422, field paths in
        ``extra["errors"]``) unless ``attributes`` fit the type's schema. ``store`` is
        the event's top-level store (a ``store_visit`` without one is refused); it has no
        default so that no caller forgets to pass it."""
        customs = self._custom_schemas(session, programme_id, {type})
        error = self._check(programme_id, type, attributes, store, customs)
        if error is not None:
            raise error

    def validate_many(
        self, session: Session, programme_id: uuid.UUID, events: Iterable[EngagementLike]
    ) -> builtins.list[Invalid | None]:
        """One verdict per event, in order (``None`` = valid), so a batch can refuse the
        bad events alone. Reads all custom types the batch uses in one query."""
        items = builtins.list(events)
        customs = self._custom_schemas(session, programme_id, {e.type for e in items})
        return [self._check(programme_id, e.type, e.attributes, e.store, customs) for e in items]

    def _custom_schemas(
        self, session: Session, programme_id: uuid.UUID, names: set[str]
    ) -> dict[str, dict[str, Any]]:
        wanted = names - RESERVED_NAMES
        if not wanted:
            return {}
        rows = session.execute(
            select(EventType.name, EventType.attributes_schema).where(
                EventType.programme_id == programme_id, EventType.name.in_(wanted)
            )
        )
        return {row[0]: row[1] for row in rows}

    def _check(
        self,
        programme_id: uuid.UUID,
        type: str,
        attributes: Mapping[str, Any],
        store: str | None,
        customs: Mapping[str, dict[str, Any]],
    ) -> Invalid | None:
        builtin = BUILTIN.get(type)
        hints: Mapping[str, str] = {}
        if builtin is not None:
            validator = builtin.validator
            hints = builtin.hints
        elif type in customs:
            validator = self._validator(programme_id, type, customs[type])
        else:
            return UnknownEventType(
                f"{type!r} is neither a built-in nor a custom event type of this programme",
                errors=[{"field": "type", "message": UNKNOWN_TYPE_MESSAGE}],
            )
        errors = attribute_errors(validator, attributes, hints)
        if builtin is not None and builtin.needs_store and not store:
            errors.insert(0, {"field": "store", "message": f"a {type} needs the store"})
        if not errors:
            return None
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3])
        return InvalidAttributes(summary, errors=errors)

    def _validator(self, programme_id: uuid.UUID, name: str, schema: dict[str, Any]) -> Validator:
        key = (programme_id, name, schema_hash(schema))
        validator = self._validators.get(key)
        if validator is None:
            validator = _compile(schema)
            with self._lock:
                if len(self._validators) >= _CACHE_LIMIT:
                    self._validators.clear()
                self._validators[key] = validator
        return validator


event_types = EventTypeService()


# ------------------------------------------------------------------------------ helpers


def _builtin_out(t: BuiltinType, lang: Lang) -> EventTypeOut:
    return EventTypeOut(
        name=t.name,
        builtin=True,
        description=t.description.get(lang, t.description["en"]),
        attributes_schema=t.attributes_schema,
        created_at=None,
    )


def _custom_out(row: EventType) -> EventTypeOut:
    return EventTypeOut(
        name=row.name,
        builtin=False,
        description=row.description,
        attributes_schema=row.attributes_schema,
        created_at=row.created_at,
    )


def check_schema(schema: dict[str, Any]) -> None:
    """Refuse what is not a usable attributes schema: invalid JSON Schema (with the
    keyword path), a top level that is not ``type: object``, a ``$ref`` leaving the
    schema, or more than ``MAX_SCHEMA_BYTES``."""
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        _bad_schema("attributes_schema", f"is larger than {MAX_SCHEMA_BYTES} bytes")
    dialect = schema.get("$schema", SCHEMA_DIALECT)
    if not isinstance(dialect, str) or dialect.rstrip("#") != SCHEMA_DIALECT:
        _bad_schema("attributes_schema.$schema", f"must be {SCHEMA_DIALECT} (draft 2020-12)")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.path)
        message = exc.message if len(exc.message) <= 200 else exc.message[:197] + "..."
        _bad_schema("attributes_schema" + (f".{where}" if where else ""), message)
    if schema.get("type") != "object":
        _bad_schema("attributes_schema.type", "must be 'object' (attributes are a JSON object)")
    resolver = None
    for path, ref in _refs(schema, ()):
        where = ".".join(("attributes_schema", *path))
        if not ref.startswith("#"):
            _bad_schema(where, "may only refer inside this schema (#/...); nothing is fetched")
        if resolver is None:
            root = referencing.jsonschema.DRAFT202012.create_resource(schema)
            resolver = _NO_RETRIEVAL.with_resource(_ROOT_URI, root).resolver(base_uri=_ROOT_URI)
        try:
            resolver.lookup(ref)
        except referencing.exceptions.Unresolvable:
            _bad_schema(where, f"{ref} points to nothing in this schema")


def _bad_schema(field: str, message: str) -> None:
    raise InvalidEventTypeSchema(
        f"{field}: {message}", errors=[{"field": field, "message": message}]
    )


def _refs(node: Any, path: tuple[str, ...]) -> Iterable[tuple[tuple[str, ...], str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                yield (*path, key), value
            else:
                yield from _refs(value, (*path, str(key)))
    elif isinstance(node, builtins.list):
        for index, value in enumerate(node):
            yield from _refs(value, (*path, str(index)))


def attribute_errors(
    validator: Validator, attributes: Mapping[str, Any], hints: Mapping[str, str] | None = None
) -> builtins.list[dict[str, str]]:
    """Complaints as ``{"field": "attributes.rating", "message": ...}``, the shape of
    ``treu.api.problems`` field errors; at most ``MAX_ERRORS``, one per field."""
    found: dict[str, str] = {}
    for error in validator.iter_errors(attributes):
        for path, message in _explain(error, hints or {}):
            found.setdefault(".".join(("attributes", *path)), message)
        if len(found) >= MAX_ERRORS:
            break
    return [{"field": f, "message": m} for f, m in builtins.list(found.items())[:MAX_ERRORS]]


_TYPE_NAMES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _explain(
    error: ValidationError, hints: Mapping[str, str]
) -> Iterable[tuple[Iterable[str], str]]:
    """Messages written for the people integrating a shop, not jsonschema's reprs (which
    also embed the offending value, however large)."""
    path = [str(p) for p in error.absolute_path]
    keyword: Any = error.validator
    value: Any = error.validator_value
    instance: Any = error.instance
    if keyword == "required" and isinstance(instance, dict):
        for name in value:
            if name not in instance:
                yield [*path, str(name)], "is required"
    elif keyword == "additionalProperties" and isinstance(instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        patterns = (
            error.schema.get("patternProperties", {}) if isinstance(error.schema, dict) else {}
        )
        allowed = f" (allowed: {', '.join(known)})" if known else ""
        for name in instance:
            if name in known or any(re.search(p, name) for p in patterns):
                continue
            hint = hints.get(name) if not path else None
            yield [*path, name], hint or f"is not an attribute of this event type{allowed}"
    elif keyword == "type":
        names = value if isinstance(value, builtins.list) else [value]
        yield path, "must be " + " or ".join(_TYPE_NAMES.get(str(n), str(n)) for n in names)
    elif keyword == "enum":
        yield path, "must be one of " + ", ".join(_show(v) for v in value)
    elif keyword == "const":
        yield path, f"must be {_show(value)}"
    elif keyword == "minimum":
        yield path, f"must be at least {value}"
    elif keyword == "maximum":
        yield path, f"must be at most {value}"
    elif keyword == "exclusiveMinimum":
        yield path, f"must be greater than {value}"
    elif keyword == "exclusiveMaximum":
        yield path, f"must be less than {value}"
    elif keyword == "minLength":
        yield path, "must not be empty" if value == 1 else f"must have at least {value} characters"
    elif keyword == "maxLength":
        yield path, f"must have at most {value} characters"
    elif keyword == "pattern":
        yield path, f"must match the pattern {value}"
    elif keyword in ("anyOf", "oneOf") and _only_required(value):
        names = [n for sub in value for n in sub["required"]]
        count = "at least one" if keyword == "anyOf" else "exactly one"
        yield path, f"needs {count} of " + ", ".join(names)
    else:
        message = error.message
        yield path, message if len(message) <= 200 else message[:197] + "..."


def _only_required(subschemas: Any) -> bool:
    return isinstance(subschemas, builtins.list) and all(
        isinstance(s, dict) and builtins.list(s) == ["required"] for s in subschemas
    )
