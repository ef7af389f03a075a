"""Messaging: what Treu tells members and with whose consent — e-mail composed from the
outbox (``channel``), templates (``templates``), consents and one-click unsubscribe
(``consents``), the SMTP sender (``email``) and the development mailbox (``mailbox``)."""
