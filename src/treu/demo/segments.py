"""The demo's segments: a few a marketing team would start with, in the rules language over
behaviour and scores. Their members are computed by the first ``segments.refresh`` /
``insights.train`` (with ``make run``, the embedded worker's first round)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from treu.programmes.models import Programme

SEGMENTS: tuple[tuple[str, str, str, str], ...] = (
    (
        "stammkunden",
        "Stammkunden",
        "Die besten Kundinnen und Kunden nach RFM: kaufen oft, viel und zuletzt vor kurzem.",
        "scores.rfm_segment in ['champions', 'loyal']",
    ),
    (
        "wertvoll-gefaehrdet",
        "Wertvoll, aber gefährdet",
        "Viel Umsatz im letzten Jahr, aber seit einer Weile still: für eine Reaktivierung.",
        "scores.rfm_segment in ['at_risk', 'cant_lose'] and metrics.spend_365 >= 20000",
    ),
    (
        "bio-fans",
        "Bio-Fans",
        "Kaufen regelmäßig Bio-Produkte (mindestens zweimal in 90 Tagen).",
        "'organic' in metrics.tags and metrics.purchases_90 >= 2",
    ),
    (
        "app-nutzer",
        "App-Nutzer",
        "Haben im letzten Jahr in der App eingekauft.",
        "'app' in metrics.channels",
    ),
)


def demo_segments(session: Session, programme: Programme) -> int:
    """Create the demo's segments (their members come with the first refresh); returns how
    many."""
    from treu.insights.segmenting import SegmentIn, segments

    for slug, name, description, expression in SEGMENTS:
        segments.create(
            session,
            programme=programme,
            data=SegmentIn(slug=slug, name=name, description=description, expression=expression),
        )
    return len(SEGMENTS)
