"""The numeric side of the hardware proof: derive, solve, commit, query, check.

Inputs. ``A`` and ``B`` hold small integers in [-2, 2], each entry a hash of
``(seed, matrix, row, column)``: any row can be derived alone, so the coordinator never
builds ``A`` whole, and nobody can precompute the product before the seed is sent. Every
partial sum of ``C = A @ B`` is an integer below ``4 n`` (far below 2^24), so an FP32
product is exact in any summation order, on a CPU or a GPU: checks compare exactly.

Commitment. For large ``n`` the product is too big to upload (16,384^2 floats are 1 GiB),
so the prover sends a SHA-256 Merkle root over the hashes of ``C``'s rows. The coordinator
then picks ``s`` rows at random and the prover answers each with the row and its Merkle
path. For every answered row ``i`` the coordinator checks ``C[i] . r == A[i] . (B r)`` for
``k`` random ±1 vectors ``r`` (Freivalds): computing ``B r`` costs ``O(n^2)`` once, each
row ``O(n)``. For ``n <= FULL_UPLOAD_MAX_N`` the prover may send all of ``C`` and the
check covers every row.

Soundness. The root binds the prover to one ``C`` before it learns the queried rows. If a
share ``phi`` of the committed rows is wrong, all ``s`` queried rows are right with
probability ``(1 - phi)^s`` (at most 2^-32 for a prover that skipped half the work with
``s = 32``); a wrong row that is queried passes one ±1 vector with probability at most
1/2, so ``k`` vectors let it through with probability ``<= 2^-k``. A prover that computes
too few rows to matter is thus caught, while one that computes them all has paid for the
whole product, and its time is what the speed check judges.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gpudepin.core.errors import InvalidInput, Unavailable

FULL_UPLOAD_MAX_N = 2_048  # 16 MiB of float32: small enough to send the whole product

# splitmix64 constants; uint64 arithmetic wraps modulo 2^64, which the mixing relies on
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)

F32 = npt.NDArray[np.float32]


def entries(seed: int, which: int, rows: Sequence[int] | npt.NDArray[np.int64], n: int) -> F32:
    """Rows ``rows`` of input matrix ``which`` (0 = A, 1 = B) of the challenge ``seed``."""
    r = np.asarray(rows, dtype=np.uint64).reshape(-1, 1)
    cols = np.arange(n, dtype=np.uint64).reshape(1, -1)
    key = np.uint64((seed * 2 + which) * int(_GOLDEN) % 2**64)
    z = (r * np.uint64(n) + cols) * _GOLDEN + key
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return ((z % np.uint64(5)).astype(np.int8) - 2).astype(np.float32)


@dataclass(frozen=True)
class Challenge:
    seed: int
    n: int
    a: F32
    b: F32


def make_challenge(seed: int, n: int) -> Challenge:
    """Derive the challenge's inputs from ``seed`` (provider side: it needs both whole)."""
    if n <= 0:
        raise InvalidInput(f"matrix size must be positive, got {n}")
    every = np.arange(n, dtype=np.int64)
    return Challenge(seed, n, entries(seed, 0, every, n), entries(seed, 1, every, n))


# --- Merkle commitment over rows ----------------------------------------------------


def row_hashes(c: F32) -> list[bytes]:
    """One SHA-256 per row of ``c`` over its float32 little-endian bytes."""
    rows = np.ascontiguousarray(c, dtype="<f4")
    return [hashlib.sha256(row.tobytes()).digest() for row in rows]


