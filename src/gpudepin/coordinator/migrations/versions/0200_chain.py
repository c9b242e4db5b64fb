"""chain: credited vault events, epochs, cumulative payees, settlement state

Revision ID: 0200
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0200"
down_revision = "0001"
branch_labels = ("chain",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chain_events",
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("amount", sa.String(80), nullable=False),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_chain_events_address", "chain_events", ["address"])
    op.create_table(
        "chain_epochs",
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("root", sa.String(66), nullable=False),
        sa.Column("leaves", sa.JSON(), nullable=False),
        sa.Column("total", sa.String(80), nullable=False),
        sa.Column("fees_burned", sa.String(80), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("gas", sa.Integer(), nullable=True),
        sa.Column("block", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("posted_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("number"),
    )
    op.create_table(
        "chain_payees",
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("cumulative", sa.String(80), nullable=False),
        sa.PrimaryKeyConstraint("address"),
    )
    op.create_table(
        "chain_state",
        sa.Column("key", sa.String(40), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("chain_state")
    op.drop_table("chain_payees")
    op.drop_table("chain_epochs")
    op.drop_index("ix_chain_events_address", table_name="chain_events")
    op.drop_table("chain_events")
