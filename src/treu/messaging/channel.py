"""The e-mail channel: which outbox rows become e-mails, to whom, saying what.

Until journeys and editable templates come, the channel e-mails a member for four
transactional outbox types (``CATALOGUE``): ``member.enrolled`` (welcome),
``points.expiring`` (the points and date of the notice), ``coupon.issued`` (the code)
and ``tier.changed`` (upgrades only), and ``campaign.message`` (a journey's message,
naming its template and kind; docs/journeys.md) — a type an enabled journey owns is left
to the journey. Marketing messages are capped per member and 7 days (counted from the
deliveries) and wait out quiet hours (``not_before``). Whether a message goes is
decided at planning by the rules of ``treu.messaging.consents``: the programme allows
transactional e-mail, the member has an address, is not closed and has not withdrawn e-mail consent
(marketing messages need consent granted).

Everything is rendered at planning, in the member's language, into the delivery's
payload (``to``, ``subject``, ``text``, ``html``, ``headers``, ``language``): a retry
sends the same words, even after the member's name or the programme changed. The
outbox row's payload has ids and amounts only; names and addresses are read from the
member tables here.
"""

from __future__ import annotations

import logging
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from treu.campaigns.models import Campaign
from treu.config import DEV_SMTP_FROM, Settings
from treu.delivery.channel import Channel, Outcome, Planned, Sender
from treu.delivery.models import Delivery
from treu.kit.lang import Lang, member_language
from treu.kit.text import translate_plural
from treu.kit.time import local_date
from treu.ledger.models import Account
from treu.members.models import Member, MemberStatus
from treu.messaging import stored
from treu.messaging.consents import (
    ConsentState,
    Kind,
    consents,
    may_send,
    policy,
    unsubscribe_token,
)
from treu.messaging.email import SmtpConfig, SmtpSender
from treu.messaging.errors import TemplateProblem
from treu.messaging.mailbox import DevMailboxSender, mailbox
from treu.messaging.models import ConsentChannel
from treu.messaging.templates import Rendered, format_day, format_number, render_message
from treu.outbox.models import OutboxMessage
from treu.programmes.models import Programme
from treu.rewards.coupons import summary
from treu.rewards.models import Coupon
from treu.tiers.service import tiers
from treu.tiers.texts import quantity

log = logging.getLogger("treu.messaging")

NAME = "email"


@dataclass(frozen=True, slots=True)
class Facts:
    """What a message's variables are made from (read once per planning round)."""

    session: Session
    message: OutboxMessage
    member: Member
    programme: Programme
    lang: Lang
    coupons: Mapping[uuid.UUID, Coupon]
    balance: int
    """Available points now (at planning)."""
    campaigns: Mapping[uuid.UUID, str] = field(default_factory=dict)
    """The names of the campaigns whose messages (``source: campaign``) are planned."""
    key: bytes = b""
    """The server's signing key (a sign-in code is derived from it)."""


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """One kind of e-mail: its template, its kind, and its own variables (None from
    ``variables``: this row calls for no e-mail, e.g. a tier downgrade)."""

    template: str
    variables: Callable[[Facts], dict[str, Any] | None]
    kind: Kind = "transactional"
    inbox: bool = True
    """Also in the in-app inbox (a sign-in code is not: it is for this browser, now)."""
    stored: bool = True
    """A programme's stored template may word it (not a sign-in code: the code must be
    in it, and a stored template cannot name it)."""


def points_label(programme: Programme, lang: str, count: int) -> str:
    """The programme's name for ``count`` points ("Punkte", "Sterne"), in ``lang``."""
    name = (programme.points_name or {}).get(lang)
    if isinstance(name, str):
        return name
    if isinstance(name, Mapping):
        label = name.get("one" if count == 1 else "other")
        if label:
            return str(label)
    return translate_plural(lang, "point", "points", count)


WELCOME_WITHIN = timedelta(days=1)
"""A member whose enrolment lies further back than this when it is recorded was imported
with their original enrolment date (``enrolled_at``): they are not new, and a programme
moving 100,000 members to Treu must not welcome each of them."""


