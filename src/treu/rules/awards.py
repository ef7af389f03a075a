"""What an evaluation gives back, and what it asks the caller about limits.

``RuleSet.evaluate`` (``treu.rules.engine``) returns an ``Evaluation``: the points, one
``Award`` per rule that gave something, the badges, and a ``Skip`` with a reason code for
every other rule of the trigger. Ingest posts the awards and says which limit stopped a
rule, the checkout lists what did not apply and why, and a purchase stores
``applied_points()`` so that a return can hold each rule to what it gave the whole order.

An ``Award`` carries its explanation as a template name and JSON-ready params rather
than as text: the posting stores ``details()`` and the ledger renders it later in the
reader's language (the texts are in the catalogue, ``treu.kit.explanations``). The award
is a ``__slots__`` class that builds its per-line split only when ``line_points`` is
first read: one is made for every applying rule of every purchase, and the ingest path
only needs ``points``.

Limits are the caller's: it keeps the per-member counters and budgets in the database
and answers ``LimitView.headroom`` from them, which keeps evaluation pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from treu.kit.explanations import reason_text, render_explanation
from treu.rules.spec import (
    Badge,
    BadgeOnly,
    Multiplier,
    PercentBonus,
    PointsPerUnit,
    RuleSpec,
)

# --------------------------------------------------------------------------- limits


class Headroom(NamedTuple):
    """What a rule may still award this member; None = unlimited. ``*_limit`` name the
    binding limit ("day", "week", "month", "lifetime", "budget") when the caller knows."""

    awards_left: int | None
    points_left: int | None
    awards_limit: str | None = None
    points_limit: str | None = None


class LimitView(Protocol):
    """Implemented by the caller from its stored counters (per member and rule)."""

    def headroom(self, rule_id: str) -> tuple[int | None, int | None] | Headroom:
        """(awards left, points left) over all of the rule's per-member limits and its
        budget combined; None = unlimited. Called only for rules that have limits and
        whose conditions hold."""
        ...


# --------------------------------------------------------------------------- results
# Texts (reasons, award explanations) come from the catalogue: ``treu.kit.explanations``.


class Award:
    """What one rule gives this event. ``line_points`` maps line index -> points and sums
    to ``points`` for line-based effects; it is empty for fixed and badge_only awards.
    ``amount_minor`` is the amount a points_per_unit rule earned on.

    Read-only by convention; the per-line split is built when first read (the ingest
    path only needs ``points``)."""

    __slots__ = (
        "_covered",
        "_line_points",
        "_parts",
        "amount_minor",
        "badge",
        "currency",
        "effect",
        "limited_by",
        "points",
        "rule",
        "rule_id",
        "rule_name",
        "version",
    )

    def __init__(
        self,
        rule_id: str,
        version: int,
        rule: RuleSpec,
        points: int,
        *,
        currency: str,
        limited_by: str | None = None,
        amount_minor: int = 0,
        covered: Sequence[int] = (),
        parts: Sequence[int] = (),
        line_points: Mapping[int, int] | None = None,
    ) -> None:
        self.rule_id = rule_id
        self.version = version
        self.rule = rule
        self.rule_name = rule.name
        self.effect = rule.effect.type
        self.badge = rule.badge
        self.points = points
        self.currency = currency
        self.limited_by = limited_by
        self.amount_minor = amount_minor
        self._covered = covered
        self._parts = parts
        self._line_points = dict(line_points) if line_points is not None else None

    @property
    def line_points(self) -> dict[int, int]:
        if self._line_points is None:
            self._line_points = {i: p for i, p in zip(self._covered, self._parts, strict=True) if p}
        return self._line_points

    def _key(self) -> tuple[Any, ...]:
        return (
            self.rule_id,
            self.version,
            self.points,
            sorted(self.line_points.items()),
            self.limited_by,
            self.amount_minor,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Award) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Award(rule_id={self.rule_id!r}, version={self.version}, effect={self.effect!r}, "
            f"points={self.points}, line_points={self.line_points}, "
            f"limited_by={self.limited_by!r})"
        )

    def remapped(self, index: Sequence[int]) -> Award:
        """The same award with line ``j`` renamed ``index[j]``."""
        return Award(
            self.rule_id,
            self.version,
            self.rule,
            self.points,
            currency=self.currency,
            limited_by=self.limited_by,
            amount_minor=self.amount_minor,
            line_points={index[i]: p for i, p in self.line_points.items()},
        )

    @property
    def template(self) -> str:
        return _template(self.rule)

    @property
    def params(self) -> dict[str, Any]:
        """The facts behind the explanation (JSON-ready)."""
        spec = self.rule
        effect = spec.effect
        params: dict[str, Any] = {"name": spec.name, "points": self.points}
        if isinstance(effect, PointsPerUnit):
            params["rate"] = str(effect.rate)
            params["currency"] = self.currency
            params["amount_minor"] = self.amount_minor
        elif isinstance(effect, Multiplier):
            params["factor"] = str(effect.factor)
        elif isinstance(effect, PercentBonus):
            params["percent"] = str(effect.percent)
        elif isinstance(effect, BadgeOnly) and spec.badge is not None:
            params["badge"] = spec.badge.name.model_dump()
        if self.limited_by is not None:
            params["limited_by"] = self.limited_by
        return params

    def explanation(self, lang: str = "en") -> str:
        return render_explanation(self.template, self.params, lang)

    def details(self) -> dict[str, Any]:
        """What to store with a posting to render the explanation again later."""
        return {
            "template": self.template,
            "params": self.params,
            "rule_id": self.rule_id,
            "rule_version": self.version,
        }


class BadgeAward(NamedTuple):
    rule_id: str
    version: int
    badge: Badge


class Skip(NamedTuple):
    """A rule of the trigger that gave nothing, and why (``reason`` is a code, see
    ``reason_text``; ``by`` is the excluding rule's id for ``excluded``)."""

    rule_id: str
    version: int
    rule_name: str
    reason: str
    by: str | None = None

    def text(self, lang: str = "en") -> str:
        return reason_text(self.reason, lang)


@dataclass(slots=True)
class Evaluation:
    """The result: ``points`` == sum of the awards' points == sum of ``line_points`` +
    the fixed awards. Awards are listed base first, then multipliers, percentage
    bonuses, fixed points and badges (each group in rule order)."""

    points: int
    awards: tuple[Award, ...]
    line_points: tuple[int, ...]
    badges: tuple[BadgeAward, ...]
    skipped: tuple[Skip, ...]

    def explanations(self, lang: str = "en") -> list[str]:
        return [award.explanation(lang) for award in self.awards]

    def award_for(self, rule_id: str) -> Award | None:
        return next((a for a in self.awards if a.rule_id == rule_id), None)

    def skip_for(self, rule_id: str) -> Skip | None:
        return next((s for s in self.skipped if s.rule_id == rule_id), None)

    def applied_points(self) -> dict[str, int]:
        """Points per rule that applied, including rules that applied but rounded to
        nothing (their exact amounts still count for multipliers and bonuses). Store it
        with the purchase and pass it as ``caps`` when recomputing after a return."""
        applied = {award.rule_id: award.points for award in self.awards}
        for skip in self.skipped:
            if skip.reason in ("no_points", "outranked"):
                applied[skip.rule_id] = 0
        return applied


def _template(spec: RuleSpec) -> str:
    effect = spec.effect
    if isinstance(effect, PointsPerUnit):
        return "rules.points_per_unit" if effect.scope == "order" else "rules.points_per_unit.lines"
    return f"rules.{effect.type}"
