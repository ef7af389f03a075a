"""Demo programme with realistic data (``treu demo``).

The data is meant to look like a German grocery-and-lifestyle retailer's first year of
loyalty data, because the insights built on it (RFM, CLV, churn, recommendations) are
only as convincing as its shape:

* members fall into segments with very different purchase rates: a few heavy buyers,
  regulars, many occasional shoppers, lapsed members who stopped months ago, and fresh
  sign-ups; each has a home store, a channel mix (POS, web, app, a little phone) and a
  taste for organic products of their own;
* purchases spread over the last 12 months, baskets depend on the channel (groceries at
  the till, apparel and cosmetics online) and use one product catalogue (sku, name,
  category, price, tags such as ``organic``);
* about 3 % of orders come back, some in part, some in full (online orders more often).

Everything derives from one ``random.Random(seed)`` and ``now``: the same seed and ``now``
give the same members and events. Loading goes through the services (``members.enrol``,
the bulk event ingestion in batches of 1,000), so the ledger it builds is the real one.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from treu.db.session import Database
from treu.events.schemas import event_adapter
from treu.events.service import ingest_with_retry
from treu.imports import EVENT_TABLES, MEMBER_TABLES
from treu.kit.ids import luhn_check_digit
from treu.kit.time import utc_now
from treu.ledger.service import ledger
from treu.members.schemas import MemberCreate, normalise_phone
from treu.members.service import members as member_service
from treu.programmes.models import Programme
from treu.programmes.schemas import ProgrammeCreate
from treu.programmes.service import programmes
from treu.rules.service import rules
from treu.rules.spec import RuleSpec
from treu.worker.jobs import activate_pending, expire_points

DEMO_SLUG = "demo"
BATCH_SIZE = 1000
HISTORY_DAYS = 365

Progress = Callable[[str, int, int], None]
"""``on_progress(stage, done, total)`` with stage ``members``, ``events`` or ``ledger``."""


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


# --- catalogue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    price_minor: int
    tags: tuple[str, ...] = ()

    @property
    def organic(self) -> bool:
        return "organic" in self.tags


def _p(sku: str, name: str, category: str, price: int, *tags: str) -> Product:
    return Product(sku, name, category, price, tags)


CATALOGUE: tuple[Product, ...] = (
    _p("1001", "Bio Bananen 1 kg", "produce", 199, "organic", "fairtrade"),
    _p("1002", "Äpfel Elstar 1 kg", "produce", 249, "regional"),
    _p("1003", "Bio Äpfel Boskoop 1 kg", "produce", 299, "organic", "regional"),
    _p("1004", "Rispentomaten 500 g", "produce", 199),
    _p("1005", "Bio Möhren 1 kg", "produce", 149, "organic", "regional"),
    _p("1006", "Kartoffeln festkochend 2,5 kg", "produce", 299, "regional"),
    _p("1007", "Bio Avocado", "produce", 129, "organic", "vegan"),
    _p("1008", "Zitronen 500 g", "produce", 149),
    _p("1009", "Salatgurke", "produce", 79),
    _p("1010", "Bio Babyspinat 250 g", "produce", 229, "organic"),
    _p("2001", "Roggenmischbrot 750 g", "bakery", 289),
    _p("2002", "Bio Dinkelbrot 500 g", "bakery", 349, "organic"),
    _p("2003", "Brötchen 6 Stück", "bakery", 179),
    _p("2004", "Buttercroissant", "bakery", 89),
    _p("2005", "Laugenbrezel", "bakery", 69),
    _p("2006", "Bio Vollkorntoast 500 g", "bakery", 229, "organic", "vegan"),
    _p("2007", "Apfelstrudel", "bakery", 399),
    _p("3001", "Bio Zartbitterschokolade 100 g", "snacks", 199, "organic", "fairtrade", "vegan"),
    _p("3002", "Kartoffelchips 175 g", "snacks", 179),
    _p("3003", "Fruchtgummi 200 g", "snacks", 119),
    _p("3004", "Bio Nussmischung 200 g", "snacks", 399, "organic", "vegan"),
    _p("3005", "Butterkekse 200 g", "snacks", 129),
    _p("4001", "Bio Vollmilch 1 l", "dairy", 129, "organic"),
    _p("4002", "H-Milch 1,5 % 1 l", "dairy", 99),
    _p("4003", "Bio Joghurt natur 500 g", "dairy", 119, "organic"),
    _p("4004", "Gouda jung 400 g", "dairy", 299),
    _p("4005", "Deutsche Markenbutter 250 g", "dairy", 239),
    _p("4006", "Bio Haferdrink 1 l", "dairy", 199, "organic", "vegan"),
    _p("4007", "Speisequark 500 g", "dairy", 109),
    _p("4008", "Bio Bergkäse 200 g", "dairy", 379, "organic", "regional"),
    _p("5001", "Mineralwasser 6 x 1,5 l", "drinks", 294),
    _p("5002", "Apfelschorle 1 l", "drinks", 119, "regional"),
    _p("5003", "Bio Orangensaft 1 l", "drinks", 279, "organic"),
    _p("5004", "Pils 6 x 0,33 l", "drinks", 499),
    _p("5005", "Riesling trocken 0,75 l", "drinks", 699, "regional"),
    _p("5006", "Bio Eistee Pfirsich 0,5 l", "drinks", 149, "organic"),
    _p("5007", "Cola 1,5 l", "drinks", 169),
    _p("6001", "Spülmittel 500 ml", "household", 149),
    _p("6002", "Öko-Waschmittel 1,5 l", "household", 799, "vegan"),
    _p("6003", "Küchenrolle 4 Rollen", "household", 299),
    _p("6004", "Toilettenpapier 8 Rollen", "household", 399),
    _p("6005", "Müllbeutel 35 l", "household", 199),
    _p("6006", "Bio Allzweckreiniger 1 l", "household", 349, "organic", "vegan"),
    _p("7001", "Bio Espresso Bohnen 1 kg", "coffee", 1699, "organic", "fairtrade"),
    _p("7002", "Kaffee gemahlen 500 g", "coffee", 899),
    _p("7003", "Bio Filterkaffee 500 g", "coffee", 749, "organic", "fairtrade"),
    _p("7004", "Kaffeekapseln 10 Stück", "coffee", 329),
    _p("7005", "Bio Grüntee 20 Beutel", "coffee", 279, "organic"),
    _p("7006", "Cappuccino to go", "coffee", 290),
    _p("8001", "Naturkosmetik Duschgel 250 ml", "cosmetics", 295, "organic", "vegan"),
    _p("8002", "Zahnpasta 75 ml", "cosmetics", 145),
    _p("8003", "Bio Gesichtscreme 50 ml", "cosmetics", 1295, "organic", "vegan"),
    _p("8004", "Shampoo 300 ml", "cosmetics", 345),
    _p("8005", "Deo Roller 50 ml", "cosmetics", 245),
    _p("8006", "Bio Lippenbalsam", "cosmetics", 395, "organic"),
    _p("8007", "Sonnencreme LSF 30 200 ml", "cosmetics", 995),
    _p("9001", "T-Shirt Bio-Baumwolle", "apparel", 1999, "organic", "fairtrade"),
    _p("9002", "Socken 3er-Pack", "apparel", 999),
    _p("9003", "Jeans Straight Fit", "apparel", 5999),
    _p("9004", "Kapuzenpullover", "apparel", 3999),
    _p("9005", "Einkaufstasche Bio-Baumwolle", "apparel", 499, "organic"),
    _p("9006", "Regenjacke", "apparel", 7999),
    _p("9007", "Sneaker", "apparel", 6999),
    _p("9008", "Wollschal", "apparel", 2499),
)

BY_CATEGORY: dict[str, tuple[Product, ...]] = {}
for _product in CATALOGUE:
    BY_CATEGORY[_product.category] = (*BY_CATEGORY.get(_product.category, ()), _product)

PHYSICAL_STORES = ("berlin-01", "berlin-02", "hamburg-01", "muenchen-01", "koeln-01", "leipzig-01")
STORES = (*PHYSICAL_STORES, "web", "app")
CHANNELS = ("pos", "web", "app", "phone")

# How likely each category is in a basket, per channel.
CATEGORY_WEIGHTS: dict[str, dict[str, float]] = {
    "pos": {
        "produce": 22,
        "bakery": 16,
        "dairy": 20,
        "drinks": 12,
        "snacks": 9,
        "coffee": 8,
        "household": 7,
        "cosmetics": 5,
        "apparel": 1,
    },
    "web": {"apparel": 30, "cosmetics": 22, "coffee": 18, "household": 16, "drinks": 8},
    "app": {"apparel": 22, "cosmetics": 20, "coffee": 22, "household": 14, "snacks": 10},
    "phone": {"coffee": 45, "apparel": 25, "household": 20, "cosmetics": 10},
}
BASKET_SIZES: dict[str, tuple[list[int], list[float]]] = {
    "pos": ([1, 2, 3, 4, 5, 6, 7, 8], [14, 18, 19, 16, 12, 9, 7, 5]),
    "web": ([1, 2, 3, 4], [45, 30, 17, 8]),
    "app": ([1, 2, 3, 4], [50, 28, 15, 7]),
    "phone": ([1, 2, 3], [60, 30, 10]),
}

_CATEGORY_CUM = {
    channel: (list(weights), list(itertools.accumulate(weights.values())))
    for channel, weights in CATEGORY_WEIGHTS.items()
}
_BASKET_CUM = {
    channel: (sizes, list(itertools.accumulate(weights)))
    for channel, (sizes, weights) in BASKET_SIZES.items()
}
_SPLIT = {
    category: (
        tuple(p for p in products if p.organic),
        tuple(p for p in products if not p.organic),
    )
    for category, products in BY_CATEGORY.items()
}

FIRST_NAMES = (
    "Anna", "Lena", "Marie", "Sophie", "Laura", "Julia", "Hannah", "Lea", "Katharina",
    "Sarah", "Mia", "Emma", "Clara", "Johanna", "Charlotte", "Paula", "Ida", "Greta",
    "Ursula", "Monika", "Sabine", "Petra", "Birgit", "Andrea", "Claudia", "Jana", "Nina",
    "Lukas", "Leon", "Finn", "Jonas", "Paul", "Felix", "Maximilian", "Elias", "Noah",
    "Ben", "Tim", "Jan", "Niklas", "Moritz", "Tobias", "Florian", "Matthias", "Stefan",
    "Thomas", "Michael", "Andreas", "Frank", "Jürgen", "Klaus", "Wolfgang", "Dieter",
    "Sebastian", "Philipp", "Simon", "David", "Alexander", "Jörg", "Uwe",
)  # fmt: skip
LAST_NAMES = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
    "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf",
    "Schröder", "Neumann", "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann",
    "Hartmann", "Lange", "Schmitt", "Werner", "Schmitz", "Krause", "Meier", "Lehmann",
    "Schmid", "Schulze", "Maier", "Köhler", "Herrmann", "König", "Walter", "Mayer",
    "Huber", "Kaiser", "Fuchs", "Peters", "Lang", "Scholz", "Möller", "Weiß", "Jung",
    "Hahn", "Schubert", "Vogel", "Friedrich", "Keller", "Günther", "Frank", "Berger",
    "Winkler", "Roth", "Beck", "Lorenz", "Baumann", "Franke", "Albrecht", "Schuster",
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.de", "example.org", "example.net")
MOBILE_PREFIXES = ("151", "152", "157", "160", "162", "170", "171", "172", "175", "176", "177")


@dataclass(frozen=True)
class Segment:
    name: str
    share: float
    purchases_per_month: float


SEGMENTS = (
    Segment("heavy", 0.08, 6.0),
    Segment("regular", 0.27, 2.2),
    Segment("occasional", 0.42, 0.7),
    Segment("lapsed", 0.17, 1.6),
    Segment("new", 0.06, 2.0),
)


@dataclass
class DemoMember:
    data: dict[str, Any]
    """``MemberCreate`` fields."""
    segment: str
    active_from: datetime
    active_until: datetime
    rate: float
    """Relative purchase rate per day."""
    home_store: str
    channel_weights: tuple[float, float, float, float]
    organic_affinity: float

    def ref(self, channel: str) -> dict[str, str]:
        """How the shop names the member: the card at the till, the login online."""
        if channel in ("web", "app") and self.data.get("email"):
            return {"email": self.data["email"]}
        if channel == "phone" and self.data.get("phone"):
            return {"phone": self.data["phone"]}
        return {"card_number": self.data["card_number"]}


@dataclass
class DemoData:
    members: list[DemoMember]
    events: list[dict[str, Any]]
    """Purchases, returns and engagement events (reviews, store visits, app installs,
    completed profiles) in the order they happened (event JSON as for the API)."""


def _ascii(text: str) -> str:
    for umlaut, plain in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss")):
        text = text.replace(umlaut, plain)
    return text.lower()


def _card(rng: random.Random) -> str:
    body = "9276" + "".join(rng.choice("0123456789") for _ in range(11))
    return body + str(luhn_check_digit(body))


def _phone(rng: random.Random) -> str:
    while True:
        number = "+49" + rng.choice(MOBILE_PREFIXES) + "".join(rng.choices("0123456789", k=8))
        try:
            return normalise_phone(number)
        except ValueError:
            continue


class _Generator:
    def __init__(self, rng: random.Random, now: datetime, slug: str) -> None:
        self.rng = rng
        self.now = now.replace(microsecond=0)
        self.slug = slug
        self.start = self.now - timedelta(days=HISTORY_DAYS)

    # --- members ---------------------------------------------------------------------

    def members(self, count: int) -> list[DemoMember]:
        rng = self.rng
        emails: set[str] = set()
        phones: set[str] = set()
        cards: set[str] = set()
        out: list[DemoMember] = []
        segments = rng.choices(SEGMENTS, weights=[s.share for s in SEGMENTS], k=count)
        for index, segment in enumerate(segments):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            card = _card(rng)
            while card in cards:
                card = _card(rng)
            cards.add(card)
            data: dict[str, Any] = {
                "programme": self.slug,
                "card_number": card,
                "first_name": first,
                "last_name": last,
                "language": "de" if rng.random() < 0.86 else "en",
            }
            if rng.random() < 0.95:
                local = f"{_ascii(first)}.{_ascii(last)}"
                email = f"{local}@{rng.choice(EMAIL_DOMAINS)}"
                while email in emails:
                    email = f"{local}{rng.randint(1, 999)}@{rng.choice(EMAIL_DOMAINS)}"
                emails.add(email)
                data["email"] = email
            if rng.random() < 0.35:
                phone = _phone(rng)
                while phone in phones:
                    phone = _phone(rng)
                phones.add(phone)
                data["phone"] = phone
            if rng.random() < 0.7:
                age_days = int(rng.triangular(18, 86, 41) * 365.25)
                data["birthday"] = (self.now - timedelta(days=age_days)).date()
            channel = rng.choices(("pos", "web", "app"), weights=(60, 24, 16))[0]
            data["channel"] = channel
            if index % 97 == 0:  # some shops already hand out their own customer numbers
                data["external_id"] = f"K-{100000 + index}"

            if segment.name == "new":
                enrolled = self.now - timedelta(days=rng.uniform(1, 45))
            elif segment.name == "lapsed" or rng.random() < 0.6:
                enrolled = self.now - timedelta(days=rng.uniform(HISTORY_DAYS, 5 * 365))
            else:
                enrolled = self.now - timedelta(days=rng.uniform(45, HISTORY_DAYS))
            enrolled = enrolled.replace(microsecond=0)
            data["enrolled_at"] = enrolled
            active_from = max(enrolled, self.start)
            active_until = self.now
            if segment.name == "lapsed":
                active_until = self.now - timedelta(days=rng.uniform(100, 300))
            days = max((active_until - active_from).total_seconds() / 86400, 1.0)
            rate = segment.purchases_per_month / 30 * rng.lognormvariate(0, 0.45)

            pos, web, app = {"pos": (80, 12, 8), "web": (35, 50, 15), "app": (35, 15, 50)}[channel]
            out.append(
                DemoMember(
                    data=data,
                    segment=segment.name,
                    active_from=active_from,
                    active_until=active_until,
                    rate=rate * days,
                    home_store=rng.choice(PHYSICAL_STORES),
                    channel_weights=(pos, web, app, rng.choice((0, 0, 1, 3))),
                    organic_affinity=rng.betavariate(1.2, 2.5),
                )
            )
        return out

    # --- purchases and returns -------------------------------------------------------

    def _when(self, member: DemoMember) -> datetime:
        rng = self.rng
        span = (member.active_until - member.active_from).total_seconds()
        day = member.active_from + timedelta(seconds=rng.random() * span)
        # Shops are open 8:00-20:00 in Germany (07:00-19:00 UTC, near enough).
        seconds = 7 * 3600 + int(rng.random() * 12 * 3600)
        moment = day.replace(hour=0, minute=0, second=0) + timedelta(seconds=seconds)
        if moment > self.now - timedelta(minutes=5):
            moment -= timedelta(days=1)
        return max(moment, member.active_from)

    def _basket(self, member: DemoMember, channel: str) -> list[dict[str, Any]]:
        rng = self.rng
        sizes, cum_sizes = _BASKET_CUM[channel]
        size = rng.choices(sizes, cum_weights=cum_sizes)[0]
        categories, cum_categories = _CATEGORY_CUM[channel]
        bias = 1 + 2.5 * member.organic_affinity
        chosen: dict[str, Product] = {}
        for category in rng.choices(categories, cum_weights=cum_categories, k=size * 3):
            if len(chosen) >= size:
                break
            organic, other = _SPLIT[category]
            # Pick organic with probability proportional to bias x number of organic items.
            weight = bias * len(organic)
            if organic and rng.random() * (weight + len(other)) < weight:
                product = organic[int(rng.random() * len(organic))]
            else:
                product = other[int(rng.random() * len(other))]
            chosen.setdefault(product.sku, product)
        lines = []
        for product in chosen.values():
            roll = rng.random()
            if product.category in ("apparel", "coffee", "cosmetics"):
                quantity = 1 if roll < 0.85 else 2
            else:
                quantity = 1 if roll < 0.62 else 2 if roll < 0.86 else 3 if roll < 0.94 else 4
            lines.append(
                {
                    "sku": product.sku,
                    "name": product.name,
                    "category": product.category,
                    "quantity": quantity,
                    "unit_price_minor": product.price_minor,
                    "tags": list(product.tags),
                }
            )
        return lines

    def purchases(self, people: list[DemoMember], count: int) -> list[dict[str, Any]]:
        rng = self.rng
        if not people or count <= 0:
            return []
        buyers = rng.choices(people, weights=[m.rate for m in people], k=count)
        drafts: list[tuple[datetime, DemoMember, str, str]] = []
        for member in buyers:
            channel = rng.choices(CHANNELS, weights=member.channel_weights)[0]
            if channel == "pos":
                store = member.home_store if rng.random() < 0.8 else rng.choice(PHYSICAL_STORES)
            elif channel == "app":
                store = "app"
            else:  # the web shop also books the hotline's orders
                store = "web"
            drafts.append((self._when(member), member, channel, store))
        drafts.sort(key=lambda d: d[0])
        events = []
        for number, (moment, member, channel, store) in enumerate(drafts, start=1):
            events.append(
                {
                    "id": f"demo-{channel}-{number:06d}",
                    "type": "purchase",
                    "programme": self.slug,
                    "member": member.ref(channel),
                    "occurred_at": moment.isoformat().replace("+00:00", "Z"),
                    "channel": channel,
                    "store": store,
                    "currency": "EUR",
                    "lines": self._basket(member, channel),
                }
            )
        return events

    def engagement(
        self, people: list[DemoMember], purchases: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Reviews of bought products (about one purchase in 15), check-ins at stores
        (app users, now and then), app installs (members who order in the app, once, before
        their first app order) and completed profiles (one member in four)."""
        rng = self.rng
        by_email = {m.data.get("email"): m for m in people if m.data.get("email")}
        by_card = {m.data["card_number"]: m for m in people}
        events: list[dict[str, Any]] = []
        first_app: dict[str, datetime] = {}
        for purchase in purchases:
            ref = purchase["member"]
            person = by_email.get(ref.get("email")) or by_card.get(ref.get("card_number", ""))
            if person is None:
                continue
            moment = datetime.fromisoformat(purchase["occurred_at"])
            card = person.data["card_number"]
            if purchase["channel"] == "app" and card not in first_app:
                first_app[card] = moment
            if rng.random() < 1 / 15:
                line = rng.choice(purchase["lines"])
                later = min(moment + timedelta(hours=rng.randint(2, 96)), self.now)
                events.append(
                    self._engaged(
                        "review_submitted",
                        person,
                        later,
                        "web",
                        attributes={
                            "product_sku": line["sku"],
                            "rating": rng.choices([5, 4, 3, 2, 1], [45, 30, 12, 8, 5])[0],
                            "length": rng.randint(40, 800),
                            "verified_purchase": True,
                        },
                    )
                )
            if (
                purchase["channel"] == "pos"
                and person.channel_weights[2] > 0
                and rng.random() < 0.1
            ):
                events.append(
                    self._engaged(
                        "store_visit",
                        person,
                        moment - timedelta(minutes=5),
                        "app",
                        store=purchase["store"],
                    )
                )
        for card, moment in first_app.items():
            person = by_card[card]
            events.append(
                self._engaged(
                    "app_installed",
                    person,
                    moment - timedelta(hours=rng.randint(1, 48)),
                    "app",
                    attributes={"platform": rng.choice(["ios", "android"])},
                )
            )
        for person in people:
            if rng.random() < 0.25:
                moment = (
                    person.active_from + (person.active_until - person.active_from) * rng.random()
                )
                events.append(
                    self._engaged(
                        "profile_completed",
                        person,
                        min(moment, self.now),
                        "web",
                        attributes={
                            "field": rng.choice(["birthday", "phone", "size", "preferences"])
                        },
                    )
                )
        return [e for e in events if datetime.fromisoformat(e["occurred_at"]) >= self.start]

    def _engaged(
        self,
        kind: str,
        person: DemoMember,
        moment: datetime,
        channel: str,
        *,
        attributes: dict[str, Any] | None = None,
        store: str | None = None,
    ) -> dict[str, Any]:
        self._engagement_seq = getattr(self, "_engagement_seq", 0) + 1
        event: dict[str, Any] = {
            "id": f"demo-{kind}-{self._engagement_seq:06d}",
            "type": kind,
            "programme": self.slug,
            "member": {"card_number": person.data["card_number"]},
            "occurred_at": moment.isoformat().replace("+00:00", "Z"),
            "channel": channel,
            "attributes": attributes or {},
        }
        if store is not None:
            event["store"] = store
        return event

    def returns(self, purchases: list[dict[str, Any]], share: float) -> list[dict[str, Any]]:
        """About ``share`` of the orders come back, online orders three times as often;
        40 % of returns are the whole order, the rest one or some of its lines."""
        rng = self.rng
        cutoff = self.now - timedelta(days=1)
        candidates = [p for p in purchases if datetime.fromisoformat(p["occurred_at"]) < cutoff]
        if not candidates:
            return []
        wanted = min(round(len(purchases) * share), len(candidates))
        weights = [3.0 if p["channel"] in ("web", "app") else 1.0 for p in candidates]
        chosen: dict[str, dict[str, Any]] = {}
        while len(chosen) < wanted:
            for p in rng.choices(candidates, weights=weights, k=wanted - len(chosen)):
                chosen.setdefault(p["id"], p)
        out = []
        for number, purchase in enumerate(sorted(chosen.values(), key=lambda p: p["id"]), start=1):
            bought = datetime.fromisoformat(purchase["occurred_at"])
            latest = min(bought + timedelta(days=30), self.now - timedelta(minutes=5))
            moment = bought + timedelta(
                seconds=int(rng.uniform(3600, max((latest - bought).total_seconds(), 3601)))
            )
            lines = purchase["lines"]
            if rng.random() < 0.4:
                returned = [{"sku": x["sku"], "quantity": x["quantity"]} for x in lines]
            else:
                picked = rng.sample(lines, k=rng.randint(1, max(1, len(lines) - 1)))
                returned = [
                    {"sku": x["sku"], "quantity": rng.randint(1, x["quantity"])} for x in picked
                ]
            out.append(
                {
                    "id": f"demo-return-{number:05d}",
                    "type": "return",
                    "programme": self.slug,
                    "member": purchase["member"],
                    "occurred_at": min(moment, latest).isoformat().replace("+00:00", "Z"),
                    "original_event_id": purchase["id"],
                    "channel": purchase["channel"],
                    "store": purchase["store"],
                    "lines": returned,
                }
            )
        return out


