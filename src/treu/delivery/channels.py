"""The channels delivery sends over, in planning order. Adding one is a module with a
``Channel`` (``treu.delivery.channel``) and one line here."""

from __future__ import annotations

from treu.config import Settings
from treu.delivery.channel import Channel
from treu.messaging.channel import email_channels


def build_channels(settings: Settings) -> list[Channel]:
    return [*email_channels(settings)]
