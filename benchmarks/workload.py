"""The benchmark's data: a programme, many members, an API key, and purchase payloads.

Everything is created through Treu's own services (``programmes.create``,
``members.enrol``, ``api_keys.create``) inside units of work, exactly as the CLI would,
on a database built by the Alembic migrations.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select

from treu.auth.service import api_keys
from treu.db.session import Database
from treu.events.models import Event
from treu.kit.ids import new_card_number, new_id
from treu.kit.time import utc_now
from treu.ledger.models import Account
from treu.ledger.service import ledger
from treu.members.models import Channel, Member, MemberStatus
from treu.programmes.schemas import ProgrammeCreate
from treu.programmes.service import programmes

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


def prepare(db: Database, *, members_count: int, seed: int = 7) -> Fixture:
    """Create the programme, ``members_count`` members and an events:write API key."""
    started = time.perf_counter()
    with db.unit_of_work() as session:
        programme = programmes.create(
            session,
            data=ProgrammeCreate.model_validate(
                {
                    "slug": PROGRAMME,
                    "name": "Benchmark",
                    "currency": "EUR",
                    "points_per_currency_unit": 1,
                    "pending_days": 14,
                    "expiry": {"policy": "rolling", "months": 24},
                }
            ),
        )
        programme_id = programme.id
        _, token = api_keys.create(session, name="bench", scopes=["events:write"])
    # Members in bulk: the enrolment service costs ~3 ms per member (four statements
    # through the ORM), which would make the set-up longer than the measurement. The rows
    # are what ``members.enrol`` writes (a member and an empty points account), and
    # ``ledger.verify`` checks every account at the end of the run.
    now = utc_now()
    cards: set[str] = set()
    while len(cards) < members_count:
        cards.add(new_card_number())
    ordered = sorted(cards)
    for offset in range(0, members_count, ENROL_CHUNK):
        chunk = ordered[offset : offset + ENROL_CHUNK]
        rows = [
            {
                "id": new_id(),
                "programme_id": programme_id,
                "status": MemberStatus.active.value,
                "email": f"m{offset + n}@bench.example",
                "card_number": card,
                "attributes": {},
                "channel": Channel.other.value,
                "enrolled_at": now,
                "created_at": now,
                "updated_at": now,
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
    with db.unit_of_work(write=False) as session:
        found = session.execute(
            select(Member.id, Member.card_number).where(Member.programme_id == programme_id)
        ).all()
    rng = random.Random(seed)
    refs = [
        json.dumps({"member_id": str(mid)} if rng.random() < 0.5 else {"card_number": card})
        for mid, card in found
    ]
    return Fixture(str(programme_id), refs, token, time.perf_counter() - started)


class Purchases:
    """Unique 3-line purchases for random members, built cheaply from pre-serialised parts
    (the client shares the CPU with the server, see ``loadgen``)."""

    def __init__(self, fixture: Fixture, *, run_id: str, seed: int = 11) -> None:
        self.refs = fixture.member_refs
        self.rng = random.Random(seed)
        self.prefix = f"bench-{run_id}-"
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
            f'{{"id":"{self.prefix}{self.seq}","type":"purchase","programme":"{PROGRAMME}",'
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
    import uuid

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
