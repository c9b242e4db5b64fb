"""Table of refereed bisections of training runs (docs/verification.md, "Training")."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, Integer, String, Table

from gpudepin.coordinator.db import metadata

# One row per segment audit whose end commitments disagreed. ``body`` is the core's
# ``Dispute`` as JSON; ``state`` mirrors its phase, then 'applied' once the verdict has
# moved money. ``asked`` lists the parties handed the current query through their poll;
# ``history`` keeps every round's answers and signatures, ``referee`` the referee's step.
disputes = Table(
    "training_disputes",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("case_id", String(40), nullable=False, index=True),
    Column("job_id", String(32), nullable=False, index=True),
    Column("task_id", String(40), nullable=False),
    Column("provider", String(42), nullable=False),
    Column("challenger", String(42), nullable=False),
    Column("anchor_step", Integer, nullable=False),
    Column("anchor_sha256", String(64), nullable=True),  # None: replay from step 0
    Column("end_step", Integer, nullable=False),
    Column("state", String(20), nullable=False, index=True),
    Column("body", JSON, nullable=False),
    Column("asked", JSON, nullable=False),
    Column("history", JSON, nullable=False),
    Column("referee", JSON, nullable=True),
    Column("deadline", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("decided_at", Float, nullable=True),
)
