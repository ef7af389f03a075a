"""The language switch comes back to the same page, query included (a search, a chosen
programme, a page of a list)."""

from __future__ import annotations

import re

from tests.support.admin import signed_in
from treu.db.session import Database

LINK = re.compile(r'href="(/admin/lang/en\?next=[^"]+)"')


def test_switching_language_keeps_the_query(db: Database) -> None:
    web, _ = signed_in(db, "support")
    page = web.get("/admin", params={"q": "someone@example.org"})
    assert page.status_code == 200
    found = LINK.search(page.text)
    assert found is not None, "no language link"
    back = web.get(found.group(1).replace("&amp;", "&"), follow_redirects=False)
    assert back.status_code == 303
    assert back.headers["location"] == "/admin?q=someone%40example.org"
    assert back.cookies.get("treu_lang") == "en"
