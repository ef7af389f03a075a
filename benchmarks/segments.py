"""RFM and all segments over a large programme (``python -m benchmarks.run --only
segments``, or ``python -m benchmarks.segments`` alone): the issue's target is RFM and
every segment for 1M members / 20M purchases on PostgreSQL within 30 s.

Data (not measured) is generated inside PostgreSQL with ``generate_series`` so that 20M
purchases load in minutes: members with gamma-distributed purchase rates (as BG/NBD
assumes: heterogeneous buyers, many light and few heavy) and a dropout time after which
they buy no more; each purchase one line (category, tags), a channel and an amount;
a fifth of the members hold a tier, some engagement events and consents.

Measured, in one process, on the migrated database:

* ``floor_seconds``: the purchase aggregate over every event run through psycopg alone
  (fetch only, no pandas): what re-aggregating costs at the least;
* ``full_rebuild_read_seconds``: ``treu.insights.metrics.member_table`` with
  ``rebuild=True`` (the kept member metrics rebuilt from every event, then read);
* ``read_seconds``: ``member_table`` again (nothing changed: the kept metrics read);
* ``first_refresh_seconds``: ``segments.refresh`` of the programme (metrics, RFM saved
  to ``member_scores``, ``SEGMENTS`` evaluated and materialised, history written) on a
  database where no segment has members yet (the largest write); the database is then
  analysed, not timed, as autovacuum would after such a write (``REFRESHED``);
* ``second_refresh_seconds``: the same again (nothing changes);
* ``steady_state``: a day later: a 365th of the purchases added, dated in the day after
  ``now``, with ids made now; the refresh at ``now`` + 1 day (the new purchases added to
  the kept metrics, the purchases that left a window taken off) timed, then its member table
  compared with a full rebuild's (rolled back): ``same_as_rebuild``;
* peak memory of the process (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from treu.db.session import Database
from treu.insights.metrics import member_table
from treu.insights.segmenting import SegmentIn, segments
from treu.kit.time import utc_now
from treu.migrations import upgrade
from treu.programmes.schemas import ProgrammeCreate
from treu.programmes.service import programmes
from treu.segments.scores import psycopg_of

SLUG = "bench-segments"
HISTORY_DAYS = 730
SEGMENTS: dict[str, str] = {
    "valuable-at-risk": "metrics.spend_365 > 50000 and scores.rfm_r <= 2",
    "champions": "scores.rfm_segment == 'champions'",
    "lost": "scores.rfm_segment in ['lost', 'hibernating']",
    "app-users": "'app' in metrics.channels",
    "organic-fans": "'organic' in metrics.tags and metrics.purchases_90 >= 2",
    "dairy-not-coffee": "'dairy' in metrics.categories and 'coffee' not in metrics.categories",
    "gold": "member.tier == 'gold'",
    "birthday": "member.birthday_month and 'email' in member.consents",
    "new": "member.days_enrolled < 60 and metrics.purchases == 0",
    "engaged": "metrics.engagements_90 >= 1 or len(metrics.engagement_types) >= 2",
}
RESULTS = Path(__file__).parent / "results"


def generate(db: Database, *, members: int, purchases: int, seed: int = 7) -> Any:
    """A programme of ``members`` and about ``purchases`` purchases (see the module
    docstring); returns the programme's id."""
    now = utc_now()
    rng = np.random.default_rng(seed)
    # Heterogeneous purchase rates (gamma, mean chosen to give ``purchases`` in total)
    # and a dropout day: how many purchases each member makes over the history.
    rates = rng.gamma(shape=0.6, scale=1.0, size=members)
    alive_days = np.minimum(rng.exponential(scale=HISTORY_DAYS * 0.8, size=members), HISTORY_DAYS)
    weights = rates * alive_days
    counts = rng.poisson(weights / weights.sum() * purchases)
    with db.unit_of_work() as session:
        programme = programmes.create(
            session,
            data=ProgrammeCreate.model_validate(
                {
                    "slug": SLUG,
                    "name": "Segments benchmark",
                    "currency": "EUR",
                    "points_per_currency_unit": 1,
                    "expiry": {"policy": "never"},
                }
            ),
        )
        pid = programme.id
    with db.write_engine.begin() as connection:
        raw = psycopg_of(connection)
        with raw.cursor() as cursor:
            cursor.execute(
                "CREATE TEMP TABLE bench_plan (n bigint, purchases int, alive_days float8)"
            )
            with cursor.copy("COPY bench_plan (n, purchases, alive_days) FROM STDIN") as copy:
                for row in zip(range(members), counts.tolist(), alive_days.tolist(), strict=True):
                    copy.write_row(row)
            cursor.execute(
                """
                INSERT INTO members (id, programme_id, status, card_number, channel,
                    enrolled_at, attributes, created_at, updated_at, birthday, language)
                SELECT gen_random_uuid(), %(p)s, 'active', 'B' || lpad(n::text, 12, '0'),
                    (ARRAY['pos','web','app'])[1 + n %% 3],
                    %(now)s - make_interval(days => (%(history)s * random())::int),
                    '{}'::jsonb, %(now)s, %(now)s,
                    DATE '1960-01-01' + (random() * 15000)::int,
                    (ARRAY['de','en'])[1 + n %% 2]
                FROM bench_plan
                """,
                {"p": pid, "now": now, "history": HISTORY_DAYS},
            )
            cursor.execute(
                "CREATE TEMP TABLE bench_members AS SELECT id, row_number() OVER () AS n "
                "FROM members WHERE programme_id = %s",
                (pid,),
            )
            cursor.execute(
                """
                CREATE TEMP TABLE bench_purchases AS
                SELECT """
                + _uuid7("at")
                + """ AS id, s.* FROM (
                SELECT m.id AS member_id,
                    %(now)s - make_interval(secs => (
                        (%(history)s - p.alive_days * random()) * 86400)::bigint) AS at,
                    (ARRAY['pos','pos','app','web'])[1 + floor(random() * 4)::int] AS channel,
                    (200 + random() * random() * 12000)::bigint AS total,
                    (ARRAY['dairy','bakery','produce','coffee','pantry','drinks'])
                        [1 + floor(random() * 6)::int] AS category,
                    random() < 0.25 AS organic
                FROM bench_plan p
                JOIN bench_members m ON m.n = p.n + 1
                CROSS JOIN LATERAL generate_series(1, p.purchases)) s
                """,
                {"now": now, "history": HISTORY_DAYS},
            )
            rebuild = _drop_indexes(cursor, ("events", "purchase_lines"))
            _insert_purchases(cursor, "bench_purchases", pid)
            cursor.execute(
                """
                INSERT INTO events (id, programme_id, key, type, member_id, payload_hash,
                    occurred_at, received_at, data, result)
                SELECT """
                + _uuid7("a")
                + """, %(p)s, 'e' || n || '-' || k, t, id, 'x', a, a,
                    '{}'::jsonb, '{}'::jsonb
                FROM (
                    SELECT m.id, m.n, k,
                        (ARRAY['review_submitted','social_share','store_visit'])
                            [1 + floor(random() * 3)::int] AS t,
                        %(now)s - make_interval(days => (random() * 300)::int) AS a
                    FROM bench_members m CROSS JOIN generate_series(1, 2) k
                    WHERE m.n %% 10 = 0
                ) e
                """,
                {"p": pid, "now": now},
            )
            for statement in rebuild:  # one sorted build per index: minutes faster
                cursor.execute(statement)
            cursor.execute(
                """
                INSERT INTO member_tiers (member_id, programme_id, tier, since, updated_at)
                SELECT id, %(p)s, CASE WHEN n %% 3 = 0 THEN 'gold' ELSE 'silber' END,
                    %(now)s, %(now)s
                FROM bench_members WHERE n %% 5 = 0
                """,
                {"p": pid, "now": now},
            )
            cursor.execute(
                """
                INSERT INTO consents (id, member_id, programme_id, channel, granted, source, at)
                SELECT gen_random_uuid(), id, %(p)s, 'email', true, 'pos', %(now)s
                FROM bench_members WHERE n %% 10 < 8
                """,
                {"p": pid, "now": now},
            )
    db.analyze(LOADED)
    return pid


