"""Pages under 20 concurrent users: the portal's home page and the console's member 360,
side by side with ``GET /v1/members/{id}/balance`` in the same run (``make bench --only
pages``).

The demo programme (``treu demo``: 1,000 members, 20,000 purchases over a year) is
loaded into the benchmark's database. The 20 demo members with the most postings each
get a portal session; one support account gets a console session. Each of the three
phases is a closed loop of ``CONCURRENCY`` connections (20 users clicking as fast as the
server answers), cycling through those members: the balance endpoint with an API key,
the portal home with the member's cookie, member 360 with the staff cookie. The phases
alternate (balance, portal, console, twice) so that drift falls on all three. Every
answer must be 200: a page that redirected to its sign-in would be fast and wrong.

Then each page once more, paced as people use pages: the 20 users each load one page a
second (an open loop of 20 pages/s), for the latency of a page on a server that is not
saturated.

Target (issue 19): each page at least half the balance endpoint's requests/s, and its
p95 at most 50 ms. In a closed loop of 20 users who never pause, p95 cannot fall below
about 20 ÷ requests/s, so that p95 is reported next to the paced one.
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select

from benchmarks import loadgen
from treu.auth.service import api_keys
from treu.auth.sessions import web_sessions
from treu.db.session import Database
from treu.demo.load import DEMO_SLUG, load_demo
from treu.ledger.models import Posting
from treu.members.models import Member
from treu.programmes.service import programmes
from treu.staff.models import StaffUser
from treu.staff.service import staff

CONCURRENCY = 20
USERS = 20
PACED_RATE = 20.0
"""The paced phase: the 20 users each load one page a second."""
PAGES = ("balance", "portal_home", "member_360")


@dataclass
class PagesFixture:
    member_ids: list[uuid.UUID]
    member_tokens: list[str]
    staff_token: str
    api_token: str
    postings_per_member: list[int]
    setup_seconds: float


def prepare_pages(db: Database) -> PagesFixture:
    started = time.perf_counter()
    load_demo(db, seed=7)
    with db.unit_of_work() as session:
        programme = programmes.get_many_by_slug(session, {DEMO_SLUG})[DEMO_SLUG]
        busiest = session.execute(
            select(Member.id, func.count(Posting.id))
            .join(Posting, Posting.member_id == Member.id)
            .where(Member.programme_id == programme.id)
            .group_by(Member.id)
            .order_by(func.count(Posting.id).desc(), Member.id)
            .limit(USERS)
        ).all()
        tokens = [
            web_sessions.start(session, kind="member", subject_id=member_id)[0]
            for member_id, _ in busiest
        ]
        user, _ = staff.create(
            session, email="bench-support@example.org", role="support", actor="bench"
        )
        session.get_one(StaffUser, user.id).must_change_password = False
        staff_token, _ = web_sessions.start(session, kind="staff", subject_id=user.id)
        _, api_token = api_keys.create(session, name="bench-pages", scopes=["members:read"])
    return PagesFixture(
        member_ids=[member_id for member_id, _ in busiest],
        member_tokens=tokens,
        staff_token=staff_token,
        api_token=api_token,
        postings_per_member=[count for _, count in busiest],
        setup_seconds=time.perf_counter() - started,
    )


class Rotating(loadgen.Client):
    """GET requests prepared in advance, sent in turn (one per user)."""

    def __init__(self, host: str, port: int, requests: list[bytes]) -> None:
        super().__init__(host, port, token="")
        self._next = itertools.cycle(requests)

    def build(self, path: str, body: bytes) -> bytes:
        return next(self._next)


def _get(host: str, port: int, path: str, header: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{header}\r\nAccept: */*\r\n\r\n"
    ).encode()


def clients(fixture: PagesFixture, port: int) -> dict[str, Rotating]:
    host = "127.0.0.1"
    pairs = list(zip(fixture.member_ids, fixture.member_tokens, strict=True))
    return {
        "balance": Rotating(
            host,
            port,
            [
                _get(
                    host,
                    port,
                    f"/v1/members/{member_id}/balance",
                    f"Authorization: Bearer {fixture.api_token}",
                )
                for member_id, _ in pairs
            ],
        ),
        "portal_home": Rotating(
            host,
            port,
            [_get(host, port, "/portal", f"Cookie: treu_portal={token}") for _, token in pairs],
        ),
        "member_360": Rotating(
            host,
            port,
            [
                _get(
                    host,
                    port,
                    f"/admin/members/{member_id}",
                    f"Cookie: treu_admin={fixture.staff_token}",
                )
                for member_id, _ in pairs
            ],
        ),
    }


def ok(status: int, _body: bytes) -> int:
    return 1 if status == 200 else 0
