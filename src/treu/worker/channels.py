"""The channels the worker delivers over, in planning order (here, above every channel
package: the delivery core below them names none). Adding one is a module with a
``Channel`` (``treu.delivery.channel``) and one line here."""

from __future__ import annotations

from treu.config import Settings
from treu.delivery.channel import Channel
from treu.messaging.channel import email_channels
from treu.messaging.inbox import inbox_channels
from treu.webhooks.channel import WebhookChannel


def build_channels(settings: Settings) -> list[Channel]:
    return [
        WebhookChannel(settings),
        *email_channels(settings),
        *inbox_channels(settings),
    ]
