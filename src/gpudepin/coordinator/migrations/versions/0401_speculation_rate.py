"""task copies remember the per-second rate a cancelled speculative copy is paid at

Revision ID: 0401
Revises: 0400
"""

import sqlalchemy as sa
from alembic import op

revision = "0401"
down_revision = "0400"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("task_copies", sa.Column("rate_per_s", sa.String(80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_copies") as batch:
        batch.drop_column("rate_per_s")
