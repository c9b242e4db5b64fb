"""ai: training progress for resumes, hosted endpoints' request figures

Revision ID: 0500
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0500"
down_revision = "0001"
branch_labels = ("ai",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "train_progress",
        sa.Column("task_id", sa.String(40), primary_key=True),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(42), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("checkpoint_sha256", sa.String(64), nullable=False),
        sa.Column("commitments", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_train_progress_job_id", "train_progress", ["job_id"])
    op.create_table(
        "lease_endpoints",
        sa.Column("lease_id", sa.String(32), primary_key=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lease_endpoints")
    op.drop_index("ix_train_progress_job_id", table_name="train_progress")
    op.drop_table("train_progress")