LOADED = ("members", "member_tiers", "consents", "events", "purchase_lines")
"""The tables ``generate`` fills. Their statistics are gathered after the load, as
autovacuum would (the development and CI servers run without it; without statistics
the planner takes a loaded table for empty and loops over it)."""
REFRESHED = (
    "member_metrics",
    "member_metric_values",
    "member_scores",
    "segment_members",
    "segment_changes",
)
"""The tables the first refresh fills (analysed after it, not timed)."""


def _insert_purchases(cursor: Any, source: str, pid: Any) -> int:
    """The purchase events of the scratch table ``source`` and one purchase line each;
    how many events."""
    cursor.execute(
        f"""
        INSERT INTO events (id, programme_id, key, type, member_id, payload_hash,
            occurred_at, received_at, channel, currency, total_minor, data, result)
        SELECT id, %(p)s, id::text, 'purchase', member_id, 'x', at, at, channel,
            'EUR', total, '{{}}'::jsonb, '{{}}'::jsonb
        FROM {source}
        """,
        {"p": pid},
    )
    added = int(cursor.rowcount)
    cursor.execute(
        f"""
        INSERT INTO purchase_lines (event_id, programme_id, member_id, occurred_at,
            line_no, sku, category, quantity, unit_price_minor, tags, returned_quantity)
        SELECT id, %(p)s, member_id, at, 1, 'sku-' || category, category, 1, total,
            CASE WHEN organic THEN '["organic"]'::jsonb ELSE '[]'::jsonb END, 0
        FROM {source}
        """,
        {"p": pid},
    )
    return added


