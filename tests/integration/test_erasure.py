from __future__ import annotations

import hashlib
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudepin.core.errors import InvalidInput, Unavailable
from gpudepin.storage.erasure import (
    Manifest,
    damaged,
    decode,
    decode_blobs,
    encode,
    manifest_of,
    recreate,
)


@st.composite
def coded(draw: st.DrawFn) -> tuple[bytes, int, int, list[int]]:
    n = draw(st.integers(1, 12))
    k = draw(st.integers(1, n))
    data = draw(st.binary(max_size=2000))
    chosen = draw(st.permutations(range(n)))[:k]
    return data, k, n, chosen


@settings(max_examples=200)
@given(coded())
def test_any_k_of_n_shards_rebuild_the_bytes(case: tuple[bytes, int, int, list[int]]) -> None:
    data, k, n, chosen = case
    shards = encode(data, k, n)
    assert len(shards) == n
    assert len({len(s.data) for s in shards}) == 1
    assert all(s.padding == len(s.data) * k - len(data) for s in shards)
    assert decode([shards[i] for i in chosen], k, n, len(data)) == data


@given(coded(), st.integers(0, 11), st.integers(0, 255))
def test_a_corrupted_shard_is_refused_never_decoded(
    case: tuple[bytes, int, int, list[int]], which: int, flip: int
) -> None:
    data, k, n, chosen = case
    shards = encode(data, k, n)
    manifest = manifest_of(data, shards)
    victim = chosen[which % len(chosen)]
    if not shards[victim].data:
        return  # an empty artifact has empty shards: no byte to corrupt
    raw = bytearray(shards[victim].data)
    raw[flip % len(raw)] ^= 0xFF
    blobs = {i: shards[i].data for i in chosen} | {victim: bytes(raw)}
    assert damaged(manifest, blobs) == [victim]
    with pytest.raises(Unavailable) as err:
        decode_blobs(manifest, blobs)
    assert err.value.details["refused"] == [victim]


def test_decode_skips_a_bad_shard_when_a_spare_is_there() -> None:
    data = random.Random(1).randbytes(10_000)
    shards = encode(data, 4, 8)
    manifest = manifest_of(data, shards)
    blobs = {i: shards[i].data for i in (0, 3, 5, 6, 7)}
    blobs[3] = blobs[3][:-1] + b"\x00" if blobs[3][-1] else blobs[3][:-1] + b"\x01"
    assert decode_blobs(manifest, blobs) == data


def test_forged_shard_with_matching_carried_hash_is_caught_by_the_manifest() -> None:
    data = b"checkpoint bytes" * 100
    shards = encode(data, 2, 4)
    forged_bytes = bytes(len(shards[0].data))
    forged = replace(shards[0], data=forged_bytes, sha256=hashlib.sha256(forged_bytes).hexdigest())
    expected = [s.sha256 for s in shards]
    assert decode([forged, shards[1]], 2, 4, len(data)) != data  # carried hash alone: fooled
    with pytest.raises(Unavailable):
        decode([forged, shards[1]], 2, 4, len(data), expected)


def test_duplicate_shards_do_not_count_twice() -> None:
    data = b"abcdefgh" * 10
    shards = encode(data, 3, 5)
    with pytest.raises(Unavailable, match="2 intact shards of the 3"):
        decode([shards[1], shards[1], shards[4]], 3, 5, len(data))


def test_recreated_shards_are_identical_to_the_lost_ones() -> None:
    data = random.Random(2).randbytes(4097)
    shards = encode(data, 4, 8)
    manifest = manifest_of(data, shards)
    alive = {i: shards[i].data for i in (1, 2, 6, 7)}
    rebuilt = recreate(manifest, alive, [0, 3, 4, 5])
    assert [s.data for s in rebuilt] == [shards[i].data for i in (0, 3, 4, 5)]


def test_manifest_round_trips_and_parameters_are_checked() -> None:
    data = b"x" * 33
    manifest = manifest_of(data, encode(data, 4, 8))
    assert Manifest.from_dict(manifest.to_dict()) == manifest
    with pytest.raises(InvalidInput):
        Manifest.from_dict({"k": 4})
    with pytest.raises(InvalidInput):
        encode(data, 5, 4)
    with pytest.raises(InvalidInput):
        encode(data, 4, 300)
