"""Honest hardware detection: nvidia-smi when present, otherwise the CPU as it is."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from typing import Any

from gpudepin.core.hardware import classify


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _nvidia_gpus() -> list[dict[str, Any]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, mem = line.rpartition(",")
        gpus.append({"name": name.strip(), "vram_gb": round(float(mem) / 1024, 1)})
    return gpus


def detect() -> dict[str, Any]:
    """What this machine has; ``gpu_class`` is a catalog class ('cpu' without a GPU)."""
    gpus = _nvidia_gpus()
    gpu_cls = classify(gpus[0]["name"]) if gpus else "cpu"
    return {
        "gpu_class": gpu_cls,
        "gpus": gpus,
        "gpu_count": len(gpus),
        "device": "cuda" if gpus else "cpu",
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count() or 1,
        "ram_gb": _ram_gb(),
        "os": platform.platform(),
    }
