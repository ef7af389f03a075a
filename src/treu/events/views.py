"""What the earning rules see of a purchase, and the earning basis a purchase records
(so a return months later is computed the way the purchase was)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from treu.kit.money import Rounding, points_for_amount
from treu.programmes.models import Programme, RoundingScope
from treu.rules.engine import (
    EventView,
    LineView,
)


def purchase_view(
    programme: Programme,
    *,
    occurred_at: datetime,
    currency: str,
    lines: list[LineView],
    channel: str | None,
    store: str | None,
) -> EventView:
    return EventView.purchase(
        occurred_at=occurred_at,
        timezone=programme.timezone,
        currency=currency,
        lines=lines,
        channel=channel,
        store=store,
    )


def line_views(lines: list[Any]) -> list[LineView]:
    return [
        LineView.of(
            line.sku,
            unit_price_minor=line.unit_price_minor,
            quantity=line.quantity,
            name=line.name,
            category=line.category,
            tags=line.tags,
        )
        for line in lines
    ]


def earn_basis(programme: Programme) -> dict[str, str]:
    """The rule that earned an order's points, recorded so a return months later is
    computed the same way even if the programme's rate changed in between."""
    return {
        "rule": "base",
        "rate": str(programme.points_per_currency_unit),
        "rounding": programme.rounding,
        "scope": programme.rounding_scope,
    }


def points_under_basis(basis: dict[str, str], currency: str, amounts: list[int]) -> int:
    rate = Decimal(basis["rate"])
    rounding = Rounding(basis["rounding"])
    if basis["scope"] == RoundingScope.line.value:
        return sum(points_for_amount(a, currency, rate, rounding) for a in amounts)
    return points_for_amount(sum(amounts), currency, rate, rounding)
