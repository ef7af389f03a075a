"""The burn side: rewards catalogue, redemptions, coupons, pay with points, e-wallet credit
and charity donations."""
