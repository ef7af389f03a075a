"""``treu demo --bulk``: a large synthetic history written straight to the tables — members
with empty accounts, purchase events none of which looks credited, lines that read back
as the analyst frame with the events' totals — and a ledger that verifies."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from tests import factories as f
from treu import cli
from treu.db.session import Database
from treu.demo import bulk
from treu.demo.bulk import _card_numbers, load_bulk
from treu.events.models import Event, PurchaseLine
from treu.insights.history import read_history
from treu.kit.ids import luhn_valid
from treu.ledger.models import Account, Lot, Posting
from treu.ledger.service import ledger
from treu.members.models import Member
from treu.programmes.service import programmes

NOW = datetime(2026, 6, 15, 9, 0, tzinfo=UTC)


def test_bulk_history_is_consistent(db: Database) -> None:
    slug = f.unique("bulk")
    summary = load_bulk(db, members=300, purchases=4000, seed=5, now=NOW, slug=slug)
    assert summary.members == 300
    assert 2000 <= summary.lines <= 4000  # "about" the number asked for, never more
    assert summary.purchases <= summary.lines

    with db.unit_of_work(write=False) as session:
        programme = programmes.get_many_by_slug(session, {slug})[slug]
        pid = programme.id

        def count(model: type, *where: object) -> int:
            query = select(func.count()).select_from(model).where(model.programme_id == pid)  # type: ignore[attr-defined]
            return int(session.scalar(query.where(*where)) or 0)

        assert count(Member) == count(Account) == 300
        assert count(Event, Event.type == "purchase") == summary.purchases
        assert count(PurchaseLine) == summary.lines
        assert count(Posting) == count(Lot) == 0
        assert ledger.verify(session, programme_id=pid) == []
        earned = session.scalars(
            select(Event.result["points"]["earned"].as_integer()).where(Event.programme_id == pid)
        ).all()
        assert set(earned) == {0}
        moments = session.execute(
            select(func.min(Event.occurred_at), func.max(Event.occurred_at)).where(
                Event.programme_id == pid
            )
        ).one()
        assert moments[1] < NOW
        totals = session.scalar(
            select(func.sum(Event.total_minor)).where(Event.programme_id == pid)
        )
        frame = read_history(session, programme=programme)
        enrolled = dict(
            session.execute(
                select(Member.id, Member.enrolled_at).where(Member.programme_id == pid)
            ).all()
        )
        first_event = dict(
            session.execute(
                select(Event.member_id, func.min(Event.occurred_at))
                .where(Event.programme_id == pid)
                .group_by(Event.member_id)
            ).all()
        )

    assert len(frame) == summary.lines
    assert round(frame["amount"].sum() * 100) == totals
    assert frame["customer_id"].nunique() == 300
    # Each member joined on the day of their first purchase.
    first = frame.groupby("customer_id", observed=True)["date"].min()
    for customer, day in first.items():
        joined = enrolled[next(k for k in enrolled if str(k) == customer)]
        assert joined.astimezone(programme_tz(programme.timezone)).date() == day.date()
    # ... and before it, as the service enrols a member at their first event.
    assert all(enrolled[m] <= at for m, at in first_event.items())


def test_a_load_without_members_or_purchases_is_refused_and_leaves_nothing(
    db: Database,
) -> None:
    from treu.errors import Invalid

    slug = f.unique("bulk")
    for members, purchases in ((10, 0), (0, 10)):
        with pytest.raises(Invalid, match="at least one member and one purchase line"):
            load_bulk(db, members=members, purchases=purchases, now=NOW, slug=slug)
    with db.unit_of_work(write=False) as session:
        assert programmes.get_many_by_slug(session, {slug}) == {}


def programme_tz(name: str) -> object:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def test_card_numbers_are_unique_and_luhn_valid() -> None:
    numbers = _card_numbers(5000)
    assert len(set(numbers)) == 5000
    assert all(len(n) == 16 and luhn_valid(n) for n in numbers)
    assert not luhn_valid(numbers[0][:-1] + str((int(numbers[0][-1]) + 1) % 10))
    assert np.all(np.diff([int(n[4:15]) for n in numbers]) == 1)


def test_the_command_loads_and_refuses_a_taken_slug(runner: CliRunner) -> None:
    slug = f.unique("bulk")
    args = ["demo", "--bulk", "--members", "50", "--purchases", "400", "--programme", slug]
    result = runner.invoke(cli.app, [*args, "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert "50 members" in result.output
    assert "earns no points" in result.output
    again = runner.invoke(cli.app, args)
    assert again.exit_code != 0
    assert "exists already" in again.output


def test_a_load_in_several_chunks_is_one_history(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "CHUNK_MEMBERS", 100)
    slug = f.unique("bulk")
    summary = load_bulk(db, members=250, purchases=3000, seed=8, now=NOW, slug=slug)
    assert summary.members == 250
    assert 1500 <= summary.lines <= 3000
    with db.unit_of_work(write=False) as session:
        programme = programmes.get_many_by_slug(session, {slug})[slug]
        pid = programme.id
        cards = session.scalars(select(Member.card_number).where(Member.programme_id == pid)).all()
        keys = session.scalars(select(Event.key).where(Event.programme_id == pid)).all()
        assert ledger.verify(session, programme_id=pid) == []
        frame = read_history(session, programme=programme)
    assert len(set(cards)) == 250
    assert len(set(keys)) == len(keys) == summary.purchases
    assert len(frame) == summary.lines
