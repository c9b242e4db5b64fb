"""The dashboard's table: headline figures sampled over time ("now vs 24 h ago")."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, Integer, Table

from gpudepin.coordinator.db import metadata

stats_samples = Table(
    "stats_samples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),
    Column("figures", JSON, nullable=False),
)
