"""The settlement Merkle tree and the contract artifact cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudepin.chain.compile import BUILD_DIR, CONTRACT_NAMES, CONTRACTS_DIR, load_artifact
from gpudepin.chain.merkle import EMPTY_ROOT, build_tree, default_keccak, leaf_hash, verify
from gpudepin.core.errors import InvalidInput, NotFound

KECCAK = default_keccak()
addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
books = st.dictionaries(addresses, st.integers(0, 2**256 - 1), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(books)
def test_every_payee_proves_its_own_amount_and_no_other(book: dict[str, int]) -> None:
    tree = build_tree(book, KECCAK)
    for account, amount in book.items():
        proof = tree.proof(account)
        assert verify(tree.root, account, amount, proof, KECCAK)
        assert not verify(tree.root, account, (amount + 1) % 2**256, proof, KECCAK)
    other = "0x" + "ee" * 20
    if other not in book:
        first, amount = next(iter(book.items()))
        assert not verify(tree.root, other, amount, tree.proof(first), KECCAK)


@settings(max_examples=30, deadline=None)
@given(books)
def test_the_root_ignores_order_and_address_case(book: dict[str, int]) -> None:
    shuffled = {a.upper().replace("0X", "0x"): v for a, v in reversed(list(book.items()))}
    assert build_tree(shuffled, KECCAK).root == build_tree(book, KECCAK).root


def test_proof_depth_is_logarithmic() -> None:
    book = {f"0x{i:040x}": i for i in range(1, 10_001)}
    tree = build_tree(book, KECCAK)
    assert max(len(tree.proof(a)) for a in list(book)[:50]) == 14


def test_leaf_matches_solidity_abi_encoding() -> None:
    # keccak256(keccak256(abi.encode(address(0x...01), uint256(5)))), as the Vault hashes it.
    encoded = bytes(31) + b"\x01" + bytes(31) + b"\x05"
    assert leaf_hash("0x" + "00" * 19 + "01", 5, KECCAK) == KECCAK(KECCAK(encoded))


def test_bad_input_is_refused_with_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="not an address"):
        build_tree({"0x1234": 1}, KECCAK)
    with pytest.raises(InvalidInput, match="appears twice"):
        build_tree({"0x" + "ab" * 20: 1, "0x" + "AB" * 20: 2}, KECCAK)
    with pytest.raises(InvalidInput, match="out of range"):
        build_tree({"0x" + "ab" * 20: -1}, KECCAK)
    with pytest.raises(NotFound):
        build_tree({"0x" + "ab" * 20: 1}, KECCAK).proof("0x" + "cd" * 20)
    assert build_tree({}, KECCAK).root == EMPTY_ROOT


def test_committed_artifacts_match_their_sources() -> None:
    """Running nodes use build/*.json without a compiler, so they must not be stale."""
    for name in CONTRACT_NAMES:
        cached = json.loads((BUILD_DIR / f"{name}.json").read_text())
        fresh = load_artifact(name, build_dir=BUILD_DIR)
        assert cached["source_sha256"] == fresh.source_sha256
        assert (CONTRACTS_DIR / f"{name}.vy").exists()


def test_a_changed_source_is_recompiled(tmp_path: Path) -> None:
    stale = json.loads((BUILD_DIR / "Token.json").read_text())
    stale["source_sha256"] = "0" * 64
    stale["bytecode"] = "0x00"
    (tmp_path / "Token.json").write_text(json.dumps(stale))
    art = load_artifact("Token", build_dir=tmp_path)
    assert art.bytecode != "0x00"
    assert json.loads((tmp_path / "Token.json").read_text())["bytecode"] == art.bytecode
