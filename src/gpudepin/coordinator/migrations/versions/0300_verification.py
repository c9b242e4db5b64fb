"""verification: held payouts, audit cases and checks, provider trust, unbonding, hw proofs

Revision ID: 0300
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0300"
down_revision = "0001"
branch_labels = ("verification",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payouts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(40), nullable=False, index=True),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(42), nullable=False, index=True),
        sa.Column("buyer", sa.String(42), nullable=False),
        sa.Column("net", sa.String(80), nullable=False),
        sa.Column("fee", sa.String(80), nullable=False),
        sa.Column("earned_at", sa.Float(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("settled_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_payouts_state_earned", "payouts", ["state", "earned_at"])
    op.create_table(
        "verification_cases",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("task_id", sa.String(40), nullable=False, index=True),
        sa.Column("job_id", sa.String(32), nullable=False, index=True),
        sa.Column("provider", sa.String(42), nullable=False, index=True),
        sa.Column("result_sha256", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(140), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("rate", sa.Float(), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=True),
        sa.Column("rerun", sa.Text(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("decided_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_cases_state", "verification_cases", ["state"])
    op.create_table(
        "verification_checks",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("case_id", sa.String(40), nullable=False, index=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("checker", sa.String(42), nullable=False, index=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("deadline", sa.Float(), nullable=True),
        sa.Column("result_sha256", sa.String(64), nullable=True),
        sa.Column("signature", sa.String(140), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "provider_trust",
        sa.Column("address", sa.String(42), primary_key=True),
        sa.Column("verified", sa.Integer(), nullable=False),
        sa.Column("streak", sa.Integer(), nullable=False),
        sa.Column("faults", sa.Integer(), nullable=False),
        sa.Column("auditor_faults", sa.Integer(), nullable=False),
        sa.Column("banned", sa.Boolean(), nullable=False),
        sa.Column("ban_reason", sa.Text(), nullable=True),
        sa.Column("hardware_proven", sa.Boolean(), nullable=False),
        sa.Column("proven_class", sa.String(40), nullable=True),
        sa.Column("next_hwproof_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "unbondings",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("address", sa.String(42), nullable=False, index=True),
        sa.Column("amount", sa.String(80), nullable=False),
        sa.Column("requested_at", sa.Float(), nullable=False),
        sa.Column("release_at", sa.Float(), nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "hw_challenges",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("address", sa.String(42), nullable=False, index=True),
        sa.Column("claimed", sa.String(40), nullable=False),
        sa.Column("seed", sa.String(40), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("issued_at", sa.Float(), nullable=True),
        sa.Column("committed_at", sa.Float(), nullable=True),
        sa.Column("commitment", sa.String(64), nullable=True),
        sa.Column("rows", sa.JSON(), nullable=True),
        sa.Column("verdict", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    for name in (
        "hw_challenges",
        "unbondings",
        "provider_trust",
        "verification_checks",
        "verification_cases",
        "payouts",
    ):
        op.drop_table(name)