def generate(
    *,
    members: int = 1000,
    purchases: int = 20_000,
    seed: int | None = None,
    now: datetime | None = None,
    slug: str = DEMO_SLUG,
    return_share: float = 0.03,
) -> DemoData:
    """The demo's members and events (pure: no database).

    Times are laid out from the start of ``now``'s day (UTC), so the same seed gives the
    same data all day long, and on another day the same data shifted by whole days."""
    anchor = (now or utc_now()).replace(hour=0, minute=0, second=0, microsecond=0)
    gen = _Generator(random.Random(seed), anchor, slug)
    people = gen.members(members)
    sales = gen.purchases(people, purchases)
    events = sales + gen.returns(sales, return_share)
    events += gen.engagement(people, sales)
    events.sort(key=lambda e: (datetime.fromisoformat(e["occurred_at"]), e["type"] == "return"))
    return DemoData(people, events)


# --- loading ------------------------------------------------------------------------------


@dataclass
class DemoSummary:
    programme: str
    members: int = 0
    purchases: int = 0
    returns: int = 0
    engagement: int = 0
    rules: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    """(event id, reason) of events the service refused (a bug in the generator)."""
    points_earned: int = 0
    points_reversed: int = 0
    activated: int = 0
    expired: int = 0
    tiers: list[tuple[str, int]] = field(default_factory=list)
    """(tier name, members in it), lowest tier first."""
    rewards: int = 0
    """In the catalogue (not archived)."""
    redemptions: int = 0
    coupons_used: int = 0
    points_donated: int = 0
    challenges_active: int = 0
    challenge_completions: int = 0
    seconds: float = 0.0


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


