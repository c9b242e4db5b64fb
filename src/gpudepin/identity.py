"""Identity: every buyer and provider is an Ethereum account.

Keys live under the home folder in ``keys/NAME.key`` (hex, mode 0600). Messages are
signed with EIP-191 (``personal_sign``); results carry a signature over their content
hash so that a later dispute has evidence.
"""

from __future__ import annotations

import os
from pathlib import Path

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from gpudepin.core.errors import InvalidInput, Unauthorized


def key_path(home: Path, name: str) -> Path:
    return home / "keys" / f"{name}.key"


def load_or_create_key(home: Path, name: str) -> LocalAccount:
    """The account stored as ``name`` in ``home``; a new one is made on first use."""
    path = key_path(home, name)
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return Account.from_key(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    account = Account.create()
    # O_EXCL + 0600 so the key is never readable by others, not even for an instant
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(account.key.hex())
    return account


def sign_text(account: LocalAccount, text: str) -> str:
    """EIP-191 signature of ``text`` as 0x-hex."""
    signed = account.sign_message(encode_defunct(text=text))
    return "0x" + signed.signature.hex().removeprefix("0x")


def recover_signer(text: str, signature: str) -> str:
    """The lower-case address that signed ``text``; Unauthorized if the signature is bad."""
    try:
        address: str = Account.recover_message(encode_defunct(text=text), signature=signature)
    except Exception as exc:  # eth-account raises several unrelated types for bad input
        raise Unauthorized("the signature does not verify", hint="Sign with your own key.") from exc
    return address.lower()


def normalize_address(address: str) -> str:
    """Lower-case 0x address, or InvalidInput."""
    a = address.strip().lower()
    if len(a) != 42 or not a.startswith("0x") or any(c not in "0123456789abcdef" for c in a[2:]):
        raise InvalidInput(f"not an Ethereum address: {address!r}")
    return a


def result_message(task_id: str, sha256: str) -> str:
    """The text a provider signs when it submits the result of a task."""
    return f"gpudepin result\ntask: {task_id}\nsha256: {sha256}"