def _uuid7(moment: str) -> str:
    """SQL for an id like ``treu.kit.ids.new_id`` made at ``moment`` (UUIDv7 order: the
    milliseconds first), as ``treu demo --bulk`` makes them: the kept member metrics
    take ids as the order events were written in (``treu.insights.member_metrics``),
    and random ids would make every event look new to every refresh."""
    return (
        f"(lpad(to_hex((extract(epoch FROM {moment}) * 1000)::bigint), 12, '0') "
        "|| substr(replace(gen_random_uuid()::text, '-', ''), 13, 20))::uuid"
    )


def add_day(db: Database, pid: Any, *, now: datetime, purchases: int) -> int:
    """About ``purchases`` new purchases (a line each) by random members, dated in the
    day after ``now``, with ids made now (as ingestion makes them); returns how many."""
    with db.write_engine.begin() as connection:
        with psycopg_of(connection).cursor() as cursor:
            cursor.execute(
                "CREATE TEMP TABLE bench_day AS SELECT "
                + _uuid7("clock_timestamp()")
                + """ AS id, m.id AS member_id,
                    %(now)s + make_interval(secs => (random() * 86400)::bigint) AS at,
                    (ARRAY['pos','pos','app','web'])[1 + floor(random() * 4)::int] AS channel,
                    (200 + random() * random() * 12000)::bigint AS total,
                    (ARRAY['dairy','bakery','produce','coffee','pantry','drinks'])
                        [1 + floor(random() * 6)::int] AS category,
                    random() < 0.25 AS organic
                FROM (SELECT id FROM members WHERE programme_id = %(p)s) m
                WHERE random() < %(share)s
                """,
                {
                    "p": pid,
                    "now": now,
                    "share": purchases
                    / max(
                        1,
                        connection.execute(
                            text("SELECT count(*) FROM members WHERE programme_id = :p"),
                            {"p": pid},
                        ).scalar_one(),
                    ),
                },
            )
            added = _insert_purchases(cursor, "bench_day", pid)
            cursor.execute("DROP TABLE bench_day")
    return int(added)


