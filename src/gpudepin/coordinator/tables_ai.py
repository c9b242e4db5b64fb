"""Tables of the AI workloads: training progress (for resumes) and hosted endpoints' figures."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, Integer, String, Table

from gpudepin.coordinator.db import metadata

# The newest checkpoint a training task's provider uploaded while it ran, and the
# commitments up to it: a task requeued after its provider died resumes from here.
train_progress = Table(
    "train_progress",
    metadata,
    Column("task_id", String(40), primary_key=True),
    Column("job_id", String(32), nullable=False, index=True),
    Column("provider", String(42), nullable=False),
    Column("step", Integer, nullable=False),
    Column("checkpoint_sha256", String(64), nullable=False),
    Column("commitments", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# A hosted endpoint's request figures, written from the gateway's in-memory window.
lease_endpoints = Table(
    "lease_endpoints",
    metadata,
    Column("lease_id", String(32), primary_key=True),
    Column("requests", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("latency_ms", JSON, nullable=False),  # the most recent request latencies
    Column("updated_at", Float, nullable=False),
)
