"""Errors of webhook endpoints (codes are API contract)."""

from __future__ import annotations

from treu.errors import Conflict, Invalid, NotFound


class WebhookNotFound(NotFound):
    code = "webhook_not_found"
    title = "Webhook endpoint not found"


class WebhookDeliveryNotFound(NotFound):
    code = "webhook_delivery_not_found"
    title = "Webhook delivery not found"


class UnknownEventType(Invalid):
    code = "unknown_event_type"
    title = "Unknown event type"


class WebhookUrlRefused(Invalid):
    """A URL Treu will not send to: not http(s), or (outside development) a host that
    resolves to an address of this machine or its network (SSRF)."""

    code = "webhook_url_refused"
    title = "Webhook URL not allowed"


class WebhookDisabled(Conflict):
    code = "webhook_disabled"
    title = "Webhook endpoint is disabled"


class DeliveryPending(Conflict):
    code = "webhook_delivery_pending"
    title = "The delivery is waiting to be sent already"
