"""The audit log in the console over HTTP: admins only, newest first, filtered by
actor, action, subject and dates, paged by key with the filters kept, details shown."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from tests.support.admin import signed_in
from treu.audit.service import audit
from treu.db.session import Database
from treu.kit.time import utc_now


def _record(db: Database, tag: str, count: int) -> None:
    with db.unit_of_work() as session:
        for i in range(count):
            audit.record(
                session,
                actor=f"staff:{tag}@example.org",
                action="rule.published" if i % 3 == 0 else "tier.updated",
                subject_type="rule",
                subject_id=f"{tag}-{i:03d}",
                data={"version": i, "note": f"ünïcode {i}", "fields": ["a", "b"]},
            )


def _subjects(html: str, tag: str) -> list[int]:
    return [int(n) for n in re.findall(rf"muted\">{tag}-(\d{{3}})<", html)]


def test_only_admins_read_the_audit_log(db: Database) -> None:
    for role in ("marketing", "support", "analyst"):
        web, _ = signed_in(db, role)
        assert 'href="/admin/audit"' not in web.get("/admin").text
        assert web.get("/admin/audit").status_code == 403
    admin, _ = signed_in(db, "admin")
    assert 'href="/admin/audit"' in admin.get("/admin").text
    assert admin.get("/admin/audit").status_code == 200


def test_filters_and_keyset_pages(db: Database) -> None:
    tag = uuid.uuid4().hex[:10]
    _record(db, tag, 60)
    web, _ = signed_in(db, "admin")
    first = web.get("/admin/audit", params={"actor": tag.upper()})
    assert first.status_code == 200
    assert _subjects(first.text, tag) == list(range(59, 9, -1))
    assert "ünïcode 59" in first.text
    assert "[&#34;a&#34;, &#34;b&#34;]" in first.text
    older = re.search(r'href="([^"]+)" rel="next" data-testid="older"', first.text)
    assert older is not None
    link = older.group(1).replace("&amp;", "&")
    assert f"actor={tag.upper()}" in link  # the filter stays on the next page
    second = web.get(link)
    assert _subjects(second.text, tag) == list(range(9, -1, -1))
    assert 'data-testid="older"' not in second.text

    published = web.get("/admin/audit", params={"actor": tag, "action": "rule.published"})
    assert _subjects(published.text, tag)[:3] == [57, 54, 51]
    assert len(_subjects(published.text, tag)) == 20
    one = web.get("/admin/audit", params={"subject": f"{tag}-007"})
    assert _subjects(one.text, tag) == [7]

    today = utc_now().date()
    inside = web.get(
        "/admin/audit",
        params={"actor": tag, "since": str(today - timedelta(days=1)), "until": str(today)},
    )
    assert len(_subjects(inside.text, tag)) == 50
    before = web.get("/admin/audit", params={"actor": tag, "until": str(today - timedelta(days=1))})
    assert _subjects(before.text, tag) == []
    wrong = web.get("/admin/audit", params={"since": "yesterday"})
    assert wrong.status_code == 422
    assert "JJJJ-MM-TT" in wrong.text
    forged = web.get("/admin/audit", params={"cursor": "garbage"})
    assert forged.status_code == 422
