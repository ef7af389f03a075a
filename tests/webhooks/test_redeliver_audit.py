"""A redelivery asked for by someone (the console, an API key) is in the audit log."""

from __future__ import annotations

from sqlalchemy import select, update

from tests import factories as f
from treu.audit.models import AuditEvent
from treu.db.session import Database
from treu.delivery.channel import Planned
from treu.delivery.models import Delivery
from treu.delivery.service import deliveries
from treu.kit.time import utc_now
from treu.webhooks import signing
from treu.webhooks.schemas import WebhookIn
from treu.webhooks.service import CHANNEL, webhooks


def test_a_redelivery_is_audited_with_its_actor(db: Database) -> None:
    prog = f.programme(db)
    with db.unit_of_work() as session:
        data = WebhookIn(url="https://93.184.215.14/h", events=["points.earned"])
        endpoint, _ = webhooks.create(session, data=data, actor="test", allow_private=False)
        planned = Planned(
            channel=CHANNEL,
            target=str(endpoint.id),
            dedupe_key=f"webhook:{endpoint.id}:audit",
            event_type="points.earned",
            payload={},
            programme_id=prog.id,
        )
        deliveries.add(session, [planned], now=utc_now())
        row_id = session.scalars(
            select(Delivery.id).where(Delivery.target == str(endpoint.id))
        ).one()
        session.execute(update(Delivery).where(Delivery.id == row_id).values(status="dead"))
        endpoint_id = endpoint.id
    with db.unit_of_work() as session:
        webhooks.redeliver(
            session,
            endpoint_id=endpoint_id,
            delivery_id=row_id,
            now=utc_now(),
            actor="apikey:ops",
        )
    with db.unit_of_work() as session:
        session.execute(update(Delivery).where(Delivery.id == row_id).values(status="dead"))
        webhooks.redeliver(session, endpoint_id=endpoint_id, delivery_id=row_id, now=utc_now())
    with db.unit_of_work(write=False) as session:
        [entry] = session.scalars(
            select(AuditEvent).where(
                AuditEvent.subject_id == str(endpoint_id),
                AuditEvent.action == "webhook.redelivered",
            )
        )
    assert entry.actor == "apikey:ops"
    assert entry.data == {
        "delivery_id": str(row_id),
        "message_id": signing.message_id(row_id),
        "status": "dead",
    }