def demo_rewards(db: Database, programme_id: Any, *, now: datetime, seed: int | None) -> int:
    """Nine rewards in German and English — a 5-€-Gutschein, 10 % Rabatt, a free
    cappuccino and a free organic tote bag, a Styling-Termin (12 seats), an
    Early-Access-Shoppingabend for Gold members only, a donation to the Tafel, 10 € wallet
    credit and a loyalty discount after a year of membership — then about 40 redemptions
    by the members with the most points, of which some coupons are used for orders and
    one redemption is cancelled. Runs after the events (members need points). Returns
    the number of redemptions."""
    import random as _random
    import uuid
    from zoneinfo import ZoneInfo

    from sqlalchemy import select

    from treu.errors import TreuError
    from treu.ledger.models import Account
    from treu.rewards.coupons import Cart, CartLine, coupons
    from treu.rewards.donations import CharityNotFound, donations
    from treu.rewards.schemas import RewardIn
    from treu.rewards.service import catalogue, redemptions

    with db.unit_of_work() as session:
        programme = session.get_one(Programme, programme_id)
        zone = ZoneInfo(programme.timezone)

        def evening(days: int, hour: int) -> datetime:
            day = (now.astimezone(zone) + timedelta(days=days)).date()
            return datetime(day.year, day.month, day.day, hour, tzinfo=zone)

        try:
            charity = donations.charity(session, programme_id=programme.id, ref="tafel").code
        except CharityNotFound:
            charity = donations.add_charity(
                session,
                programme_id=programme.id,
                code="tafel",
                name={"de": "Tafel Deutschland e.V.", "en": "German Food Banks (Tafel)"},
                url="https://www.tafel.de",
            ).code
        specs: list[dict[str, Any]] = [
            {
                "code": "gutschein-5",
                "type": "amount_discount",
                "name": {"de": "5-€-Gutschein", "en": "€5 voucher"},
                "description": {"de": "Ab 20 € Einkaufswert", "en": "On orders of €20 or more"},
                "points_cost": 500,
                "value_minor": 500,
                "min_order_minor": 2000,
                "coupon_valid_days": 60,
            },
            {
                "code": "rabatt-10",
                "type": "percent_discount",
                "name": {"de": "10 % Rabatt", "en": "10% off"},
                "description": {
                    "de": "Auf einen Einkauf ab 30 €",
                    "en": "On one order of €30 or more",
                },
                "points_cost": 800,
                "percent_bp": 1000,
                "min_order_minor": 3000,
                "coupon_valid_days": 30,
            },
            {
                "code": "cappuccino-gratis",
                "type": "free_product",
                "name": {"de": "Cappuccino gratis", "en": "Free cappuccino"},
                "points_cost": 250,
                "sku": "7006",
                "product_name": {"de": "Cappuccino to go", "en": "Cappuccino to go"},
                "coupon_valid_days": 30,
            },
            {
                "code": "bio-tasche",
                "type": "free_product",
                "name": {"de": "Bio-Einkaufstasche gratis", "en": "Free organic tote bag"},
                "points_cost": 450,
                "sku": "9005",
                "product_name": {
                    "de": "Einkaufstasche Bio-Baumwolle",
                    "en": "organic cotton tote bag",
                },
                "per_member_limit": 1,
                "stock": 200,
            },
            {
                "code": "styling-termin",
                "type": "experience",
                "name": {"de": "Persönlicher Styling-Termin", "en": "Personal styling session"},
                "description": {
                    "de": "45 Minuten mit unserer Stilberaterin in Berlin-Mitte",
                    "en": "45 minutes with our stylist in Berlin-Mitte",
                },
                "points_cost": 1500,
                "event": {
                    "starts_at": evening(14, 15).isoformat(),
                    "ends_at": (evening(14, 15) + timedelta(minutes=45)).isoformat(),
                    "location": "Berlin-Mitte",
                },
                "stock": 12,
                "per_member_limit": 1,
            },
            {
                "code": "early-access-abend",
                "type": "experience",
                "name": {"de": "Early-Access-Shoppingabend", "en": "Early-access shopping evening"},
                "description": {
                    "de": "Die neue Kollektion vor allen anderen, mit Sekt",
                    "en": "The new collection before everybody else, with bubbly",
                },
                "points_cost": 300,
                "eligibility": {"min_tier": "gold"},
                "event": {
                    "starts_at": evening(21, 19).isoformat(),
                    "ends_at": evening(21, 22).isoformat(),
                    "location": "Hamburg",
                },
                "stock": 40,
                "per_member_limit": 1,
            },
            {
                "code": "spende-tafel",
                "type": "donation",
                "name": {"de": "5 € für die Tafel", "en": "€5 for the food banks"},
                "points_cost": 500,
                "charity": charity,
            },
            {
                "code": "guthaben-10",
                "type": "wallet_credit",
                "name": {"de": "10 € Guthaben", "en": "€10 wallet credit"},
                "points_cost": 1000,
                "value_minor": 1000,
            },
            {
                "code": "treue-rabatt-15",
                "type": "percent_discount",
                "name": {"de": "15 % Treuerabatt", "en": "15% loyalty discount"},
                "description": {
                    "de": "Für Mitglieder ab einem Jahr",
                    "en": "For members of a year or more",
                },
                "points_cost": 1200,
                "percent_bp": 1500,
                "eligibility": {"min_membership_days": 365},
                "coupon_valid_days": 30,
            },
        ]
        made = {
            spec["code"]: catalogue.create(
                session, programme=programme, data=RewardIn.model_validate(spec), actor="demo"
            ).id
            for spec in specs
        }
        richest = list(
            session.scalars(
                select(Account.member_id)
                .where(Account.programme_id == programme.id, Account.available >= 250)
                .order_by(Account.available.desc(), Account.member_id)
                .limit(60)
            )
        )

    rng = _random.Random(seed if seed is not None else 11)
    choices = list(made)
    issued: list[dict[str, Any]] = []
    for n, member_id in enumerate(richest):
        code = choices[n % len(choices)] if n < len(choices) else rng.choice(choices)
        try:
            with db.unit_of_work() as session:
                _, body = redemptions.redeem(
                    session,
                    member_id=member_id,
                    key=f"demo-{n}",
                    reward_id=made[code],
                    actor="demo",
                    now=now,
                )
        except TreuError:  # not enough points, not Gold, a limit: as in real life
            continue
        issued.append(body)
    prices = {"cappuccino-gratis": ("7006", 290), "bio-tasche": ("9005", 499)}
    kept: list[dict[str, Any]] = []
    for n, body in enumerate(b for b in issued if b["coupon"] is not None):
        if n % 3 == 2:
            kept.append(body)  # a third of the coupons stay unused
            continue
        reward_code = body["reward"]["code"]
        sku, price = prices.get(reward_code, ("7001", 1699))
        basket = Cart("EUR", (CartLine(sku, 1, price), CartLine("9003", 1, 5999)))
        try:
            with db.unit_of_work() as session:
                coupons.redeem(
                    session,
                    code=body["coupon"]["code"],
                    order_id=f"demo-order-{n + 1}",
                    programme=programme,
                    cart=None if body["coupon"]["kind"] == "experience" else basket,
                    actor="demo",
                    now=now,
                )
        except TreuError:
            continue
    if kept:
        with db.unit_of_work() as session:
            redemptions.cancel(
                session,
                redemption_id=uuid.UUID(kept[-1]["id"]),
                actor="demo",
                reason="changed their mind",
                now=now,
            )
    return len(issued)


