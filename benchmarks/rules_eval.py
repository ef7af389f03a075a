"""Rule evaluation alone: carts per second for 50 rules and a 10-line cart, one process.

The workload of issue 3: 50 published rules on the trigger ``purchase`` — 25 with an
order-level condition, 25 with a line-level condition — mixing channel, store, tags,
category, price, tier, weekday and attribute checks and every effect type; a 10-line
cart. That is 25 + 25 x 10 = 275 condition checks per cart, plus the effects
(base points, multipliers, bonuses, rounding, explanations).

Measured:

* ``compile_ms``: validating the 50 ``RuleSpec`` s and compiling them into a ``RuleSet``
  (what publishing costs), median of several runs;
* ``carts_per_s``: ``RuleSet.evaluate`` on prebuilt views (the number the issue's target
  refers to, >= 5,000);
* ``carts_per_s_with_views``: building the event and member views from plain values
  and evaluating (what the checkout endpoint pays per cart);
* ``condition_checks_per_s``: the generated condition function alone.

Run: ``python -m benchmarks.rules_eval`` (``--quick`` for a short run). Results: a Rich
table and ``benchmarks/results/rules-eval-<UTC time>.json`` + ``rules-eval-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from treu import __version__
from treu.kit.money import Rounding
from treu.rules.engine import (
    CompiledRuleInput,
    EventView,
    LineView,
    MemberView,
    RuleSet,
    compile_rule_set,
)
from treu.rules.spec import RuleSetSettings, RuleSpec

RESULTS = Path(__file__).parent / "results"
TIMEZONE = "Europe/Berlin"
TARGET_CARTS_PER_S = 5_000
CHECKS_PER_CART = 25 + 25 * 10

STORES = ["berlin-01", "berlin-02", "hamburg-01", "munich-01", "cologne-01"]
CATEGORIES = ["dairy", "coffee", "bakery", "produce", "drinks", "household", "frozen"]
TAGS = ["organic", "regional", "vegan", "fairtrade", "new", "sale", "bio"]


def order_rules() -> list[dict[str, Any]]:
    """25 rules with order-level conditions (several effect types)."""
    conditions = [
        "event.channel == 'app'",
        "event.channel == 'web' and event.total_minor >= 5000",
        "event.store in ['berlin-01', 'berlin-02']",
        "event.weekday in [6, 7]",
        "event.weekday == 3 and event.hour < 12",
        "member.tier == 'gold'",
        "member.tier in ['silver', 'gold']",
        "member.birthday_month",
        "member.days_enrolled < 30",
        "has_any(member.segments, ['vip', 'champions'])",
        "event.total_minor > 10000",
        "event.item_count >= 10",
        "event.line_count >= 5 and event.channel != 'pos'",
        "event.store == 'hamburg-01' and member.tier == 'gold'",
        "event.date >= '2026-12-01' and event.date <= '2026-12-24'",
        "member.language == 'de' and event.channel == 'app'",
        "event.attrs['coupon'] == 'WELCOME'",
        "event.attrs['basket_value_class'] >= 3",
        "startswith(event.store, 'munich')",
        "member.known and member.days_enrolled >= 365",
        "event.total_minor // 100 >= 75 and event.weekday < 6",
        "'newsletter' in member.segments",
        "event.hour >= 18 or event.hour < 8",
        "member.attrs['employee'] == True",
        "event.channel == 'app' and event.total_minor * 1.5 > 6000",
    ]
    effects: list[dict[str, Any]] = [
        {"type": "multiplier", "factor": "1.5"},
        {"type": "fixed", "points": 25},
        {"type": "percent_bonus", "percent": "10"},
        {"type": "multiplier", "factor": "2"},
        {"type": "points_per_unit", "rate": "0.5"},
    ]
    rules: list[dict[str, Any]] = []
    for n, condition in enumerate(conditions):
        effect = effects[n % len(effects)]
        rules.append(
            {
                "name": f"Order rule {n + 1}",
                "trigger": "purchase",
                "condition": condition,
                "effect": effect,
                "priority": 50 + n,
                "stacking": "exclusive" if n == 24 else "combinable",
            }
        )
    return rules


def line_rules() -> list[dict[str, Any]]:
    """25 rules with line-level conditions (points per unit, multipliers, bonuses)."""
    conditions = [
        "'organic' in line.tags",
        "'regional' in line.tags and line.total_minor >= 300",
        "line.category == 'coffee'",
        "line.category in ['dairy', 'bakery']",
        "has_any(line.tags, ['vegan', 'bio'])",
        "line.unit_price_minor > 500",
        "line.quantity >= 3",
        "startswith(line.sku, '40')",
        "'fairtrade' in line.tags and event.channel == 'app'",
        "line.category == 'produce' and member.tier == 'gold'",
        "lower(line.name) == 'kaffee'",
        "'new' in line.tags",
        "line.total_minor >= 1000 and event.weekday in [6, 7]",
        "line.category == 'drinks' and line.quantity > 1",
        "'sale' not in line.tags",
        "endswith(line.sku, '9')",
        "has_all(line.tags, ['organic', 'regional'])",
        "line.category == 'frozen' or line.category == 'household'",
        "line.unit_price_minor * line.quantity > 2000",
        "len(line.tags) >= 2",
        "line.category == 'bakery' and event.hour < 10",
        "'bio' in line.tags and member.birthday_month",
        "line.unit_price_minor < 200 and line.category != 'drinks'",
        "event.store == 'berlin-01' and 'regional' in line.tags",
        "line.category == 'coffee' and member.known",
    ]
    effects: list[dict[str, Any]] = [
        {"type": "points_per_unit", "rate": "2", "scope": "lines"},
        {"type": "multiplier", "factor": "2", "scope": "lines"},
        {"type": "multiplier", "factor": "1.25", "scope": "lines"},
        {"type": "percent_bonus", "percent": "5"},
        {"type": "points_per_unit", "rate": "0.25", "scope": "lines"},
    ]
    return [
        {
            "name": f"Line rule {n + 1}",
            "trigger": "purchase",
            "line_condition": condition,
            "effect": effects[n % len(effects)],
            "priority": 100 + n,
            "stacking": "exclusive" if n == 7 else "combinable",
        }
        for n, condition in enumerate(conditions)
    ]


BASE_RULE: dict[str, Any] = {
    "name": "Base: 1 point per EUR 1",
    "trigger": "purchase",
    "condition": "event.total_minor > 0",
    "effect": {"type": "points_per_unit", "rate": "1"},
    "priority": 10,
}


def rule_specs() -> list[dict[str, Any]]:
    """The base rule + 24 order rules (25 order conditions) + 25 line rules."""
    return [BASE_RULE, *order_rules()[:24], *line_rules()]


def compile_rules() -> RuleSet:
    """What publishing costs: validate every spec (compiles its expressions) and build
    the rule set (translates them again into one function)."""
    inputs = [
        CompiledRuleInput(f"rule-{n:02d}", 1, RuleSpec.model_validate(spec))
        for n, spec in enumerate(rule_specs())
    ]
    return compile_rule_set(
        inputs,
        RuleSetSettings(multiplier_stacking="additive"),
        currency="EUR",
        rounding=Rounding.floor,
        rounding_scope="order",
        timezone=TIMEZONE,
    )


def cart_lines() -> list[LineView]:
    names = ["Kaffee", "Bio Vollmilch", "Brot", "Äpfel", "Wasser", "Seife", "Pizza"]
    lines = []
    for n in range(10):
        lines.append(
            LineView.of(
                f"40{n:02d}{n * 7 % 10}",
                name=names[n % len(names)],
                category=CATEGORIES[n % len(CATEGORIES)],
                quantity=1 + n % 4,
                unit_price_minor=129 + n * 157,
                tags=[TAGS[(n + k) % len(TAGS)] for k in range(n % 3)],
            )
        )
    return lines


OCCURRED_AT = datetime(2026, 12, 5, 10, 15, tzinfo=UTC)  # a Saturday in Advent


def build_views(lines: list[LineView]) -> tuple[EventView, MemberView]:
    event = EventView.purchase(
        occurred_at=OCCURRED_AT,
        timezone=TIMEZONE,
        currency="EUR",
        lines=lines,
        channel="app",
        store="berlin-01",
        attrs={"coupon": "WELCOME"},
    )
    member = MemberView.of(
        at=OCCURRED_AT,
        timezone=TIMEZONE,
        enrolled_at=datetime(2025, 3, 1, tzinfo=UTC),
        tier="gold",
        segments=("vip", "newsletter"),
        language="de",
        channel="app",
    )
    return event, member


def _rate(function: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``function`` over about ``seconds`` (batches of 200)."""
    for _ in range(200):
        function()
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(200):
            function()
        calls += 200
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - started)


