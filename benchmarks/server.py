"""Start and stop ``treu serve`` as a subprocess, and account for CPU time.

CPU accounting reads ``/proc`` (Linux): the server's process tree (uvicorn's supervisor
and its workers), the whole machine (``/proc/stat``), and this process (the load
generator). What the machine spent beyond server and client is the database server
(PostgreSQL backends), the kernel and anything else running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def free_port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])


def treu_command() -> list[str]:
    script = Path(sys.executable).parent / "treu"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "treu.cli"]


class Server:
    def __init__(self, *, url: str, port: int, workers: int, workdir: Path) -> None:
        self.url = url
        self.port = port
        self.workers = workers
        self.log_path = workdir / f"serve-{port}.log"
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        env = dict(os.environ)
        env.update(
            {
                "TREU_DATABASE_URL": self.url,
                "TREU_LOG_LEVEL": "warning",
                "PYTHONUNBUFFERED": "1",
            }
        )
        command = [
            *treu_command(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            command, env=env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"treu serve exited early:\n{self.log_tail()}")
            if self._healthy() and len(self.worker_pids()) >= self.workers:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"treu serve did not become healthy:\n{self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def pids(self) -> list[int]:
        """The server's process tree: the supervisor and everything below it."""
        if self.proc is None:
            return []
        return [self.proc.pid, *_descendants(self.proc.pid)]

    def worker_pids(self) -> list[int]:
        """uvicorn's worker processes (those that serve requests): with one worker,
        uvicorn serves in its own process."""
        if self.proc is None:
            return []
        if self.workers == 1:
            return [self.proc.pid]
        return [p for p in _descendants(self.proc.pid) if "spawn_main" in _cmdline(p)]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            out.extend(int(x) for x in task.read_text().split())
    return out


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = _children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(_children(child))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (all cores), from ``/proc/stat``."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return 0.0
    values = [int(x) for x in first[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / _TICK


def postgres_cpu(database: str | None) -> float:
    """CPU seconds of the PostgreSQL backends serving ``database`` (their process title
    names it), plus the WAL writer, which works for every commit."""
    if database is None:
        return 0.0
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" not in text[:64]:
            continue
        title = _cmdline(int(stat.parent.name))
        if f" {database} " in title or "walwriter" in title:
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def background_load(seconds: float = 1.0) -> float:
    """Busy cores while the benchmark does nothing: other work sharing the machine."""
    m0, t0 = machine_busy(), time.perf_counter()
    time.sleep(seconds)
    return round((machine_busy() - m0) / (time.perf_counter() - t0), 3)


@dataclass
class CpuUse:
    wall: float
    server: float
    client: float
    database: float
    machine: float
    workers: list[float]

    @property
    def noise(self) -> float:
        """Cores that other work on the machine used during the phase."""
        other = self.machine - self.server - self.client - self.database
        return max(other, 0.0) / (self.wall or 1.0)

    def as_dict(self) -> dict[str, Any]:
        """Average busy cores over the phase (2.0 = both cores of a 2-core machine).

        ``other`` is what neither the server, the client nor PostgreSQL used: the kernel's
        share that is not charged to a process, and any other work on the machine."""
        wall = self.wall or 1.0
        other = max(self.machine - self.server - self.client - self.database, 0.0)
        return {
            "server_cores": round(self.server / wall, 3),
            "client_cores": round(self.client / wall, 3),
            "database_cores": round(self.database / wall, 3),
            "other_cores": round(other / wall, 3),
            "machine_cores": round(self.machine / wall, 3),
            "per_worker_cores": [round(w / wall, 3) for w in self.workers],
        }


@contextlib.contextmanager
def cpu_meter(server: Server, database: str | None) -> Iterator[list[CpuUse]]:
    """Measures the CPU that server, client and the rest used during the block."""
    holder: list[CpuUse] = []
    pids = server.pids()
    workers = server.worker_pids()
    w0 = [process_cpu(p) for p in workers]
    s0 = sum(process_cpu(p) for p in pids)
    d0 = postgres_cpu(database)
    c0 = time.process_time()
    m0 = machine_busy()
    t0 = time.perf_counter()
    yield holder
    t1 = time.perf_counter()
    m1 = machine_busy()
    c1 = time.process_time()
    s1 = sum(process_cpu(p) for p in pids)
    w1 = [process_cpu(p) for p in workers]
    d1 = postgres_cpu(database)
    per_worker = [b - a for a, b in zip(w0, w1, strict=True)]
    holder.append(CpuUse(t1 - t0, s1 - s0, c1 - c0, max(d1 - d0, 0.0), m1 - m0, per_worker))