def _drop_indexes(cursor: Any, tables: tuple[str, ...]) -> list[str]:
    """Drop the secondary indexes and unique constraints of ``tables`` (inserting 20M
    rows into random-keyed indexes row by row takes far longer than building them once
    afterwards); returns the statements that build them again."""
    rebuild: list[str] = []
    for table in tables:
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'u'",
            (table,),
        )
        for name, definition in cursor.fetchall():
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
            rebuild.append(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
        cursor.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = %s "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
            (table,),
        )
        for name, definition in cursor.fetchall():
            cursor.execute(f"DROP INDEX {name}")
            rebuild.append(definition)
    return rebuild


def floor(db: Database, pid: Any, now: datetime) -> float:
    """The purchase aggregate through psycopg alone (fetch, nothing else)."""
    with db.read_engine.connect() as connection:
        raw = psycopg_of(connection)
        started = time.perf_counter()
        with raw.cursor() as cursor:
            cursor.execute(
                """
                SELECT member_id, max(occurred_at) FILTER (WHERE type = 'purchase'),
                    min(occurred_at) FILTER (WHERE type = 'purchase'),
                    count(*) FILTER (WHERE type = 'purchase'),
                    count(*) FILTER (WHERE type = 'purchase' AND occurred_at > %(d90)s),
                    count(*) FILTER (WHERE type = 'purchase' AND occurred_at > %(d365)s),
                    coalesce(sum(total_minor) FILTER (WHERE occurred_at > %(d90)s), 0),
                    coalesce(sum(total_minor) FILTER (WHERE occurred_at > %(d365)s), 0)
                FROM events WHERE programme_id = %(p)s AND type IN ('purchase', 'return')
                    AND member_id IS NOT NULL AND occurred_at <= %(now)s
                GROUP BY member_id
                """,
                {
                    "p": pid,
                    "now": now,
                    "d90": now - timedelta(days=90),
                    "d365": now - timedelta(days=365),
                },
            )
            cursor.fetchall()
        return time.perf_counter() - started


