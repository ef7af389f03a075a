"""Imports every model module so that ``Base.metadata`` knows all tables (Alembic)."""

from __future__ import annotations


def load_all() -> None:
    import treu.audit.models
    import treu.auth.models
    import treu.campaigns.models
    import treu.challenges.models
    import treu.delivery.models
    import treu.events.models
    import treu.journeys.models
    import treu.ledger.models
    import treu.media.models
    import treu.members.models
    import treu.messaging.models
    import treu.outbox.models
    import treu.privacy.models
    import treu.programmes.models
    import treu.rewards.donations
    import treu.rewards.models
    import treu.rewards.payments
    import treu.rewards.wallet
    import treu.rules.models
    import treu.segments.models
    import treu.staff.models
    import treu.tiers.models
    import treu.webhooks.models
    import treu.worker.models  # noqa: F401