def _welcome(facts: Facts) -> dict[str, Any] | None:
    enrolled_at = facts.message.payload.get("enrolled_at")
    if enrolled_at is not None:
        enrolled = datetime.fromisoformat(str(enrolled_at).replace("Z", "+00:00"))
        if enrolled < facts.message.occurred_at - WELCOME_WITHIN:
            return None
    return {"card_number": facts.member.card_number}


def _expiring(facts: Facts) -> dict[str, Any]:
    payload = facts.message.payload
    points = int(payload["points"])
    expires_at = datetime.fromisoformat(str(payload["expires_at"]).replace("Z", "+00:00"))
    day = local_date(expires_at, facts.programme.timezone)
    return {
        "points": format_number(points, facts.lang),
        "points_label": points_label(facts.programme, facts.lang, points),
        "expires_on": format_day(day, facts.lang),
    }


def _coupon(facts: Facts) -> dict[str, Any] | None:
    coupon = facts.coupons.get(uuid.UUID(str(facts.message.payload["coupon_id"])))
    if coupon is None:
        return None
    try:
        offer: str | None = summary(coupon.kind, coupon.terms, facts.lang, facts.programme.timezone)
    except (KeyError, TypeError, ValueError):  # terms of a kind the summary cannot say
        offer = None
    expires: date = local_date(coupon.expires_at, facts.programme.timezone)
    return {
        "coupon_code": coupon.code,
        "coupon_offer": offer,
        "coupon_expires_on": format_day(expires, facts.lang),
    }


def _upgrade(facts: Facts) -> dict[str, Any] | None:
    payload = facts.message.payload
    ladder = tiers.ladder(facts.session, facts.programme)
    new = ladder.get(payload.get("to_tier"))
    old = ladder.get(payload.get("from_tier"))
    if new is None or (old is not None and old.rank >= new.rank):
        return None
    return {
        "tier": new.label(facts.lang),
        "previous_tier": old.label(facts.lang) if old is not None else None,
    }


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _campaign(facts: Facts) -> dict[str, Any]:
    """A journey's or campaign's message (``campaign.message``): every variable any of
    their templates uses, empty where this occasion has none."""
    payload = facts.message.payload
    lang, programme = facts.lang, facts.programme
    out: dict[str, Any] = {
        "card_number": facts.member.card_number,
        "points": None,
        "points_label": None,
        "expires_on": None,
        "tier": None,
        "previous_tier": None,
        "missing": None,
        "until": None,
        "coupon_code": None,
        "coupon_offer": None,
        "coupon_expires_on": None,
        "campaign": None,
    }
    if payload.get("source") == "campaign" and payload.get("source_id"):
        out["campaign"] = facts.campaigns.get(uuid.UUID(str(payload["source_id"])))
    if payload.get("points") is not None:
        points = int(payload["points"])
        out["points"] = format_number(points, lang)
        out["points_label"] = points_label(programme, lang, points)
    expires_at = _when(payload.get("expires_at"))
    if expires_at is not None:
        out["expires_on"] = format_day(local_date(expires_at, programme.timezone), lang)
    until = _when(payload.get("until"))
    if until is not None:
        out["until"] = format_day(local_date(until, programme.timezone), lang)
    if payload.get("missing") is not None:
        # in the tier metric's unit, as the tier page says it ("€120.00 spend")
        out["missing"] = quantity(
            programme.tier_metric,
            int(payload["missing"]),
            currency=programme.currency,
            points_name=programme.points_name,
            lang=lang,
        )
    if payload.get("tier") or payload.get("previous_tier"):
        ladder = tiers.ladder(facts.session, programme)
        for name in ("tier", "previous_tier"):
            tier = ladder.get(payload.get(name))
            out[name] = tier.label(lang) if tier is not None else None
    if payload.get("coupon_id"):
        coupon = _coupon(facts)
        if coupon is not None:
            out.update(coupon)
    return out


