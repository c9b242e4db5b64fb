"""``/metrics`` for Prometheus: one registry per app, gauges computed at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gpudepin.dashboard import figures

if TYPE_CHECKING:
    from fastapi import FastAPI

    from gpudepin.coordinator.app import Runtime

CONTENT_TYPE = CONTENT_TYPE_LATEST

# name, help, headline field, scale to whole tokens
_GAUGES = (
    ("providers_total", "Registered providers.", "providers_total", False),
    ("providers_online", "Providers seen within the assignment TTL.", "providers_online", False),
    ("gpus_online", "GPUs (devices) online.", "gpus_online", False),
    ("providers_busy", "Online providers holding an assigned task.", "busy", False),
    ("providers_leased", "Online providers with an active lease.", "leased", False),
    ("utilization_ratio", "(leased + busy) / online providers.", "utilization", False),
    ("jobs_total", "Jobs ever submitted.", "jobs_total", False),
    ("jobs_completed_total", "Jobs completed.", "jobs_completed", False),
    ("jobs_running", "Jobs funded or running now.", "jobs_running", False),
    ("jobs_last_24h", "Jobs submitted in the last 24 h.", "jobs_24h", False),
    ("leases_last_24h", "Leases started in the last 24 h.", "leases_24h", False),
    ("tasks_accepted_total", "Tasks accepted and paid.", "tasks_accepted", False),
    ("volume_tokens_last_24h", "Tokens buyers paid for accepted work, 24 h.", "volume_24h", True),
    ("fees_tokens_last_24h", "Protocol fees collected, 24 h.", "fees_24h", True),
    ("burned_tokens_last_24h", "Tokens burned, 24 h.", "burned_24h", True),
    ("minted_tokens_last_24h", "Tokens emitted, 24 h.", "minted_24h", True),
    ("audits_last_24h", "Verification audits, 24 h.", "audits_24h", False),
    ("audit_failures_last_24h", "Failed audits, 24 h.", "audit_failures_24h", False),
    ("slashes_last_24h", "Slashes, 24 h.", "slashes_24h", False),
    ("sla_breaches_last_24h", "SLA credits paid, 24 h.", "sla_breaches_24h", False),
)


class NetworkCollector(Collector):
    """Reads the coordinator's books on every scrape, so a gauge is never stale."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rt = self.rt
        now = rt.clock()
        with rt.reader.connect() as conn:
            h = figures.headline(conn, now, rt.settings.assignment_ttl_s)
            earnings = figures.earnings_per_gpu_day(
                conn, now, rt.settings.assignment_ttl_s, rt.settings.token_usd
            )
        data = h.to_dict()
        for name, help_text, key, money in _GAUGES:
            value = figures.tokens(data[key]) if money else float(data[key])
            yield GaugeMetricFamily(f"gpudepin_{name}", help_text, value=value)
        yield GaugeMetricFamily(
            "gpudepin_coordinator_lag_seconds",
            "How late this coordinator's event loop runs what is due (decaying maximum).",
            value=rt.lag_s,
        )
        by_class = GaugeMetricFamily(
            "gpudepin_gpus_online_by_class", "GPUs online per class.", labels=["gpu_class"]
        )
        for cls, n in h.gpus_by_class.items():
            by_class.add_metric([cls], n)
        yield by_class
        by_region = GaugeMetricFamily(
            "gpudepin_gpus_online_by_region", "GPUs online per region.", labels=["region"]
        )
        for region, n in h.gpus_by_region.items():
            by_region.add_metric([region], n)
        yield by_region
        earn = GaugeMetricFamily(
            "gpudepin_earnings_usd_per_gpu_day",
            "USD earned per online GPU over the last 24 h, per class.",
            labels=["gpu_class"],
        )
        for cls, e in earnings.items():
            earn.add_metric([cls], e["usd_per_gpu_day"])
        yield earn


def registry_for(app: FastAPI) -> CollectorRegistry:
    """The app's own registry (never the process-global one: tests run several apps)."""
    reg: CollectorRegistry | None = getattr(app.state, "metrics_registry", None)
    if reg is None:
        reg = CollectorRegistry(auto_describe=False)
        reg.register(NetworkCollector(app.state.rt))
        app.state.metrics_registry = reg
    return reg


def exposition(app: FastAPI) -> bytes:
    return generate_latest(registry_for(app))
