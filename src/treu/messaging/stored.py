"""Stored templates: a programme's own wording of a message, edited over the API.

A ``MessageTemplate`` (programme + key + language) replaces the shipped files
``templates/<lang>/<key>.subject.txt|.txt|.html`` when that programme's member gets that
message; the layout (footer, unsubscribe link) stays the shipped one. Templates are
untrusted input — an administrator's API key is not a licence to run code on the
server — so a template is saved only once it has been checked and rendered in the
sandbox (``treu.messaging.templates``) with sample values in both languages: a syntax
error, a variable that does not exist, or an attribute the sandbox refuses
(``''.__class__``) is a ``TemplateProblem`` (422) naming the part and the line.

Every stored template may use every variable of ``VARIABLES``: the member's facts
(balance, next expiry, tier and what is missing for the next one, latest coupon with its
QR code) are read only when a stored template is rendered (``render_stored``), and the
message's own values (the points of *this* notice, the coupon just issued) win over them.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.errors import Invalid
from treu.kit import codes
from treu.kit.lang import LANGUAGES, Lang
from treu.kit.pagination import InvalidCursor, decode_cursor, encode_cursor
from treu.kit.time import local_date, utc_now
from treu.ledger.models import Account
from treu.ledger.service import ledger
from treu.members.models import Member, MemberStatus
from treu.messaging.errors import TemplateExists, TemplateNotFound
from treu.messaging.keys import message_keys
from treu.messaging.models import MessageTemplate
from treu.messaging.templates import (
    Rendered,
    TemplateSource,
    format_day,
    format_number,
    render_message,
    renderer,
    trusted_html,
)
from treu.programmes.models import Programme
from treu.rewards.coupons import local_name, summary
from treu.rewards.models import Coupon
from treu.tiers.service import tiers

__all__ = ["VARIABLES", "TemplateSource", "resolve", "stored_templates"]

VARIABLES: dict[str, str] = {
    "first_name": "The member's first name (may be empty)",
    "programme_name": "The programme's name",
    "balance": "Available points now, formatted (1.234)",
    "balance_label": "The programme's name for that many points (Punkte)",
    "points_name": "The programme's name for points, plural",
    "unsubscribe_url": "The member's one-click unsubscribe link",
    "card_number": "The member's card number",
    "points": "Points of the expiry notice or of an offer, else of the member's next expiry "
    "(may be empty)",
    "points_label": "The programme's name for that many points",
    "expires_on": "Their expiry date, by locale (31.12.2026; may be empty)",
    "tier": "The member's tier (the new one in an upgrade; may be empty)",
    "previous_tier": "The tier before an upgrade (may be empty)",
    "next_tier": "The tier above the member's (may be empty)",
    "next_tier_missing": "What is missing for it (1.234,50 € by 31.12.2026 for Gold)",
    "coupon_code": "The coupon's code (the one issued, else the member's latest)",
    "coupon_offer": "What the coupon is worth (5,00 € Rabatt; may be empty)",
    "coupon_expires_on": "The coupon's last day, by locale",
    "coupon_qr": "The coupon code as a QR code, inline SVG (HTML part)",
    "reward": "The reward the coupon is for (may be empty)",
    "campaign": "The campaign's name, in a campaign's message (may be empty)",
    "lang": "The language (de, en)",
}
"""What a stored template may name (and ``GET /v1/templates/variables`` lists)."""

SAMPLE_CODE = "TREU0000SAMP"
"""The coupon code a preview shows for a member without a coupon."""

_CACHE = "treu.messaging.stored"


@cache
def sample_variables(lang: str) -> dict[str, Any]:
    """Values of the right kind for every variable: what a template is tried with
    before it is saved."""
    day = format_day(date(2026, 12, 31), lang)
    return {
        "first_name": "Anna",
        "programme_name": "Treu",
        "balance": format_number(1234, lang),
        "balance_label": "Punkte" if lang == "de" else "points",
        "points_name": "Punkte" if lang == "de" else "points",
        "unsubscribe_url": "https://treu.invalid/u/sample",
        "card_number": "1000000000001",
        "points": format_number(120, lang),
        "points_label": "Punkte" if lang == "de" else "points",
        "expires_on": day,
        "tier": "Gold",
        "previous_tier": "Silber" if lang == "de" else "Silver",
        "next_tier": "Platin" if lang == "de" else "Platinum",
        "next_tier_missing": "100 Punkte" if lang == "de" else "100 points",
        "coupon_code": codes.format_code(SAMPLE_CODE),
        "coupon_offer": "5,00 € Rabatt" if lang == "de" else "€5.00 off",
        "coupon_expires_on": day,
        "coupon_qr": trusted_html("<svg></svg>"),
        "reward": "Gutschein" if lang == "de" else "Voucher",
        "campaign": "Herbst-Geschenk",
    }


def check(subject: str, text: str, html: str) -> None:
    """Refuse (``TemplateProblem``, with part and line) what would not render: syntax,
    unknown variables, what the sandbox forbids — tried in every language."""
    names = set(VARIABLES)
    parts = {"subject": (subject, False), "text": (text, False), "html": (html, True)}
    for part, (source, is_html) in parts.items():
        renderer.check(source, names, html=is_html, name=part)
    for lang in LANGUAGES:
        values = sample_variables(lang)
        for part, (source, is_html) in parts.items():
            renderer.render(source, values, lang, html=is_html, name=part)


def resolve(
    session: Session, programme_id: uuid.UUID, key: str, lang: str
) -> TemplateSource | None:
    """The programme's stored template of ``key`` in ``lang``, if it has one. A
    programme's templates are read once per unit of work (one query, however many
    messages a planning round renders)."""
    cache: dict[uuid.UUID, dict[tuple[str, str], TemplateSource]]
    cache = session.info.setdefault(_CACHE, {})
    found = cache.get(programme_id)
    if found is None:
        found = {
            (row.key, row.lang): TemplateSource(
                row.subject, row.text, row.html, origin=f"stored template {row.id}"
            )
            for row in session.scalars(
                select(MessageTemplate).where(MessageTemplate.programme_id == programme_id)
            )
        }
        cache[programme_id] = found
    return found.get((key, lang))


def _forget(session: Session) -> None:
    session.info.pop(_CACHE, None)


def member_variables(
    session: Session,
    *,
    member: Member,
    programme: Programme,
    lang: Lang,
    unsubscribe_url: str,
    now: datetime,
    sample_coupon: bool = False,
) -> dict[str, Any]:
    """Every variable of ``VARIABLES`` from the member's data now. ``sample_coupon``: a
    member without a coupon gets a sample code (a preview), else no code."""
    from treu.messaging.channel import points_label  # the channel imports this module

    balance = session.scalar(select(Account.available).where(Account.member_id == member.id))
    balance = int(balance or 0)
    values: dict[str, Any] = {
        "first_name": member.first_name,
        "programme_name": programme.name,
        "balance": format_number(balance, lang),
        "balance_label": points_label(programme, lang, balance),
        "points_name": points_label(programme, lang, 2),
        "unsubscribe_url": unsubscribe_url,
        "card_number": member.card_number,
        "points": None,
        "points_label": points_label(programme, lang, 2),
        "expires_on": None,
        "tier": None,
        "previous_tier": None,
        "next_tier": None,
        "next_tier_missing": None,
        "coupon_code": None,
        "coupon_offer": None,
        "coupon_expires_on": None,
        "coupon_qr": None,
        "reward": None,
        "campaign": None,
    }
    if balance > 0:
        expiring = ledger.balance(session, member_id=member.id, expiring_limit=1).expiring
        if expiring:
            first = expiring[0]
            values["points"] = format_number(first.points, lang)
            values["points_label"] = points_label(programme, lang, first.points)
            values["expires_on"] = format_day(
                local_date(first.expires_at, programme.timezone), lang
            )
    if programme.tiers_version:
        status = tiers.status(session, member=member, lang=lang, now=now)
        values["tier"] = status.tier.name if status.tier is not None else None
        if status.next is not None:
            values["next_tier"] = status.next.tier.name
            values["next_tier_missing"] = status.next.text
    coupon = session.scalars(
        select(Coupon)
        .where(Coupon.member_id == member.id)
        .order_by(Coupon.issued_at.desc(), Coupon.id.desc())
        .limit(1)
    ).first()
    code: str | None = None
    if coupon is not None:
        code = coupon.code
        try:
            values["coupon_offer"] = summary(coupon.kind, coupon.terms, lang, programme.timezone)
        except (KeyError, TypeError, ValueError):
            values["coupon_offer"] = None
        values["coupon_expires_on"] = format_day(
            local_date(coupon.expires_at, programme.timezone), lang
        )
        values["reward"] = local_name(coupon.terms.get("name"), lang) or None
    elif sample_coupon:
        code = SAMPLE_CODE
    if code is not None:
        values["coupon_code"] = codes.format_code(code)
        values["coupon_qr"] = trusted_html(qr_svg(code))
    return values


def qr_svg(code: str) -> str:
    """The code as a QR code (SVG), as coupons draw it (``CouponService.qr_svg``)."""
    import segno

    qr = segno.make(codes.format_code(code), error="m", micro=False)
    out = io.BytesIO()
    qr.save(out, kind="svg", scale=4, border=4, xmldecl=False, svgns=True)
    return out.getvalue().decode()


def render_stored(
    session: Session,
    *,
    member: Member,
    programme: Programme,
    key: str,
    lang: Lang,
    variables: Mapping[str, Any],
    now: datetime | None = None,
) -> Rendered | None:
    """The message ``key`` in the programme's stored wording, or None when it has none
    (the shipped files apply). ``variables`` are the message's own (they win)."""
    stored = resolve(session, programme.id, key, lang)
    if stored is None:
        return None
    values = member_variables(
        session,
        member=member,
        programme=programme,
        lang=lang,
        unsubscribe_url=str(variables.get("unsubscribe_url") or ""),
        now=now or utc_now(),
    )
    values.update(variables)
    return render_message(key, values, lang, stored=stored)


