"""lease uptime SLA and failover: lease_terms, lease_alive, lease_probes

Revision ID: 0403
Revises: 0402
"""

import sqlalchemy as sa
from alembic import op

revision = "0403"
down_revision = "0402"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lease_terms",
        sa.Column("order_id", sa.String(32), primary_key=True),
        sa.Column("uptime_target", sa.Float(), nullable=True),
        sa.Column("failover", sa.Boolean(), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("settled_at", sa.Float(), nullable=True),
        sa.Column("credit", sa.String(80), nullable=True),
    )
    op.create_table(
        "lease_alive",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(32), nullable=False),
        sa.Column("lease_id", sa.String(40), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_lease_alive_order", "lease_alive", ["order_id", "ended_at"])
    op.create_table(
        "lease_probes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(32), nullable=False),
        sa.Column("lease_id", sa.String(40), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.String(200), nullable=False),
    )
    op.create_index("ix_lease_probes_order", "lease_probes", ["order_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_lease_probes_order", "lease_probes")
    op.drop_table("lease_probes")
    op.drop_index("ix_lease_alive_order", "lease_alive")
    op.drop_table("lease_alive")
    op.drop_table("lease_terms")
