"""shard holders: when the coordinator asked a holder to send its shard; index by holder

Revision ID: 0402
Revises: 0401
"""

import sqlalchemy as sa
from alembic import op

revision = "0402"
down_revision = "0401"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("shard_holders", sa.Column("send_requested_at", sa.Float(), nullable=True))
    op.create_index("ix_shard_holders_provider", "shard_holders", ["provider"])


def downgrade() -> None:
    op.drop_index("ix_shard_holders_provider", "shard_holders")
    with op.batch_alter_table("shard_holders") as batch:
        batch.drop_column("send_requested_at")
