"""The text catalogue (``treu.kit.text``) and the one renderer of stored explanations
(``treu.kit.explanations``): complete German, placeholders kept, every template name the
code stores known, and stored details rendering as they always did. No database."""

from __future__ import annotations

import ast
import io
import re
import string
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

import treu
from treu.kit import explanations
from treu.kit.explanations import TEMPLATES, reason_text, render, render_explanation
from treu.kit.lang import LANGUAGES
from treu.kit.text import catalogue, parse, po_path, translate, translate_plural
from treu.tiers.texts import history_text

SRC = Path(treu.__file__).parent
MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"
MAPPING = Path(__file__).resolve().parents[2] / "babel.cfg"
POT = SRC / "locale" / "treu.pot"
TRANSLATED = [lang for lang in LANGUAGES if lang != "en"]

Msgid = str | tuple[str, str]


def _keywords() -> dict[str, Any]:
    """The keywords ``make texts`` extracts with (``-k name:2,3``), plus Babel's defaults."""
    keywords: dict[str, Any] = dict(DEFAULT_KEYWORDS)
    for spec in re.findall(r"-k (\S+)", MAKEFILE.read_text()):
        name, _, args = spec.partition(":")
        keywords[name] = tuple(int(a) for a in args.split(",")) if args else None
    return keywords


def _in_code() -> dict[Msgid, str]:
    """Every text the code marks for the catalogue -> the first file it is in."""
    found: dict[Msgid, str] = {}
    with MAPPING.open() as mapping:
        method_map, options_map = parse_mapping_cfg(mapping)
    for filename, _, message, _, _ in extract_from_dir(
        SRC, method_map=method_map, options_map=options_map, keywords=_keywords()
    ):
        key: Msgid = (message[0], message[1]) if isinstance(message, tuple) else message
        found.setdefault(key, filename)
    return found


def _po(path: Path) -> dict[Msgid, Any]:
    with path.open("rb") as file:
        po = read_po(file)
    return {((m.id[0], m.id[1]) if isinstance(m.id, tuple | list) else m.id): m for m in po if m.id}


def _fields(text: str) -> set[tuple[str | None, str | None, str | None]]:
    return {(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text) if name}


def test_the_code_has_texts_to_translate() -> None:
    texts = _in_code()
    assert "Birthday this month" in texts  # a text given to translate()
    assert ("point", "points") in texts  # a plural
    assert TEMPLATES["earn.base"] in texts  # a template marked with N_()


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_text_has_a_translation(lang: str) -> None:
    """``make texts`` adds new texts to the catalogue; this fails until they are
    translated (an untranslated or fuzzy entry would be shown in English)."""
    found = catalogue(lang)
    missing = [
        f"{where}: {msgid!r}"
        for msgid, where in _in_code().items()
        if (msgid[0] not in found.plurals if isinstance(msgid, tuple) else msgid not in found.texts)
    ]
    assert not missing, f"no {lang} translation (run `make texts`, then translate):\n" + "\n".join(
        missing
    )


@pytest.mark.parametrize("lang", TRANSLATED)
def test_translations_keep_every_placeholder(lang: str) -> None:
    """A translation uses exactly the placeholders of its English text (a dropped
    ``{points}`` would hide a number; an unknown one would raise at run time)."""
    wrong = []
    for msgid, message in _po(Path(str(po_path(lang)))).items():
        if isinstance(msgid, tuple):
            wanted = _fields(msgid[1])
            forms = list(message.string)
        else:
            wanted = _fields(msgid)
            forms = [message.string]
        wrong += [f"{msgid!r} -> {form!r}" for form in forms if form and _fields(form) != wanted]
    assert not wrong, "\n".join(wrong)


def test_template_and_catalogues_match_the_code() -> None:
    """The template (``treu.pot``) lists what the code uses, and no catalogue keeps a
    text the code no longer has: ``make texts`` was run after the last change."""
    in_code = set(_in_code())
    assert set(_po(POT)) == in_code, "run `make texts`"
    for lang in TRANSLATED:
        stale = set(_po(Path(str(po_path(lang))))) - in_code
        assert not stale, f"{lang}: texts no longer in the code (run `make texts`): {stale}"


# --------------------------------------------------------------------------- template names


