"""What a cart will earn, before it is paid (``POST /v1/checkout/evaluate``).

A composition of features — the earning rules, the member's tier, balance and expiring
points, coupons and rewards usable on the cart, the wallet — so it sits above them and
above the ingest, whose rules it evaluates the same way without writing anything."""
