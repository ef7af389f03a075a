"""Where the server's time goes: py-spy samples of the workers under saturation load.

``python -m benchmarks.run --profile 20`` runs three more load phases after the measured
ones and samples every uvicorn worker with py-spy meanwhile (py-spy is not a
dependency: ``.venv/bin/pip install py-spy``). The collapsed stacks are written to
``benchmarks/results/profile-<backend>-<worker>.txt`` (the input format of flame graph
tools such as speedscope or inferno), and a summary of the hottest frames lands in the
JSON report. Sampling slows the server down a little; the measured figures come from the
phases before, never from this one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import loadgen

if TYPE_CHECKING:
    from benchmarks.run import Params, Tally
    from benchmarks.server import Server
    from benchmarks.workload import Purchases

RESULTS = Path(__file__).parent / "results"

# Inclusive time of these frames answers "how much of a request is X".
MILESTONES = {
    "event loop thread (HTTP, routing, middleware)": "MainThread",
    "threadpool: post_event (sync endpoint)": "post_event",
    "request body parse + validation": "request_body_to_args",
    "API key check": "authenticate",
    "ingest_with_retry (unit of work incl. commit)": "ingest_with_retry",
    "EventService.ingest": "ingest (treu/events/service.py",
    "  programmes lookup": "get_many_by_slug",
    "  replay lookup": "_stored_events",
    "  member resolve": "_resolve_members",
    "  load originals": "_load_originals",
    "  account lock (SELECT FOR UPDATE)": "lock (treu/ledger/service.py",
    "  purchase maths + explanation": "_purchase",
    "  payload hash": "payload_hash",
    "  LedgerWriter.flush (bulk INSERT/UPDATE)": "flush (treu/ledger/service.py",
    "session commit": "commit (sqlalchemy/orm/session.py",
    "SQLAlchemy statement compile": "_compile_w_cache",
    "SQLAlchemy execute (all)": "_execute_clauseelement",
    "DBAPI cursor.execute": "do_execute",
    "DBAPI executemany": "do_executemany",
    "response JSON rendering": "render (starlette/responses.py",
}


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def run(
    server: Server,
    client: loadgen.Client,
    purchases: Purchases,
    tally: Tally,
    *,
    backend: str,
    params: Params,
) -> dict[str, Any]:
    """Samplings, one after the other: ``threads`` (every thread that is not idle: where a
    request spends its time, waits for the database included) and ``gil`` (only the thread
    holding the GIL: where the worker's Python CPU time goes) for single events;
    ``batch-gil`` and ``batch-waits`` (every thread, idle ones too: where a batch waits,
    for the GIL, a lock or the database) for batches."""
    exe = py_spy()
    if exe is None:
        return {"skipped": "py-spy is not installed (.venv/bin/pip install py-spy)"}
    out: dict[str, Any] = {}
    for mode in ("threads", "gil", "batch-gil", "batch-waits"):
        out[mode] = _sample(exe, mode, server, client, purchases, tally, backend, params)
    return out


def _sample(
    exe: str,
    mode: str,
    server: Server,
    client: loadgen.Client,
    purchases: Purchases,
    tally: Tally,
    backend: str,
    params: Params,
) -> dict[str, Any]:
    seconds = params.profile_seconds
    outputs = []
    procs = []
    for n, pid in enumerate(server.worker_pids(), start=1):
        path = RESULTS / f"profile-{backend}-{mode}-worker{n}.txt"
        outputs.append(path)
        command = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds))]
        command += ["--rate", "100", "--nonblocking", "--format", "raw", "--output", str(path)]
        if mode.endswith("gil"):
            command += ["--gil"]
        elif mode.endswith("waits"):  # idle samples too: where a batch waits, and for what
            command += ["--threads", "--idle"]
        else:
            command += ["--threads"]
        procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    if mode.startswith("batch"):
        from benchmarks.workload import batch_accepted

        load = loadgen.closed_loop(
            client,
            "/v1/events/batch",
            lambda: purchases.batch(params.batch_size),
            concurrency=params.batch_concurrency,
            warmup=0,
            duration=seconds + 2,
            accepted=batch_accepted,
            want_body=True,
            requests_per_connection=1,
        )
    else:
        load = loadgen.closed_loop(
            client,
            "/v1/events",
            purchases.single,
            concurrency=max(params.saturation_concurrency),
            warmup=0,
            duration=seconds + 2,
        )
    result = loadgen.run(load)
    tally.add(result)
    errors = []
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            errors.append(err.decode(errors="replace")[-500:])
    if errors:
        return {"skipped": "py-spy failed: " + " | ".join(errors)}
    stacks: Counter[str] = Counter()
    for path in outputs:
        stacks.update(read_collapsed(path))
    summary = summarise(stacks)
    summary["possible_samples"] = int(seconds * 100 * len(outputs))
    summary["files"] = [str(p.relative_to(RESULTS.parent.parent)) for p in outputs]
    summary["events_per_s_while_sampling"] = round(
        result.events_in_window / result.measured_seconds, 1
    )
    return summary


def read_collapsed(path: Path) -> Counter[str]:
    out: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out[stack] += int(count)
    return out


def _short(frame: str) -> str:
    """``func (path/to/site-packages/pkg/mod.py:12)`` → ``func (pkg/mod.py)``."""
    if frame.startswith("thread ("):
        return "thread: " + frame.split(": ", 1)[-1]
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/src/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})"


def summarise(stacks: Counter[str], top: int = 25) -> dict[str, Any]:
    total = sum(stacks.values())
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    milestones: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = [_short(f) for f in stack.split(";") if f]
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
        for label, needle in MILESTONES.items():
            if any(needle in f for f in frames):
                milestones[label] += count

    def pct(n: int) -> float:
        return round(100 * n / total, 1) if total else 0.0

    return {
        "samples": total,
        "milestones_percent": {label: pct(milestones[label]) for label in MILESTONES},
        "top_inclusive_percent": {
            f: pct(n)
            for f, n in inclusive.most_common(top * 4)
            if "treu/" in f or "fastapi/" in f or "sqlalchemy/" in f or "pydantic" in f
        },
        "top_self_percent": {f: pct(n) for f, n in own.most_common(top)},
    }
