"""k-of-n erasure coding of artifacts, with a SHA-256 per shard.

zfec's ``easyfec`` already cuts the data into k equal blocks (zero-padding the last),
encodes n blocks of which any k rebuild the data, and strips the padding on decode.
This module adds what a network of untrusted disks needs on top: a hash per shard and
for the whole artifact, recorded in a ``Manifest`` when the artifact is stored, and a
decoder that checks every shard against it, drops the corrupted ones, and uses any k
intact ones. zfec itself would decode a tampered block into wrong bytes without a word,
and it accepts the same block number twice, so both are checked here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gpudepin.core.errors import InvalidInput, Unavailable

MAX_SHARES = 256  # zfec works in GF(2^8): at most 256 distinct shares


@dataclass(frozen=True)
class Shard:
    """One of n pieces of an artifact. ``sha256`` is the hex digest recorded at encode."""

    index: int
    k: int
    n: int
    length: int  # bytes in the original artifact
    padding: int  # zero bytes added so the artifact splits into k equal blocks
    sha256: str
    data: bytes


@dataclass(frozen=True)
class Manifest:
    """What the coordinator records about a stored artifact; shards are checked against it."""

    k: int
    n: int
    length: int
    padding: int
    artifact_sha256: str
    shard_sha256: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "k": self.k,
            "n": self.n,
            "length": self.length,
            "padding": self.padding,
            "artifact_sha256": self.artifact_sha256,
            "shard_sha256": list(self.shard_sha256),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> Manifest:
        try:
            hashes = raw["shard_sha256"]
            if not isinstance(hashes, list | tuple):
                raise TypeError("shard_sha256 is not a list")
            manifest = cls(
                k=int(str(raw["k"])),
                n=int(str(raw["n"])),
                length=int(str(raw["length"])),
                padding=int(str(raw["padding"])),
                artifact_sha256=str(raw["artifact_sha256"]),
                shard_sha256=tuple(str(h) for h in hashes),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"not a shard manifest: {exc}") from exc
        _check_params(manifest.k, manifest.n)
        if len(manifest.shard_sha256) != manifest.n:
            raise InvalidInput(
                f"manifest lists {len(manifest.shard_sha256)} hashes for n={manifest.n}"
            )
        return manifest


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_params(k: int, n: int) -> None:
    if not 1 <= k <= n <= MAX_SHARES:
        raise InvalidInput(
            f"erasure code needs 1 <= k <= n <= {MAX_SHARES}, got k={k}, n={n}",
            hint="4-of-8 survives the loss of any 4 holders at twice the storage.",
        )


def block_size(length: int, k: int) -> int:
    """Bytes in each shard of a ``length``-byte artifact cut for k."""
    return -(-length // k)


def encode(data: bytes, k: int, n: int) -> list[Shard]:
    """Cut ``data`` into n shards, any k of which rebuild it."""
    import zfec.easyfec

    _check_params(k, n)
    blocks = zfec.easyfec.Encoder(k, n).encode(bytes(data))
    padding = block_size(len(data), k) * k - len(data)
    return [
        Shard(i, k, n, len(data), padding, _sha256(bytes(b)), bytes(b))
        for i, b in enumerate(blocks)
    ]


def manifest_of(data: bytes, shards: Sequence[Shard]) -> Manifest:
    """The manifest to record for ``data`` encoded as ``shards`` (all n, in order)."""
    if not shards or [s.index for s in shards] != list(range(shards[0].n)):
        raise InvalidInput("a manifest needs all n shards, in index order")
    first = shards[0]
    return Manifest(
        first.k,
        first.n,
        first.length,
        first.padding,
        _sha256(data),
        tuple(s.sha256 for s in shards),
    )


def is_intact(shard: Shard, expected_sha256: str | None = None) -> bool:
    """Whether ``shard``'s bytes hash to what was recorded for it."""
    digest = _sha256(shard.data)
    want = expected_sha256 if expected_sha256 is not None else shard.sha256
    return digest == want and block_size(shard.length, shard.k) == len(shard.data)


def decode(
    shards: Iterable[Shard],
    k: int,
    n: int,
    length: int,
    expected: Sequence[str] | None = None,
) -> bytes:
    """Rebuild the ``length``-byte artifact from any k intact shards.

    A shard is refused when its bytes do not match its hash: the one in ``expected`` (the
    manifest's, by index) when given, else the one it carries. A holder can forge both
    bytes and carried hash, so readers should always pass the manifest's hashes. Raises
    ``Unavailable`` naming the refused shards when fewer than k intact ones remain.
    """
    import zfec.easyfec

    _check_params(k, n)
    if length < 0:
        raise InvalidInput(f"artifact length cannot be negative, got {length}")
    if expected is not None and len(expected) != n:
        raise InvalidInput(f"{len(expected)} expected hashes given for n={n}")
    usable: dict[int, bytes] = {}
    refused: list[int] = []
    for s in shards:
        if s.index in usable:
            continue
        fits = 0 <= s.index < n and (s.k, s.n, s.length) == (k, n, length)
        want = expected[s.index] if expected is not None and fits else None
        if fits and is_intact(s, want):
            usable[s.index] = s.data
        else:
            refused.append(s.index)
        if len(usable) == k:
            break
    if len(usable) < k:
        raise Unavailable(
            f"{len(usable)} intact shards of the {k} needed; refused {sorted(set(refused))}",
            hint="Fetch more shards from other holders; the refused ones need repair.",
            refused=sorted(set(refused)),
        )
    padding = block_size(length, k) * k - length
    indexes = sorted(usable)
    return bytes(zfec.easyfec.Decoder(k, n).decode([usable[i] for i in indexes], indexes, padding))


def decode_blobs(manifest: Manifest, blobs: Mapping[int, bytes]) -> bytes:
    """Rebuild an artifact from raw shard bytes fetched by index, checked end to end."""
    shards = [
        Shard(
            i,
            manifest.k,
            manifest.n,
            manifest.length,
            manifest.padding,
            manifest.shard_sha256[i],
            b,
        )
        for i, b in blobs.items()
        if 0 <= i < manifest.n
    ]
    data = decode(shards, manifest.k, manifest.n, manifest.length, manifest.shard_sha256)
    if _sha256(data) != manifest.artifact_sha256:
        raise Unavailable(
            "rebuilt artifact does not match its recorded hash",
            hint="The manifest and the shards disagree; re-upload the artifact.",
        )
    return data


def damaged(manifest: Manifest, blobs: Mapping[int, bytes]) -> list[int]:
    """Indexes among ``blobs`` whose bytes do not match the manifest: they need repair."""
    return sorted(
        i
        for i, b in blobs.items()
        if not (0 <= i < manifest.n)
        or _sha256(b) != manifest.shard_sha256[i]
        or len(b) != block_size(manifest.length, manifest.k)
    )


def recreate(manifest: Manifest, blobs: Mapping[int, bytes], indexes: Iterable[int]) -> list[Shard]:
    """Rebuild the shards at ``indexes`` from any k intact ``blobs``, for the repair loop.

    The new shards are byte-identical to the lost ones (the code is deterministic), so the
    manifest's hashes stay valid and a repaired holder is audited like any other.
    """
    wanted = sorted(set(indexes))
    if any(not 0 <= i < manifest.n for i in wanted):
        raise InvalidInput(f"shard indexes must be in [0, {manifest.n}), got {wanted}")
    fresh = encode(decode_blobs(manifest, blobs), manifest.k, manifest.n)
    return [fresh[i] for i in wanted]
