"""Pay with points, e-wallet credit and charity donations; refunds in the ledger.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refund_of", sa.Uuid(), nullable=True))
        batch_op.create_index(
            "ix_postings_refund_of",
            ["refund_of"],
            unique=False,
            postgresql_where=sa.text("refund_of IS NOT NULL"),
            sqlite_where=sa.text("refund_of IS NOT NULL"),
        )

    op.create_table(
        "point_payments",
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=100), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_requested_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_covered_minor", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("point_value_minor", sa.Numeric(precision=12, scale=4), nullable=False),
        sa.Column("posting_id", sa.Uuid(), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.Column("refunded_points", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("result", _json(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "amount_covered_minor > 0 AND amount_covered_minor <= amount_requested_minor",
            name=op.f("ck_point_payments_covered_within_requested"),
        ),
        sa.CheckConstraint("points > 0", name=op.f("ck_point_payments_points_positive")),
        sa.CheckConstraint(
            "refunded_minor >= 0 AND refunded_minor <= amount_covered_minor",
            name=op.f("ck_point_payments_refunded_within_covered"),
        ),
        sa.CheckConstraint(
            "refunded_points >= 0 AND refunded_points <= points",
            name=op.f("ck_point_payments_refunded_within_points"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_point_payments_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["posting_id"], ["postings.id"], name=op.f("fk_point_payments_posting_id_postings")
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["programmes.id"],
            name=op.f("fk_point_payments_programme_id_programmes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_point_payments")),
        sa.UniqueConstraint("member_id", "key", name=op.f("uq_point_payments_member_id_key")),
    )
    with op.batch_alter_table("point_payments", schema=None) as batch_op:
        batch_op.create_index("ix_point_payments_member_id_id", ["member_id", "id"], unique=False)
        batch_op.create_index(
            "ix_point_payments_programme_order", ["programme_id", "order_id"], unique=False
        )

    op.create_table(
        "point_payment_refunds",
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("posting_id", sa.Uuid(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("result", _json(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "amount_minor > 0", name=op.f("ck_point_payment_refunds_amount_positive")
        ),
        sa.CheckConstraint(
            "points >= 0", name=op.f("ck_point_payment_refunds_points_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_point_payment_refunds_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["point_payments.id"],
            name=op.f("fk_point_payment_refunds_payment_id_point_payments"),
        ),
        sa.ForeignKeyConstraint(
            ["posting_id"],
            ["postings.id"],
            name=op.f("fk_point_payment_refunds_posting_id_postings"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_point_payment_refunds")),
        sa.UniqueConstraint(
            "member_id", "key", name=op.f("uq_point_payment_refunds_member_id_key")
        ),
    )
    with op.batch_alter_table("point_payment_refunds", schema=None) as batch_op:
        batch_op.create_index("ix_point_payment_refunds_payment_id", ["payment_id"], unique=False)

    op.create_table(
        "wallets",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("balance_minor >= 0", name=op.f("ck_wallets_balance_non_negative")),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_wallets_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name=op.f("fk_wallets_programme_id_programmes")
        ),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_wallets")),
    )
    op.create_table(
        "wallet_entries",
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance_after_minor", sa.BigInteger(), nullable=False),
        sa.Column("requested_minor", sa.BigInteger(), nullable=True),
        sa.Column("order_id", sa.String(length=100), nullable=True),
        sa.Column("redemption_id", sa.Uuid(), nullable=True),
        sa.Column("debit_id", sa.Uuid(), nullable=True),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("amount_minor <> 0", name=op.f("ck_wallet_entries_amount_not_zero")),
        sa.CheckConstraint(
            "balance_after_minor >= 0",
            name=op.f("ck_wallet_entries_balance_after_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["debit_id"],
            ["wallet_entries.id"],
            name=op.f("fk_wallet_entries_debit_id_wallet_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_wallet_entries_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["programmes.id"],
            name=op.f("fk_wallet_entries_programme_id_programmes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_entries")),
        sa.UniqueConstraint("member_id", "key", name=op.f("uq_wallet_entries_member_id_key")),
    )
    with op.batch_alter_table("wallet_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_wallet_entries_debit_id",
            ["debit_id"],
            unique=False,
            postgresql_where=sa.text("debit_id IS NOT NULL"),
            sqlite_where=sa.text("debit_id IS NOT NULL"),
        )
        batch_op.create_index("ix_wallet_entries_member_id_id", ["member_id", "id"], unique=False)

    op.create_table(
        "charities",
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", _json(), nullable=False),
        sa.Column("description", _json(), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name=op.f("fk_charities_programme_id_programmes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charities")),
        sa.UniqueConstraint("programme_id", "code", name=op.f("uq_charities_programme_id_code")),
    )
    op.create_table(
        "donations",
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("charity_id", sa.Uuid(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("value_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("redemption_id", sa.Uuid(), nullable=True),
        sa.Column("posting_id", sa.Uuid(), nullable=True),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("points > 0", name=op.f("ck_donations_points_positive")),
        sa.CheckConstraint("value_minor >= 0", name=op.f("ck_donations_value_non_negative")),
        sa.ForeignKeyConstraint(
            ["charity_id"], ["charities.id"], name=op.f("fk_donations_charity_id_charities")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_donations_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["posting_id"], ["postings.id"], name=op.f("fk_donations_posting_id_postings")
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name=op.f("fk_donations_programme_id_programmes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_donations")),
        sa.UniqueConstraint("member_id", "key", name=op.f("uq_donations_member_id_key")),
    )
    with op.batch_alter_table("donations", schema=None) as batch_op:
        batch_op.create_index("ix_donations_member_id_id", ["member_id", "id"], unique=False)
        batch_op.create_index(
            "ix_donations_programme_created", ["programme_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("donations", schema=None) as batch_op:
        batch_op.drop_index("ix_donations_programme_created")
        batch_op.drop_index("ix_donations_member_id_id")
    op.drop_table("donations")
    op.drop_table("charities")

    with op.batch_alter_table("wallet_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_wallet_entries_member_id_id")
        batch_op.drop_index(
            "ix_wallet_entries_debit_id",
            postgresql_where=sa.text("debit_id IS NOT NULL"),
            sqlite_where=sa.text("debit_id IS NOT NULL"),
        )
    op.drop_table("wallet_entries")
    op.drop_table("wallets")

    with op.batch_alter_table("point_payment_refunds", schema=None) as batch_op:
        batch_op.drop_index("ix_point_payment_refunds_payment_id")
    op.drop_table("point_payment_refunds")
    with op.batch_alter_table("point_payments", schema=None) as batch_op:
        batch_op.drop_index("ix_point_payments_programme_order")
        batch_op.drop_index("ix_point_payments_member_id_id")
    op.drop_table("point_payments")

    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_postings_refund_of",
            postgresql_where=sa.text("refund_of IS NOT NULL"),
            sqlite_where=sa.text("refund_of IS NOT NULL"),
        )
        batch_op.drop_column("refund_of")