def _stored_template_names() -> set[str]:
    """Template names the code writes into ``details``: ``{"template": "<name>"}`` and
    ``TEMPLATE = "<name>"`` in any module, and the earning rules' ``rules.<effect>``."""
    from treu.rules.awards import _template
    from treu.rules.spec import BadgeOnly, Fixed, Multiplier, PercentBonus, PointsPerUnit, RuleSpec

    names: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == "template"
                        and isinstance(value, ast.Constant)
                        and isinstance(value.value, str)
                    ):
                        names.add(value.value)
            elif (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "TEMPLATE" for t in node.targets)
                and isinstance(node.value, ast.Constant)
            ):
                names.add(str(node.value.value))
    effects = [
        PointsPerUnit.model_construct(scope="order"),
        PointsPerUnit.model_construct(scope="lines"),
        Multiplier.model_construct(),
        PercentBonus.model_construct(),
        Fixed.model_construct(),
        BadgeOnly.model_construct(),
    ]
    names |= {_template(RuleSpec.model_construct(effect=effect)) for effect in effects}
    return names


def test_every_template_name_used_in_code_has_a_catalogue_entry() -> None:
    names = _stored_template_names()
    assert {"earn.base", "reverse.return", "rules.points_per_unit.lines"} <= names
    unknown = names - set(TEMPLATES)
    assert not unknown, f"template names without a text in treu.kit.explanations: {unknown}"
    for lang in TRANSLATED:
        texts = catalogue(lang).texts
        assert not [n for n in TEMPLATES if TEMPLATES[n] not in texts], lang


def test_every_tier_history_reason_has_a_text() -> None:
    """The reasons the API documents for tier history entries are all rendered."""
    from treu.tiers.schemas import HistoryEntryOut

    description = HistoryEntryOut.model_fields["reason"].description or ""
    reasons = [r.strip() for r in description.split(",")]
    assert "membership_purchased" in reasons
    params = {"to": {"en": "Gold", "de": "Gold"}, "months": 2, "until": "2027-01-31"}
    for reason in reasons:
        for lang in LANGUAGES:
            assert history_text(reason, params, lang) != reason, (reason, lang)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_every_template_renders(template: str, lang: str) -> None:
    params = {
        "amount_minor": 4290,
        "currency": "EUR",
        "rate": "1.5",
        "points_name": {"en": {"one": "point", "other": "points"}, "de": "Punkte"},
        "points": 5,
        "name": "Rule",
        "factor": "2",
        "percent": "10",
        "badge": {"en": "Critic"},
        "tier": {"en": "Gold"},
        "reward": {"en": "Voucher"},
        "why": "cancelled",
        "items": "1 x 7002",
        "order": "pos-1",
        "reason": "Goodwill",
        "earned": "2026-03-01",
        "what": "Coffee",
        "charity": {"en": "Food banks"},
    }
    text = render_explanation(template, params, lang)
    assert text
    assert not {"{", "}"} & set(text)


# --------------------------------------------------------------------------- stored details

