"""Rewards catalogue, redemptions and coupons.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "rewards",
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=24), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("name", _json(), nullable=False),
        sa.Column("description", _json(), nullable=False),
        sa.Column("image_url", sa.String(length=2000), nullable=True),
        sa.Column("points_cost", sa.BigInteger(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("min_tier", sa.String(length=64), nullable=True),
        sa.Column("min_membership_days", sa.BigInteger(), nullable=True),
        sa.Column("segments", _json(), nullable=False),
        sa.Column("stock_total", sa.BigInteger(), nullable=True),
        sa.Column("stock_left", sa.BigInteger(), nullable=True),
        sa.Column("per_member_limit", sa.BigInteger(), nullable=True),
        sa.Column("coupon_valid_days", sa.BigInteger(), nullable=True),
        sa.Column("min_order_minor", sa.BigInteger(), nullable=True),
        sa.Column("percent_bp", sa.BigInteger(), nullable=True),
        sa.Column("value_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("sku", sa.String(length=64), nullable=True),
        sa.Column("event_starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("event_ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("event_location", sa.String(length=200), nullable=True),
        sa.Column("charity_code", sa.String(length=64), nullable=True),
        sa.Column("refund_on_cancel", sa.Boolean(), nullable=False),
        sa.Column("refund_on_expiry", sa.Boolean(), nullable=False),
        sa.Column("restore_on_return", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("points_cost > 0", name=op.f("ck_rewards_points_cost_positive")),
        sa.CheckConstraint("stock_left >= 0", name=op.f("ck_rewards_stock_left_non_negative")),
        sa.CheckConstraint(
            "(stock_total IS NULL AND stock_left IS NULL) OR "
            "(stock_total IS NOT NULL AND stock_left IS NOT NULL AND stock_left <= stock_total)",
            name=op.f("ck_rewards_stock_consistent"),
        ),
        sa.CheckConstraint(
            "per_member_limit > 0", name=op.f("ck_rewards_per_member_limit_positive")
        ),
        sa.CheckConstraint(
            "coupon_valid_days > 0", name=op.f("ck_rewards_coupon_valid_days_positive")
        ),
        sa.CheckConstraint(
            "percent_bp BETWEEN 1 AND 10000", name=op.f("ck_rewards_percent_bp_range")
        ),
        sa.CheckConstraint("value_minor > 0", name=op.f("ck_rewards_value_minor_positive")),
        sa.CheckConstraint(
            "min_order_minor >= 0", name=op.f("ck_rewards_min_order_minor_non_negative")
        ),
        sa.CheckConstraint(
            "min_membership_days >= 0", name=op.f("ck_rewards_min_membership_days_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name=op.f("fk_rewards_programme_id_programmes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rewards")),
        sa.UniqueConstraint("programme_id", "code", name=op.f("uq_rewards_programme_id_code")),
    )
    with op.batch_alter_table("rewards", schema=None) as batch_op:
        batch_op.create_index(
            "ix_rewards_programme_status", ["programme_id", "status"], unique=False
        )

    op.create_table(
        "redemptions",
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("reward_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("posting_id", sa.Uuid(), nullable=False),
        sa.Column("refund_posting_id", sa.Uuid(), nullable=True),
        sa.Column("reward", _json(), nullable=False),
        sa.Column("result", _json(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("points > 0", name=op.f("ck_redemptions_points_positive")),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_redemptions_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["posting_id"], ["postings.id"], name=op.f("fk_redemptions_posting_id_postings")
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["programmes.id"],
            name=op.f("fk_redemptions_programme_id_programmes"),
        ),
        sa.ForeignKeyConstraint(
            ["refund_posting_id"],
            ["postings.id"],
            name=op.f("fk_redemptions_refund_posting_id_postings"),
        ),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.id"], name=op.f("fk_redemptions_reward_id_rewards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemptions")),
        sa.UniqueConstraint("member_id", "key", name=op.f("uq_redemptions_member_id_key")),
    )
    with op.batch_alter_table("redemptions", schema=None) as batch_op:
        batch_op.create_index("ix_redemptions_member_id_id", ["member_id", "id"], unique=False)
        batch_op.create_index("ix_redemptions_reward_id", ["reward_id"], unique=False)

    op.create_table(
        "coupons",
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("reward_id", sa.Uuid(), nullable=True),
        sa.Column("redemption_id", sa.Uuid(), nullable=True),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("terms", _json(), nullable=False),
        sa.Column("restore_on_return", sa.Boolean(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("order_id", sa.String(length=200), nullable=True),
        sa.Column("discount_minor", sa.BigInteger(), nullable=True),
        sa.Column("used_by", sa.String(length=200), nullable=True),
        sa.Column("restored_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("restore_count", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "discount_minor >= 0", name=op.f("ck_coupons_discount_minor_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_coupons_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name=op.f("fk_coupons_programme_id_programmes")
        ),
        sa.ForeignKeyConstraint(
            ["redemption_id"],
            ["redemptions.id"],
            name=op.f("fk_coupons_redemption_id_redemptions"),
        ),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.id"], name=op.f("fk_coupons_reward_id_rewards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupons")),
        sa.UniqueConstraint("code", name=op.f("uq_coupons_code")),
        sa.UniqueConstraint("redemption_id", name=op.f("uq_coupons_redemption_id")),
    )
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.create_index(
            "ix_coupons_member_status", ["member_id", "status", "expires_at"], unique=False
        )
        batch_op.create_index(
            "ix_coupons_expiry_due",
            ["expires_at"],
            unique=False,
            postgresql_where=sa.text("status = 'active'"),
            sqlite_where=sa.text("status = 'active'"),
        )
        batch_op.create_index(
            "ix_coupons_order",
            ["programme_id", "order_id"],
            unique=False,
            postgresql_where=sa.text("order_id IS NOT NULL"),
            sqlite_where=sa.text("order_id IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_coupons_order",
            postgresql_where=sa.text("order_id IS NOT NULL"),
            sqlite_where=sa.text("order_id IS NOT NULL"),
        )
        batch_op.drop_index(
            "ix_coupons_expiry_due",
            postgresql_where=sa.text("status = 'active'"),
            sqlite_where=sa.text("status = 'active'"),
        )
        batch_op.drop_index("ix_coupons_member_status")
    op.drop_table("coupons")
    with op.batch_alter_table("redemptions", schema=None) as batch_op:
        batch_op.drop_index("ix_redemptions_reward_id")
        batch_op.drop_index("ix_redemptions_member_id_id")
    op.drop_table("redemptions")
    with op.batch_alter_table("rewards", schema=None) as batch_op:
        batch_op.drop_index("ix_rewards_programme_status")
    op.drop_table("rewards")
