"""The demo programme: its settings, earning rules, tiers and challenges."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from treu.programmes.models import Programme
from treu.programmes.schemas import ProgrammeCreate

DEMO_SLUG = "demo"


def demo_programme(slug: str = DEMO_SLUG) -> ProgrammeCreate:
    return ProgrammeCreate.model_validate(
        {
            "slug": slug,
            "name": "Treu Demo",
            "currency": "EUR",
            "points_per_currency_unit": 1,
            "pending_days": 14,
            "expiry": {"policy": "rolling", "months": 24},
            "auto_enrol": False,
            "points_name": {
                "de": {"one": "Treuepunkt", "other": "Treuepunkte"},
                "en": {"one": "point", "other": "points"},
            },
        }
    )


def demo_tiers(session: Any, programme: Programme, *, now: datetime) -> int:
    """Bronze (everybody), Silber from €400 and Gold from €1,000 spend in the last 12
    months (about the top third and the top tenth of the demo's shoppers), 1.25 and 1.5
    times the points, free shipping for Gold, and Gold can be bought (``membership_purchased``).
    Created before the events are loaded, so the members climb as they shop."""
    from treu.programmes.schemas import TierSettingsPatch
    from treu.tiers.schemas import TierCreate
    from treu.tiers.service import tiers

    tiers.update_settings(
        session,
        programme=programme,
        patch=TierSettingsPatch(metric="spend", window="rolling_12_months", grace_days=30),
        actor="demo",
        now=now,
    )
    specs: list[dict[str, Any]] = [
        {
            "code": "bronze",
            "rank": 0,
            "name": {"en": "Bronze", "de": "Bronze"},
            "threshold": 0,
            "benefits": [{"en": "1 point per €1", "de": "1 Treuepunkt pro 1 €"}],
        },
        {
            "code": "silber",
            "rank": 1,
            "name": {"en": "Silver", "de": "Silber"},
            "threshold": 40_000,
            "multiplier": "1.25",
            "flags": ["early_access"],
            "benefits": [
                {"en": "1.25 points per €1", "de": "1,25 Treuepunkte pro 1 €"},
                {"en": "Early access to sales", "de": "Früher Zugang zum Sale"},
            ],
        },
        {
            "code": "gold",
            "rank": 2,
            "name": {"en": "Gold", "de": "Gold"},
            "threshold": 100_000,
            "multiplier": "1.5",
            "flags": ["early_access", "free_shipping"],
            "benefits": [
                {"en": "1.5 points per €1", "de": "1,5 Treuepunkte pro 1 €"},
                {"en": "Free shipping", "de": "Kostenloser Versand"},
                {"en": "Early access to sales", "de": "Früher Zugang zum Sale"},
            ],
            "purchasable": True,
        },
    ]
    for spec in specs:
        tiers.create(
            session,
            programme=programme,
            data=TierCreate.model_validate(spec),
            actor="demo",
            now=now,
        )
    return len(specs)


PROFILE_FIELDS = ["birthday", "phone", "size", "preferences"]


def demo_rules() -> list[dict[str, Any]]:
    """The demo programme's earning rules (``RuleSpec`` JSON), published at load time.
    The base rate of 1 point per EUR 1 is the programme's own rule ``base``."""
    return [
        {
            "name": "Bio doppelt",
            "description": "Organic products earn double points",
            "trigger": "purchase",
            "line_condition": "'organic' in line.tags",
            "effect": {"type": "multiplier", "factor": "2", "scope": "lines"},
        },
        {
            "name": "App-Wochenende",
            "description": "App orders on Saturdays and Sundays earn 1.5 times the points",
            "trigger": "purchase",
            "condition": "event.channel == 'app' and event.weekday in [6, 7]",
            "effect": {"type": "multiplier", "factor": "1.5"},
        },
        {
            "name": "Bewertung",
            "description": "50 points for a product review, at most one a day",
            "trigger": "review_submitted",
            "effect": {"type": "fixed", "points": 50},
            "limits": [{"per": "day", "max_count": 1}],
            "badge": {
                "code": "reviewer",
                "name": {"en": "Reviewer", "de": "Rezensent:in"},
                "icon": "⭐",
                "description": {
                    "en": "Wrote a product review",
                    "de": "Hat ein Produkt bewertet",
                },
            },
        },
        {
            "name": "App installiert",
            "description": "100 points for installing the app, once",
            "trigger": "app_installed",
            "effect": {"type": "fixed", "points": 100},
            "limits": [{"per": "lifetime", "max_count": 1}],
        },
        {
            "name": "Filialbesuch",
            "description": "20 points for checking in at a store, at most once a week",
            "trigger": "store_visit",
            "effect": {"type": "fixed", "points": 20},
            "limits": [{"per": "week", "max_count": 1}],
        },
        {
            "name": "Profil vollständig",
            "description": "200 points for completing the profile, once",
            "trigger": "profile_completed",
            "effect": {"type": "fixed", "points": 200},
            "limits": [{"per": "lifetime", "max_count": 1}],
            "badge": {
                "code": "profile-complete",
                "name": {"en": "All set", "de": "Startklar"},
                "icon": "✅",
            },
        },
    ]


_MONTHS = {
    "de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August",
           "September", "Oktober", "November", "Dezember"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
}  # fmt: skip


def demo_challenges(session: Any, programme: Programme, *, now: datetime) -> int:
    """Three active challenges, created before the events are loaded so the demo shows
    progress and completions: "3 Einkäufe im <this month>" (a fixed window, this month in
    the programme's time zone), "Kaufe aus 3 Kategorien" (every month since the month
    before last, as often as members manage) and "Schreibe 2 Bewertungen" (every month,
    at most three times)."""
    from zoneinfo import ZoneInfo

    from treu.challenges.service import challenges
    from treu.challenges.spec import ChallengeSpec

    zone = ZoneInfo(programme.timezone)
    today = now.astimezone(zone).date()
    month_start = datetime(today.year, today.month, 1, tzinfo=zone)
    next_month = datetime(today.year + today.month // 12, today.month % 12 + 1, 1, tzinfo=zone)
    back = today.month - 3
    two_ago = datetime(today.year + back // 12, back % 12 + 1, 1, tzinfo=zone)
    month = {lang: names[today.month - 1] for lang, names in _MONTHS.items()}
    specs: list[dict[str, Any]] = [
        {
            "code": "drei-einkaeufe",
            "name": {"de": f"3 Einkäufe im {month['de']}", "en": f"3 purchases in {month['en']}"},
            "description": {
                "de": f"Kaufe im {month['de']} dreimal ab 10 € ein: 300 Treuepunkte extra.",
                "en": f"Shop three times in {month['en']} (from €10): 300 extra points.",
            },
            "trigger": ["purchase"],
            "condition": "event.total_minor >= 1000",
            "goal": {"type": "count", "target": 3},
            "window": {
                "type": "fixed",
                "starts_at": month_start.isoformat(),
                "ends_at": next_month.isoformat(),
            },
            "reward": {"points": 300},
        },
        {
            "code": "drei-kategorien",
            "name": {"de": "Kaufe aus 3 Kategorien", "en": "Buy from 3 categories"},
            "description": {
                "de": "Jeden Monat neu: Produkte aus drei Kategorien bringen 150 Treuepunkte.",
                "en": "Every month: products from three categories earn 150 points.",
            },
            "trigger": ["purchase"],
            "goal": {"type": "distinct", "target": 3, "value": "line.category"},
            "window": {"type": "repeating", "every": "month", "starts_at": two_ago.isoformat()},
            "max_completions": None,
            "reward": {
                "points": 150,
                "badge": {
                    "code": "entdecker",
                    "name": {"de": "Entdecker", "en": "Explorer"},
                    "icon": "🧭",
                },
            },
        },
        {
            "code": "zwei-bewertungen",
            "name": {"de": "Schreibe 2 Bewertungen", "en": "Write 2 reviews"},
            "description": {
                "de": "Zwei Bewertungen im Monat bringen 100 Treuepunkte (höchstens dreimal).",
                "en": "Two reviews in a month earn 100 points (up to three times).",
            },
            "trigger": ["review_submitted"],
            "goal": {"type": "count", "target": 2},
            "window": {"type": "repeating", "every": "month", "starts_at": two_ago.isoformat()},
            "max_completions": 3,
            "reward": {
                "points": 100,
                "badge": {
                    "code": "kritiker",
                    "name": {"de": "Kritiker", "en": "Critic"},
                    "icon": "✍️",
                },
            },
        },
    ]
    for spec in specs:
        challenge = challenges.create(
            session, programme=programme, spec=ChallengeSpec.model_validate(spec), actor="demo"
        )
        challenges.activate(session, challenge, actor="demo", now=now)
    return len(specs)
