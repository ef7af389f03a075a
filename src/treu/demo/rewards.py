"""The demo's rewards, redemptions, coupons, payments with points, wallet and donations."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from treu.db.session import Database
from treu.programmes.models import Programme


def demo_rewards(db: Database, programme_id: Any, *, now: datetime, seed: int | None) -> int:
    """Nine rewards in German and English — a 5-€-Gutschein, 10 % Rabatt, a free
    cappuccino and a free organic tote bag, a Styling-Termin (12 seats), an
    Early-Access-Shoppingabend for Gold members only, a donation to the Tafel, 10 € wallet
    credit and a loyalty discount after a year of membership — then about 40 redemptions
    by the members with the most points, of which some coupons are used for orders and
    one redemption is cancelled. Runs after the events (members need points). Returns
    the number of redemptions."""
    import random as _random
    from zoneinfo import ZoneInfo

    from sqlalchemy import select

    from treu.errors import TreuError
    from treu.ledger.models import Account
    from treu.rewards.coupons import Cart, CartLine, coupons
    from treu.rewards.donations import CharityNotFound, donations
    from treu.rewards.schemas import RedemptionResult, RewardIn
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
    issued: list[RedemptionResult] = []
    for n, member_id in enumerate(richest):
        code = choices[n % len(choices)] if n < len(choices) else rng.choice(choices)
        try:
            with db.unit_of_work() as session:
                done = redemptions.redeem(
                    session,
                    member_id=member_id,
                    key=f"demo-{n}",
                    reward_id=made[code],
                    actor="demo",
                    now=now,
                )
        except TreuError:  # not enough points, not Gold, a limit: as in real life
            continue
        issued.append(done.result)
    prices = {"cappuccino-gratis": ("7006", 290), "bio-tasche": ("9005", 499)}
    kept: list[RedemptionResult] = []
    for n, (body, issued_coupon) in enumerate((b, b.coupon) for b in issued if b.coupon):
        if n % 3 == 2:
            kept.append(body)  # a third of the coupons stay unused
            continue
        reward_code = body.reward.code
        sku, price = prices.get(reward_code, ("7001", 1699))
        basket = Cart("EUR", (CartLine(sku, 1, price), CartLine("9003", 1, 5999)))
        try:
            with db.unit_of_work() as session:
                coupons.redeem(
                    session,
                    code=issued_coupon.code,
                    order_id=f"demo-order-{n + 1}",
                    programme=programme,
                    cart=None if issued_coupon.kind == "experience" else basket,
                    actor="demo",
                    now=now,
                )
        except TreuError:
            continue
    if kept:
        with db.unit_of_work() as session:
            redemptions.cancel(
                session,
                redemption_id=kept[-1].id,
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
    paid: list[uuid.UUID] = []
    for n, member_id in enumerate(holders[30:50]):
        try:
            with db.unit_of_work() as session:
                payment = payments.pay(
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
            paid.append(payment.result.id)
            done += 1
        except TreuError:
            continue
    if paid:  # the first order came back in part: refund 3 euros of it to points
        with db.unit_of_work() as session:
            payments.refund(
                session,
                payment_id=paid[0],
                key="demo-refund-0",
                amount_minor=300,
                actor="demo",
                now=now,
            )
    debits: list[uuid.UUID] = []
    for n, member_id in enumerate(with_credit[:5]):
        try:
            with db.unit_of_work() as session:
                debit = wallet.debit(
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
            debits.append(debit.result.id)
            done += 1
        except TreuError:
            continue
    if debits:  # one of those orders was cancelled
        with db.unit_of_work() as session:
            wallet.refund(session, debit_id=debits[0], key="demo-wallet-refund-0", now=now)
    return done
