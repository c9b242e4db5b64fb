from __future__ import annotations

import random

import numpy as np
import pytest

from gpudepin.core import hwproof as H
from gpudepin.core.errors import Unavailable
from gpudepin.core.hardware import gpu_class
from gpudepin.verification import hwproof as W

N = 192  # small enough for CI; the rules do not depend on the size


@pytest.fixture(scope="module")
def solved() -> tuple[W.Challenge, W.Solution]:
    ch = W.make_challenge(seed=42, n=N)
    return ch, W.solve(ch, "cpu")


def test_inputs_come_from_the_seed_alone() -> None:
    a = W.make_challenge(7, 64)
    assert np.array_equal(a.a, W.make_challenge(7, 64).a)
    assert not np.array_equal(a.a, W.make_challenge(8, 64).a)
    assert not np.array_equal(a.a, a.b)
    # any row can be derived on its own, so the coordinator never builds A whole
    assert np.array_equal(W.entries(7, 0, [5, 9], 64), a.a[[5, 9]])


def test_freivalds_accepts_the_true_product(solved: tuple[W.Challenge, W.Solution]) -> None:
    ch, sol = solved
    assert np.array_equal(sol.product.astype(np.float64), ch.a.astype(np.float64) @ ch.b)
    assert W.freivalds_check(ch.a, ch.b, sol.product, 16, random.Random(0))


def test_freivalds_rejects_a_fabricated_product(solved: tuple[W.Challenge, W.Solution]) -> None:
    ch, _ = solved
    fake = np.random.default_rng(1).integers(-8, 8, size=(N, N)).astype(np.float32)
    assert not W.freivalds_check(ch.a, ch.b, fake, 16, random.Random(0))


def test_freivalds_rejects_a_one_entry_change(solved: tuple[W.Challenge, W.Solution]) -> None:
    ch, sol = solved
    for seed in range(10):
        tampered = sol.product.copy()
        tampered[seed * 7 % N, seed * 13 % N] += 1.0
        assert not W.freivalds_check(ch.a, ch.b, tampered, 16, random.Random(seed))


def test_spot_queries_verify_against_the_commitment(
    solved: tuple[W.Challenge, W.Solution],
) -> None:
    _, sol = solved
    rng = random.Random(3)
    rows = W.pick_rows(rng, N, 16)
    answers = W.answer_spot_queries(sol.product, rows)
    assert W.verify_solution(42, N, sol.commitment, answers, rows, 16, rng)
    # answers travel as JSON
    again = [W.SpotAnswer.from_json(a.to_json()) for a in answers]
    assert W.verify_solution(42, N, sol.commitment, again, rows, 16, rng)


def test_a_lazy_prover_is_caught_by_spot_rows(solved: tuple[W.Challenge, W.Solution]) -> None:
    """It computed half the rows and filled in the rest: a sampled bad row gives it away."""
    _, sol = solved
    lazy = sol.product.copy()
    lazy[N // 2 :] = 0.0
    root = W.merkle_root(W.row_hashes(lazy))
    rng = random.Random(4)
    rows = W.pick_rows(rng, N, 16)
    assert not W.verify_solution(42, N, root, W.answer_spot_queries(lazy, rows), rows, 8, rng)


def test_answers_that_do_not_match_the_commitment_fail(
    solved: tuple[W.Challenge, W.Solution],
) -> None:
    _, sol = solved
    rows = [3, 17]
    answers = W.answer_spot_queries(sol.product, rows)
    swapped = [W.SpotAnswer(3, answers[1].values, answers[0].path), answers[1]]
    assert not W.verify_solution(42, N, sol.commitment, swapped, rows, 8, random.Random(0))
    assert not W.verify_solution(42, N, sol.commitment, answers[:1], rows, 8, random.Random(0))


def test_merkle_paths_hold_for_odd_sizes() -> None:
    leaves = [bytes([i]) * 32 for i in range(7)]
    root = W.merkle_root(leaves)
    for i, leaf in enumerate(leaves):
        assert W.verify_path(root, leaf, i, W.merkle_path(leaves, i))
    assert not W.verify_path(root, leaves[0], 1, W.merkle_path(leaves, 0))


def test_cuda_is_refused_where_there_is_none(solved: tuple[W.Challenge, W.Solution]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(Unavailable):
        W.solve(solved[0], "cuda")


# --- the pure rules -----------------------------------------------------------------


def test_challenge_is_sized_to_the_claim() -> None:
    cpu, h100 = H.make_spec("cpu"), H.make_spec("h100-80g")
    assert cpu.n < h100.n <= H.DEFAULT_HW.max_n
    assert cpu.n % 256 == 0 and h100.n % 256 == 0
    # the three matrices fit in half the card's memory
    assert 3 * 4 * h100.n**2 <= gpu_class("h100-80g").vram_gb * 1e9 / 2


def test_an_honest_h100_passes() -> None:
    spec = H.make_spec("h100-80g")
    # 40 TFLOPS measured (60 % of peak) plus the setup time
    seconds = H.flops_of(spec.n) / 40e12 + H.setup_seconds(spec.n)
    verdict = H.judge(spec, product_ok=True, seconds=seconds)
    assert verdict.outcome is H.HwOutcome.PASS and verdict.device_class == "h100-80g"


def test_a_claimed_h100_at_cpu_speed_is_reclassified_as_cpu() -> None:
    spec = H.make_spec("h100-80g")
    seconds = H.flops_of(spec.n) / 0.06e12 + H.setup_seconds(spec.n)  # a 2-core CPU
    verdict = H.judge(spec, product_ok=True, seconds=seconds)
    assert verdict.outcome is H.HwOutcome.RECLASSIFY and verdict.device_class == "cpu"
    assert verdict.measured_tflops == pytest.approx(0.06, rel=0.01)


def test_a_claim_slower_than_every_class_is_refused() -> None:
    spec = H.make_spec("h100-80g")
    seconds = H.flops_of(spec.n) / 0.001e12 + H.setup_seconds(spec.n)
    assert H.judge(spec, True, seconds).outcome is H.HwOutcome.REFUSE


def test_a_wrong_product_is_a_fault_however_fast() -> None:
    spec = H.make_spec("rtx4090")
    verdict = H.judge(spec, product_ok=False, seconds=0.1)
    assert verdict.outcome is H.HwOutcome.FAULT and verdict.device_class is None


def test_a_real_cpu_passes_its_honest_claim() -> None:
    """The actual product on this machine's CPU, timed end to end, passes as ``cpu``."""
    import time

    spec = H.make_spec("cpu", H.HwProofParams(max_n=512))
    start = time.perf_counter()
    ch = W.make_challenge(11, spec.n)
    sol = W.solve(ch, "cpu")
    rng = random.Random(0)
    rows = W.pick_rows(rng, spec.n, 8)
    ok = W.verify_solution(
        11, spec.n, sol.commitment, W.answer_spot_queries(sol.product, rows), rows, 8, rng
    )
    elapsed = time.perf_counter() - start
    verdict = H.judge(spec, ok, elapsed, H.HwProofParams(max_n=512))
    assert verdict.outcome is H.HwOutcome.PASS and verdict.device_class == "cpu"
