"""Receivers for the delivery benchmark, run as their own process (so that they do not
share the benchmarked worker's interpreter lock): ``python -m benchmarks.sinks http``
answers every POST with 200 over keep-alive; ``smtp`` accepts every message. Each prints
its port on the first line of stdout, then serves until killed; ``GET /count`` (http)
answers how many requests arrived."""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_count = 0
_lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body go out as two small writes: without this, Nagle's algorithm
        # holds the second until the client's delayed ACK (40 ms) on every request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        global _count
        self.rfile.read(int(self.headers.get("content-length", "0")))
        with _lock:
            _count += 1
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def do_GET(self) -> None:
        body = str(_count).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


def http() -> None:
    server = _Server(("127.0.0.1", 0), _Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def smtp() -> None:
    import asyncio

    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    with socket.socket() as probe:  # aiosmtpd cannot be told port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    print(port, flush=True)
    asyncio.run(asyncio.Event().wait())


if __name__ == "__main__":
    {"http": http, "smtp": smtp}[sys.argv[1]]()
