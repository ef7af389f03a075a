"""Manual adjustments (``treu.ledger.adjustments``): idempotent by key, also under
concurrent retries, shown in the history under their key, and clean in ``treu ledger
verify``."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from typer.testing import CliRunner

from tests import factories as f
from tests.api_helpers import Api
from tests.support.concurrency import in_parallel, retrying
from treu import cli
from treu.audit.models import AuditEvent
from treu.db.session import Database
from treu.errors import IdempotencyConflict, MemberClosed
from treu.events import errors as event_errors
from treu.events import service as events_service
from treu.events.models import Event
from treu.events.simulation import SimulationIn, simulate
from treu.kit.results import Keyed
from treu.ledger import adjustments as module
from treu.ledger.adjustments import AdjustedBalance, Adjustment, AdjustmentResult, adjustments
from treu.ledger.models import LedgerAdjustment, Posting
from treu.members import errors as member_errors
from treu.members.models import Member, MemberStatus
from treu.members.schemas import MemberUpdate
from treu.members.service import members
from treu.outbox.service import outbox

T0 = f.LEDGER_T0
REASON = "Goodwill: damaged parcel"


adjust = f.adjust


def records(db: Database, who: Member) -> list[LedgerAdjustment]:
    with db.unit_of_work(write=False) as session:
        return list(
            session.scalars(
                select(LedgerAdjustment)
                .where(LedgerAdjustment.member_id == who.id)
                .order_by(LedgerAdjustment.id)
            )
        )


def postings(db: Database, who: Member) -> list[Posting]:
    with db.unit_of_work(write=False) as session:
        return list(
            session.scalars(select(Posting).where(Posting.member_id == who.id).order_by(Posting.id))
        )


# --- idempotency ------------------------------------------------------------------------


def test_replay_returns_the_stored_answer_and_credits_once(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    first = adjust(db, anna, 500, key="adjustment:ticket-4711", reason=REASON)
    again = adjust(db, anna, 500, key="adjustment:ticket-4711", reason=REASON, at=T0 + timedelta(1))
    assert (first.http_status, again.http_status) == (201, 200)
    assert (first.replayed, again.replayed) == (False, True)
    assert again.result == first.result  # read back from the stored JSON
    assert first.result.member_id == anna.id
    assert first.result.posting["explanation"] == f"Manual adjustment: {REASON}"
    assert first.result.posting["actor"] == "admin@example.com"
    assert first.result.balance == AdjustedBalance(available=500, pending=0)
    assert f.balance(db, anna).available == 500
    [posting] = postings(db, anna)
    [record] = records(db, anna)
    assert (posting.kind, posting.points, posting.event_id) == ("adjust", 500, record.id)
    assert (record.programme_id, record.key, record.points) == (
        prog.id,
        "adjustment:ticket-4711",
        500,
    )
    assert (record.reason, record.actor, record.created_at) == (REASON, "admin@example.com", T0)
    assert record.result == first.result.public()
    # PostgreSQL's jsonb stores keys in an order of its own; the replay answers in the
    # first answer's order.
    assert list(again.result.public()) == ["member_id", "posting", "balance"]
    assert list(again.result.posting) == list(first.result.posting)
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).where(Event.id == record.id)) == 0
        entries = session.scalars(
            select(AuditEvent).where(
                AuditEvent.subject_id == str(anna.id), AuditEvent.action == "ledger.adjust"
            )
        ).all()
    assert [(e.actor, e.data) for e in entries] == [
        (
            "admin@example.com",
            {"points": 500, "reason": REASON, "key": "adjustment:ticket-4711"},
        )
    ]


@pytest.mark.parametrize(
    "change",
    [{"points": 50}, {"reason": "another reason"}, {"allow_negative": True}],
)
def test_the_same_key_for_another_request_is_a_conflict(
    db: Database, change: dict[str, Any]
) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    adjust(db, anna, 500, key="adjustment:k-1", reason=REASON)
    request = {"points": 500, "reason": REASON} | change
    with pytest.raises(IdempotencyConflict) as info:
        adjust(db, anna, request.pop("points"), key="adjustment:k-1", **request)
    assert (info.value.code, info.value.http_status) == ("idempotency_conflict", 409)
    assert info.value.title == "Event id reused with a different payload"
    assert f.balance(db, anna).available == 500
    assert len(records(db, anna)) == 1


def test_a_key_is_the_programmes_not_the_members(db: Database) -> None:
    """Another member with the same key is another request; another programme may
    use the key for its own adjustment."""
    prog, other = f.programme(db), f.programme(db)
    anna, ben, cleo = f.member(db, prog), f.member(db, prog), f.member(db, other)
    adjust(db, anna, 10, key="adjustment:shared")
    with pytest.raises(IdempotencyConflict):
        adjust(db, ben, 10, key="adjustment:shared")
    assert adjust(db, cleo, 10, key="adjustment:shared").http_status == 201
    assert [f.balance(db, m).available for m in (anna, ben, cleo)] == [10, 0, 10]


def test_the_old_imports_still_work() -> None:
    assert event_errors.IdempotencyConflict is IdempotencyConflict
    assert member_errors.MemberClosed is MemberClosed
    assert events_service.adjustments is adjustments
    assert events_service.Adjustment is Adjustment


def test_adjustments_without_a_key_are_independent(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    adjust(db, anna, 5)
    adjust(db, anna, 5)
    assert f.balance(db, anna).available == 10
    keys = [r.key for r in records(db, anna)]
    assert len(set(keys)) == 2
    assert all(key.startswith("adjustment:") for key in keys)


def test_goodwill_is_available_at_once_even_with_a_return_window(db: Database) -> None:
    prog = f.programme(db, pending_days=30)
    anna = f.member(db, prog)
    adjust(db, anna, 25)
    bal = f.balance(db, anna)
    assert (bal.available, bal.pending) == (25, 0)


def test_closed_member_cannot_be_adjusted(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    with db.unit_of_work() as session:
        closed = members.update(
            session,
            member=members.get(session, anna.id),
            data=MemberUpdate(status=MemberStatus.closed),
        )
    with pytest.raises(MemberClosed) as info:
        adjust(db, closed, 10)
    assert (info.value.code, info.value.http_status) == ("member_closed", 422)
    assert f.balance(db, anna).available == 0
    assert records(db, anna) == []


def test_the_ledger_knows_the_closed_status_by_its_value() -> None:
    """The ledger cannot import ``MemberStatus`` (it sits below the members package)."""
    assert module.CLOSED == MemberStatus.closed.value


def test_the_outbox_has_the_adjustment_under_its_id(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    adjust(db, anna, 30, key="adjustment:o-1")
    adjust(db, anna, -10, key="adjustment:o-2")
    adjust(db, anna, -10, key="adjustment:o-2")  # a replay adds nothing
    first, second = records(db, anna)
    with db.unit_of_work(write=False) as session:
        found = outbox.messages(session, member_id=anna.id, types=["points.adjusted"])
    assert [m.payload for m in found] == [
        {"points": 30, "event_id": str(first.id)},
        {"points": -10, "event_id": str(second.id)},
    ]


# --- concurrency ------------------------------------------------------------------------


def test_concurrent_retries_credit_once(db: Database) -> None:
    """On both backends: every retry waits for the account the first one holds, then
    finds its record and answers with it."""
    prog = f.programme(db)
    anna = f.member(db, prog)
    key = f"adjustment:{f.unique('retry')}"

    def send(_: int) -> Keyed[AdjustmentResult]:
        return retrying(
            db,
            lambda session: adjustments.adjust(
                session,
                member=anna,
                adjustment=Adjustment(250, REASON, key=key),
                actor="apikey:crm",
            ),
        )

    results = in_parallel(8, send)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    answers = [r for r in results if isinstance(r, Keyed)]
    assert sorted(a.http_status for a in answers) == [200] * 7 + [201]
    assert all(a.result == answers[0].result for a in answers)
    assert f.balance(db, anna).available == 250
    assert len(postings(db, anna)) == 1
    assert len(records(db, anna)) == 1
    assert f.verify(db, prog) == []


# --- history ----------------------------------------------------------------------------


def test_history_shows_the_key(api: Api, db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    purchase = f.purchase_payload(prog, anna)
    f.ingest_one(db, purchase)
    url = f"/v1/members/{anna.id}"
    key = f.unique("crm-2026-11-24")
    headers = api.headers("admin") | {"Idempotency-Key": key}
    r = api.client.post(
        f"{url}/adjustments", json={"points": 50, "reason": REASON}, headers=headers
    )
    assert r.status_code == 201, r.text
    r = api.client.post(
        f"{url}/adjustments",
        json={"points": -5, "reason": "correction"},
        headers=api.headers("admin"),
    )
    assert r.status_code == 201, r.text
    history = api.client.get(f"{url}/ledger", headers=api.headers("members:read")).json()
    shown = [(item["kind"], item["points"], item["event_id"]) for item in history["items"]]
    assert shown[1:] == [("adjust", 50, f"adjustment:{key}"), ("earn", 10, purchase["id"])]
    kind, points, unkeyed = shown[0]
    assert (kind, points) == ("adjust", -5)
    assert unkeyed.startswith("adjustment:")
    assert unkeyed != f"adjustment:{key}"


# --- verify -----------------------------------------------------------------------------


def test_ledger_verify_is_clean_after_adjustments(db: Database, runner: CliRunner) -> None:
    prog = f.programme(db)
    anna, ben = f.member(db, prog), f.member(db, prog)
    f.ingest_one(db, f.purchase_payload(prog, anna))
    adjust(db, anna, 40, key="adjustment:v-1")
    adjust(db, anna, 40, key="adjustment:v-1")
    adjust(db, anna, -45)
    adjust(db, ben, -20, allow_negative=True, reason="chargeback")
    adjust(db, ben, 30)
    assert f.verify(db, prog) == []
    result = runner.invoke(cli.app, ["ledger", "verify", "--programme", prog.slug])
    assert result.exit_code == 0, result.output
    assert "Ledger OK: 2 accounts verified" in result.stdout


def test_ledger_verify_reports_a_missing_or_wrong_adjustment(db: Database) -> None:
    """Adjustments and their postings carry no foreign keys: verify notices a posting
    whose adjustment is gone, and an adjustment whose member is not its postings'."""
    prog, other = f.programme(db), f.programme(db)
    anna, ben = f.member(db, prog), f.member(db, prog)
    adjust(db, anna, 40)
    adjust(db, ben, 30)
    [of_anna] = records(db, anna)
    [of_ben] = records(db, ben)
    nobody = uuid.uuid4()
    with db.unit_of_work() as session:
        session.execute(delete(LedgerAdjustment).where(LedgerAdjustment.id == of_anna.id))
        session.execute(
            update(LedgerAdjustment)
            .where(LedgerAdjustment.id == of_ben.id)
            .values(member_id=nobody)
        )
    assert {(d.member_id, d.what, d.cached) for d in f.verify(db, prog)} == {
        (anna.id, "posting's member or event missing", 1),
        (ben.id, "posting's adjustment of another member", 1),
        (nobody, "adjustment's member missing or in another programme", 1),
    }
    with db.unit_of_work() as session:
        session.execute(
            update(LedgerAdjustment)
            .where(LedgerAdjustment.id == of_ben.id)
            .values(member_id=ben.id, programme_id=other.id)
        )
    assert {(d.member_id, d.what) for d in f.verify(db, prog)} == {
        (anna.id, "posting's member or event missing"),
        (ben.id, "posting's adjustment of another member"),
    }
    assert {(d.member_id, d.what) for d in f.verify(db, other)} == {
        (ben.id, "adjustment's member missing or in another programme"),
    }


# --- simulation -------------------------------------------------------------------------


def test_the_simulation_counts_the_periods_adjustments(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    adjust(db, anna, 10, at=T0 - timedelta(days=1))
    adjust(db, anna, 10, at=T0)
    adjust(db, anna, -5, at=T0 + timedelta(days=3))
    adjust(db, anna, 10, at=T0 + timedelta(days=10))
    request = SimulationIn.model_validate(
        {"programme": prog.slug, "from": T0, "until": T0 + timedelta(days=10)}
    )
    with db.unit_of_work(write=False) as session:
        result = simulate(session, request).model_dump(mode="json")
    assert result["events"]["adjustments_ignored"] == 2
    assert result["events"]["returns_ignored"] == 0
