"""Tables of on-chain settlement: events credited, epochs posted, cumulative payees."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, Integer, String, Table

from gpudepin.coordinator.db import Amount, metadata

# One row per vault log the ledger acted on (a Deposit or a Claimed event); its key
# ("txhash:logindex") is the primary key, so a log seen twice is credited once.
chain_events = Table(
    "chain_events",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("address", String(42), nullable=False, index=True),
    Column("amount", Amount, nullable=False),
    Column("block", Integer, nullable=False),
    Column("at", Float, nullable=False),
)

# Written as 'pending' before the root is sent and 'posted' once it is mined, so a
# coordinator that dies in between finds the root it meant to post.
chain_epochs = Table(
    "chain_epochs",
    metadata,
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("root", String(66), nullable=False),
    Column("leaves", JSON, nullable=False),  # {address: cumulative base units as text}
    Column("total", Amount, nullable=False),
    Column("fees_burned", Amount, nullable=False),
    Column("state", String(10), nullable=False),
    Column("tx_hash", String(66), nullable=True),
    Column("gas", Integer, nullable=True),
    Column("block", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("posted_at", Float, nullable=True),
)

# Everything ever made claimable per address: the figure its Merkle leaf commits to.
chain_payees = Table(
    "chain_payees",
    metadata,
    Column("address", String(42), primary_key=True),
    Column("cumulative", Amount, nullable=False),
)

# Small named values: the event-scan cursor, the settlement halt, the last reconciliation.
chain_state = Table(
    "chain_state",
    metadata,
    Column("key", String(40), primary_key=True),
    Column("value", JSON, nullable=False),
)
