from __future__ import annotations

from babel.numbers import format_currency
from hypothesis import given
from hypothesis import strategies as st

from treu.kit.money import format_money, to_major

CURRENCIES = ["EUR", "USD", "JPY", "CHF", "KWD", "GBP", "SEK", "INR"]
LOCALES = ["en", "de", "de_CH", "fr", "en_IN", "nl", "pl"]


@given(
    amount=st.integers(min_value=-(10**12), max_value=10**12),
    currency=st.sampled_from(CURRENCIES),
    locale=st.sampled_from(LOCALES),
)
def test_fast_formatting_equals_babel(amount: int, currency: str, locale: str) -> None:
    expected = format_currency(to_major(amount, currency), currency, locale=locale)
    assert format_money(amount, currency, locale) == expected


def test_examples_from_the_contract() -> None:
    assert format_money(4290, "EUR", "en") == "€42.90"
    assert format_money(4290, "EUR", "de") == "42,90\u00a0€"
    assert format_money(123456789, "EUR", "de") == "1.234.567,89\u00a0€"
    assert format_money(1000, "JPY", "en") == "¥1,000"
