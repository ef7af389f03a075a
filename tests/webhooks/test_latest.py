"""Each endpoint's newest delivery, as the console's list shows it."""

from __future__ import annotations

from tests import factories as f
from treu.db.session import Database
from treu.delivery.channel import Planned
from treu.delivery.service import deliveries
from treu.kit.time import utc_now
from treu.webhooks.schemas import WebhookIn
from treu.webhooks.service import CHANNEL, webhooks


def test_latest_is_each_endpoints_newest_delivery(db: Database) -> None:
    prog = f.programme(db)
    with db.unit_of_work() as session:
        data = WebhookIn(url="https://93.184.215.14/h", events=["points.earned"])
        busy, _ = webhooks.create(session, data=data, actor="test", allow_private=False)
        quiet, _ = webhooks.create(session, data=data, actor="test", allow_private=False)
        for i in range(3):
            deliveries.add(
                session,
                [
                    Planned(
                        channel=CHANNEL,
                        target=str(busy.id),
                        dedupe_key=f"webhook:{busy.id}:{i}",
                        event_type=f"points.earned.{i}",
                        payload={},
                        programme_id=prog.id,
                    )
                ],
                now=utc_now(),
            )
        found = webhooks.latest(session, [busy.id, quiet.id])
        assert set(found) == {busy.id}
        assert found[busy.id].event_type == "points.earned.2"
        assert webhooks.latest(session, []) == {}