def _sign_in_code(facts: Facts) -> dict[str, Any] | None:
    """The code is derived from the row's nonce with the server's key: it is in no row."""
    from treu.members.codes import VALID_FOR, derive

    payload = facts.message.payload
    if not facts.key or not payload.get("nonce"):
        return None
    return {
        "code": derive(facts.key, facts.member.id, str(payload["nonce"])),
        "minutes": int(VALID_FOR.total_seconds() // 60),
    }


CAMPAIGN = "campaign.message"
MARKETING_WINDOW = timedelta(days=7)


CATALOGUE: dict[str, MessageSpec] = {
    "member.enrolled": MessageSpec("welcome", _welcome),
    "points.expiring": MessageSpec("points_expiring", _expiring),
    "coupon.issued": MessageSpec("coupon_issued", _coupon),
    "tier.changed": MessageSpec("tier_upgraded", _upgrade),
    "member.sign_in_code": MessageSpec(
        "sign_in_code", _sign_in_code, kind="requested", inbox=False, stored=False
    ),
    CAMPAIGN: MessageSpec("(the payload's template)", _campaign),
}
"""Outbox type -> the e-mail it calls for (a ``campaign.message`` names its template and
kind in its payload)."""

Owned = Callable[[Session, set[uuid.UUID]], set[tuple[uuid.UUID, str]]]
"""Which (programme, outbox type) pairs an enabled journey replaces the built-in mail
of (``treu.journeys.service.JourneyService.owned_types``, given by the worker)."""


def _spec(spec: MessageSpec, message: OutboxMessage) -> MessageSpec:
    if message.type != CAMPAIGN:
        return spec
    kind: Kind = (
        "marketing" if message.payload.get("message_kind") == "marketing" else ("transactional")
    )
    return MessageSpec(str(message.payload["template"]), spec.variables, kind)


class EmailChannel:
    """The ``Channel`` (``treu.delivery.channel``) of e-mail: over SMTP when
    ``TREU_SMTP_HOST`` is set, else into the development mailbox."""

    name = NAME
    consent_channel = ConsentChannel.email
    """The consent that lets a message go (the inbox channel reuses this planning)."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalogue: Mapping[str, MessageSpec] | None = None,
        owned: Owned | None = None,
    ) -> None:
        key = settings.signing_key()
        if key is None:
            raise ValueError("e-mail needs TREU_SECRET_KEY to sign its unsubscribe links")
        self._key = key
        self.public_url = settings.public_url
        self.smtp = SmtpConfig.of(settings) if settings.smtp_host else None
        self.from_address = settings.smtp_from or DEV_SMTP_FROM
        self.catalogue = dict(CATALOGUE if catalogue is None else catalogue)
        self.owned = owned
        self.marketing_cap = settings.marketing_cap_per_7_days

    def unsubscribe_url(self, member_id: uuid.UUID) -> str:
        return (
            f"{self.public_url}/u/{unsubscribe_token(self._key, member_id, self.consent_channel)}"
        )

    def plan(
        self, session: Session, messages: Sequence[OutboxMessage], *, now: datetime
    ) -> list[Planned]:
        wanted = [m for m in messages if m.type in self.catalogue and m.member_id is not None]
        if not wanted:
            return []
        member_ids = list({m.member_id for m in wanted if m.member_id is not None})
        found = {m.id: m for m in session.scalars(select(Member).where(Member.id.in_(member_ids)))}
        programme_ids = {m.programme_id for m in found.values()}
        programmes = {
            p.id: p
            for p in session.scalars(select(Programme).where(Programme.id.in_(programme_ids)))
        }
        allowed = self.allowed(session, programme_ids)
        states = consents.latest(session, member_ids, self.consent_channel)
        coupon_ids = [
            uuid.UUID(str(m.payload["coupon_id"]))
            for m in wanted
            if m.type in ("coupon.issued", CAMPAIGN) and m.payload.get("coupon_id")
        ]
        coupons = (
            {c.id: c for c in session.scalars(select(Coupon).where(Coupon.id.in_(coupon_ids)))}
            if coupon_ids
            else {}
        )
        balances = dict(
            session.execute(
                select(Account.member_id, Account.available).where(
                    Account.member_id.in_(member_ids)
                )
            ).all()
        )
        campaign_ids = {
            uuid.UUID(str(m.payload["source_id"]))
            for m in wanted
            if m.type == CAMPAIGN and m.payload.get("source") == "campaign"
        }
        names: dict[uuid.UUID, str] = (
            dict(
                session.execute(
                    select(Campaign.id, Campaign.name).where(Campaign.id.in_(campaign_ids))
                ).all()
            )
            if campaign_ids
            else {}
        )
        owned = self.owned(session, programme_ids) if self.owned is not None else set()
        sent = self._marketing_sent(session, wanted, now)
        planned: list[Planned] = []
        for message in wanted:
            member = found.get(message.member_id) if message.member_id else None
            if member is None or not self.reaches(member):
                continue
            if (message.programme_id, message.type) in owned:
                continue
            spec = _spec(self.catalogue[message.type], message)
            state: ConsentState | None = states.get(member.id, {}).get(self.consent_channel.value)
            if spec.kind == "transactional" and not allowed.get(member.programme_id, True):
                continue
            if not may_send(spec.kind, state):
                continue
            programme = programmes[member.programme_id]
            facts = Facts(
                session=session,
                message=message,
                member=member,
                programme=programme,
                lang=member_language(None, member.language),
                coupons=coupons,
                balance=int(balances.get(member.id, 0)),
                campaigns=names,
                key=self._key,
            )
            if spec.kind == "marketing":
                if sent.get(member.id, 0) >= self.marketing_cap:
                    log.info("outbox row %s: over the marketing cap, not sent", message.id)
                    continue
            done = self._compose(spec, facts)
            if done is not None:
                planned.append(done)
                if spec.kind == "marketing":
                    sent[member.id] = sent.get(member.id, 0) + 1
        return planned

    def _marketing_sent(
        self, session: Session, messages: Sequence[OutboxMessage], now: datetime
    ) -> dict[uuid.UUID, int]:
        """Marketing messages of this channel planned per member in the last 7 days (the
        frequency cap),
        for the members of this batch's marketing messages: one query."""
        member_ids = {
            m.member_id
            for m in messages
            if m.type == CAMPAIGN and m.member_id and m.payload.get("message_kind") == "marketing"
        }
        if not member_ids:
            return {}
        _serialise_members(session, member_ids)
        rows = session.execute(
            select(Delivery.member_id, func.count())
            .where(
                Delivery.member_id.in_(member_ids),
                Delivery.channel == self.name,  # each channel its own cap (the inbox too)
                Delivery.event_type == CAMPAIGN,
                Delivery.created_at > now - MARKETING_WINDOW,
                Delivery.dedupe_key.like(f"{self.name}:marketing:%"),
            )
            .group_by(Delivery.member_id)
        ).all()
        return {member_id: int(count) for member_id, count in rows if member_id is not None}

    def _compose(self, spec: MessageSpec, facts: Facts) -> Planned | None:
        try:
            own = spec.variables(facts)
        except (KeyError, TypeError, ValueError):
            # A row this code cannot read must not hold up the outbox either.
            log.exception("outbox row %s: no e-mail (payload not understood)", facts.message.id)
            return None
        if own is None:
            return None
        member, programme, lang = facts.member, facts.programme, facts.lang
        unsubscribe = self.unsubscribe_url(member.id)
        balance = facts.balance
        variables = {
            "first_name": member.first_name,
            "programme_name": programme.name,
            "balance": format_number(balance, lang),
            "balance_label": points_label(programme, lang, balance),
            "points_name": points_label(programme, lang, 2),
            "unsubscribe_url": unsubscribe,
            **own,
        }
        try:
            # A programme's stored template of this message replaces the files.
            rendered = (
                spec.stored
                and stored.render_stored(
                    facts.session,
                    member=member,
                    programme=programme,
                    key=spec.template,
                    lang=lang,
                    variables=variables,
                )
            ) or render_message(spec.template, variables, lang)
        except (TemplateProblem, OSError):
            # A broken or missing template must not hold up the outbox: this message is
            # left out (and logged loudly), the others of the batch go.
            log.exception(
                "e-mail %s for outbox row %s not rendered", spec.template, facts.message.id
            )
            return None
        return self.planned(spec, facts, rendered, unsubscribe)

    # --- what the inbox channel (``treu.messaging.inbox``) overrides ---------------------

    def reaches(self, member: Member) -> bool:
        """Whether this channel can reach ``member`` at all."""
        return bool(member.email) and member.status != MemberStatus.closed

    def allowed(self, session: Session, programme_ids: set[uuid.UUID]) -> Mapping[uuid.UUID, bool]:
        """Per programme: whether it sends transactional messages over this channel."""
        return policy.transactional_email(session, programme_ids)

    def planned(
        self, spec: MessageSpec, facts: Facts, rendered: Rendered, unsubscribe: str
    ) -> Planned:
        """The delivery of a rendered message."""
        member, lang = facts.member, facts.lang
        assert member.email is not None
        marketing = "marketing:" if spec.kind == "marketing" else ""
        return Planned(
            channel=NAME,
            target=member.email,
            dedupe_key=f"{NAME}:{marketing}{facts.message.id}",
            event_type=facts.message.type,
            payload={
                "to": member.email,
                "subject": rendered.subject,
                "text": rendered.text,
                "html": rendered.html,
                "headers": {
                    "List-Unsubscribe": f"<{unsubscribe}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
                "language": lang,
                "kind": spec.kind,
                "template": spec.template,
            },
            programme_id=member.programme_id,
            member_id=member.id,
            outbox_id=facts.message.id,
            not_before=self.not_before(facts),
        )

    @staticmethod
    def not_before(facts: Facts) -> datetime | None:
        """When a campaign message may go: after the quiet hours its planning found
        (``not_before`` in the outbox row); anything else goes at once."""
        if facts.message.type != CAMPAIGN:
            return None
        return _when(facts.message.payload.get("not_before"))

    def sender(self) -> Sender:
        if self.smtp is not None:
            return SmtpSender(self.smtp)
        return DevMailboxSender(self.from_address)

    def settle(self, session: Session, outcomes: Sequence[Outcome], *, now: datetime) -> None:
        if self.smtp is None:
            mailbox.keep(session, outcomes, now=now, sender=self.from_address)


_warned = False


def email_channels(settings: Settings, *, owned: Owned | None = None) -> list[Channel]:
    """The e-mail channel this configuration has: SMTP, the development mailbox, or —
    in production without ``TREU_SMTP_HOST`` — none (with a warning, once)."""
    global _warned
    if settings.smtp_host or settings.env == "development":
        return [EmailChannel(settings, owned=owned)]
    if not _warned:
        _warned = True
        log.warning("TREU_SMTP_HOST is not set: no e-mail is sent (docs/email.md)")
    return []


_CAP_LOCKS = zlib.crc32(b"treu.marketing_cap") - 2**31
"""The first key of the frequency cap's advisory locks (a 32-bit key space of its own)."""


def _serialise_members(session: Session, member_ids: set[uuid.UUID]) -> None:
    """On PostgreSQL, hold a lock per member until the transaction ends, so that two
    dispatchers planning marketing messages for one member count each other's
    deliveries: the second waits for the first to commit, then sees what it planned (at
    READ COMMITTED each statement sees the latest commits). Taken in one order, so two
    dispatchers never wait for each other in a circle. SQLite has one writer anyway."""
    if session.get_bind().dialect.name != "postgresql":
        return
    keys = sorted({int.from_bytes(m.bytes[-4:], "big", signed=True) for m in member_ids})
    session.execute(
        text(
            "SELECT count(pg_advisory_xact_lock(:space, k)) "
            "FROM unnest(CAST(:keys AS integer[])) AS k"
        ),
        {"space": _CAP_LOCKS, "keys": keys},
    )