def steady_state(db: Database, pid: Any, *, now: datetime, purchases: int) -> dict[str, Any]:
    """A day later: a day's purchases (1/365 of them) added, dated after ``now``; the
    refresh at ``now`` + 1 day timed (members whose rows changed recomputed), then the
    same table rebuilt from every event in a unit of work that is rolled back, to check
    they agree."""
    added = add_day(db, pid, now=now, purchases=purchases // 365)
    later = now + timedelta(days=1)
    with db.unit_of_work() as session:
        before = session.execute(
            text("SELECT count(*) FROM member_metrics WHERE programme_id = :p"), {"p": pid}
        ).scalar_one()
    t0 = time.perf_counter()
    with db.unit_of_work() as session:
        changed = segments.refresh(session, programme=programmes.get(session, pid), now=later)
    refresh_seconds = time.perf_counter() - t0
    kept, rebuilt = _tables(db, pid, later)
    same = kept[0].equals(rebuilt[0]) and kept[1] == rebuilt[1]
    return {
        "purchases_added": added,
        "refresh_seconds": round(refresh_seconds, 2),
        "entered": sum(r.entered for r in changed),
        "left": sum(r.left for r in changed),
        "members_with_metrics": int(before),
        "same_as_rebuild": bool(same),
    }


def _tables(db: Database, pid: Any, now: datetime) -> tuple[Any, Any]:
    """The member table as kept, and as a full rebuild makes it (rolled back)."""
    out = []
    for rebuild in (False, True):
        connection = db.write_engine.connect()
        try:
            with Session(connection) as session:
                table = member_table(
                    session, programme=programmes.get(session, pid), now=now, rebuild=rebuild
                )
                sets = {
                    name: sorted(zip(at.tolist(), values.tolist(), strict=True))
                    for name, (at, values) in table.sets.items()
                }
                out.append((table.columns, sets))
                session.rollback()
        finally:
            connection.close()
    return out[0], out[1]


def run(db: Database, *, members: int, purchases: int, console: Any = None) -> dict[str, Any]:
    say = console.print if console is not None else print
    started = time.perf_counter()
    pid = generate(db, members=members, purchases=purchases)
    generated = time.perf_counter() - started
    say(f"generated {members:,} members / ~{purchases:,} purchases in {generated:,.0f} s")
    with db.unit_of_work() as session:
        programme = programmes.get(session, pid)
        for slug, expression in SEGMENTS.items():
            segments.create(
                session,
                programme=programme,
                data=SegmentIn(slug=slug, name=slug, expression=expression),
            )
    now = utc_now()
    floor_seconds = floor(db, pid, now)
    with db.unit_of_work() as session:  # a write unit: the metrics use a temporary table
        t0 = time.perf_counter()
        member_table(session, programme=programmes.get(session, pid), now=now, rebuild=True)
        rebuild_seconds = time.perf_counter() - t0
    with db.unit_of_work() as session:
        t0 = time.perf_counter()
        table = member_table(session, programme=programmes.get(session, pid), now=now)
        read_seconds = time.perf_counter() - t0
        del table
    timings = []
    for _ in range(2):
        t0 = time.perf_counter()
        with db.unit_of_work() as session:
            done = segments.refresh(session, programme=programmes.get(session, pid), now=now)
        timings.append(time.perf_counter() - t0)
        db.analyze(REFRESHED)  # not timed
    with db.unit_of_work(write=False) as session:
        stored = session.execute(
            text("SELECT count(*) FROM events WHERE programme_id = :p AND type = 'purchase'"),
            {"p": pid},
        ).scalar_one()
        in_segments = session.execute(
            text(
                "SELECT count(*) FROM segment_members sm JOIN segments s "
                "ON s.id = sm.segment_id WHERE s.programme_id = :p"
            ),
            {"p": pid},
        ).scalar_one()
    steady = steady_state(db, pid, now=now, purchases=purchases)
    counts = {r.slug: r.member_count for r in done}
    ok = in_segments == sum(counts.values()) and all(r.entered == r.left == 0 for r in done)
    out = {
        "members": members,
        "purchases": int(stored),
        "segments": len(SEGMENTS),
        "segment_counts": counts,
        "generate_seconds": round(generated, 1),
        "floor_seconds": round(floor_seconds, 2),
        "full_rebuild_read_seconds": round(rebuild_seconds, 2),
        "read_seconds": round(read_seconds, 2),
        "first_refresh_seconds": round(timings[0], 2),
        "second_refresh_seconds": round(timings[1], 2),
        "read_seconds_per_1m_purchases": round(read_seconds / max(int(stored), 1) * 1e6, 3),
        "floor_seconds_per_1m_purchases": round(floor_seconds / max(int(stored), 1) * 1e6, 3),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
        "target_seconds": 30,
        "steady_state": steady,
        "correctness": {
            "ok": bool(ok and steady["same_as_rebuild"]),
            "members_in_segments": int(in_segments),
        },
    }
    say(json.dumps(out, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--purchases", type=int, default=20_000_000)
    parser.add_argument(
        "--postgres-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/treu_bench_segments",
        help="a database to drop and create (everything in it is lost)",
    )
    args = parser.parse_args(argv)
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(args.postgres_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{url.database}"')
    full = url.render_as_string(hide_password=False)
    upgrade(full)
    db = Database(full)
    try:
        out = run(db, members=args.members, purchases=args.purchases)
    finally:
        db.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = {"benchmark": "segments", "finished_at": stamp, "postgresql": out}
    path = RESULTS / f"segments-{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {path}")
    return 0 if out["correctness"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