EUR = {"currency": "EUR"}
POINTS_NAME = {"en": {"one": "point", "other": "points"}, "de": {"one": "Punkt", "other": "Punkte"}}
STORED = [
    (
        {
            "template": "earn.base",
            "rule": {"id": "base", "version": 1},
            "params": {
                "rate": "1.0000",
                "points_name": POINTS_NAME,
                "amount_minor": 4290,
                **EUR,
                "points": 42,
            },
        },
        "1 point per €1 on €42.90: +42",
        "1 Punkt pro 1\xa0€ auf 42,90\xa0€: +42",
    ),
    (
        {
            "template": "earn.base",
            "params": {
                "rate": "1.5",
                "points_name": {"en": "stars", "de": {"one": "Stern", "other": "Sterne"}},
                "amount_minor": 1000,
                **EUR,
                "points": 15,
            },
        },
        "1.5 stars per €1 on €10.00: +15",
        "1.5 Sterne pro 1\xa0€ auf 10,00\xa0€: +15",  # no decimal comma: kept as it was
    ),
    (
        {"template": "earn.blocked", "params": {"amount_minor": 4290, **EUR}},
        "Member is blocked: no points for €42.90",
        "Mitglied gesperrt: keine Punkte für 42,90\xa0€",
    ),
    (
        {
            "template": "reverse.return",
            "params": {"items": "1 x 7002", "order": "pos-1", "points": 9},
        },
        "Return of 1 x 7002 from order pos-1: -9",
        "Rückgabe von 1 x 7002 aus Bestellung pos-1: -9",
    ),
    (
        {"template": "adjust", "params": {"reason": "Goodwill: damaged parcel"}},
        "Manual adjustment: Goodwill: damaged parcel",
        "Manuelle Korrektur: Goodwill: damaged parcel",
    ),
    (
        {"template": "expire", "params": {"points": 120, "earned": "2026-03-01"}},
        "120 points earned on 2026-03-01 expired",
        "120 Punkte vom 2026-03-01 verfallen",
    ),
    (
        {"template": "settle", "params": {"points": 7}},
        "7 newly available points settle a negative balance",
        "7 neu verfügbare Punkte gleichen ein negatives Saldo aus",
    ),
    (
        {"template": "redeem", "params": {"what": {"en": "Coffee", "de": "Kaffee"}}},
        "Redeemed: Coffee",
        "Eingelöst: Kaffee",
    ),
    (
        {"template": "refund", "params": {"what": {"en": "Coffee", "de": "Kaffee"}, "points": 50}},
        "Refunded: Coffee: +50",
        "Erstattet: Kaffee: +50",
    ),
    (
        {
            "template": "payment",
            "params": {"amount_minor": 1250, **EUR, "order": "o-1", "points": 500},
        },
        "Paid €12.50 of order o-1 with points: -500",
        "12,50\xa0€ der Bestellung o-1 mit Punkten bezahlt: -500",
    ),
    (
        {
            "template": "refund.payment",
            "params": {
                "amount_minor": 1250,
                **EUR,
                "order": "o-1",
                "points": 500,
            },
        },
        "Points payment for order o-1 refunded (€12.50): +500",
        "Punktezahlung für Bestellung o-1 erstattet (12,50\xa0€): +500",
    ),
    (
        {
            "template": "donation",
            "params": {
                "charity": {"de": "Tafel Deutschland e.V.", "en": "German Food Banks"},
                "points": 500,
            },
        },
        "Donation to German Food Banks: -500",
        "Spende an Tafel Deutschland e.V.: -500",
    ),
    (
        {
            "template": "rules.points_per_unit",
            "params": {
                "name": "Base",
                "points": 42,
                "rate": "1",
                **EUR,
                "amount_minor": 4290,
            },
        },
        "1 point per €1 on €42.90: +42",
        "1 Punkt pro 1\xa0€ auf 42,90\xa0€: +42",
    ),
    (
        {
            "template": "rules.points_per_unit.lines",
            "params": {
                "name": "Coffee",
                "points": 19,
                "rate": "1.5",
                **EUR,
                "amount_minor": 1290,
                "limited_by": "limit_day",
            },
        },
        "Coffee: 1.5 points per €1 on €12.90: +19 (daily limit reached)",
        "Coffee: 1,5 Punkte pro 1\xa0€ auf 12,90\xa0€: +19 (Tageslimit erreicht)",
    ),
    (
        {
            "template": "rules.multiplier",
            "params": {"name": "Weekend", "points": -5, "factor": "0.5"},
        },
        "Weekend \u00d70.5: -5",
        "Weekend \u00d70,5: -5",
    ),
    (
        {
            "template": "rules.percent_bonus",
            "params": {"name": "Bonus", "points": 4, "percent": "10"},
        },
        "Bonus +10%: +4",
        "Bonus +10 %: +4",
    ),
    (
        {"template": "rules.fixed", "params": {"name": "Welcome", "points": 100}},
        "Welcome: +100",
        "Welcome: +100",
    ),
    (
        {
            "template": "rules.badge_only",
            "params": {
                "name": "Reviewer",
                "points": 0,
                "badge": {"en": "Critic", "de": "Kritiker"},
            },
        },
        "Reviewer: badge \u201cCritic\u201d",
        "Reviewer: Abzeichen \u201eKritiker\u201c",
    ),
    (
        {
            "template": "tiers.multiplier",
            "params": {
                "tier": {"en": "Silver", "de": "Silber"},
                "code": "silver",
                "factor": "1.25",
                "points": 5,
            },
        },
        "Silver tier \u00d71.25: +5",
        "Stufe Silber \u00d71,25: +5",
    ),
    (
        {
            "template": "challenges.completed",
            "params": {
                "name": {"en": "3 purchases in May", "de": "3 Einkäufe im Mai"},
                "points": 300,
            },
        },
        "Challenge \u201c3 purchases in May\u201d completed: +300",
        "Challenge \u201e3 Einkäufe im Mai\u201c geschafft: +300",
    ),
    (
        {
            "template": "challenges.completed",
            "params": {
                "name": {"en": "Reviews"},
                "points": 0,
                "badge": {"en": "Critic", "de": "Kritiker"},
            },
        },
        "Challenge \u201cReviews\u201d completed: badge \u201cCritic\u201d",
        "Challenge \u201eReviews\u201c geschafft: Abzeichen \u201eKritiker\u201c",
    ),
    (
        {
            "template": "rewards.redeem",
            "params": {
                "reward": {"en": "€5 voucher", "de": "5-€-Gutschein"},
                "points": 500,
            },
        },
        "Redeemed: €5 voucher: -500",
        "Eingelöst: 5-€-Gutschein: -500",
    ),
    (
        {
            "template": "rewards.refund",
            "params": {
                "reward": {"en": "€5 voucher", "de": "5-€-Gutschein"},
                "points": 500,
                "why": "expired",
            },
        },
        "Refund: €5 voucher (coupon expired unused): +500",
        "Erstattung: 5-€-Gutschein (Gutschein ungenutzt verfallen): +500",
    ),
]