@dataclass(frozen=True, slots=True)
class TemplateData:
    key: str
    lang: Lang
    subject: str
    text: str
    html: str


class StoredTemplates:
    def list(
        self,
        session: Session,
        *,
        programme_id: uuid.UUID | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[MessageTemplate], str | None]:
        """Newest first, keyset-paginated."""
        query = select(MessageTemplate)
        if programme_id is not None:
            query = query.where(MessageTemplate.programme_id == programme_id)
        if cursor:
            query = query.where(MessageTemplate.id < _before(cursor))
        rows = list(session.scalars(query.order_by(MessageTemplate.id.desc()).limit(limit + 1)))
        if len(rows) <= limit:
            return rows, None
        rows = rows[:limit]
        return rows, encode_cursor({"before": str(rows[-1].id)})

    def get(self, session: Session, template_id: uuid.UUID) -> MessageTemplate:
        found = session.get(MessageTemplate, template_id)
        if found is None:
            raise TemplateNotFound(f"no template {str(template_id)!r}")
        return found

    def create(
        self, session: Session, *, programme: Programme, data: TemplateData, actor: str
    ) -> MessageTemplate:
        _known_key(data.key)
        check(data.subject, data.text, data.html)
        taken = session.scalar(
            select(MessageTemplate.id).where(
                MessageTemplate.programme_id == programme.id,
                MessageTemplate.key == data.key,
                MessageTemplate.lang == data.lang,
            )
        )
        if taken is not None:
            raise TemplateExists(
                f"programme {programme.slug!r} has a {data.lang} template {data.key!r} "
                f"already ({taken}); change it with PUT"
            )
        row = MessageTemplate(
            programme_id=programme.id,
            key=data.key,
            lang=data.lang,
            subject=data.subject,
            text=data.text,
            html=data.html,
            version=1,
            updated_by=actor,
        )
        session.add(row)
        session.flush()
        _forget(session)
        self._audit(session, row, actor, "template.created")
        return row

    def update(
        self,
        session: Session,
        *,
        template_id: uuid.UUID,
        subject: str,
        text: str,
        html: str,
        actor: str,
    ) -> MessageTemplate:
        check(subject, text, html)
        row = self.get(session, template_id)
        row.subject, row.text, row.html = subject, text, html
        row.version += 1
        row.updated_by = actor
        row.updated_at = utc_now()
        session.flush()
        _forget(session)
        self._audit(session, row, actor, "template.updated")
        return row

    def delete(self, session: Session, *, template_id: uuid.UUID, actor: str) -> None:
        row = self.get(session, template_id)
        self._audit(session, row, actor, "template.deleted")
        session.delete(row)
        session.flush()
        _forget(session)

    def _audit(self, session: Session, row: MessageTemplate, actor: str, action: str) -> None:
        audit.record(
            session,
            actor=actor,
            action=action,
            subject_type="message_template",
            subject_id=str(row.id),
            programme_id=row.programme_id,
            data={"key": row.key, "lang": row.lang, "version": row.version},
        )


