"""The renderer and the shipped templates (no database)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from treu.messaging.errors import TemplateProblem
from treu.messaging.templates import (
    SUFFIX,
    format_amount,
    format_day,
    format_number,
    render,
    render_message,
    render_page,
    renderer,
    source,
)

NBSP = "\xa0"


def test_babel_formats_money_numbers_and_dates_in_german_and_english() -> None:
    assert format_amount(123450, "EUR", "de") == f"1.234,50{NBSP}€"
    assert format_amount(123450, "EUR", "en") == "€1,234.50"
    assert format_number(1234, "de") == "1.234"
    assert format_number(1234, "en") == "1,234"
    assert format_day(date(2026, 12, 31), "de") == "31.12.2026"
    assert format_day(date(2026, 12, 31), "en") == "Dec 31, 2026"


def test_the_filters_format_in_the_language_rendered() -> None:
    source_ = "{{ 123450|money('EUR') }} | {{ 1234|number }} | {{ day|date }}"
    values = {"day": date(2026, 12, 31)}
    assert render(source_, values, "de") == f"1.234,50{NBSP}€ | 1.234 | 31.12.2026"
    assert render(source_, values, "en") == "€1,234.50 | 1,234 | Dec 31, 2026"


@pytest.mark.parametrize(
    "attempt",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{{ c }}{% endfor %}",
        "{{ joiner.__init__.__globals__.os }}",
    ],
)
def test_the_sandbox_refuses_a_way_out_and_renders_nothing(attempt: str) -> None:
    """Jinja's sandbox raises ``SecurityError`` on the first unsafe attribute; the
    renderer reports it as a template problem with its line, and no text is produced."""
    rendered: str | None = None
    with pytest.raises(TemplateProblem) as caught:
        rendered = render("Hallo\n" + attempt, {}, "de", html=True)
    assert rendered is None
    assert caught.value.line == 2
    assert "unsafe" in caught.value.message
    assert "not allowed" in caught.value.detail


def test_a_template_that_does_not_compile_is_reported_with_its_line() -> None:
    broken = "Hallo {{ first_name }},\n\n{% if balance %}\nno end"
    with pytest.raises(TemplateProblem) as caught:
        render(broken, {"first_name": "Anna", "balance": 1}, "de")
    assert caught.value.line == 4
    assert caught.value.detail.startswith("line 4: ")
    with pytest.raises(TemplateProblem) as caught:
        render("one\ntwo {{ first_name }\n", {"first_name": "Anna"}, "de")
    assert caught.value.line == 2


def test_an_unknown_variable_is_reported_with_its_line_even_in_a_branch_not_taken() -> None:
    template = "Hallo {{ first_name }},\n{% if false %}\n{{ frist_name }}\n{% endif %}"
    with pytest.raises(TemplateProblem) as caught:
        render(template, {"first_name": "Anna"}, "de")
    assert caught.value.line == 3
    assert "frist_name" in caught.value.message
    # loop variables and names set in the template are the template's own
    own = "{% set x = 2 %}{% for item in items %}{{ item }}{{ x }}{{ loop.index }}{% endfor %}"
    assert render(own, {"items": ["a"]}, "en") == "a21"


def test_an_error_inside_an_expression_names_its_line() -> None:
    with pytest.raises(TemplateProblem) as caught:
        render("a\nb\n{{ member.nickname }}", {"member": {}}, "en")
    assert caught.value.line == 3
    with pytest.raises(TemplateProblem) as caught:
        render("{{ 1 / 0 }}", {}, "en")
    assert caught.value.line == 1
    assert "ZeroDivisionError" in caught.value.message


def test_html_parts_are_escaped_and_text_parts_are_not() -> None:
    values = {"first_name": "<b>Tom & Jerry</b>"}
    assert render("{{ first_name }}", values, "en", html=True) == (
        "&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;"
    )
    assert render("{{ first_name }}", values, "en") == "<b>Tom & Jerry</b>"


def test_the_renderer_checks_against_the_names_it_is_given() -> None:
    renderer.check("{{ a }} {{ b }}", {"a", "b"})
    with pytest.raises(TemplateProblem) as caught:
        renderer.check("{{ a }}\n{{ c }}", {"a"}, name="de/x.txt")
    assert caught.value.line == 2
    assert caught.value.detail == "de/x.txt, line 2: unknown variable 'c'"


COMMON: dict[str, Any] = {
    "first_name": "Anna",
    "programme_name": "Treu Demo",
    "balance": "1.234",
    "balance_label": "Punkte",
    "points_name": "Punkte",
    "unsubscribe_url": "https://treu.example/u/abc",
}
OWN: dict[str, dict[str, Any]] = {
    "welcome": {"card_number": "9276140813116672"},
    "points_expiring": {"points": "120", "points_label": "Punkte", "expires_on": "31.12.2026"},
    "coupon_issued": {
        "coupon_code": "ABCD-1234",
        "coupon_offer": "10 % Rabatt",
        "coupon_expires_on": "31.01.2027",
    },
    "tier_upgraded": {"tier": "Gold", "previous_tier": "Silber"},
}


@pytest.mark.parametrize("lang", ["de", "en"])
@pytest.mark.parametrize("name", sorted(OWN))
def test_every_shipped_message_renders_in_both_languages(name: str, lang: str) -> None:
    for part in SUFFIX:
        assert source(name, part, lang).strip(), f"{lang}/{name}{SUFFIX[part]} is empty"
    done = render_message(name, COMMON | OWN[name], lang)
    assert "\n" not in done.subject
    assert done.subject
    assert "https://treu.example/u/abc" in done.text
    assert 'href="https://treu.example/u/abc"' in done.html
    assert done.html.startswith("<!DOCTYPE html>")
    assert f'<html lang="{lang}">' in done.html
    for value in OWN[name].values():
        assert str(value) in done.text


def test_the_same_message_reads_differently_by_language() -> None:
    values = COMMON | OWN["points_expiring"]
    german = render_message("points_expiring", values, "de")
    english = render_message("points_expiring", values | {"points_label": "points"}, "en")
    assert german.subject == "120 Punkte verfallen am 31.12.2026"
    assert english.subject == "120 points expire on 31.12.2026"
    assert "Hallo Anna," in german.text
    assert "Hello Anna," in english.text


def test_without_a_first_name_the_greeting_still_reads() -> None:
    done = render_message("welcome", COMMON | OWN["welcome"] | {"first_name": None}, "de")
    assert done.text.startswith("Hallo,\n")


@pytest.mark.parametrize("lang", ["de", "en"])
def test_the_unsubscribe_pages_render(lang: str) -> None:
    page = render_page("unsubscribe_page", {"programme_name": "A & B", "action_url": "/u/x"}, lang)
    assert 'action="/u/x"' in page
    assert "A &amp; B" in page
    assert 'name="List-Unsubscribe" value="One-Click"' in page
    done = render_page("unsubscribed_page", {"programme_name": "A & B"}, lang)
    assert 'data-testid="unsubscribed"' in done
