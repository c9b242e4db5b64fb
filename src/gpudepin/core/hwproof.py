"""Hardware proof rules: size a matrix-product challenge to the claimed card and judge it.

The coordinator sends a seed; the provider derives ``A`` and ``B`` (n x n) from it,
computes ``C = A @ B`` in FP32 (``2 n^3`` floating-point operations), commits to ``C`` and
answers spot queries (``gpudepin.verification.hwproof`` does the numeric work). Here are
the pure parts: how big ``n`` is, how long the product may take, and the verdict.

Time is what the coordinator measured between sending the seed and receiving the
commitment, so it includes deriving the inputs and hashing the output (``O(n^2)``) and
the network: the budget grants ``setup_base_s + setup_ns_per_entry * n^2`` on top of the
product. Because that allowance grows with ``n^2`` and the product with ``n^3``, the
speed check at sizes that fit a coordinator's check (n <= 16,384) tells a CPU, or a card
an order of magnitude slower than claimed, from the claim, not two neighbouring GPU
classes; the agent's driver-reported name and VRAM are the finer check.
``min_efficiency`` is generous (an honest card reaches 50-80 % of its FP32 peak on a
large product; we ask for 10 %), so an honest card passes on a busy host.
A card slower than its claim is reclassified to the fastest class whose bar its speed
clears; below even ``cpu`` it is refused. A wrong product is a fault, whatever the speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from gpudepin.core.errors import InvalidInput
from gpudepin.core.hardware import CATALOG, GpuClass, gpu_class


@dataclass(frozen=True)
class HwProofParams:
    target_s: float = 0.25  # how long the product should take at the claimed peak
    min_efficiency: float = 0.10  # share of the claimed FP32 peak a card must reach
    setup_base_s: float = 1.0  # allowance for the round trip
    setup_ns_per_entry: float = 100.0  # deriving A, B and hashing C with numpy on a busy CPU
    min_n: int = 256
    max_n: int = 16_384  # bounds the coordinator's O(n^2) check and the upload
    vram_share: float = 0.5  # A, B and C together use at most this share of VRAM
    spot_rows: int = 32  # rows the coordinator asks for
    freivalds_vectors: int = 16  # error <= 2^-k per row that is wrong


DEFAULT_HW = HwProofParams()


@dataclass(frozen=True)
class ChallengeSpec:
    claimed: str
    n: int
    flops: float
    deadline_s: float  # beyond this the claim is not met


def flops_of(n: int) -> float:
    return 2.0 * n**3


def challenge_size(cls: GpuClass, params: HwProofParams = DEFAULT_HW) -> int:
    """The matrix size for a card of class ``cls``: about ``target_s`` at its peak, a
    multiple of 256, capped by its memory and by ``max_n``."""
    n = (params.target_s * cls.fp32_tflops * 1e12 / 2.0) ** (1.0 / 3.0)
    if cls.vram_gb > 0:
        n = min(n, math.sqrt(cls.vram_gb * 1e9 * params.vram_share / 12.0))
    n_int = int(n) // 256 * 256
    return max(params.min_n, min(params.max_n, n_int))


def expected_seconds(cls: GpuClass, n: int, efficiency: float = 1.0) -> float:
    """Seconds for the product of two n x n FP32 matrices at ``efficiency`` of the peak."""
    return flops_of(n) / (cls.fp32_tflops * 1e12 * efficiency)


def make_spec(claimed: str, params: HwProofParams = DEFAULT_HW) -> ChallengeSpec:
    """The challenge for a provider that claims class ``claimed``."""
    cls = gpu_class(claimed)
    n = challenge_size(cls, params)
    deadline = expected_seconds(cls, n, params.min_efficiency) + setup_seconds(n, params)
    return ChallengeSpec(cls.name, n, flops_of(n), deadline)


class HwOutcome(StrEnum):
    PASS = "pass"
    RECLASSIFY = "reclassify"  # honest result, but the speed of a lower class
    REFUSE = "refuse"  # slower than any class we list
    FAULT = "fault"  # the product was wrong: a fabricated proof


@dataclass(frozen=True)
class HwVerdict:
    outcome: HwOutcome
    device_class: str | None  # the class to record (None when refused or faulted)
    measured_tflops: float
    detail: str


def setup_seconds(n: int, params: HwProofParams = DEFAULT_HW) -> float:
    """The time granted for everything but the product itself."""
    return params.setup_base_s + params.setup_ns_per_entry * 1e-9 * n * n


def measured_tflops(n: int, seconds: float, params: HwProofParams = DEFAULT_HW) -> float:
    """The throughput shown, after the setup allowance (never below a tiny positive time)."""
    compute_s = max(seconds - setup_seconds(n, params), 1e-9)
    return flops_of(n) / compute_s / 1e12


def _clears(cls: GpuClass, n: int, seconds: float, params: HwProofParams) -> bool:
    return seconds <= expected_seconds(cls, n, params.min_efficiency) + setup_seconds(n, params)


def judge(
    spec: ChallengeSpec, product_ok: bool, seconds: float, params: HwProofParams = DEFAULT_HW
) -> HwVerdict:
    """The verdict on one challenge: correctness first, then speed against the claim."""
    if seconds < 0:
        raise InvalidInput(f"elapsed time cannot be negative, got {seconds}")
    tflops = measured_tflops(spec.n, seconds, params)
    if not product_ok:
        return HwVerdict(HwOutcome.FAULT, None, tflops, "the product failed the check")
    claimed = gpu_class(spec.claimed)
    if claimed.name == "cpu":
        # cpu is the honest floor: a correct product is all it must show, however busy
        return HwVerdict(HwOutcome.PASS, "cpu", tflops, f"{seconds:.3f}s on a CPU")
    if _clears(claimed, spec.n, seconds, params):
        return HwVerdict(HwOutcome.PASS, claimed.name, tflops, f"{seconds:.3f}s within deadline")
    slower = sorted(
        (c for c in CATALOG.values() if c.fp32_tflops < claimed.fp32_tflops),
        key=lambda c: c.fp32_tflops,
        reverse=True,
    )
    for cls in slower:
        if _clears(cls, spec.n, seconds, params):
            return HwVerdict(
                HwOutcome.RECLASSIFY,
                cls.name,
                tflops,
                f"{seconds:.3f}s is the speed of {cls.name}, not {claimed.name}",
            )
    return HwVerdict(HwOutcome.REFUSE, None, tflops, f"{seconds:.3f}s is slower than any class")
