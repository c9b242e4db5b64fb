"""Tables of the enterprise tier: job terms, residency, uptime evidence, task copies, shards."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, Float, Index, Integer, String, Table, Text

from gpudepin.coordinator.db import Amount, metadata

# One row per job that carries placement restrictions or SLA terms; jobs without a row
# are consumer-tier and unrestricted, so the hot claim path stays a cheap NOT EXISTS.
job_terms = Table(
    "job_terms",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("tier", String(20), nullable=False),
    Column("residency", JSON, nullable=False),
    # True when only the regions listed in job_regions may run the job
    Column("restricted", Boolean, nullable=False),
    Column("deadline_s", Float, nullable=True),
    # set once the deadline SLA was settled (credited or found met), so it is paid once
    Column("sla_settled_at", Float, nullable=True),
    Column("sla_credit", Amount, nullable=True),
)

# The regions a restricted job may run in, expanded from REGION_TAGS at submission so
# that the claim query compares a provider's region with plain equality.
job_regions = Table(
    "job_regions",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("region", String(40), primary_key=True),
)

# Proof of life, compactly: one row per run of heartbeats no further apart than the
# SLA's max gap. A provider that never drops out keeps one row, however long it lives.
alive_runs = Table(
    "alive_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("provider", String(42), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=False),
    Index("ix_alive_runs_provider_end", "provider", "ended_at"),
)

# Each provider's enterprise standing, recomputed by a duty so claims read one row.
provider_standing = Table(
    "provider_standing",
    metadata,
    Column("provider", String(42), primary_key=True),
    Column("hardware_proven", Boolean, nullable=False),
    Column("stake", Amount, nullable=False),
    Column("uptime_30d", Float, nullable=False),
    Column("eligible", Boolean, nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("computed_at", Float, nullable=False),
)

# Speculative copies of straggling tasks (coordinator/speculation.py). The original
# attempt stays on the tasks row and is mirrored here (speculative false) once a race
# starts; a copy is 'wanted' until a second provider claims it, then 'running', and ends
# 'won', 'lost', 'cancelled', 'expired', 'rejected' or 'failed'.
task_copies = Table(
    "task_copies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(40), nullable=False, index=True),
    Column("job_id", String(32), nullable=False),
    Column("provider", String(42), nullable=True),
    Column("state", String(20), nullable=False),
    Column("speculative", Boolean, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("deadline", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("paid", Amount, nullable=True),
    # base units per second a cancelled speculative copy earns (migration 0401)
    Column("rate_per_s", Amount, nullable=True),
    Index("ix_task_copies_state", "state"),
)

# Disk offered by providers for erasure-coded shards.
storage_offers = Table(
    "storage_offers",
    metadata,
    Column("provider", String(42), primary_key=True),
    Column("capacity_bytes", BigInteger, nullable=False),
    Column("used_bytes", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# An erasure-coded artifact: the manifest of erasure.Manifest plus what it belongs to.
artifacts = Table(
    "artifacts",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("job_id", String(32), nullable=True, index=True),
    Column("name", String(200), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("k", Integer, nullable=False),
    Column("n", Integer, nullable=False),
    Column("manifest", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
)

# Which provider holds which shard. 'pending' until the holder confirmed the stored
# bytes, 'held' afterwards, 'lost' once the holder left or served a bad shard.
shard_holders = Table(
    "shard_holders",
    metadata,
    Column("artifact", String(64), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("provider", String(42), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("state", String(20), nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("note", Text, nullable=True),
    # set while the coordinator waits for the holder to send its shard back (0402)
    Column("send_requested_at", Float, nullable=True),
    Index("ix_shard_holders_provider", "provider"),
)

# Uptime SLA and failover of a lease order (coordinator/lease_sla.py, migration 0403).
# One row per lease order that carries terms; leases without a row are best effort.
lease_terms = Table(
    "lease_terms",
    metadata,
    Column("order_id", String(32), primary_key=True),
    Column("uptime_target", Float, nullable=True),  # a fraction; null: no uptime SLA
    # re-auction the lease at once when its provider dies (same endpoint address)
    Column("failover", Boolean, nullable=False),
    # providers hosting the endpoint at once; the gateway hedges across them
    Column("replicas", Integer, nullable=False, default=1),
    # set once the SLA was settled (credited or found met), so it pays exactly once
    Column("settled_at", Float, nullable=True),
    Column("credit", Amount, nullable=True),
)

# Proof of delivery of a lease: runs of usage receipts no further apart than the max gap.
lease_alive = Table(
    "lease_alive",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(32), nullable=False),
    Column("lease_id", String(40), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=False),
    Index("ix_lease_alive_order", "order_id", "ended_at"),
)

# Coordinator probes of a lease's endpoint or agent; only changes of verdict are kept
# (that is all the outage rule needs), plus the time of the latest probe on the terms.
lease_probes = Table(
    "lease_probes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(32), nullable=False),
    Column("lease_id", String(40), nullable=False),
    Column("at", Float, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("detail", String(200), nullable=False),
    Index("ix_lease_probes_order", "order_id", "at"),
)