def run(quick: bool = False) -> dict[str, Any]:
    """Measure and return the figures (see the module docstring)."""
    seconds = 1.0 if quick else 5.0
    compile_runs = 3 if quick else 10
    timings = []
    for _ in range(compile_runs):
        started = time.perf_counter()
        rule_set = compile_rules()
        timings.append(time.perf_counter() - started)
    lines = cart_lines()
    event, member = build_views(lines)
    evaluation = rule_set.evaluate(event, member)
    specs = rule_specs()

    def with_views() -> object:
        e, m = build_views(lines)
        return rule_set.evaluate(e, m)

    carts = _rate(lambda: rule_set.evaluate(event, member), seconds)
    carts_with_views = _rate(with_views, seconds)
    conditions = _rate(lambda: rule_set.condition_flags(event, member), seconds)
    return {
        "benchmark": "rules-eval",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "treu_version": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "rules": len(rule_set.rule_ids("purchase")),
        "order_conditions": sum(1 for spec in specs if spec.get("condition")),
        "line_conditions": sum(1 for spec in specs if spec.get("line_condition")),
        "cart_lines": len(lines),
        "condition_checks_per_cart": CHECKS_PER_CART,
        "cart_points": evaluation.points,
        "cart_awards": len(evaluation.awards),
        "compile_ms": round(statistics.median(timings) * 1000, 2),
        "carts_per_s": round(carts),
        "carts_per_s_with_views": round(carts_with_views),
        "condition_checks_per_s": round(conditions * CHECKS_PER_CART),
        "target_carts_per_s": TARGET_CARTS_PER_S,
        "target_met": carts >= TARGET_CARTS_PER_S,
        "seconds_per_phase": seconds,
    }


def report(result: dict[str, Any], console: Console) -> None:
    table = Table(title="Rule evaluation (50 rules, 10-line cart, one process)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("compile 50 rules (validate + generate)", f"{result['compile_ms']} ms")
    table.add_row(
        f"carts/s (target ≥ {TARGET_CARTS_PER_S:,})",
        f"{result['carts_per_s']:,}" + (" ✓" if result["target_met"] else " ✗"),
    )
    table.add_row("carts/s including building the views", f"{result['carts_per_s_with_views']:,}")
    table.add_row("condition checks/s (conditions only)", f"{result['condition_checks_per_s']:,}")
    table.add_row(
        "points / awards for the sample cart", f"{result['cart_points']} / {result['cart_awards']}"
    )
    console.print(table)


def save(result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"rules-eval-{stamp}.json"
    text = json.dumps(result, indent=2) + "\n"
    path.write_text(text)
    (RESULTS / "rules-eval-latest.json").write_text(text)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short phases (1 s each)")
    args = parser.parse_args()
    console = Console()
    result = run(quick=args.quick)
    report(result, console)
    console.print(f"written: {save(result)}")


if __name__ == "__main__":
    main()
