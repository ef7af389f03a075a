"""Human-readable explanations of postings, in the member's language.

A posting stores its explanation in English (``postings.explanation``) and the facts
behind it in ``details`` (a template name plus parameters), so any surface can render
it again in the member's language. Explanations never contain personal data.

Every feature's templates (earning, rules, tiers, challenges, rewards) are rendered by
the one renderer in ``treu.kit.explanations``, from the one text catalogue.
"""

from __future__ import annotations

from treu.kit.explanations import points_label as points_label
from treu.kit.explanations import render as render

__all__ = ["points_label", "render"]
