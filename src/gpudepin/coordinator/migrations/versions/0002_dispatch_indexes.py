"""dispatch: indexes the claim walks in order instead of sorting every pending task

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = ("dispatch",)
depends_on = None


def upgrade() -> None:
    # the claim takes the oldest pending tasks: in this order SQLite stops after the few
    # it hands out instead of sorting thousands under the writer lock
    op.create_index("ix_tasks_state_order", "tasks", ["state", "updated_at", "idx"])
    # "active jobs" is read by every claim; without it the jobs table is scanned
    op.create_index("ix_jobs_state", "jobs", ["state"])
    # a heartbeat extends its provider's assigned tasks: by state alone SQLite walked
    # every assigned task of the network on each beat
    op.create_index("ix_tasks_provider_state", "tasks", ["provider", "state"])


def downgrade() -> None:
    op.drop_index("ix_tasks_provider_state", "tasks")
    op.drop_index("ix_jobs_state", "jobs")
    op.drop_index("ix_tasks_state_order", "tasks")
