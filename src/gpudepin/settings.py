"""Settings, built once in ``main`` and passed down (never looked up globally).

The home folder is ``--home``, else ``GPUDEPIN_HOME``, else ``~/.gpudepin``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field


def resolve_home(home: Path | str | None = None) -> Path:
    """The home folder every command uses; created on first use with mode 0700."""
    raw = home or os.environ.get("GPUDEPIN_HOME") or Path.home() / ".gpudepin"
    path = Path(raw).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


class CoordinatorSettings(BaseModel):
    home: Path
    db_url: str | None = None  # None: SQLite in the home folder
    # short database calls on the event loop (True) or in threads of their own (False);
    # None: on the loop for SQLite only (see Runtime.quick)
    inline_db: bool | None = None
    db_threads: int = Field(default=2, ge=1)  # those threads, when not on the loop
    host: str = "127.0.0.1"
    port: int = 8470
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    assignment_ttl_s: float = Field(default=20.0, gt=0)  # silent agents lose tasks after this
    long_poll_s: float = Field(default=10.0, ge=0)
    fee_bps: int = Field(default=500, ge=0, le=10_000)  # 5% protocol take rate
    faucet: bool = True  # only on a local network: credits test tokens
    session_ttl_s: int = 24 * 3600
    loop_interval_s: float = 1.0
    # on-chain settlement (docs/chain.md); off while chain_rpc is None
    chain_rpc: str | None = None
    chain_config: Path | None = None  # default HOME/chain.json (addresses, chain id)
    chain_keys_dir: Path | None = None  # settlement/arbiter/minter keys; default HOME/keys
    chain_confirmations: int = Field(default=0, ge=0)
    epoch_interval_s: float = Field(default=3600.0, gt=0)
    # enterprise tier (docs/enterprise.md)
    enterprise_min_stake: str = "200"  # tokens staked, io.net's per-GPU bar
    enterprise_min_uptime: float = Field(default=0.99, ge=0, le=1)
    enterprise_window_s: float = Field(default=30 * 86_400.0, gt=0)
    enterprise_require_hardware_proof: bool = True
    uptime_max_gap_s: float = Field(default=60.0, gt=0)  # longer silences are outages
    standing_refresh_s: float = Field(default=30.0, ge=0)
    straggler_multiple: float = Field(default=1.5, ge=1)
    straggler_min_samples: int = Field(default=20, ge=1)
    shard_k: int = Field(default=4, ge=1, le=64)
    shard_n: int = Field(default=8, ge=2, le=128)
    shard_threshold_bytes: int = Field(default=8 * 1024 * 1024, ge=0)  # smaller: blob store
    # erasure-coded outputs (docs/storage.md)
    shards: bool = True  # spread large outputs over providers that offer disk
    shard_keep_coordinator_copy: bool = True  # False: the shards are the only copy
    shard_offline_s: float = Field(default=300.0, gt=0)  # a holder silent this long lost its shards
    shard_repair_margin: int = Field(default=2, ge=1)  # repair once live shards <= k + this
    shard_read_wait_s: float = Field(default=30.0, ge=0)  # a read waits this long for k shards
    stats_sample_interval_s: float = Field(default=300.0, gt=0)  # dashboard history
    token_usd: float = Field(default=1.0, ge=0)  # USD per token for the dashboard's USD figures

    # trust layer (docs/verification.md)
    audits: bool = True  # re-run a seeded sample of accepted results on other providers
    verification_seed: int = 0  # audit draws are reproducible from this and the task id
    hold_window_s: float = Field(default=7 * 86_400.0, ge=0)  # challenge window of earnings
    unbonding_s: float = Field(default=14 * 86_400.0, ge=0)
    known_answer_rate: float = Field(default=0.02, ge=0, le=1)
    audit_wait_s: float = Field(default=60.0, ge=0)  # a job waits this long for an auditor
    referee_local: bool = True  # the coordinator re-runs a disputed task when it has the engine
    hwproof_every_s: float = Field(default=6 * 3600.0, ge=0)  # 0: only at registration
    hwproof_setup_s: float = Field(default=1.0, gt=0)  # round-trip allowance of a proof

    # spot market (docs/market.md); off: a job's max price is its posted price, open to all
    market: bool = False
    market_bid_window_s: float = Field(default=30.0, ge=0, le=3600)
    market_cover: int = Field(default=2, ge=1)  # close early once bids cover an order this often
    market_start_timeout_s: float = Field(default=120.0, gt=0)  # a winner must start by then
    market_max_lease_s: int = Field(default=30 * 86_400, gt=0)
    lease_grace_s: float = Field(default=90.0, gt=0)  # billing stops this long after receipts do
    # lease uptime SLA and failover (docs/enterprise.md): receipts further apart than the
    # max gap are an outage; probes every lease_probe_s; a provider whose probes failed
    # for lease_failover_s (or whose receipts stopped for the grace) is failed over
    lease_sla_max_gap_s: float = Field(default=10.0, gt=0)
    lease_probe_s: float = Field(default=5.0, gt=0)
    lease_probe_timeout_s: float = Field(default=2.0, gt=0)
    lease_failover_s: float = Field(default=30.0, gt=0)
    # hosted inference on leases (docs/ai.md): a provider silent this long is taken for dead
    gateway_stale_s: float = Field(default=10.0, gt=0)
    gateway_timeout_s: float = Field(default=60.0, gt=0)  # the longest a request waits
    # a lease's replicas: a request unanswered this long (until the p95 is known) is hedged
    gateway_hedge_floor_s: float = Field(default=0.25, gt=0)

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.home / 'coordinator.db'}"

    @property
    def blob_dir(self) -> Path:
        return self.home / "blobs"
