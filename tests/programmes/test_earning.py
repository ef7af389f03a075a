"""The sentence on how a member earns: the base rate in the language's words, the tier's
multiplier on top, and a programme whose earning is all rules."""

from __future__ import annotations

from decimal import Decimal

from treu.programmes.earning import how_to_earn
from treu.programmes.models import Programme


def _programme(rate: str, points_name: dict[str, object] | None = None) -> Programme:
    return Programme(
        slug="p",
        name="Korn",
        currency="EUR",
        points_name=points_name or {},
        points_per_currency_unit=Decimal(rate),
    )


def test_the_base_rate_in_both_languages() -> None:
    assert how_to_earn(_programme("1"), lang="en") == "You earn 1 point per €1.00 you spend."
    assert how_to_earn(_programme("1"), lang="de") == ("Sie sammeln 1 Punkt je 1,00\xa0€ Einkauf.")
    assert how_to_earn(_programme("2.5000"), lang="de") == (
        "Sie sammeln 2,5 Punkte je 1,00\xa0€ Einkauf."
    )


def test_the_programmes_own_name_for_points() -> None:
    stars = {"de": {"one": "Stern", "other": "Sterne"}, "en": "stars"}
    assert how_to_earn(_programme("1", stars), lang="de").startswith("Sie sammeln 1 Stern je")
    assert how_to_earn(_programme("3", stars), lang="en").startswith("You earn 3 stars per")


def test_a_tier_multiplier_above_one_is_mentioned() -> None:
    text = how_to_earn(_programme("1"), lang="en", multiplier=Decimal("1.50"), tier="Gold")
    assert text.endswith("As a Gold member you earn 1.5 times as many.")
    plain = how_to_earn(_programme("1"), lang="en", multiplier=Decimal("1"), tier="Bronze")
    assert "Bronze" not in plain


def test_a_programme_without_a_base_rate() -> None:
    assert how_to_earn(_programme("0"), lang="en") == (
        "Promotions and campaigns of Korn earn you points."
    )
