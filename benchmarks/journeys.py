"""The daily journeys over a whole programme (``make bench --only journeys``): one
``treu.journeys.daily.run_daily`` over 100,000 members, timed, next to a raw baseline on
the same database.

The data is loaded with bulk inserts (set-up is not measured), shaped like a grocery
programme a year and a bit after launch:

* members with birthdays spread over the year (about 1 in 365 has one today) and
  e-mail consent granted by most (``CONSENT_SHARE``);
* purchases (``events`` of type ``purchase``) over the last ``HISTORY_DAYS`` days: a
  share of the members never bought, each buyer has a period of activity and buys a few
  times in it, and many buyers stopped (``CHURN_SHARE``), so a realistic share has been
  inactive for 90 days or more;
* per purchase of the last 12 months an ``earn`` posting and a lot expiring 12 months
  after it (the programme's rolling expiry), so the members whose purchases of
  11½ months ago are still unspent have points expiring within 14 days; accounts hold
  the sum. Older purchases carry no lots (their points have expired: the benchmark does
  not write the expiry postings, so ``ledger verify`` is not expected to hold here);
* tiers Bronze (0), Silber (500) and Gold (2,000 points over a rolling 12 months), the
  qualifying activity per member and day (``tier_activity``) and each member's tier row
  (``member_tiers``) with ``valid_until`` and ``review_on`` as ``tiers`` computes them.

Every kind in ``treu.journeys.daily.DUE`` (read at run time: the set grows) is enabled
with a 10 % holdout, birthday and inactivity with a coupon reward, then ``run_daily``
runs once with a Rich progress bar. On this fresh database it is the *first* run: every
member due — everyone already 90 days quiet, every lot expiring in the next 14 days —
is due at once, far more than on any later day (an upper bound for a day's run).

Checks afterwards: the members reached per kind equal what the generated data says
(birthday, inactivity, points expiring: counted while generating), one outbox message
per treated member, exposures unique per (journey, member, occasion, step), and a
second run reaches nobody.

The raw baseline on the same database: ``SELECT count(*)`` of the events and the one
aggregate the inactivity journey cannot avoid (each member's last purchase: a full scan
of the purchases), plus one multi-row INSERT of as many rows as the run wrote (exposures
and outbox messages) into a scratch table of the same width, in one transaction.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import bindparam, func, select, text, update

from benchmarks.workload import _insert_members
from treu.db.base import table_of
from treu.db.session import Database
from treu.events.models import Event
from treu.journeys import daily
from treu.journeys.models import Arm, JourneyExposure, JourneyKind
from treu.journeys.service import journeys
from treu.kit.ids import new_id
from treu.kit.time import local_date, utc_now
from treu.ledger.models import Account, Lot, LotState, Posting, PostingKind
from treu.members.models import Member
from treu.messaging.models import Consent
from treu.outbox.models import OutboxMessage
from treu.programmes.schemas import ProgrammeCreate
from treu.programmes.service import programmes
from treu.tiers import maths
from treu.tiers.models import MemberTier, TierActivity
from treu.tiers.schemas import TierCreate
from treu.tiers.service import tiers

SLUG = "bench-journeys"
HOLDOUT = 10
HISTORY_DAYS = 400
NEVER_BOUGHT = 0.08
CHURN_SHARE = 0.4
CONSENT_SHARE = 0.85
MEAN_PURCHASES = 5.0
CHUNK = 2000
TIERS = (("bronze", 0), ("silber", 500), ("gold", 2000))
EXPIRING_DAYS = 14
INACTIVE_DAYS = 90


@dataclass
class Expected:
    """What the generated data says the first run must reach, per kind."""

    birthday: int = 0
    inactivity: int = 0
    points_expiring: int = 0
    rows: Counter[str] = field(default_factory=Counter)


def prepare(db: Database, *, members: int, now: datetime, seed: int = 23) -> tuple[Any, Expected]:
    """The programme, its tiers, journeys and reward, and ``members`` members with their
    history (see the module docstring). Returns the programme id and what is expected."""
    from treu.rewards.schemas import RewardIn
    from treu.rewards.service import catalogue

    with db.unit_of_work() as session:
        programme = programmes.create(
            session,
            data=ProgrammeCreate.model_validate(
                {
                    "slug": SLUG,
                    "name": "Benchmark (journeys)",
                    "currency": "EUR",
                    "points_per_currency_unit": 1,
                    "pending_days": 0,
                    "expiry": {"policy": "rolling", "months": 12},
                }
            ),
        )
        for rank, (code, threshold) in enumerate(TIERS):
            tiers.create(
                session,
                programme=programme,
                data=TierCreate.model_validate(
                    {"code": code, "rank": rank, "name": {"en": code}, "threshold": threshold}
                ),
                actor="bench",
            )
        reward = catalogue.create(
            session,
            programme=programme,
            data=RewardIn.model_validate(
                {
                    "code": "journey-coupon",
                    "name": {"de": "5 € Gutschein", "en": "EUR 5 voucher"},
                    "points_cost": 500,
                    "type": "amount_discount",
                    "value_minor": 500,
                }
            ),
            actor="bench",
        )
        for kind in daily.DUE:
            journeys.put(
                session,
                programme,
                kind,
                enabled=True,
                reward_id=reward.id
                if kind in (JourneyKind.birthday, JourneyKind.inactivity)
                else None,
                holdout_pct=HOLDOUT,
            )
        programme_id = programme.id
        tz = programme.timezone
        ladder = tiers.ladder(session, programme)

    rng = random.Random(seed)
    today = local_date(now, tz)
    birthdays = {(today.month, today.day)}
    if today.month == 2 and today.day == 28 and not _leap(today.year):
        birthdays.add((2, 29))
    expected = Expected()

    def profile(n: int) -> dict[str, Any]:
        local = random.Random(seed * 1_000_003 + n)
        born = date(1950 + local.randrange(56), 1, 1) + timedelta(days=local.randrange(365))
        enrolled = now - timedelta(days=HISTORY_DAYS + local.randrange(200))
        return {
            "language": "de" if local.random() < 0.7 else "en",
            "birthday": born,
            "first_name": "Kim",
            "enrolled_at": enrolled,
            "created_at": enrolled,
        }

    found = _insert_members(db, programme_id, members, email_prefix="j", profile=profile)
    with db.unit_of_work(write=False) as session:
        born = session.scalars(select(Member.birthday).where(Member.programme_id == programme_id))
        expected.birthday = sum(1 for b in born if b is not None and (b.month, b.day) in birthdays)

    window_from = today - timedelta(days=365)
    for offset in range(0, len(found), CHUNK):
        chunk = [mid for mid, _card in found[offset : offset + CHUNK]]
        rows = _history(rng, chunk, now=now, tz=tz, programme_id=programme_id)
        expected.inactivity += rows.inactive
        expected.points_expiring += rows.expiring
        tiers_rows = []
        for mid in chunk:
            activity = rows.activity.get(mid)
            if not activity:
                continue
            counted = {d: a for d, a in activity.items() if d > window_from}
            value = sum(a.points for a in counted.values())
            held = max((t for t in ladder.tiers if t.threshold <= value), key=lambda t: t.rank)
            until = maths.valid_until(held, activity, "points", "rolling_12_months", today)
            review = until + maths.ONE_DAY if until is not None and until != date.max else None
            tiers_rows.append(
                {
                    "member_id": mid,
                    "programme_id": programme_id,
                    "tier": held.code,
                    "since": now - timedelta(days=rng.randrange(1, 300)),
                    "qualified_tier": held.code,
                    "valid_until": None if until == date.max else until,
                    "review_on": review,
                    "updated_at": now,
                }
            )
        with db.unit_of_work() as session:
            for model, batch in (
                (Event, rows.events),
                (Posting, rows.postings),
                (Lot, rows.lots),
                (TierActivity, rows.tier_activity),
                (MemberTier, tiers_rows),
                (Consent, _consents(rng, chunk, programme_id, now)),
            ):
                if batch:
                    # Core rather than the ORM's bulk insert: less work per row.
                    session.connection().execute(table_of(model).insert(), batch)
                    expected.rows[model.__tablename__] += len(batch)
            if rows.accounts:
                accounts = table_of(Account)
                session.connection().execute(
                    update(accounts)
                    .where(accounts.c.member_id == bindparam("mid"))
                    .values(available=bindparam("points"), lifetime_earned=bindparam("points")),
                    rows.accounts,
                )
    db.analyze(
        [
            "members",
            "accounts",
            "events",
            "postings",
            "lots",
            "tier_activity",
            "member_tiers",
            "consents",
        ]
    )
    return programme_id, expected


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


@dataclass
class _Rows:
    events: list[dict[str, Any]] = field(default_factory=list)
    postings: list[dict[str, Any]] = field(default_factory=list)
    lots: list[dict[str, Any]] = field(default_factory=list)
    tier_activity: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    activity: dict[uuid.UUID, dict[date, maths.DayActivity]] = field(default_factory=dict)
    inactive: int = 0
    expiring: int = 0


def _history(
    rng: random.Random,
    member_ids: list[uuid.UUID],
    *,
    now: datetime,
    tz: str,
    programme_id: uuid.UUID,
) -> _Rows:
    """Purchases, postings, lots and daily tier activity of a chunk of members."""
    out = _Rows()
    span = HISTORY_DAYS * 86400
    year_ago = now - timedelta(days=365)
    for mid in member_ids:
        if rng.random() < NEVER_BOUGHT:
            continue
        start = rng.randrange(span)
        end = span if rng.random() >= CHURN_SHARE else rng.randrange(start, span + 1)
        count = max(1, min(60, round(rng.expovariate(1 / MEAN_PURCHASES))))
        moments = sorted(
            now - timedelta(seconds=span - rng.randint(start, end)) for _ in range(count)
        )
        if moments[-1] <= now - timedelta(days=INACTIVE_DAYS):
            out.inactive += 1
        balance = 0
        expiring = False
        days: dict[date, maths.DayActivity] = defaultdict(maths.DayActivity)
        for at in moments:
            total = rng.randrange(300, 12000)
            points = total // 100
            event_id = new_id()
            out.events.append(
                {
                    "id": event_id,
                    "programme_id": programme_id,
                    "key": f"history-{event_id.hex}",
                    "type": "purchase",
                    "member_id": mid,
                    "payload_hash": "0" * 64,
                    "occurred_at": at,
                    "received_at": at,
                    "channel": "pos",
                    "store": f"berlin-0{rng.randrange(1, 10)}",
                    "currency": "EUR",
                    "total_minor": total,
                    "original_event_id": None,
                    "data": {},
                    "result": {},
                }
            )
            day = local_date(at, tz)
            days[day] = days[day].plus(maths.DayActivity(points, total, 1))
            if at <= year_ago:
                continue  # expired: no lot any more
            posting_id = new_id()
            out.postings.append(
                {
                    "id": posting_id,
                    "member_id": mid,
                    "programme_id": programme_id,
                    "kind": PostingKind.earn.value,
                    "points": points,
                    "correlation_id": event_id,
                    "event_id": event_id,
                    "explanation": f"{points} points for a purchase",
                    "details": {},
                    "created_at": at,
                }
            )
            expires = at + timedelta(days=365)
            if expires <= now + timedelta(days=EXPIRING_DAYS):
                expiring = True
            out.lots.append(
                {
                    "id": new_id(),
                    "member_id": mid,
                    "programme_id": programme_id,
                    "posting_id": posting_id,
                    "event_id": event_id,
                    "state": LotState.available.value,
                    "amount": points,
                    "remaining": points,
                    "earned_at": at,
                    "available_at": at,
                    "expires_at": expires,
                }
            )
            balance += points
        out.expiring += expiring
        out.activity[mid] = dict(days)
        out.tier_activity.extend(
            {
                "member_id": mid,
                "day": day,
                "points": a.points,
                "spend_minor": a.spend_minor,
                "purchases": a.purchases,
            }
            for day, a in days.items()
        )
        if balance:
            out.accounts.append({"mid": mid, "points": balance})
    return out


def _consents(
    rng: random.Random, member_ids: list[uuid.UUID], programme_id: uuid.UUID, now: datetime
) -> list[dict[str, Any]]:
    return [
        {
            "id": new_id(),
            "member_id": mid,
            "programme_id": programme_id,
            "channel": "email",
            "granted": True,
            "source": "import",
            "wording": "2025-09",
            "at": now - timedelta(days=HISTORY_DAYS),
        }
        for mid in member_ids
        if rng.random() < CONSENT_SHARE
    ]


def raw_baseline(db: Database, rows: int) -> dict[str, Any]:
    """The floor under the run on this database: reading every purchase once (a count
    and each member's last purchase) and writing ``rows`` rows in one transaction."""
    started = time.perf_counter()
    with db.unit_of_work(write=False) as session:
        events = session.scalar(select(func.count()).select_from(Event))
        last = session.execute(
            select(Event.member_id, func.max(Event.occurred_at))
            .where(Event.type == "purchase")
            .group_by(Event.member_id)
        ).all()
    scan = time.perf_counter() - started
    with db.unit_of_work() as session:
        session.execute(text("DROP TABLE IF EXISTS bench_raw_rows"))
        session.execute(
            text(
                "CREATE TABLE bench_raw_rows (id VARCHAR(36) PRIMARY KEY, member_id VARCHAR(36),"
                " kind VARCHAR(32), occasion VARCHAR(100), payload TEXT, at VARCHAR(40))"
            )
        )
    now = utc_now().isoformat()
    payload = '{"type": "campaign.message", "template": "birthday", "points": 120}'
    values = [
        {
            "id": str(new_id()),
            "member_id": str(uuid.uuid4()),
            "kind": "birthday",
            "occasion": "2027",
            "payload": payload,
            "at": now,
        }
        for _ in range(rows)
    ]
    started = time.perf_counter()
    with db.unit_of_work() as session:
        if values:
            session.execute(
                text(
                    "INSERT INTO bench_raw_rows VALUES "
                    "(:id, :member_id, :kind, :occasion, :payload, :at)"
                ),
                values,
            )
    write = time.perf_counter() - started
    with db.unit_of_work() as session:
        session.execute(text("DROP TABLE bench_raw_rows"))
    return {
        "events": int(events or 0),
        "members_with_purchases": len(last),
        "scan_seconds": round(scan, 3),
        "insert_rows": rows,
        "insert_seconds": round(write, 3),
        "seconds": round(scan + write, 3),
    }


def reached(db: Database, programme_id: uuid.UUID) -> dict[str, dict[str, int]]:
    """Exposures per kind (and step after the first), treated and held out."""
    out: dict[str, dict[str, int]] = {}
    with db.unit_of_work(write=False) as session:
        for kind, step, arm, n in session.execute(
            select(JourneyExposure.kind, JourneyExposure.step, JourneyExposure.arm, func.count())
            .where(JourneyExposure.programme_id == programme_id)
            .group_by(JourneyExposure.kind, JourneyExposure.step, JourneyExposure.arm)
        ).all():
            name = kind if step == 1 else f"{kind} step {step}"
            out.setdefault(name, {a.value: 0 for a in Arm})[arm] = int(n)
    return dict(sorted(out.items()))


class _Stop(Exception):
    """Raised from the progress callback once the run has taken ``limit`` seconds."""


def run(
    db: Database,
    *,
    members: int,
    console: Console,
    limit: float = 600.0,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Set up, run once, check. A run still going after ``limit`` seconds is stopped
    after its current page (each page is its own unit of work, so what it did stays
    consistent): the target is missed by far then, and the checks that need the run
    complete (expected counts, the second run) are skipped."""
    now = now or utc_now()
    started = time.perf_counter()
    programme_id, expected = prepare(db, members=members, now=now)
    setup = time.perf_counter() - started
    console.print(
        f"journeys: {members:,} members, "
        + ", ".join(f"{n:,} {table}" for table, n in expected.rows.items())
        + f", kinds {', '.join(k.value for k in daily.DUE)}, in {setup:.1f} s"
    )
    with db.unit_of_work(write=False) as session:
        outbox_before = session.scalar(select(func.count()).select_from(OutboxMessage)) or 0

    with Progress(
        TextColumn("daily journeys"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("members reached"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        bar = progress.add_task("journeys", total=None)
        done = [0]

        def on_batch(n: int) -> None:
            progress.advance(bar, n)
            done[0] += n
            if time.perf_counter() - t0 > limit:
                raise _Stop

        t0 = time.perf_counter()
        stopped = False
        try:
            total = daily.run_daily(db, now=now, on_batch=on_batch)
        except _Stop:
            total, stopped = done[0], True
        seconds = time.perf_counter() - t0
    if stopped:
        console.print(
            f"[bold red]daily journeys stopped after {seconds:.1f} s[/] "
            f"(--journey-limit), {total:,} members reached by then"
        )

    with db.unit_of_work(write=False) as session:
        outbox_rows = (
            session.scalar(select(func.count()).select_from(OutboxMessage)) or 0
        ) - outbox_before
        messages = (
            session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(
                    OutboxMessage.programme_id == programme_id,
                    OutboxMessage.type == "campaign.message",
                )
            )
            or 0
        )
        exposures = session.scalar(
            select(func.count())
            .select_from(JourneyExposure)
            .where(JourneyExposure.programme_id == programme_id)
        )
        distinct = session.scalar(
            select(func.count()).select_from(
                select(
                    JourneyExposure.journey_id,
                    JourneyExposure.member_id,
                    JourneyExposure.occasion,
                    JourneyExposure.step,
                )
                .where(JourneyExposure.programme_id == programme_id)
                .distinct()
                .subquery()
            )
        )
        expiring_members = session.scalar(
            select(func.count(func.distinct(JourneyExposure.member_id))).where(
                JourneyExposure.programme_id == programme_id,
                JourneyExposure.kind == JourneyKind.points_expiring.value,
            )
        )
    per_kind = reached(db, programme_id)
    treated = sum(v[Arm.treated.value] for v in per_kind.values())
    held = sum(v[Arm.held_out.value] for v in per_kind.values())

    t1 = time.perf_counter()
    second = -1 if stopped else daily.run_daily(db, now=now)
    second_seconds = time.perf_counter() - t1

    def both(name: str) -> int:
        return sum(per_kind.get(name, {}).values())

    checks = {
        "birthday": (both("birthday"), expected.birthday),
        "inactivity": (both("inactivity"), expected.inactivity),
        "points_expiring members": (int(expiring_members or 0), expected.points_expiring),
    }
    wrong = {
        name: {"reached": got, "expected": want}
        for name, (got, want) in checks.items()
        if name.split()[0] in {k.value for k in daily.DUE} and got != want
    }
    if stopped:
        wrong = {}
    correct = (
        total == treated + held
        and messages == treated
        and exposures == distinct
        and (second == 0 or stopped)
        and not wrong
    )
    baseline = raw_baseline(db, int(exposures or 0) + int(outbox_rows))
    out: dict[str, Any] = {
        "members": members,
        "kinds": [k.value for k in daily.DUE],
        "holdout_percent": HOLDOUT,
        "setup_seconds": round(setup, 1),
        "rows": dict(expected.rows),
        "seconds": round(seconds, 2),
        "stopped_after_limit": limit if stopped else None,
        "members_per_s": round(members / seconds) if seconds else None,
        "reached": total,
        "reached_per_kind": per_kind,
        "treated": treated,
        "held_out": held,
        "outbox_rows": int(outbox_rows),
        "baseline": baseline,
        "ratio_to_baseline": round(seconds / baseline["seconds"], 2)
        if baseline["seconds"]
        else None,
        "correctness": {
            "second_run_reached": None if stopped else second,
            "second_run_seconds": round(second_seconds, 2),
            "exposures": int(exposures or 0),
            "exposures_distinct": int(distinct or 0),
            "messages": int(messages),
            "expected": {name: want for name, (_got, want) in checks.items()},
            "wrong": wrong,
            "ok": correct,
        },
    }
    colour = "green" if correct else "bold red"
    console.print(
        f"daily journeys: {total:,} members reached ({treated:,} treated, {held:,} held out) "
        f"in {seconds:.1f} s; {int(outbox_rows):,} outbox rows; raw baseline "
        f"{baseline['seconds']:.2f} s (run ÷ baseline {out['ratio_to_baseline']}); "
        f"[{colour}]exposures unique {exposures == distinct}, "
        + (
            "stopped: no second run, expected counts not checked"
            if stopped
            else f"second run reached {second}, expected counts "
            + ("met" if not wrong else str(wrong))
        )
        + "[/]"
    )
    return out