def demo_payments(db: Database, programme_id: Any, *, now: datetime, seed: int | None) -> int:
    """The money side: two charities (Tafel Deutschland e.V., NABU) and about 30 direct
    donations of points; about 20 members paying part of an order with points (one
    cent a point), one of them refunded in part after a return; wallet credit (from the
    rewards' ``guthaben-10`` redemptions) spent on an order and one such order refunded.
    Runs after the rewards (it uses their charity and wallet credit). Returns the number
    of donations, payments and wallet debits."""
    import random as _random
    import uuid

    from sqlalchemy import select

    from treu.errors import TreuError
    from treu.ledger.models import Account
    from treu.rewards.donations import CharityNotFound, donations
    from treu.rewards.payments import payments
    from treu.rewards.wallet import Wallet, wallet

    rng = _random.Random(seed if seed is not None else 23)
    with db.unit_of_work() as session:
        charities: list[tuple[str, dict[str, str], str]] = [
            (
                "tafel",
                {"de": "Tafel Deutschland e.V.", "en": "German Food Banks (Tafel)"},
                "https://www.tafel.de",
            ),
            (
                "nabu",
                {"de": "NABU (Naturschutzbund Deutschland e.V.)", "en": "NABU (nature)"},
                "https://www.nabu.de",
            ),
        ]
        for code, name, url in charities:
            try:
                donations.charity(session, programme_id=programme_id, ref=code)
            except CharityNotFound:
                donations.add_charity(
                    session,
                    programme_id=programme_id,
                    code=code,
                    name=name,
                    url=url,
                )
        holders = list(
            session.scalars(
                select(Account.member_id)
                .where(Account.programme_id == programme_id, Account.available >= 300)
                .order_by(Account.member_id)
            )
        )
        with_credit = list(
            session.scalars(
                select(Wallet.member_id)
                .where(Wallet.programme_id == programme_id, Wallet.balance_minor > 0)
                .order_by(Wallet.member_id)
            )
        )
    done = 0
    rng.shuffle(holders)
    for n, member_id in enumerate(holders[:30]):
        try:
            with db.unit_of_work() as session:
                donations.donate(
                    session,
                    member_id=member_id,
                    key=f"demo-donation-{n}",
                    charity="tafel" if n % 3 else "nabu",
                    points=rng.choice([100, 200, 250, 500]),
                    actor="demo",
                    now=now,
                )
            done += 1
        except TreuError:  # the points went elsewhere meanwhile
            continue
    paid: list[str] = []
    for n, member_id in enumerate(holders[30:50]):
        try:
            with db.unit_of_work() as session:
                _, body = payments.pay(
                    session,
                    member_id=member_id,
                    key=f"demo-pay-{n}",
                    order_id=f"demo-pwp-{n + 1:04d}",
                    amount_minor=rng.choice([1299, 2490, 4999, 8990]),
                    currency="EUR",
                    partial=True,
                    actor="demo",
                    now=now,
                )
            paid.append(body["id"])
            done += 1
        except TreuError:
            continue
    if paid:  # the first order came back in part: refund 3 euros of it to points
        with db.unit_of_work() as session:
            payments.refund(
                session,
                payment_id=uuid.UUID(paid[0]),
                key="demo-refund-0",
                amount_minor=300,
                actor="demo",
                now=now,
            )
    debits: list[str] = []
    for n, member_id in enumerate(with_credit[:5]):
        try:
            with db.unit_of_work() as session:
                _, body = wallet.debit(
                    session,
                    member_id=member_id,
                    key=f"demo-wallet-{n}",
                    order_id=f"demo-wallet-order-{n + 1}",
                    amount_minor=1499,
                    currency="EUR",
                    partial=True,
                    actor="demo",
                    now=now,
                )
            debits.append(body["id"])
            done += 1
        except TreuError:
            continue
    if debits:  # one of those orders was cancelled
        with db.unit_of_work() as session:
            wallet.refund(
                session, debit_id=uuid.UUID(debits[0]), key="demo-wallet-refund-0", now=now
            )
    return done


