"""Sampled audits of row-wise work: which rows an auditor re-runs, and how close is close.

Batch inference (ONNX models, catalog embeddings) computes every input row on its own, so
a result can be checked row by row: the auditor re-runs a seeded random sample of the
task's rows and its outputs are compared with the provider's outputs for the same rows.
A sample of ``m`` rows out of ``n`` costs ``m/n`` of a full re-run. A result with ``k``
wrong rows escapes the sample with the hypergeometric probability
``C(n-k, m) / C(n, m)``, so the catch rate ``q`` of one audit is::

    q = 1 - C(n-k, m) / C(n, m)                                   catch_probability()

A provider that fakes its whole output (``k = n``) is caught by any sample; one that
fakes a share ``f`` of the rows is caught with ``q >= 1 - (1-f)^m``. The sample size is
``max(min_rows, ceil(rate * n))`` capped at ``max_rows`` (and at ``n``): with the
defaults, a task of 1,024 rows is audited on 52 of them (5 % of the compute), and a
cheat on 10 % of its rows escapes one audit with probability below 0.5 %.

Tolerance table
---------------
Outputs are compared per model and per pair of device classes (``tolerance_for``):

=================  ===========================  ================================
model              same device class            different device classes
=================  ===========================  ================================
``onnx``           exact (bitwise)              atol 1e-3, rtol 1e-2, cos 0.999
catalog embedder   atol 1e-5, rtol 1e-4,        atol 1e-4, rtol 1e-3, cos 0.9999
                   cos 0.99999
=================  ===========================  ================================

On the same build and device class a row's output does not depend on which other rows
share its batch (ONNX Runtime's CPU kernels split work by rows, never within a dot
product), so ONNX results must match bit for bit. A sentence embedder pads each batch to
its longest text, and the sample is batched differently from the provider's run, which
moves values by ~1e-7: hence a tight tolerance, not an exact one. Across device classes
(CPU vs CUDA, TF32 matrix products) values drift further; a buyer may set the job's
``atol``/``rtol``, which then govern cross-class comparisons, while same-class ones take
whichever of the table's and the job's tolerance is stricter.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from gpudepin.core.errors import InvalidInput


@dataclass(frozen=True)
class SampleParams:
    """How many rows of a task an audit re-runs."""

    rate: float = 0.05
    min_rows: int = 1
    max_rows: int = 64

    def __post_init__(self) -> None:
        if not 0.0 < self.rate <= 1.0:
            raise InvalidInput(f"rate must lie in (0, 1], got {self.rate}")
        if not 1 <= self.min_rows <= self.max_rows:
            raise InvalidInput("need 1 <= min_rows <= max_rows")


DEFAULT_SAMPLE = SampleParams()


def sample_size(rows: int, params: SampleParams = DEFAULT_SAMPLE) -> int:
    """How many of a task's ``rows`` an audit re-runs."""
    if rows <= 0:
        raise InvalidInput(f"a task needs at least one row, got {rows}")
    wanted = max(params.min_rows, math.ceil(params.rate * rows))
    return min(rows, params.max_rows, wanted)


def sample_rows(
    start: int, end: int, rng: random.Random, params: SampleParams = DEFAULT_SAMPLE
) -> tuple[int, ...]:
    """The rows of ``[start, end)`` an audit re-runs, ascending, drawn from ``rng``."""
    if end <= start:
        raise InvalidInput(f"empty row range {start}-{end}")
    return tuple(sorted(rng.sample(range(start, end), sample_size(end - start, params))))


def audit_cost(rows: int, params: SampleParams = DEFAULT_SAMPLE) -> float:
    """The compute of a sampled audit as a share of a full re-run of the task."""
    return sample_size(rows, params) / rows


def catch_probability(rows: int, wrong: int, sampled: int) -> float:
    """P(a sample of ``sampled`` rows hits at least one of ``wrong`` rows out of ``rows``)."""
    if not 0 <= wrong <= rows or not 0 <= sampled <= rows:
        raise InvalidInput("need 0 <= wrong, sampled <= rows")
    if wrong == 0 or sampled == 0:
        return 0.0
    if sampled > rows - wrong:
        return 1.0
    # C(n-k, m) / C(n, m) as a product, so large n stays exact enough and fast
    escape = 1.0
    for i in range(sampled):
        escape *= (rows - wrong - i) / (rows - i)
    return 1.0 - escape


# --- the tolerance table ------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    """How far two results of the same rows may differ and still count as equal:
    ``allclose(atol, rtol)`` value by value and a per-row cosine of at least
    ``min_cosine``."""

    atol: float
    rtol: float
    min_cosine: float

    def stricter(self, other: Tolerance) -> Tolerance:
        """The tighter of two tolerances, bound by bound."""
        return Tolerance(
            min(self.atol, other.atol),
            min(self.rtol, other.rtol),
            max(self.min_cosine, other.min_cosine),
        )


EXACT = Tolerance(atol=0.0, rtol=0.0, min_cosine=1.0)
CROSS_DEVICE = Tolerance(atol=1e-3, rtol=1e-2, min_cosine=0.999)


@dataclass(frozen=True)
class ToleranceRow:
    """One model's row of the table: within a device class and across classes."""

    same_class: Tolerance
    cross_class: Tolerance


ONNX_ROW = ToleranceRow(same_class=EXACT, cross_class=CROSS_DEVICE)
TOLERANCES: dict[str, ToleranceRow] = {
    "onnx": ONNX_ROW,
    "all-minilm-l6-v2": ToleranceRow(
        same_class=Tolerance(atol=1e-5, rtol=1e-4, min_cosine=0.99999),
        cross_class=Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.9999),
    ),
}


def tolerance_row(model: str) -> ToleranceRow:
    """The table's row for ``model``; a model without one is compared like an ONNX model
    across classes, the loosest rule, so that no honest result is rejected."""
    return TOLERANCES.get(model, ToleranceRow(CROSS_DEVICE, CROSS_DEVICE))


def tolerance_for(
    model: str, class_a: str, class_b: str, requested: Tolerance | None = None
) -> Tolerance:
    """The tolerance for comparing results of ``model`` made on two device classes.

    ``requested`` is the job's own (buyer-set) tolerance: it governs comparisons across
    classes; within one class the stricter of it and the table's same-class row applies.
    """
    row = tolerance_row(model)
    cross = requested if requested is not None else row.cross_class
    if class_a == class_b:
        return row.same_class.stricter(cross)
    return cross