@pytest.mark.parametrize(("details", "en", "de"), STORED)
def test_stored_details_render_as_they_always_did(
    details: dict[str, Any], en: str, de: str
) -> None:
    """The database is never migrated for a text: details stored by any earlier version
    render the same in both languages."""
    assert render(details) == render(details, "en") == en
    assert render(details, "de") == de
    assert render(details, "fr") == en  # a language Treu does not speak: English


def test_an_unknown_template_is_an_error() -> None:
    with pytest.raises(KeyError):
        render({"template": "nope", "params": {}})


def test_one_renderer() -> None:
    """The feature packages use the kit's renderer; none keeps a copy."""
    from treu.challenges import service as challenges
    from treu.ledger import explain
    from treu.rules import engine

    assert explain.render is render
    assert engine.render_explanation is challenges.render_explanation is render_explanation
    assert engine.reason_text is reason_text


def test_placeholder_formats_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        explanations.field_of("rate", "money")


# --------------------------------------------------------------------------- translate


def test_translate_and_plurals() -> None:
    assert translate("de", "Birthday this month") == "Geburtstag in diesem Monat"
    assert translate("en", "Birthday this month") == "Birthday this month"
    assert translate("fr", "Birthday this month") == "Birthday this month"
    assert translate("de", "A text nobody translated: {n}", n=1) == "A text nobody translated: 1"
    purchase = ("{count} purchase", "{count} purchases")
    assert [translate_plural("de", *purchase, n, count=n) for n in (0, 1, 2)] == [
        "0 Einkäufe",
        "1 Einkauf",
        "2 Einkäufe",
    ]
    assert [translate_plural("en", *purchase, n, count=n) for n in (0, 1, 2)] == [
        "0 purchases",
        "1 purchase",
        "2 purchases",
    ]
    months = {"to": {"en": "Gold", "de": "Gold"}, "until": "2027-01-31"}
    assert history_text("membership_purchased", months | {"months": 1}, "de") == (
        "Gold für 1 Monat gekauft, bis 31.01.2027"
    )
    assert history_text("membership_renewed", months | {"months": 12}, "en") == (
        "Gold renewed for 12 months, until 31.01.2027"
    )


def test_fuzzy_and_empty_entries_fall_back_to_english() -> None:
    po = b"""
msgid ""
msgstr ""
"Language: de\\n"
"Plural-Forms: nplurals=2; plural=(n != 1);\\n"

msgid "Sold out"
msgstr "Vergriffen"

#, fuzzy
msgid "Birthday this month"
msgstr "Geburtstag im Monat"

msgid "Cancelled"
msgstr ""

msgid "{count} day"
msgid_plural "{count} days"
msgstr[0] "{count} Tag"
msgstr[1] "{count} Tage"
"""
    found = parse(io.BytesIO(po), "de")
    assert found.texts == {"Sold out": "Vergriffen"}
    assert found.plurals == {"{count} day": ("{count} Tag", "{count} Tage")}
    assert [found.plural(n) for n in (0, 1, 2)] == [1, 0, 1]
