"""verification: refereed bisection disputes of training runs

Revision ID: 0302
Revises: 0300
"""

import sqlalchemy as sa
from alembic import op

revision = "0302"
down_revision = "0300"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "training_disputes",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("case_id", sa.String(40), nullable=False, index=True),
        sa.Column("job_id", sa.String(32), nullable=False, index=True),
        sa.Column("task_id", sa.String(40), nullable=False),
        sa.Column("provider", sa.String(42), nullable=False),
        sa.Column("challenger", sa.String(42), nullable=False),
        sa.Column("anchor_step", sa.Integer(), nullable=False),
        sa.Column("anchor_sha256", sa.String(64), nullable=True),
        sa.Column("end_step", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("asked", sa.JSON(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("referee", sa.JSON(), nullable=True),
        sa.Column("deadline", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("decided_at", sa.Float(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("training_disputes")