def _parent(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    # leaves get a domain prefix so a row hash can never pass for an inner node
    level = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]
    levels = [level]
    while len(level) > 1:
        if len(level) % 2:
            level = [*level, level[-1]]
        level = [_parent(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        levels.append(level)
    return levels


def merkle_root(leaves: list[bytes]) -> str:
    """Hex root over the row hashes."""
    if not leaves:
        raise InvalidInput("cannot commit to an empty product")
    return _levels(leaves)[-1][0].hex()


def merkle_path(leaves: list[bytes], index: int) -> list[str]:
    """The sibling hashes from leaf ``index`` up to the root."""
    path = []
    for level in _levels(leaves)[:-1]:
        padded = [*level, level[-1]] if len(level) % 2 else level
        path.append(padded[index ^ 1].hex())
        index //= 2
    return path


def verify_path(root: str, leaf: bytes, index: int, path: Sequence[str]) -> bool:
    node = hashlib.sha256(b"\x00" + leaf).digest()
    for sibling in path:
        sib = bytes.fromhex(sibling)
        node = _parent(node, sib) if index % 2 == 0 else _parent(sib, node)
        index //= 2
    return node.hex() == root


# --- provider side ------------------------------------------------------------------


@dataclass(frozen=True)
class Solution:
    """What the provider keeps (``product``) and sends (``commitment``, ``seconds``)."""

    commitment: str
    seconds: float  # the product alone, as the provider measured it (informative only)
    device: str
    product: F32


def _matmul(a: F32, b: F32, device: str) -> tuple[F32, float]:
    if device == "cpu":
        start = time.perf_counter()
        c = a @ b
        return c.astype(np.float32, copy=False), time.perf_counter() - start
    import torch  # heavy: only providers with a GPU pay for it

    if not device.startswith("cuda") or not torch.cuda.is_available():
        raise Unavailable(f"device {device!r} is not available here", hint="Use device 'cpu'.")
    torch.backends.cuda.matmul.allow_tf32 = False
    ta, tb = torch.from_numpy(a).to(device), torch.from_numpy(b).to(device)
    torch.cuda.synchronize()
    start = time.perf_counter()
    tc = ta @ tb
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return tc.cpu().numpy(), seconds


def solve(challenge: Challenge, device: str = "cpu") -> Solution:
    """Compute the product on ``device`` ("cpu" with numpy, "cuda" with torch) and commit."""
    c, seconds = _matmul(challenge.a, challenge.b, device)
    return Solution(merkle_root(row_hashes(c)), seconds, device, c)


@dataclass(frozen=True)
class SpotAnswer:
    row: int
    values: F32
    path: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"row": self.row, "values": self.values.tolist(), "path": self.path}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> SpotAnswer:
        return cls(int(body["row"]), np.asarray(body["values"], dtype=np.float32), body["path"])


def answer_spot_queries(c: F32, rows: Sequence[int]) -> list[SpotAnswer]:
    """The queried rows of the committed product, each with its Merkle path."""
    leaves = row_hashes(c)
    return [SpotAnswer(i, np.array(c[i], dtype=np.float32), merkle_path(leaves, i)) for i in rows]


# --- coordinator side ---------------------------------------------------------------


def pick_rows(rng: random.Random, n: int, count: int) -> list[int]:
    """The rows to query, drawn after the commitment arrived."""
    return sorted(rng.sample(range(n), min(count, n)))


def freivalds_check(
    a_rows: npt.NDArray[Any],
    b: npt.NDArray[Any],
    c_rows: npt.NDArray[Any],
    k: int,
    rng: random.Random,
) -> bool:
    """Whether ``c_rows == a_rows @ b`` (rows of A and C in the same order), in O(k n^2).

    Pass whole ``A`` and ``C`` to check the full product. Each ±1 vector misses a wrong
    row with probability at most 1/2, so a wrong product passes with probability <= 2^-k.
    """
    if a_rows.shape[0] != c_rows.shape[0] or c_rows.shape[1] != b.shape[1]:
        raise InvalidInput("the rows of A and C, and the columns of C and B, must match")
    n = b.shape[1]
    gen = np.random.default_rng(rng.getrandbits(64))
    b64, a64, c64 = (np.asarray(x, dtype=np.float64) for x in (b, a_rows, c_rows))
    for _ in range(k):
        r = gen.choice(np.array([-1.0, 1.0]), size=n)
        if not np.array_equal(c64 @ r, a64 @ (b64 @ r)):
            return False
    return True


def verify_solution(
    seed: int,
    n: int,
    commitment: str,
    answers: Sequence[SpotAnswer],
    asked: Sequence[int],
    k: int,
    rng: random.Random,
) -> bool:
    """Check a provider's spot answers against its commitment and the true product."""
    if sorted(a.row for a in answers) != sorted(asked):
        return False
    for ans in answers:
        leaf = hashlib.sha256(np.ascontiguousarray(ans.values, dtype="<f4").tobytes()).digest()
        if ans.values.shape != (n,) or not verify_path(commitment, leaf, ans.row, ans.path):
            return False
    rows = [a.row for a in answers]
    a_rows = entries(seed, 0, rows, n)
    b = entries(seed, 1, np.arange(n, dtype=np.int64), n)
    c_rows = np.stack([a.values for a in answers])
    return freivalds_check(a_rows, b, c_rows, k, rng)
