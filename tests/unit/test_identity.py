"""Signatures: ours are exactly eth-account's, and anything malformed is refused."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudepin.core.errors import Unauthorized
from gpudepin.identity import recover_signer, result_message, sign_text

keys = st.binary(min_size=32, max_size=32).filter(
    lambda k: 0 < int.from_bytes(k, "big") < 2**256 - 2**32 - 977
)


@settings(max_examples=100, deadline=None)
@given(keys, st.text(max_size=200))
def test_signatures_are_eth_accounts_personal_sign_and_recover_both_ways(
    key: bytes, text: str
) -> None:
    try:
        account = Account.from_key(key)
    except Exception:
        return
    theirs = account.sign_message(encode_defunct(text=text)).signature.hex()
    ours = sign_text(account, text)
    assert ours == "0x" + theirs.removeprefix("0x")
    assert recover_signer(text, ours) == account.address.lower()
    assert Account.recover_message(encode_defunct(text=text), signature=ours) == account.address


def test_a_signature_over_another_message_names_another_signer() -> None:
    account = Account.create()
    sig = sign_text(account, result_message("j1-0", "ab" * 32))
    assert recover_signer(result_message("j1-1", "ab" * 32), sig) != account.address.lower()


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-2],  # 64 bytes
        lambda s: s + "00",  # 66 bytes
        lambda s: s[:-2] + "05",  # v neither 0/1 nor 27/28
        lambda s: "0x" + "00" * 32 + s[66:],  # r = 0
        lambda s: s[:66] + "ff" * 32 + s[130:],  # s beyond the curve order
        lambda s: s[:10] + "zz" + s[12:],  # not hex
        lambda s: "",
    ],
)
def test_malformed_signatures_are_refused_not_crashed_on(mangle: object) -> None:
    sig = sign_text(Account.create(), "hello")
    with pytest.raises(Unauthorized):
        recover_signer("hello", mangle(sig))  # type: ignore[operator]
