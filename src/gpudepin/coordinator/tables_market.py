"""Tables of the spot market: orders, sealed bids, awards, standing asks, leases, prints."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, Index, Integer, String, Table, Text

from gpudepin.coordinator.db import Amount, metadata

# One row per order. A batch order's id is its job's id, so the claim query can join a
# task's job_id to its awards without another lookup; a lease order gets its own id.
orders = Table(
    "market_orders",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(10), nullable=False),
    Column("buyer", String(42), nullable=False, index=True),
    Column("requirements", JSON, nullable=False),
    Column("max_price", Amount, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("duration_s", Integer, nullable=False),
    Column("task_seconds", Float, nullable=False),
    Column("bid_window_s", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("closes_at", Float, nullable=False),
    Column("state", String(12), nullable=False),
    Column("cleared_at", Float, nullable=True),
    Column("clearing_price", Amount, nullable=True),
    Column("reason", Text, nullable=True),
    Column("explanation", JSON, nullable=True),
    Column("workload", JSON, nullable=True),
    Index("ix_market_orders_state_closes", "state", "closes_at"),
)

bids = Table(
    "market_bids",
    metadata,
    Column("order_id", String(32), primary_key=True),
    Column("provider", String(42), primary_key=True),
    Column("price", Amount, nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("valid_until", Float, nullable=False),
    Column("signature", String(140), nullable=False),
    Column("placed_at", Float, nullable=False),
    # open -> won | lost | lapsed (a winner that never started)
    Column("state", String(10), nullable=False),
)

# What a winner may run: ``quantity`` tasks (or one lease) at ``price`` each. A task of the
# order's job is claimable only by a provider holding an active award for it.
awards = Table(
    "market_awards",
    metadata,
    Column("order_id", String(32), primary_key=True),
    Column("provider", String(42), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("price", Amount, nullable=False),
    Column("gpu_class", String(40), nullable=False),
    Column("region", String(40), nullable=False),
    Column("awarded_at", Float, nullable=False),
    Column("start_by", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("instant", Integer, nullable=False),
    Column("state", String(10), nullable=False),  # active | lapsed | done
)

asks = Table(
    "market_asks",
    metadata,
    Column("provider", String(42), primary_key=True),
    Column("kind", String(10), primary_key=True),
    Column("gpu_class", String(40), primary_key=True),
    Column("region", String(40), nullable=False),
    Column("tier", String(20), nullable=False),
    Column("price", Amount, nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("valid_until", Float, nullable=False),
    Column("posted_at", Float, nullable=False),
)

leases = Table(
    "market_leases",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("order_id", String(32), nullable=False, index=True),
    Column("buyer", String(42), nullable=False, index=True),
    Column("provider", String(42), nullable=False, index=True),
    Column("gpu_class", String(40), nullable=False),
    Column("gpus", Integer, nullable=False),
    Column("price", Amount, nullable=False),
    Column("duration_s", Integer, nullable=False),
    Column("escrow", Amount, nullable=False),
    Column("awarded_at", Float, nullable=False),
    Column("start_deadline", Float, nullable=False),
    Column("state", String(16), nullable=False),
    Column("started_at", Float, nullable=True),
    Column("billed_seconds", Integer, nullable=False),
    Column("billed_amount", Amount, nullable=False),
    Column("fees", Amount, nullable=False),
    Column("last_cumulative", Integer, nullable=False),
    Column("last_receipt_at", Float, nullable=True),
    Column("last_signature", String(140), nullable=True),
    Column("closed_at", Float, nullable=True),
    Column("close_reason", Text, nullable=False),
    Column("workload", Text, nullable=False),
)

# Clearing prints for market data (the tape of recent prices per class and region).
prints = Table(
    "market_prints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(10), nullable=False),
    Column("gpu_class", String(40), nullable=False),
    Column("region", String(40), nullable=False),
    Column("price", Amount, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("at", Float, nullable=False, index=True),
)
