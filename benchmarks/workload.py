"""The benchmark's data: a programme, many members, an API key, and purchase payloads;
for the checkout benchmark a second programme with 50 published rules, members with a
points history, and 10-line carts.

The programmes, API keys and rules are created through Treu's own services
(``programmes.create``, ``api_keys.create``, ``rules.create`` + ``rules.publish``) and the
history through ``ingest_with_retry``, inside units of work, exactly as the CLI would,
on a database built by the Alembic migrations; members are bulk-inserted (see
``prepare``).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select

from benchmarks import loadgen
from treu.auth.service import api_keys
from treu.db.session import Database
from treu.events.models import Event
from treu.events.schemas import event_adapter
from treu.events.service import ingest_with_retry
from treu.imports import MEMBER_TABLES
from treu.kit.ids import new_card_number, new_id
from treu.kit.time import utc_now
from treu.ledger.models import Account
from treu.ledger.service import ledger
from treu.members.models import Channel, Member, MemberStatus
from treu.programmes.models import Programme
from treu.programmes.schemas import ProgrammeCreate
from treu.programmes.service import programmes
from treu.rules.service import rules
from treu.rules.spec import RuleSpec
from treu.worker.jobs import activate_pending, expire_points

PROGRAMME = "bench"
ENROL_CHUNK = 2000

# A small grocery catalogue: (sku, name, category, unit price in cents, tags)
CATALOGUE: list[tuple[str, str, str, int, list[str]]] = [
    ("4001", "Bio Vollmilch", "dairy", 129, ["organic"]),
    ("4002", "Joghurt Natur", "dairy", 89, []),
    ("4003", "Bergkäse", "dairy", 459, []),
    ("5001", "Vollkornbrot", "bakery", 329, ["organic"]),
    ("5002", "Brezel", "bakery", 79, []),
    ("6001", "Äpfel 1 kg", "produce", 299, ["organic", "regional"]),
    ("6002", "Bananen", "produce", 189, []),
    ("6003", "Tomaten", "produce", 249, ["regional"]),
    ("7001", "Espresso 250 g", "coffee", 649, ["fairtrade"]),
    ("7002", "Kaffee 500 g", "coffee", 899, []),
    ("8001", "Olivenöl", "pantry", 1099, []),
    ("8002", "Spaghetti", "pantry", 139, []),
    ("8003", "Haferflocken", "pantry", 119, ["organic"]),
    ("9001", "Mineralwasser", "drinks", 59, []),
    ("9002", "Apfelschorle", "drinks", 99, ["regional"]),
    ("9003", "Rotwein", "drinks", 799, []),
]


@dataclass
class Fixture:
    programme_id: str
    member_refs: list[str]
    """Pre-serialised member references: half ``member_id``, half ``card_number``."""
    token: str
    setup_seconds: float
    slug: str = PROGRAMME


def prepare(
    db: Database,
    *,
    members_count: int,
    seed: int = 7,
    slug: str = PROGRAMME,
    pending_days: int = 14,
) -> Fixture:
    """Create the programme ``slug``, ``members_count`` members and an events:write API
    key."""
    started = time.perf_counter()
    with db.unit_of_work() as session:
        programme = programmes.create(
            session,
            data=ProgrammeCreate.model_validate(
                {
                    "slug": slug,
                    "name": "Benchmark",
                    "currency": "EUR",
                    "points_per_currency_unit": 1,
                    "pending_days": pending_days,
                    "expiry": {"policy": "rolling", "months": 24},
                }
            ),
        )
        programme_id = programme.id
        _, token = api_keys.create(session, name=slug, scopes=["events:write"])
    # Members in bulk: the enrolment service costs ~3 ms per member (four statements
    # through the ORM), which would make the set-up longer than the measurement. The rows
    # are what ``members.enrol`` writes (a member and an empty points account), and
    # ``ledger.verify`` checks every account at the end of the run.
    found = _insert_members(db, programme_id, members_count, email_prefix="m")
    rng = random.Random(seed)
    refs = [
        json.dumps({"member_id": str(mid)} if rng.random() < 0.5 else {"card_number": card})
        for mid, card in found
    ]
    return Fixture(str(programme_id), refs, token, time.perf_counter() - started, slug)


def _insert_members(
    db: Database,
    programme_id: uuid.UUID,
    count: int,
    *,
    email_prefix: str,
    profile: Callable[[int], dict[str, Any]] | None = None,
) -> list[tuple[uuid.UUID, str]]:
    """Insert ``count`` members with empty points accounts (the rows ``members.enrol``
    writes); ``profile(n)`` may add or override member columns. Returns (id, card)."""
    now = utc_now()
    cards: set[str] = set()
    while len(cards) < count:
        cards.add(new_card_number())
    ordered = sorted(cards)
    for offset in range(0, count, ENROL_CHUNK):
        chunk = ordered[offset : offset + ENROL_CHUNK]
        rows = [
            {
                "id": new_id(),
                "programme_id": programme_id,
                "status": MemberStatus.active.value,
                "email": f"{email_prefix}{offset + n}@bench.example",
                "card_number": card,
                "attributes": {},
                "channel": Channel.other.value,
                "enrolled_at": now,
                "created_at": now,
                "updated_at": now,
                **(profile(offset + n) if profile is not None else {}),
            }
            for n, card in enumerate(chunk)
        ]
        with db.unit_of_work() as session:
            session.execute(insert(Member), rows)
            session.execute(
                insert(Account),
                [
                    {
                        "member_id": row["id"],
                        "programme_id": programme_id,
                        "available": 0,
                        "pending": 0,
                        "lifetime_earned": 0,
                        "updated_at": now,
                    }
                    for row in rows
                ],
            )
    # As ``treu import members`` does (and autovacuum would, a minute later): without
    # statistics the planner looked members up through the wrong index.
    db.analyze(MEMBER_TABLES)
    with db.unit_of_work(write=False) as session:
        return [
            (mid, card)
            for mid, card in session.execute(
                select(Member.id, Member.card_number)
                .where(Member.programme_id == programme_id)
                .order_by(Member.card_number)
            ).all()
        ]


class Purchases:
    """Unique 3-line purchases for random members, built cheaply from pre-serialised parts
    (the client shares the CPU with the server, see ``loadgen``)."""

    def __init__(self, fixture: Fixture, *, run_id: str, seed: int = 11) -> None:
        self.refs = fixture.member_refs
        self.rng = random.Random(seed)
        self.prefix = f"bench-{run_id}-"
        self.programme = fixture.slug
        self.seq = 0
        self.lines = [
            [
                json.dumps(
                    {
                        "sku": sku,
                        "name": name,
                        "category": category,
                        "quantity": quantity,
                        "unit_price_minor": price,
                        "tags": tags,
                    },
                    ensure_ascii=False,
                )
                for quantity in (1, 2, 3)
            ]
            for sku, name, category, price, tags in CATALOGUE
        ]

    def event(self) -> str:
        self.seq += 1
        rng = self.rng
        picks = rng.sample(self.lines, 3)
        lines = ",".join(p[rng.randrange(3)] for p in picks)
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return (
            f'{{"id":"{self.prefix}{self.seq}","type":"purchase","programme":"{self.programme}",'
            f'"member":{rng.choice(self.refs)},"occurred_at":"{now}","channel":"pos",'
            f'"store":"berlin-0{rng.randrange(1, 10)}","currency":"EUR","lines":[{lines}]}}'
        )

    def single(self) -> bytes:
        return self.event().encode()

    def batch(self, size: int) -> bytes:
        return ('{"events":[' + ",".join(self.event() for _ in range(size)) + "]}").encode()


def batch_accepted(status: int, body: bytes) -> int:
    if status != 200:
        return 0
    summary: dict[str, Any] = json.loads(body)["summary"]
    return int(summary["processed"])


@dataclass
class Check:
    purchases_in_db: int
    discrepancies: int
    verify_seconds: float


def check(db: Database, programme_id: str) -> Check:
    """Count stored purchases and rebuild every balance from the postings."""
    pid = uuid.UUID(programme_id)
    with db.unit_of_work(write=False) as session:
        count = session.scalar(
            select(func.count())
            .select_from(Event)
            .where(Event.programme_id == pid, Event.type == "purchase")
        )
        started = time.perf_counter()
        problems = ledger.verify(session, programme_id=pid)
        took = time.perf_counter() - started
    return Check(int(count or 0), len(problems), took)


# --- checkout evaluation -----------------------------------------------------------------

CHECKOUT_PROGRAMME = "bench-checkout"
HISTORY_BATCH = 500

CHECKOUT_CATALOGUE: list[tuple[str, str, str, int, list[str]]] = [
    *CATALOGUE,
    ("4004", "Hafer Drink", "dairy", 199, ["vegan", "organic"]),
    ("4005", "Butter", "dairy", 249, ["regional"]),
    ("5003", "Croissant", "bakery", 99, ["new"]),
    ("6004", "Avocado", "produce", 129, ["vegan"]),
    ("6005", "Kartoffeln 2 kg", "produce", 349, ["regional", "organic"]),
    ("7003", "Kakao", "coffee", 429, ["fairtrade", "organic"]),
    ("7004", "Espressobohnen 1 kg", "coffee", 1899, ["fairtrade", "new"]),
    ("8004", "Reis 1 kg", "pantry", 229, ["sale"]),
    ("8005", "Tofu", "pantry", 279, ["vegan", "organic"]),
    ("8006", "Honig", "pantry", 699, ["regional"]),
    ("9004", "Orangensaft", "drinks", 249, ["sale"]),
    ("9005", "Bier 6er", "drinks", 599, ["regional"]),
    ("3001", "Spülmittel", "household", 189, []),
    ("3002", "Waschmittel", "household", 1299, ["sale"]),
    ("2001", "Pizza", "frozen", 349, ["new"]),
    ("2002", "Erbsen", "frozen", 179, ["vegan"]),
]
"""The ingest catalogue plus 16 products with more categories and tags (32 in all)."""

STORES = [f"berlin-0{n}" for n in range(1, 10)] + ["hamburg-01", "hamburg-02", "munich-01"]


def checkout_rules() -> list[dict[str, Any]]:
    """50 purchase rules: 25 with an order-level ``condition``, 25 with a
    ``line_condition``; channel, store, time, basket, member, tag, category, price and
    quantity checks; every effect type, a few exclusive rules, a few per-member limits
    and one budget. On top of them the programme's base rate (1 point per EUR 1)."""
    order: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
        ("App orders x1.5", "event.channel == 'app'", _mul("1.5"), {}),
        (
            "Weekend in store x2",
            "event.weekday in [6, 7] and event.channel == 'pos'",
            _mul("2"),
            {},
        ),
        (
            "Web order over EUR 50",
            "event.channel == 'web' and event.total_minor >= 5000",
            _fixed(50),
            {"limits": [{"per": "week", "max_count": 1}]},
        ),
        ("Berlin anniversary", "event.store in ['berlin-01', 'berlin-02']", _pct("10"), {}),
        ("Happy hour", "event.hour >= 18 and event.hour < 20", _mul("1.25"), {}),
        (
            "Early bird",
            "event.hour < 10",
            _fixed(10),
            {"limits": [{"per": "day", "max_count": 1}]},
        ),
        (
            "Big basket",
            "event.total_minor >= 4000",
            _fixed(25),
            {"limits": [{"per": "week", "max_count": 2}]},
        ),
        ("Very big basket", "event.total_minor >= 10000", _pct("5"), {}),
        ("Many items", "event.item_count >= 15", _fixed(15), {}),
        ("Midweek boost", "event.weekday == 3", _mul("1.5"), {}),
        (
            "Birthday month x2",
            "member.birthday_month",
            _mul("2"),
            {"limits": [{"per": "month", "max_points": 500}]},
        ),
        (
            "Welcome bonus",
            "member.known and member.days_enrolled < 30",
            _fixed(100),
            {"limits": [{"per": "lifetime", "max_count": 1}]},
        ),
        ("Loyal for a year", "member.days_enrolled >= 365", _pct("5"), {}),
        (
            "App in German",
            "member.language == 'de' and event.channel == 'app'",
            _fixed(5),
            {},
        ),
        ("Hamburg stores", "startswith(event.store, 'hamburg')", _mul("1.2"), {}),
        (
            "Munich weekend",
            "startswith(event.store, 'munich') and event.weekday >= 5",
            _fixed(20),
            {},
        ),
        (
            "Large online basket",
            "event.channel != 'pos' and event.line_count >= 8",
            _pct("3"),
            {},
        ),
        (
            "Advent",
            "event.date >= '2026-12-01' and event.date <= '2026-12-24'",
            _mul("2"),
            {},
        ),
        (
            "Night owls online",
            "event.channel == 'web' and (event.hour >= 20 or event.hour < 6)",
            _mul("1.5"),
            {},
        ),
        (
            "Weekday half point extra",
            "event.total_minor // 100 >= 30 and event.weekday <= 5",
            {"type": "points_per_unit", "rate": "0.5"},
            {},
        ),
        (
            "Berlin 05 reopening",
            "event.store == 'berlin-05'",
            _fixed(30),
            {"limits": [{"per": "day", "max_count": 1}]},
        ),
        (
            "Staff purchase",
            "member.attrs['staff'] == True",
            {"type": "points_per_unit", "rate": "0.5"},
            {"stacking": "exclusive", "priority": 1},
        ),
        (
            "App launch",
            "event.channel == 'app' and event.total_minor >= 2000",
            _fixed(40),
            {"budget_points": 50_000_000},
        ),
        (
            "App natives",
            "member.channel == 'app' and event.channel == 'app'",
            _pct("10"),
            {},
        ),
        (
            "Regulars in store",
            "member.known and event.channel == 'pos' and event.item_count >= 5",
            _fixed(5),
            {},
        ),
    ]
    lines: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
        ("Organic x2", "'organic' in line.tags", _mul("2", lines=True), {}),
        ("Regional 2 per EUR", "'regional' in line.tags", _ppu("2"), {}),
        ("Fairtrade +20 %", "'fairtrade' in line.tags", _pct("20"), {}),
        (
            "Coffee club",
            "line.category == 'coffee'",
            _ppu("4"),
            {
                "stacking": "exclusive",
                "priority": 20,
                "limits": [{"per": "month", "max_points": 400}],
            },
        ),
        (
            "Clearance",
            "'sale' in line.tags",
            _ppu("0.5"),
            {"stacking": "exclusive", "priority": 5},
        ),
        ("Dairy x1.5", "line.category == 'dairy'", _mul("1.5", lines=True), {}),
        (
            "Bakery mornings",
            "line.category == 'bakery' and event.hour < 11",
            _mul("2", lines=True),
            {},
        ),
        (
            "Fresh produce",
            "line.category == 'produce' and line.total_minor >= 200",
            _ppu("1"),
            {},
        ),
        ("Premium items", "line.unit_price_minor >= 800", _pct("10"), {}),
        ("Buy three", "line.quantity >= 3", _mul("1.25", lines=True), {}),
        ("Vegan 3 per EUR", "has_any(line.tags, ['vegan', 'plant-based'])", _ppu("3"), {}),
        ("Organic and regional", "has_all(line.tags, ['organic', 'regional'])", _pct("15"), {}),
        ("Dairy range", "startswith(line.sku, '40')", _mul("1.1", lines=True), {}),
        (
            "Drinks in the app",
            "line.category == 'drinks' and event.channel == 'app'",
            _mul("2", lines=True),
            {},
        ),
        (
            "Pantry weekend",
            "line.category == 'pantry' and event.weekday in [6, 7]",
            _ppu("1.5"),
            {},
        ),
        ("Household", "line.category == 'household'", _ppu("0.5"), {}),
        ("Frozen x1.5", "line.category == 'frozen'", _mul("1.5", lines=True), {}),
        ("Big line", "line.total_minor >= 1500", _pct("5"), {}),
        (
            "Cheap staples",
            "line.unit_price_minor < 150 and line.category in ['bakery', 'pantry', 'drinks']",
            _ppu("1"),
            {},
        ),
        ("Two labels", "len(line.tags) >= 2", _mul("1.2", lines=True), {}),
        (
            "New products",
            "'new' in line.tags",
            _ppu("5"),
            {"limits": [{"per": "week", "max_points": 100}]},
        ),
        ("Wine", "lower(line.name) == 'rotwein' or line.sku == '9003'", _pct("10"), {}),
        (
            "Regional in Berlin",
            "'regional' in line.tags and startswith(event.store, 'berlin')",
            _mul("1.5", lines=True),
            {},
        ),
        (
            "Birthday treats",
            "line.category == 'bakery' and member.birthday_month",
            _ppu("2"),
            {},
        ),
        (
            "Web specials",
            "endswith(line.sku, '1') and event.channel == 'web'",
            _mul("1.5", lines=True),
            {},
        ),
    ]
    specs: list[dict[str, Any]] = []
    for n, (name, condition, effect, extra) in enumerate(order):
        specs.append(
            {
                "name": name,
                "trigger": "purchase",
                "condition": condition,
                "effect": effect,
                "priority": 100 + n,
                **extra,
            }
        )
    for n, (name, condition, effect, extra) in enumerate(lines):
        specs.append(
            {
                "name": name,
                "trigger": "purchase",
                "line_condition": condition,
                "effect": effect,
                "priority": 200 + n,
                **extra,
            }
        )
    return specs