def _known_key(key: str) -> None:
    if key not in message_keys():
        raise Invalid(
            f"no message {key!r}; one of: {', '.join(sorted(message_keys()))}", field="key"
        )


def _before(cursor: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(decode_cursor(cursor).get("before")))
    except (InvalidCursor, ValueError) as exc:
        raise Invalid(
            "cursor is not valid; use next_cursor from the previous page", field="cursor"
        ) from exc


def preview(
    session: Session,
    *,
    template: MessageTemplate,
    member: Member,
    programme: Programme,
    unsubscribe_url: str,
    now: datetime | None = None,
) -> Rendered:
    """The template rendered for ``member`` with their real data now (a sample coupon
    code when they have none)."""
    lang: Lang = "de" if template.lang == "de" else "en"
    values = member_variables(
        session,
        member=member,
        programme=programme,
        lang=lang,
        unsubscribe_url=unsubscribe_url,
        now=now or utc_now(),
        sample_coupon=True,
    )
    source = TemplateSource(
        template.subject, template.text, template.html, origin=f"stored template {template.id}"
    )
    return render_message(template.key, values, lang, stored=source)


def preview_message(
    session: Session,
    *,
    programme: Programme,
    key: str,
    lang: Lang,
    stored: TemplateSource | None,
    now: datetime | None = None,
) -> Rendered:
    """The message ``key`` in ``lang`` as the delivery renders it — the wording
    ``stored`` (saved or not) or, without it, the shipped files, in the shipped layout —
    for the console's preview: with the data of the programme's first active member
    (a sample coupon code when they have none), and sample values wherever that member
    has none (no expiry, no tier) or the programme has no member yet, so that every
    part of the template shows. A template that does not render raises
    ``TemplateProblem`` with its part and line."""
    _known_key(key)
    values: dict[str, Any] = {
        **sample_variables(lang),
        "missing": "100 Punkte" if lang == "de" else "100 points",
        "until": format_day(date(2026, 12, 31), lang),
    }
    member = session.scalars(
        select(Member)
        .where(Member.programme_id == programme.id, Member.status == MemberStatus.active.value)
        .order_by(Member.enrolled_at, Member.id)
        .limit(1)
    ).first()
    if member is not None:
        real = member_variables(
            session,
            member=member,
            programme=programme,
            lang=lang,
            unsubscribe_url=values["unsubscribe_url"],
            now=now or utc_now(),
            sample_coupon=True,
        )
        values.update({name: value for name, value in real.items() if value is not None})
    return render_message(key, values, lang, stored=stored)


stored_templates = StoredTemplates()
