"""Reading the audit log back (filters, keyset pages) and what API keys write to it."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from treu.audit.models import AuditEvent
from treu.audit.service import AuditFilter, audit
from treu.auth.service import PREFIX, api_keys
from treu.db.session import Database
from treu.errors import Invalid
from treu.kit.time import utc_now


def _tag() -> str:
    return uuid.uuid4().hex[:10]


def test_search_filters_and_pages_newest_first(db: Database) -> None:
    tag = _tag()
    now = utc_now()
    with db.unit_of_work() as session:
        for i in range(5):
            audit.record(
                session,
                actor=f"staff:Anna-{tag}@example.org",
                action="webhook.created" if i % 2 == 0 else "webhook.updated",
                subject_type="webhook_endpoint",
                subject_id=f"{tag}-{i}",
                data={"i": i},
            )
        audit.record(
            session,
            actor=f"cli-{tag}",
            action="apikey.created",
            subject_type="api_key",
            subject_id=f"{tag}-key",
        )
    mine = AuditFilter(actor=f"anna-{tag}")  # case-insensitive part of the actor
    with db.unit_of_work(write=False) as session:
        first, cursor = audit.search(session, where=mine, limit=2)
        assert [e.data["i"] for e in first] == [4, 3]
        assert cursor is not None
        second, cursor = audit.search(session, where=mine, limit=2, cursor=cursor)
        assert [e.data["i"] for e in second] == [2, 1]
        third, cursor = audit.search(session, where=mine, limit=2, cursor=cursor)
        assert [e.data["i"] for e in third] == [0]
        assert cursor is None

        created, _ = audit.search(session, where=AuditFilter(actor=tag, action="webhook.created"))
        assert [e.data["i"] for e in created] == [4, 2, 0]
        under, _ = audit.search(session, where=AuditFilter(actor=tag, action="webhook."))
        assert len(under) == 5
        one, _ = audit.search(session, where=AuditFilter(subject=f"{tag}-3"))
        assert [e.action for e in one] == ["webhook.updated"]
        keys, _ = audit.search(session, where=AuditFilter(actor=tag, subject="api_key"))
        assert [e.actor for e in keys] == [f"cli-{tag}"]
        # the date range: since inclusive, until exclusive
        window = AuditFilter(actor=tag, since=now - timedelta(minutes=1))
        assert len(audit.search(session, where=window)[0]) == 6
        past = AuditFilter(actor=tag, until=now - timedelta(minutes=1))
        assert audit.search(session, where=past)[0] == []
        # a wildcard typed by a user is no wildcard
        assert audit.search(session, where=AuditFilter(actor=f"%{tag}"))[0] == []


def test_a_forged_cursor_is_invalid(db: Database) -> None:
    with db.unit_of_work(write=False) as session, pytest.raises(Invalid):
        audit.search(session, cursor="not-a-cursor")


def test_api_keys_created_and_revoked_by_someone_are_audited(db: Database) -> None:
    name = f"shop-{_tag()}"
    with db.unit_of_work() as session:
        key, _ = api_keys.create(
            session, name=name, scopes=["members:read"], actor="staff:a@example.org"
        )
        lookup = key.lookup
    with db.unit_of_work() as session:
        assert api_keys.revoke(session, lookup=lookup, actor="staff:a@example.org")
        assert not api_keys.revoke(session, lookup=lookup, actor="staff:a@example.org")
    with db.unit_of_work(write=False) as session:
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.subject_type == "api_key")
            .where(AuditEvent.subject_id == f"{PREFIX}{lookup}")
            .order_by(AuditEvent.id)
        ).all()
        assert [(r.action, r.actor) for r in rows] == [
            ("apikey.created", "staff:a@example.org"),
            ("apikey.revoked", "staff:a@example.org"),
        ]
        assert rows[0].data == {"name": name, "scopes": ["members:read"]}
        # the secret is in no audit entry
        assert all("secret" not in str(r.data) for r in rows)
