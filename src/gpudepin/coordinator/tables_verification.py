"""Tables of the trust layer: held payouts, audit cases and their checks, provider trust,
unbonding stake and hardware-proof challenges (docs/verification.md)."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, Index, Integer, String, Table, Text

from gpudepin.coordinator.db import Amount, metadata

# One row per paid task attempt: the provider's net pay sits in ``held:`` until the
# challenge window passes; a proven fault claws it (and the fee) back to the buyer.
payouts = Table(
    "payouts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(40), nullable=False, index=True),
    Column("job_id", String(32), nullable=False),
    Column("provider", String(42), nullable=False, index=True),
    Column("buyer", String(42), nullable=False),
    Column("net", Amount, nullable=False),
    Column("fee", Amount, nullable=False),
    Column("earned_at", Float, nullable=False),
    Column("state", String(20), nullable=False),  # held | released | clawed
    Column("settled_at", Float, nullable=True),
    Index("ix_payouts_state_earned", "state", "earned_at"),
)

# One case per accepted result: 'unplanned' until the duty draws whether to audit it,
# then 'passed' (no audit drawn), 'auditing' (checks out), 'waiting' (no eligible
# auditor yet), and finally 'accepted', 'rejected' or 'expired' (window passed unchecked).
cases = Table(
    "verification_cases",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("task_id", String(40), nullable=False, index=True),
    Column("job_id", String(32), nullable=False, index=True),
    Column("provider", String(42), nullable=False, index=True),
    Column("result_sha256", String(64), nullable=False),
    Column("signature", String(140), nullable=False),
    Column("state", String(20), nullable=False),
    Column("rate", Float, nullable=True),
    Column("spec", JSON, nullable=True),  # what every checker re-runs (task spec + tile)
    Column("rerun", Text, nullable=True),
    Column("evidence", JSON, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("decided_at", Float, nullable=True),
    Index("ix_cases_state", "state"),
)

# A re-execution handed to another provider (auditor or referee) or run by the
# coordinator itself; ``known_answer`` checks replay a verified case to test the auditor.
checks = Table(
    "verification_checks",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("case_id", String(40), nullable=False, index=True),
    Column("role", String(20), nullable=False),  # auditor | referee | known_answer
    Column("checker", String(42), nullable=False, index=True),
    Column("state", String(20), nullable=False),  # assigned | running | done | expired
    Column("deadline", Float, nullable=True),
    Column("result_sha256", String(64), nullable=True),
    Column("signature", String(140), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# What the network knows of each provider's record (core.verification.ProviderRecord),
# plus the hardware proof's standing that the enterprise tier reads.
trust = Table(
    "provider_trust",
    metadata,
    Column("address", String(42), primary_key=True),
    Column("verified", Integer, nullable=False, default=0),
    Column("streak", Integer, nullable=False, default=0),
    Column("faults", Integer, nullable=False, default=0),
    Column("auditor_faults", Integer, nullable=False, default=0),
    Column("banned", Boolean, nullable=False, default=False),
    Column("ban_reason", Text, nullable=True),
    Column("hardware_proven", Boolean, nullable=False, default=False),
    Column("proven_class", String(40), nullable=True),
    Column("next_hwproof_at", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
)

unbondings = Table(
    "unbondings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("address", String(42), nullable=False, index=True),
    Column("amount", Amount, nullable=False),
    Column("requested_at", Float, nullable=False),
    Column("release_at", Float, nullable=False),
    Column("released", Boolean, nullable=False, default=False),
)

hw_challenges = Table(
    "hw_challenges",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("address", String(42), nullable=False, index=True),
    Column("claimed", String(40), nullable=False),
    Column("seed", String(40), nullable=False),
    Column("n", Integer, nullable=False),
    Column("state", String(20), nullable=False),  # new | issued | committed | done
    Column("issued_at", Float, nullable=True),
    Column("committed_at", Float, nullable=True),
    Column("commitment", String(64), nullable=True),
    Column("rows", JSON, nullable=True),
    Column("verdict", JSON, nullable=True),
    Column("created_at", Float, nullable=False),
)
