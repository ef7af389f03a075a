"""Webhooks by the Standard Webhooks 1.0 specification: endpoints an admin registers,
planned from the outbox and sent by ``treu.delivery`` (``treu.webhooks.channel``)."""