def _mul(factor: str, *, lines: bool = False) -> dict[str, Any]:
    return {"type": "multiplier", "factor": factor, "scope": "lines" if lines else "order"}


def _ppu(rate: str) -> dict[str, Any]:
    return {"type": "points_per_unit", "rate": rate, "scope": "lines"}


def _pct(percent: str) -> dict[str, Any]:
    return {"type": "percent_bonus", "percent": percent}


def _fixed(points: int) -> dict[str, Any]:
    return {"type": "fixed", "points": points}


def _line_json(sku: str, name: str, category: str, price: int, tags: list[str], qty: int) -> str:
    return json.dumps(
        {
            "sku": sku,
            "name": name,
            "category": category,
            "quantity": qty,
            "unit_price_minor": price,
            "tags": tags,
        },
        ensure_ascii=False,
    )


@dataclass
class CheckoutFixture:
    programme_id: str
    member_refs: list[str]
    """Pre-serialised member references: half ``member_id``, half ``card_number``."""
    token: str
    rules: int
    history_purchases: int
    history_members: int
    setup_seconds: float


def prepare_checkout(
    db: Database, *, members_count: int, history: int, seed: int = 13
) -> CheckoutFixture:
    """A second programme (so that the ingest workload keeps running without rules) with
    ``members_count`` members, the 50 rules of ``checkout_rules`` published through the
    rules service, and ``history`` past purchases (3 per member for a random subset of
    members, over the last 23.5 months, ingested in-process) so that balances, pending
    points, expiries and limit counters are real. An events:write key of its own."""
    started = time.perf_counter()
    rng = random.Random(seed)
    now = utc_now()
    with db.unit_of_work() as session:
        programme = programmes.create(
            session,
            data=ProgrammeCreate.model_validate(
                {
                    "slug": CHECKOUT_PROGRAMME,
                    "name": "Benchmark (checkout)",
                    "currency": "EUR",
                    "points_per_currency_unit": 1,
                    "pending_days": 14,
                    "expiry": {"policy": "rolling", "months": 24},
                }
            ),
        )
        programme_id = programme.id
        _, token = api_keys.create(session, name="bench-checkout", scopes=["events:write"])
        specs = checkout_rules()
        for spec in specs:
            rule = rules.create(
                session, programme=programme, spec=RuleSpec.model_validate(spec), actor="bench"
            )
            rules.publish(session, rule, actor="bench")

    def profile(n: int) -> dict[str, Any]:
        # Deterministic in n, so the profile does not depend on the insertion order.
        local = random.Random(seed * 1_000_003 + n)
        enrolled = now - timedelta(days=local.randrange(0, 1500), minutes=local.randrange(1440))
        return {
            "language": "de" if local.random() < 0.7 else "en",
            "birthday": date(1950 + local.randrange(55), local.randrange(1, 13), 1)
            + timedelta(days=local.randrange(28)),
            "channel": local.choice(
                [Channel.pos.value, Channel.web.value, Channel.app.value, Channel.other.value]
            ),
            "attributes": {"staff": True} if local.random() < 0.01 else {},
            "enrolled_at": enrolled,
            "created_at": enrolled,
        }

    found = _insert_members(db, programme_id, members_count, email_prefix="c", profile=profile)
    refs = [
        json.dumps({"member_id": str(mid)} if rng.random() < 0.5 else {"card_number": card})
        for mid, card in found
    ]
    buyers = rng.sample(found, min(len(found), max(history // 3, 1))) if history else []
    events: list[dict[str, Any]] = []
    for mid, _card in buyers:
        for _ in range(3):
            if len(events) >= history:
                break
            age = timedelta(seconds=rng.randrange(3600, 715 * 86400))
            channel = rng.choice(["pos", "pos", "pos", "web", "app"])
            events.append(
                {
                    "id": f"history-{len(events)}",
                    "type": "purchase",
                    "programme": CHECKOUT_PROGRAMME,
                    "member": {"member_id": str(mid)},
                    "occurred_at": (now - age).isoformat(),
                    "channel": channel,
                    "store": rng.choice(STORES) if channel == "pos" else "online",
                    "currency": "EUR",
                    "lines": [
                        {
                            "sku": sku,
                            "name": name,
                            "category": category,
                            "quantity": rng.randint(1, 3),
                            "unit_price_minor": price,
                            "tags": tags,
                        }
                        for sku, name, category, price, tags in rng.sample(
                            CHECKOUT_CATALOGUE, rng.randint(3, 10)
                        )
                    ],
                }
            )
    events.sort(key=lambda e: str(e["occurred_at"]))
    for offset in range(0, len(events), HISTORY_BATCH):
        parsed = [event_adapter.validate_python(e) for e in events[offset : offset + HISTORY_BATCH]]
        for outcome in ingest_with_retry(db, parsed, now=now):
            if outcome.error is not None:
                raise RuntimeError(f"history purchase refused: {outcome.error.detail}")
    activate_pending(db, now=now)
    expire_points(db, now=now)
    return CheckoutFixture(
        programme_id=str(programme_id),
        member_refs=refs,
        token=token,
        rules=len(specs),
        history_purchases=len(events),
        history_members=len(buyers),
        setup_seconds=time.perf_counter() - started,
    )


class Carts:
    """10-line carts for ``POST /v1/checkout/evaluate``: a random member of the fixture
    (or, for ``anonymous`` of them, none), channel pos/web/app, a store, ``occurred_at``
    = now, lines drawn without repetition from ``CHECKOUT_CATALOGUE``."""

    def __init__(
        self,
        fixture: CheckoutFixture,
        *,
        lines: int = 10,
        anonymous: float = 0.1,
        seed: int = 17,
    ) -> None:
        self.refs = fixture.member_refs
        self.count = lines
        self.anonymous = anonymous
        self.rng = random.Random(seed)
        self.lines = [
            [_line_json(sku, name, cat, price, tags, qty) for qty in (1, 1, 2, 3, 4)]
            for sku, name, cat, price, tags in CHECKOUT_CATALOGUE
        ]

    def body(self) -> bytes:
        rng = self.rng
        picks = rng.sample(self.lines, self.count)
        lines = ",".join(p[rng.randrange(5)] for p in picks)
        roll = rng.random()
        channel = "pos" if roll < 0.6 else "web" if roll < 0.85 else "app"
        store = rng.choice(STORES) if channel == "pos" else "online"
        member = "" if rng.random() < self.anonymous else f'"member":{rng.choice(self.refs)},'
        lang = "de" if rng.random() < 0.7 else "en"
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return (
            f'{{"programme":"{CHECKOUT_PROGRAMME}",{member}"channel":"{channel}",'
            f'"store":"{store}","currency":"EUR","occurred_at":"{now}","lines":[{lines}],'
            f'"lang":"{lang}"}}'
        ).encode()


def checkout_answered(status: int, _body: bytes) -> int:
    return 1 if status == 200 else 0


@dataclass
class CheckoutCheck:
    carts: int
    identical: int
    totals_consistent: int
    mismatches: list[dict[str, Any]]


def cross_check_checkout(
    db: Database, *, port: int, token: str, bodies: list[bytes]
) -> CheckoutCheck:
    """Send each cart to the running server and evaluate the same cart in-process with
    ``checkout.evaluate`` (the ``public()`` of its answer): the answers must be identical
    (``occurred_at`` is in the cart, and checkouts change nothing, so nothing else can
    differ). Also checks that ``points.total`` is the sum of the per-rule points (and of
    the per-line points when no order-level rule applied)."""
    import http.client

    from treu.checkout.service import CartIn, checkout

    result = CheckoutCheck(len(bodies), 0, 0, [])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for body in bodies:
            conn.request(
                "POST",
                "/v1/checkout/evaluate",
                body=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            raw = response.read()
            if response.status != 200:
                result.mismatches.append({"status": response.status, "body": raw.decode()[:500]})
                continue
            remote = json.loads(raw)
            with db.unit_of_work(write=False) as session:
                answer = checkout.evaluate(session, CartIn.model_validate_json(body))
                local = json.loads(json.dumps(answer.public()))
            if remote == local:
                result.identical += 1
            else:
                result.mismatches.append(
                    {"cart": body.decode()[:300], "http": remote, "local": local}
                )
            total = remote["points"]["total"]
            if (
                total == sum(r["points"] for r in remote["rules"])
                and sum(line["points"] for line in remote["lines"]) <= total
            ):
                result.totals_consistent += 1
            else:
                result.mismatches.append({"inconsistent_totals": remote})
    finally:
        conn.close()
    return result


# --- redemptions -------------------------------------------------------------------------

REDEEM_PROGRAMME = "bench-redeem"
REDEEM_POINTS = 10_000_000
"""Every member's points: enough never to run out, so refusals are about stock only."""
REDEEM_COST = 10


@dataclass
class RedeemFixture:
    programme_id: str
    member_ids: list[str]
    token: str
    hot_reward: str
    """A limited reward every other request asks for: all of them queue on its row."""
    open_reward: str
    """An unlimited reward: no shared row, no contention."""
    flash_reward: str
    """A small stock for the sell-out phase."""
    stock: dict[str, int]
    """Initial stock per reward id (None: unlimited)."""
    setup_seconds: float


def prepare_redeem(
    db: Database, *, members_count: int, hot_stock: int, flash_stock: int
) -> RedeemFixture:
    """A third programme with ``members_count`` members holding plenty of points (one
    lot each, written by the ledger writer in bulk), three rewards — the hot one with
    ``hot_stock`` units, an unlimited one, a flash sale of ``flash_stock`` — created
    through the catalogue service, and a members:write key."""
    from treu.rewards.schemas import RewardIn
    from treu.rewards.service import catalogue

    started = time.perf_counter()
    with db.unit_of_work() as session:
        programme = programmes.create(
            session,
            data=ProgrammeCreate.model_validate(
                {
                    "slug": REDEEM_PROGRAMME,
                    "name": "Benchmark (redemptions)",
                    "currency": "EUR",
                    "points_per_currency_unit": 1,
                    "pending_days": 0,
                    "expiry": {"policy": "rolling", "months": 24},
                }
            ),
        )
        programme_id = programme.id
        _, token = api_keys.create(session, name="bench-redeem", scopes=["members:write"])
        rewards: dict[str, str] = {}
        stock: dict[str, int] = {}
        for code, spec in {
            "hot": {"type": "percent_discount", "percent_bp": 1000, "stock": hot_stock},
            "open": {"type": "amount_discount", "value_minor": 500},
            "flash": {"type": "free_product", "sku": "7002", "stock": flash_stock},
        }.items():
            reward = catalogue.create(
                session,
                programme=programme,
                data=RewardIn.model_validate(
                    {
                        "code": code,
                        "name": {"de": code, "en": code},
                        "points_cost": REDEEM_COST,
                        **spec,
                    }
                ),
                actor="bench",
            )
            rewards[code] = str(reward.id)
            if reward.stock_total is not None:
                stock[str(reward.id)] = reward.stock_total
    found = _insert_members(db, programme_id, members_count, email_prefix="r")
    now = utc_now()
    for offset in range(0, len(found), ENROL_CHUNK):
        with db.unit_of_work() as session:
            prog = session.get_one(Programme, programme_id)
            writer = ledger.writer(session, now=now)
            chunk = [mid for mid, _card in found[offset : offset + ENROL_CHUNK]]
            writer.lock(chunk)
            for mid in chunk:
                writer.earn(
                    writer.accounts[mid],
                    programme=prog,
                    points=REDEEM_POINTS,
                    earned_at=now,
                    details={"template": "adjust", "params": {"reason": "benchmark"}},
                    pending=False,
                )
            writer.flush()
    return RedeemFixture(
        programme_id=str(programme_id),
        member_ids=[str(mid) for mid, _card in found],
        token=token,
        hot_reward=rewards["hot"],
        open_reward=rewards["open"],
        flash_reward=rewards["flash"],
        stock=stock,
        setup_seconds=time.perf_counter() - started,
    )


class RedeemClient(loadgen.Client):
    """``POST /v1/members/{id}/redemptions`` needs the member in the path and an
    Idempotency-Key header per request: the body factory hands both over in front of the
    JSON (``member-id key\\n{...}``) and ``build`` puts them where they belong."""

    def build(self, path: str, body: bytes) -> bytes:
        head, payload = body.split(b"\n", 1)
        member, key = head.split(b" ", 1)
        return (
            b"POST /v1/members/"
            + member
            + b"/redemptions HTTP/1.1\r\n"
            + self.head
            + b"Idempotency-Key: "
            + key
            + b"\r\nContent-Length: "
            + str(len(payload)).encode()
            + b"\r\n\r\n"
            + payload
        )


class Redemptions:
    """Requests for random members: a share ``hot`` of them for the hot reward, the rest
    for the unlimited one (or all for one reward with ``only``). Every request has its
    own Idempotency-Key."""

    def __init__(
        self,
        fixture: RedeemFixture,
        *,
        run_id: str,
        hot: float = 0.5,
        only: str | None = None,
        seed: int = 19,
    ) -> None:
        self.members = [m.encode() for m in fixture.member_ids]
        self.rng = random.Random(seed)
        self.hot = hot
        self.prefix = f"redeem-{run_id}-".encode()
        self.seq = 0
        self.bodies = {
            reward: json.dumps({"reward_id": reward}).encode()
            for reward in (fixture.hot_reward, fixture.open_reward, fixture.flash_reward)
        }
        self.fixture = fixture
        self.only = only

    def body(self) -> bytes:
        self.seq += 1
        if self.only is not None:
            reward = self.only
        elif self.rng.random() < self.hot:
            reward = self.fixture.hot_reward
        else:
            reward = self.fixture.open_reward
        member = self.rng.choice(self.members)
        return member + b" " + self.prefix + str(self.seq).encode() + b"\n" + self.bodies[reward]


class RedeemTally:
    """201 answers per reward, read from the answers' bodies."""

    def __init__(self) -> None:
        self.by_reward: dict[str, int] = {}

    def accepted(self, status: int, body: bytes) -> int:
        if status != 201:
            return 0
        reward = json.loads(body)["reward"]["id"]
        self.by_reward[reward] = self.by_reward.get(reward, 0) + 1
        return 1


@dataclass
class RedeemCheck:
    redemptions_in_db: dict[str, int]
    stock_consumed: dict[str, int]
    stock_left: dict[str, int | None]
    negative_balances: int
    discrepancies: int
    verify_seconds: float


def check_redeem(db: Database, fixture: RedeemFixture) -> RedeemCheck:
    """What the database holds after the run: redemptions per reward, stock consumed
    (initial - left), accounts below zero, and ``ledger.verify`` of the programme."""
    from treu.rewards.models import Redemption, Reward

    pid = uuid.UUID(fixture.programme_id)
    with db.unit_of_work(write=False) as session:
        counts = {
            str(reward_id): int(n)
            for reward_id, n in session.execute(
                select(Redemption.reward_id, func.count())
                .where(Redemption.programme_id == pid)
                .group_by(Redemption.reward_id)
            ).all()
        }
        left = {
            str(reward_id): stock_left
            for reward_id, stock_left in session.execute(
                select(Reward.id, Reward.stock_left).where(Reward.programme_id == pid)
            ).all()
        }
        negative = session.scalar(
            select(func.count()).where(Account.programme_id == pid, Account.available < 0)
        )
        started = time.perf_counter()
        problems = ledger.verify(session, programme_id=pid)
        took = time.perf_counter() - started
    consumed = {
        reward: initial - int(left[reward] or 0) for reward, initial in fixture.stock.items()
    }
    return RedeemCheck(counts, consumed, left, int(negative or 0), len(problems), took)