def demo_exists(db: Database, slug: str = DEMO_SLUG) -> bool:
    with db.unit_of_work(write=False) as session:
        return bool(programmes.get_many_by_slug(session, {slug}))


def sample_member(db: Database, slug: str = DEMO_SLUG) -> tuple[str, str] | None:
    """(e-mail, card number) of the demo member with the most available points, to try
    the API with; None when no member has an e-mail address."""
    from sqlalchemy import select

    from treu.ledger.models import Account
    from treu.members.models import Member

    with db.unit_of_work(write=False) as session:
        found = programmes.get_many_by_slug(session, {slug})
        if slug not in found:
            return None
        row = session.execute(
            select(Member.email, Member.card_number)
            .join(Account, Account.member_id == Member.id)
            .where(Member.programme_id == found[slug].id, Member.email.is_not(None))
            .order_by(Account.available.desc(), Member.card_number)
            .limit(1)
        ).first()
    if row is None or row[0] is None:
        return None
    return row[0], row[1]


def load_demo(
    db: Database,
    *,
    members: int = 1000,
    purchases: int = 20_000,
    seed: int | None = None,
    now: datetime | None = None,
    slug: str = DEMO_SLUG,
    on_progress: Progress | None = None,
) -> DemoSummary:
    """Create the demo programme and load generated members and events.

    Raises ``ProgrammeExists`` when the programme is there already (nothing is written).
    Members are enrolled together with the programme in one unit of work, so a failure
    there leaves no half-made demo; events then go in batches of 1,000, each its own unit
    of work. Finally pending points whose window has passed are activated and overdue
    points expired, so balances are current."""
    started = time.perf_counter()
    now = now or utc_now()
    report = on_progress or (lambda stage, done, total: None)
    data = generate(members=members, purchases=purchases, seed=seed, now=now, slug=slug)
    summary = DemoSummary(programme=slug)

    report("members", 0, len(data.members))
    with db.unit_of_work() as session:
        programme: Programme = programmes.create(session, data=demo_programme(slug))
        for spec in demo_rules():
            rule = rules.create(
                session, programme=programme, spec=RuleSpec.model_validate(spec), actor="demo"
            )
            rules.publish(session, rule, actor="demo", now=now)
            summary.rules += 1
        demo_tiers(session, programme, now=now)
        demo_challenges(session, programme, now=now)
        writer = ledger.writer(session, now=now)
        for number, person in enumerate(data.members, start=1):
            member_service.enrol(
                session,
                programme=programme,
                data=MemberCreate.model_validate(person.data),
                writer=writer,
            )
            if number % 50 == 0 or number == len(data.members):
                report("members", number, len(data.members))
    summary.members = len(data.members)
    db.analyze(MEMBER_TABLES)  # the events' member look-ups need the new statistics

    total = len(data.events)
    report("events", 0, total)
    for offset in range(0, total, BATCH_SIZE):
        chunk = data.events[offset : offset + BATCH_SIZE]
        parsed = [event_adapter.validate_python(e) for e in chunk]
        for outcome in ingest_with_retry(db, parsed, now=now):
            event = chunk[outcome.index]
            if outcome.error is not None:
                summary.rejected.append((event["id"], outcome.error.detail))
                continue
            points = (outcome.body or {}).get("points", {})
            if event["type"] == "return":
                summary.returns += 1
                summary.points_reversed += int(points.get("reversed", 0))
            else:
                if event["type"] == "purchase":
                    summary.purchases += 1
                else:
                    summary.engagement += 1
                summary.points_earned += int(points.get("earned", 0))
        report("events", min(offset + BATCH_SIZE, total), total)

    db.analyze(EVENT_TABLES)
    report("ledger", 0, 1)
    summary.activated = activate_pending(db, now=now)
    summary.expired = expire_points(db, now=now)
    demo_rewards(db, programme.id, now=now, seed=seed)
    demo_payments(db, programme.id, now=now, seed=seed)
    report("ledger", 1, 1)
    count_features(db, programme.id, summary)
    summary.seconds = time.perf_counter() - started
    return summary


