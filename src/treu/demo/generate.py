"""The demo's members and events, generated from one seed (pure: no database)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from treu.demo.catalogue import BASKET_CUM, CATEGORY_CUM, CHANNELS, PHYSICAL_STORES, SPLIT, Product
from treu.demo.programme import DEMO_SLUG
from treu.kit.ids import luhn_check_digit
from treu.kit.time import iso, utc_now
from treu.members.schemas import normalise_phone

HISTORY_DAYS = 365

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
SHOWCASE = (
    {"email": "lena.becker@example.com", "first_name": "Lena", "language": "de"},
    {"email": "sam.taylor@example.com", "first_name": "Sam", "language": "en"},
)
"""The two members who join at the end of the load (their welcome e-mails are what the
development mailbox shows): no generated member takes their addresses."""
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
        emails: set[str] = {joining["email"] for joining in SHOWCASE}
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
        sizes, cum_sizes = BASKET_CUM[channel]
        size = rng.choices(sizes, cum_weights=cum_sizes)[0]
        categories, cum_categories = CATEGORY_CUM[channel]
        bias = 1 + 2.5 * member.organic_affinity
        chosen: dict[str, Product] = {}
        for category in rng.choices(categories, cum_weights=cum_categories, k=size * 3):
            if len(chosen) >= size:
                break
            organic, other = SPLIT[category]
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
                    "occurred_at": iso(moment),
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
            "occurred_at": iso(moment),
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
                    "occurred_at": iso(min(moment, latest)),
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
