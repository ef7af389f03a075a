"""Delivery: what the outbox says leaves the process — e-mail, webhooks, inbox — after
commit, at least once, each message with a stable id (``treu.delivery.service``)."""
