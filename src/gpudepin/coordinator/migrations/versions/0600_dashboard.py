"""dashboard: sampled headline figures

Revision ID: 0600
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0600"
down_revision = "0001"
branch_labels = ("dashboard",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stats_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_stats_samples_at", "stats_samples", ["at"])


def downgrade() -> None:
    op.drop_index("ix_stats_samples_at", table_name="stats_samples")
    op.drop_table("stats_samples")
