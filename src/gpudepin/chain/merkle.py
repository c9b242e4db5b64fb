"""The Merkle tree of cumulative claimable amounts that the Vault contract checks.

Leaf = keccak256(keccak256(abi.encode(address, uint256 cumulative))): hashing twice
keeps a 64-byte leaf preimage from ever equalling an inner node's 64-byte preimage, so
nobody can pass an inner node off as a leaf (OpenZeppelin's StandardMerkleTree does the
same). An inner node is keccak256 of its two children, the numerically smaller first,
so a proof is just the list of siblings: no left/right flags. Leaves are sorted by hash
before the tree is built, so the root depends only on the mapping, not on its order.
A lone node at the end of a layer moves up unchanged.

Everything here is pure: the keccak function is an argument (``default_keccak()`` gives
the one web3 brings), so the coordinator and the simulator build identical trees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from gpudepin.core.errors import InvalidInput, NotFound

Keccak = Callable[[bytes], bytes]
EMPTY_ROOT = bytes(32)
_MAX_UINT256 = 2**256 - 1


def default_keccak() -> Keccak:
    """keccak256 from eth_hash, which web3 and eth-account install."""
    from eth_hash.auto import keccak

    return keccak


def _address_bytes(account: str) -> bytes:
    text = account[2:] if account[:2] in ("0x", "0X") else account
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 20:
        raise InvalidInput(f"not an address: {account!r}", hint="Use a 0x-prefixed 20-byte hex.")
    return raw


def leaf_hash(account: str, cumulative: int, keccak: Keccak) -> bytes:
    """The leaf for ``account`` owed ``cumulative`` base units in total."""
    if not 0 <= cumulative <= _MAX_UINT256:
        raise InvalidInput(f"cumulative amount out of range: {cumulative}")
    encoded = bytes(12) + _address_bytes(account) + cumulative.to_bytes(32, "big")
    return keccak(keccak(encoded))


def hash_pair(a: bytes, b: bytes, keccak: Keccak) -> bytes:
    """An inner node: the two children hashed smaller first."""
    return keccak(a + b) if a < b else keccak(b + a)


@dataclass(frozen=True)
class MerkleTree:
    """A built tree: its root, its layers (leaves first) and where each address sits."""

    root: bytes
    layers: tuple[tuple[bytes, ...], ...]
    positions: Mapping[str, int]
    amounts: Mapping[str, int]

    def proof(self, account: str) -> list[bytes]:
        """The sibling hashes from ``account``'s leaf up to the root."""
        key = account.lower()
        if key not in self.positions:
            raise NotFound(f"{account} is not in this epoch's tree", hint="Nothing owed yet.")
        index = self.positions[key]
        siblings = []
        for layer in self.layers[:-1]:
            partner = index ^ 1
            if partner < len(layer):
                siblings.append(layer[partner])
            index //= 2
        return siblings


def build_tree(amounts: Mapping[str, int], keccak: Keccak) -> MerkleTree:
    """Build the tree for ``{address: cumulative amount}``; addresses are case-insensitive."""
    normalized: dict[str, int] = {}
    for account, amount in amounts.items():
        key = account.lower()
        if key in normalized:
            raise InvalidInput(f"{account} appears twice (addresses ignore case)")
        normalized[key] = amount
    if not normalized:
        return MerkleTree(EMPTY_ROOT, ((),), {}, {})
    hashed = sorted((leaf_hash(a, v, keccak), a) for a, v in normalized.items())
    leaves = tuple(h for h, _ in hashed)
    positions = {a: i for i, (_, a) in enumerate(hashed)}
    layers = [leaves]
    while len(layers[-1]) > 1:
        below = layers[-1]
        above = [hash_pair(below[i], below[i + 1], keccak) for i in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            above.append(below[-1])
        layers.append(tuple(above))
    return MerkleTree(layers[-1][0], tuple(layers), positions, normalized)


def verify(
    root: bytes, account: str, cumulative: int, proof: Sequence[bytes], keccak: Keccak
) -> bool:
    """Whether ``proof`` shows ``account`` is owed ``cumulative`` under ``root``."""
    node = leaf_hash(account, cumulative, keccak)
    for sibling in proof:
        node = hash_pair(node, sibling, keccak)
    return node == root
