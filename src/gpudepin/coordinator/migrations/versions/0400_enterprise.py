"""enterprise tier: job terms, residency, alive runs, task copies, shards

Revision ID: 0400
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0400"
down_revision = "0001"
branch_labels = ("enterprise",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_terms",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("tier", sa.String(20), nullable=False),
        sa.Column("residency", sa.JSON(), nullable=False),
        sa.Column("restricted", sa.Boolean(), nullable=False),
        sa.Column("deadline_s", sa.Float(), nullable=True),
        sa.Column("sla_settled_at", sa.Float(), nullable=True),
        sa.Column("sla_credit", sa.String(80), nullable=True),
    )
    op.create_table(
        "job_regions",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(40), primary_key=True),
    )
    op.create_table(
        "alive_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(42), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_alive_runs_provider_end", "alive_runs", ["provider", "ended_at"])
    op.create_table(
        "provider_standing",
        sa.Column("provider", sa.String(42), primary_key=True),
        sa.Column("hardware_proven", sa.Boolean(), nullable=False),
        sa.Column("stake", sa.String(80), nullable=False),
        sa.Column("uptime_30d", sa.Float(), nullable=False),
        sa.Column("eligible", sa.Boolean(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("computed_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "task_copies",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(40), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(42), nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("speculative", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("deadline", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("paid", sa.String(80), nullable=True),
    )
    op.create_index("ix_task_copies_task_id", "task_copies", ["task_id"])
    op.create_index("ix_task_copies_state", "task_copies", ["state"])
    op.create_table(
        "storage_offers",
        sa.Column("provider", sa.String(42), primary_key=True),
        sa.Column("capacity_bytes", sa.BigInteger(), nullable=False),
        sa.Column("used_bytes", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "artifacts",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_artifacts_job_id", "artifacts", ["job_id"])
    op.create_table(
        "shard_holders",
        sa.Column("artifact", sa.String(64), primary_key=True),
        sa.Column("idx", sa.Integer(), primary_key=True),
        sa.Column("provider", sa.String(42), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    for name in (
        "shard_holders",
        "artifacts",
        "storage_offers",
        "task_copies",
        "provider_standing",
        "alive_runs",
        "job_regions",
        "job_terms",
    ):
        op.drop_table(name)