def count_features(db: Database, programme_id: Any, summary: DemoSummary) -> None:
    """Tiers, rewards, donations and challenges as the database holds them after the
    load (counted, not tallied while loading: the jobs and the reward and payment steps
    change them, and the summary should show what a user then finds)."""
    from sqlalchemy import func, select

    from treu.challenges.models import Challenge, ChallengeCompletion, ChallengeStatus
    from treu.members.models import Member
    from treu.rewards.donations import Donation
    from treu.rewards.models import Coupon, CouponStatus, Redemption, Reward, RewardStatus
    from treu.tiers.models import MemberTier, Tier

    def count(model: Any, *where: Any) -> int:
        query = select(func.count()).select_from(model)
        return int(session.scalar(query.where(model.programme_id == programme_id, *where)) or 0)

    with db.unit_of_work(write=False) as session:
        in_tier = dict(
            session.execute(
                select(MemberTier.tier, func.count())
                .where(MemberTier.programme_id == programme_id)
                .group_by(MemberTier.tier)
            ).all()
        )
        ladder = session.scalars(
            select(Tier).where(Tier.programme_id == programme_id).order_by(Tier.rank)
        ).all()
        if ladder and ladder[0].threshold == 0:
            # The base tier is everybody's (treu.tiers ``current``), also of members
            # whose tier state was never written because nothing they did counted.
            placed = sum(n for code, n in in_tier.items() if code is not None)
            in_tier[ladder[0].code] = count(Member) - placed + in_tier.get(ladder[0].code, 0)
        summary.tiers = [(str(t.name.get("en", t.code)), in_tier.get(t.code, 0)) for t in ladder]
        summary.rewards = count(Reward, Reward.status != RewardStatus.archived.value)
        summary.redemptions = count(Redemption)
        summary.coupons_used = count(Coupon, Coupon.status == CouponStatus.used.value)
        summary.points_donated = int(
            session.scalar(
                select(func.coalesce(func.sum(Donation.points), 0)).where(
                    Donation.programme_id == programme_id
                )
            )
            or 0
        )
        summary.challenges_active = count(
            Challenge, Challenge.status == ChallengeStatus.active.value
        )
        summary.challenge_completions = count(ChallengeCompletion)
