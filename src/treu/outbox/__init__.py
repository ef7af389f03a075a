"""Domain events and the transactional outbox (see ``service``)."""
