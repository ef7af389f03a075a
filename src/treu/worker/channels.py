"""The channels the worker delivers over, in planning order (here, above every channel
package: the delivery core below them names none). Adding one is a module with a
``Channel`` (``treu.delivery.channel``) and one line here."""

from __future__ import annotations

from treu.config import Settings
from treu.delivery.channel import Channel
from treu.journeys.reactor import JourneyReactor
from treu.journeys.service import journeys
from treu.messaging.channel import email_channels
from treu.messaging.inbox import inbox_channels
from treu.webhooks.channel import WebhookChannel


def build_channels(settings: Settings) -> list[Channel]:
    # The journey reactor plans no deliveries: it turns outbox rows into journey
    # messages (treu.journeys.reactor), and the e-mail channel leaves the mail of a type
    # an enabled journey owns to that journey.
    return [
        JourneyReactor(),
        WebhookChannel(settings),
        *email_channels(settings, owned=journeys.owned_types),
        *inbox_channels(settings, owned=journeys.owned_types),
    ]
