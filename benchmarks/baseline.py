"""The raw baseline: how many single-row INSERT transactions the driver commits per second.

The table looks like Treu's ``events`` table (time-ordered UUID key, a unique
``(programme_id, key)``, a timestamp, an amount and a JSON document of the same size).
Each transaction is one INSERT and one COMMIT, as many connections in parallel as the
server has workers, each connection in its own process (as uvicorn's workers are).

Two variants, same driver (pysqlite / psycopg 3) and same connection settings as Treu's
``Database`` (on SQLite: WAL, ``synchronous=NORMAL``, ``BEGIN IMMEDIATE``):

* ``driver``: the DBAPI connection itself, ``cursor.execute`` + ``commit``;
* ``sqlalchemy``: SQLAlchemy Core, ``engine.begin()`` + ``conn.execute(insert(...))``.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table, Uuid, insert, text

from treu.db.base import JSONType
from treu.db.session import Database
from treu.kit.ids import new_id

TABLE = "bench_raw_insert"

DDL = {
    "sqlite": f"""CREATE TABLE {TABLE} (
        id CHAR(32) NOT NULL PRIMARY KEY,
        programme_id CHAR(32) NOT NULL,
        key VARCHAR(200) NOT NULL,
        occurred_at DATETIME NOT NULL,
        total_minor BIGINT,
        data JSON NOT NULL,
        UNIQUE (programme_id, key))""",
    "postgresql": f"""CREATE TABLE {TABLE} (
        id UUID NOT NULL PRIMARY KEY,
        programme_id UUID NOT NULL,
        key VARCHAR(200) NOT NULL,
        occurred_at TIMESTAMPTZ NOT NULL,
        total_minor BIGINT,
        data JSONB NOT NULL,
        UNIQUE (programme_id, key))""",
}

raw_table = Table(
    TABLE,
    MetaData(),
    Column("id", Uuid(), primary_key=True),
    Column("programme_id", Uuid(), nullable=False),
    Column("key", String(200), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("total_minor", BigInteger()),
    Column("data", JSONType, nullable=False),
)

DATA = {
    "basis": {"rule": "base", "rate": "1", "rounding": "floor", "scope": "order"},
    "earned": 21,
    "reversed": 0,
    "blocked": False,
}


@dataclass
class Baseline:
    variant: str
    connections: int
    transactions: int
    seconds: float
    client_cores: float
    database_cores: float
    machine_cores: float

    @property
    def noise(self) -> float:
        """Cores that other work on the machine used meanwhile."""
        return max(self.machine_cores - self.client_cores - self.database_cores, 0.0)

    @property
    def tx_per_second(self) -> float:
        return self.transactions / self.seconds if self.seconds else 0.0


def prepare(url: str) -> None:
    db = Database(url)
    try:
        with db.write_engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
            conn.execute(text(DDL[db.dialect]))
    finally:
        db.dispose()


def _worker(url: str, variant: str, duration: float, barrier: Any, out: Any, index: int) -> None:
    db = Database(url, pool_size=1, max_overflow=0)
    try:
        count, cpu0 = _insert_loop(db, variant, duration, barrier, index)
        out.put((count, time.process_time() - cpu0))
        barrier.wait(timeout=120)  # keep the connection (and its backend's CPU count) open
    finally:
        db.dispose()


def _insert_loop(
    db: Database, variant: str, duration: float, barrier: Any, index: int
) -> tuple[int, float]:
    """Returns the number of transactions and the CPU clock when the measurement began."""
    programme_id = uuid.uuid4()
    prefix = f"{variant}-{os.getpid()}-{index}-"
    count = 0
    if variant == "driver":
        raw = db.write_engine.raw_connection()
        dbapi: Any = raw.driver_connection
        cursor = dbapi.cursor()
        pid: Any
        data: Any
        if db.is_sqlite:
            import json

            sql = f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?)"
            pid, data = programme_id.hex, json.dumps(DATA)
        else:
            from psycopg.types.json import Jsonb

            sql = f"INSERT INTO {TABLE} VALUES (%s, %s, %s, %s, %s, %s)"
            pid, data = programme_id, Jsonb(DATA)
        barrier.wait()
        cpu0 = time.process_time()
        deadline = time.perf_counter() + duration
        while time.perf_counter() < deadline:
            count += 1
            now = datetime.now(UTC)
            if db.is_sqlite:
                cursor.execute("BEGIN IMMEDIATE")
                row: tuple[Any, ...] = (
                    new_id().hex,
                    pid,
                    f"{prefix}{count}",
                    now.replace(tzinfo=None).isoformat(sep=" "),
                    2137,
                    data,
                )
                cursor.execute(sql, row)
                cursor.execute("COMMIT")
            else:
                cursor.execute(sql, (new_id(), pid, f"{prefix}{count}", now, 2137, data))
                dbapi.commit()
        raw.close()
    else:
        barrier.wait()
        cpu0 = time.process_time()
        deadline = time.perf_counter() + duration
        while time.perf_counter() < deadline:
            count += 1
            with db.write_engine.begin() as conn:
                conn.execute(
                    insert(raw_table),
                    {
                        "id": new_id(),
                        "programme_id": programme_id,
                        "key": f"{prefix}{count}",
                        "occurred_at": datetime.now(UTC),
                        "total_minor": 2137,
                        "data": DATA,
                    },
                )
    return count, cpu0


def measure(
    url: str, *, variant: str, connections: int, duration: float, database: str | None
) -> Baseline:
    """Run ``connections`` processes that commit single-row INSERTs for ``duration`` s."""
    from benchmarks.server import machine_busy, postgres_cpu

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(connections + 1)
    out: Any = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, variant, duration, barrier, out, i), daemon=True)
        for i in range(connections)
    ]
    for proc in procs:
        proc.start()
    try:
        barrier.wait(timeout=120)
        m0, d0, t0 = machine_busy(), postgres_cpu(database), time.perf_counter()
        answers = [out.get(timeout=duration + 120) for _ in procs]
        m1, d1, t1 = machine_busy(), postgres_cpu(database), time.perf_counter()
        barrier.wait(timeout=120)  # now the workers may close their connections
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
    wall = (t1 - t0) or 1.0
    return Baseline(
        variant=variant,
        connections=connections,
        transactions=sum(count for count, _ in answers),
        seconds=duration,
        client_cores=sum(cpu for _, cpu in answers) / wall,
        database_cores=max(d1 - d0, 0.0) / wall,
        machine_cores=(m1 - m0) / wall,
    )
