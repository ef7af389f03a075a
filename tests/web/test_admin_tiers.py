"""Tiers in the console over HTTP: the ladder with members per tier, changing and adding
a tier (errors in place), and who may do what."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests import factories as f
from tests.support.admin import client, csrf_of, signed_in
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.tiers.models import Tier
from treu.tiers.service import tiers


def ladder(db: Database, prog: Programme) -> dict[str, Tier]:
    with db.unit_of_work(write=False) as session:
        return {t.code: t for t in tiers.all(session, programmes.get(session, prog.id))}


def tier_form(**changes: Any) -> dict[str, Any]:
    data = {
        "rank": "1",
        "name_en": "Silver",
        "name_de": "Silber",
        "threshold": "100",
        "multiplier": "1.25",
        "benefits": "Free coffee | Gratis Kaffee",
        "flags": "",
    }
    data.update(changes)
    return data


def test_the_ladder_with_thresholds_benefits_and_members(db: Database) -> None:
    prog = f.tiered(db)
    now = utc_now()
    f.member(db, prog)
    rich = f.member(db, prog)
    f.ingest_one(db, f.purchase_payload(prog, rich, amount_minor=25_000, occurred_at=now))
    web, _ = signed_in(db, "analyst")
    web.cookies.set("treu_lang", "en")
    page = web.get(f"/admin/tiers?programme={prog.slug}")
    assert page.status_code == 200
    rows = page.text.split('data-testid="tier-row"')[1:]
    assert [re.search(r"<th scope=\"row\">(\w+)", r).group(1) for r in rows] == [  # type: ignore[union-attr]
        "Bronze",
        "Silver",
        "Gold",
    ]
    members = re.findall(r'data-testid="tier-members">(\d+)<', page.text)
    assert members == ["1", "0", "1"]
    assert "€100.00 spend" in rows[1]
    assert "\u00d71.25" in rows[1]
    assert "free_shipping" in rows[2]
    assert "can be bought" in rows[2]
    assert "/admin/tiers/" not in page.text.split("<main")[1]  # analysts change nothing
    german = client(db)
    german.cookies.update(web.cookies)
    german.cookies.set("treu_lang", "de")
    assert "Umsatz" in german.get(f"/admin/tiers?programme={prog.slug}").text


def test_marketing_changes_a_tier_and_adds_one(db: Database) -> None:
    prog = f.tiered(db)
    web, _ = signed_in(db, "marketing")
    web.cookies.set("treu_lang", "en")
    page = web.get(f"/admin/tiers/{prog.slug}/silber")
    assert page.status_code == 200
    assert 'value="100.00"' in page.text  # €100 typed in euros
    token = csrf_of(page.text)
    bad = web.post(f"/admin/tiers/{prog.slug}/silber", data=tier_form(csrf=token, threshold="lots"))
    assert bad.status_code == 422
    assert 'id="threshold-error"' in bad.text
    assert 'value="lots"' in bad.text
    above_gold = web.post(
        f"/admin/tiers/{prog.slug}/silber", data=tier_form(csrf=token, threshold="250")
    )
    assert above_gold.status_code == 422  # thresholds must rise with the rank
    assert ladder(db, prog)["silber"].threshold == 10_000
    saved = web.post(
        f"/admin/tiers/{prog.slug}/silber",
        data=tier_form(csrf=token, threshold="120,50", multiplier="1,5"),
        follow_redirects=False,
    )
    assert saved.status_code == 303
    silver = ladder(db, prog)["silber"]
    assert silver.threshold == 12_050
    assert str(silver.multiplier) in ("1.5", "1.5000")
    assert silver.benefits == [{"en": "Free coffee", "de": "Gratis Kaffee"}]

    added = web.post(
        f"/admin/tiers/{prog.slug}/new",
        data=tier_form(
            csrf=token, code="platin", rank="3", name_en="Platinum", name_de="Platin",
            threshold="1000", multiplier="2", purchasable="1",
        ),
        follow_redirects=False,
    )  # fmt: skip
    assert added.status_code == 303
    platinum = ladder(db, prog)["platin"]
    assert (platinum.threshold, platinum.purchasable) == (100_000, True)
    taken = web.post(
        f"/admin/tiers/{prog.slug}/new",
        data=tier_form(csrf=token, code="platin", rank="4", threshold="2000"),
    )
    assert taken.status_code == 422
    assert 'id="code-error"' in taken.text


@pytest.mark.parametrize("role", ["support", "analyst"])
def test_read_only_roles_get_403_on_every_tier_change(db: Database, role: str) -> None:
    prog = f.tiered(db)
    web, _ = signed_in(db, role)
    token = csrf_of(web.get(f"/admin/tiers?programme={prog.slug}").text)
    assert web.get(f"/admin/tiers/{prog.slug}/silber").status_code == 403
    assert web.get(f"/admin/tiers/{prog.slug}/new").status_code == 403
    changed = web.post(
        f"/admin/tiers/{prog.slug}/silber", data=tier_form(csrf=token, threshold="1")
    )
    assert changed.status_code == 403
    added = web.post(f"/admin/tiers/{prog.slug}/new", data=tier_form(csrf=token, code="x1"))
    assert added.status_code == 403
    assert ladder(db, prog)["silber"].threshold == 10_000
    assert "x1" not in ladder(db, prog)


def test_a_tier_change_without_the_forms_token_is_refused(db: Database) -> None:
    prog = f.tiered(db)
    web, _ = signed_in(db, "marketing")
    answer = web.post(
        f"/admin/tiers/{prog.slug}/silber", data=tier_form(csrf="forged", threshold="1")
    )
    assert answer.status_code == 403
    assert ladder(db, prog)["silber"].threshold == 10_000
