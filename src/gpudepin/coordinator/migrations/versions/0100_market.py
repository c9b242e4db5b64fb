"""market: orders, bids, awards, standing asks, leases, clearing prints

Revision ID: 0100
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0100"
down_revision = "0001"
branch_labels = ("market",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "market_orders",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("buyer", sa.String(42), nullable=False),
        sa.Column("requirements", sa.JSON(), nullable=False),
        sa.Column("max_price", sa.String(80), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("task_seconds", sa.Float(), nullable=False),
        sa.Column("bid_window_s", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("closes_at", sa.Float(), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("cleared_at", sa.Float(), nullable=True),
        sa.Column("clearing_price", sa.String(80), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("explanation", sa.JSON(), nullable=True),
        sa.Column("workload", sa.JSON(), nullable=True),
    )
    op.create_index("ix_market_orders_buyer", "market_orders", ["buyer"])
    op.create_index("ix_market_orders_state_closes", "market_orders", ["state", "closes_at"])
    op.create_table(
        "market_bids",
        sa.Column("order_id", sa.String(32), primary_key=True),
        sa.Column("provider", sa.String(42), primary_key=True),
        sa.Column("price", sa.String(80), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("valid_until", sa.Float(), nullable=False),
        sa.Column("signature", sa.String(140), nullable=False),
        sa.Column("placed_at", sa.Float(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
    )
    op.create_table(
        "market_awards",
        sa.Column("order_id", sa.String(32), primary_key=True),
        sa.Column("provider", sa.String(42), primary_key=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price", sa.String(80), nullable=False),
        sa.Column("gpu_class", sa.String(40), nullable=False),
        sa.Column("region", sa.String(40), nullable=False),
        sa.Column("awarded_at", sa.Float(), nullable=False),
        sa.Column("start_by", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("instant", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
    )
    op.create_table(
        "market_asks",
        sa.Column("provider", sa.String(42), primary_key=True),
        sa.Column("kind", sa.String(10), primary_key=True),
        sa.Column("gpu_class", sa.String(40), primary_key=True),
        sa.Column("region", sa.String(40), nullable=False),
        sa.Column("tier", sa.String(20), nullable=False),
        sa.Column("price", sa.String(80), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("valid_until", sa.Float(), nullable=False),
        sa.Column("posted_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "market_leases",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("order_id", sa.String(32), nullable=False),
        sa.Column("buyer", sa.String(42), nullable=False),
        sa.Column("provider", sa.String(42), nullable=False),
        sa.Column("gpu_class", sa.String(40), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("price", sa.String(80), nullable=False),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("escrow", sa.String(80), nullable=False),
        sa.Column("awarded_at", sa.Float(), nullable=False),
        sa.Column("start_deadline", sa.Float(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("billed_seconds", sa.Integer(), nullable=False),
        sa.Column("billed_amount", sa.String(80), nullable=False),
        sa.Column("fees", sa.String(80), nullable=False),
        sa.Column("last_cumulative", sa.Integer(), nullable=False),
        sa.Column("last_receipt_at", sa.Float(), nullable=True),
        sa.Column("last_signature", sa.String(140), nullable=True),
        sa.Column("closed_at", sa.Float(), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=False),
        sa.Column("workload", sa.Text(), nullable=False),
    )
    for col in ("order_id", "buyer", "provider"):
        op.create_index(f"ix_market_leases_{col}", "market_leases", [col])
    op.create_table(
        "market_prints",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("gpu_class", sa.String(40), nullable=False),
        sa.Column("region", sa.String(40), nullable=False),
        sa.Column("price", sa.String(80), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index("ix_market_prints_at", "market_prints", ["at"])


def downgrade() -> None:
    for table in (
        "market_prints",
        "market_leases",
        "market_asks",
        "market_awards",
        "market_bids",
        "market_orders",
    ):
        op.drop_table(table)
