"""Where a network's chain is: ``HOME/chain.json`` and the coordinator's role keys.

``chain.json`` holds the RPC URL the contracts were deployed through, the chain id, the
three contract addresses and the block of deployment (where event scans start). The
coordinator's role keys (``settlement`` posts roots, ``arbiter`` slashes, ``minter``
deploys and, on the local chain only, runs the faucet) live in ``HOME/keys`` with mode
0600, like every other key of gpudepin.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpudepin.core.errors import InvalidInput, NotFound
from gpudepin.identity import load_or_create_key

if TYPE_CHECKING:
    from gpudepin.chain.client import ChainClient

CHAIN_FILE = "chain.json"
ROLE_KEYS = ("settlement", "arbiter", "minter")


@dataclass(frozen=True)
class ChainConfig:
    """One deployment of the contracts on one chain."""

    rpc_url: str
    chain_id: int
    addresses: dict[str, str]
    deployed_block: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rpc_url": self.rpc_url,
            "chain_id": self.chain_id,
            "addresses": dict(self.addresses),
            "deployed_block": self.deployed_block,
        }


def chain_file(home: Path) -> Path:
    return home / CHAIN_FILE


def load_config(home: Path, path: Path | None = None) -> ChainConfig:
    """The deployment recorded in ``path`` (default ``HOME/chain.json``)."""
    path = path or chain_file(home)
    if not path.exists():
        raise NotFound(
            f"no chain deployment recorded in {path}",
            hint="Deploy the contracts with `gpudepin chain deploy --rpc URL` (or `gpudepin up`).",
        )
    try:
        data = json.loads(path.read_text())
        return ChainConfig(
            rpc_url=str(data["rpc_url"]),
            chain_id=int(data["chain_id"]),
            addresses={k: str(data["addresses"][k]) for k in ("token", "vault", "stakes")},
            deployed_block=int(data.get("deployed_block", 0)),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(
            f"{path} is not a valid chain file: {exc}",
            hint="It needs rpc_url, chain_id and addresses {token, vault, stakes}.",
        ) from exc


def save_config(home: Path, cfg: ChainConfig, path: Path | None = None) -> Path:
    """Write the deployment atomically (a crash never leaves half a file)."""
    path = path or chain_file(home)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def role_key(home: Path, role: str, keys_dir: Path | None = None) -> str:
    """The hex private key of a coordinator role.

    By default it lives in ``HOME/keys/ROLE.key`` and is made (0600) on first use; a
    ``keys_dir`` (an operator's own folder for a real chain) must already hold it.
    """
    if role not in ROLE_KEYS:
        raise InvalidInput(f"unknown role {role!r}", hint=f"One of {', '.join(ROLE_KEYS)}.")
    if keys_dir is None:
        return "0x" + bytes(load_or_create_key(home, role).key).hex()
    path = keys_dir / f"{role}.key"
    if not path.exists():
        raise NotFound(
            f"no {role} key at {path}",
            hint="Put the hex private key there (mode 0600), or leave the keys folder unset.",
        )
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    text = path.read_text().strip()
    return text if text.startswith("0x") else "0x" + text


def deploy(
    client: ChainClient, home: Path, deployer_key: str | None = None, keys_dir: Path | None = None
) -> ChainConfig:
    """Deploy Token, Vault and Stakes with this home's role keys and record them.

    On the local chain the role accounts get gas money first; on a real chain the
    deployer (the minter key unless given) must already hold gas.
    """
    keys = {role: role_key(home, role, keys_dir) for role in ROLE_KEYS}
    deployer = deployer_key or keys["minter"]
    if client.is_local:
        for key in {*keys.values(), deployer}:
            client.fund_gas(client.address_of(key))
    start = client.block_number()
    addresses = client.deploy_all(
        deployer,
        client.address_of(keys["settlement"]),
        client.address_of(keys["arbiter"]),
        minter_addr=client.address_of(keys["minter"]),
    )
    cfg = ChainConfig(client.rpc_url, client.chain_id, addresses, start)
    save_config(home, cfg)
    return cfg


def ensure_deployed(client: ChainClient, home: Path) -> tuple[ChainConfig, bool]:
    """The recorded deployment if its contracts exist on this chain, else a new one.

    Returns the config (with this client's RPC URL) and whether it was deployed now.
    A local chain restarted from its state file keeps its contracts, so they are reused.
    """
    path = chain_file(home)
    if path.exists():
        cfg = load_config(home)
        if cfg.chain_id == client.chain_id and client.has_code(cfg.addresses["vault"]):
            if cfg.rpc_url != client.rpc_url:
                cfg = ChainConfig(client.rpc_url, cfg.chain_id, cfg.addresses, cfg.deployed_block)
                save_config(home, cfg)
            client.use(cfg.addresses)
            return cfg, False
    return deploy(client, home), True
