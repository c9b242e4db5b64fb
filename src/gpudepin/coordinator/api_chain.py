"""``/v1/chain``: settlement status, epochs, proofs, per-address figures, the local faucet."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import select

from gpudepin.chain.anvil import ANVIL_CHAIN_ID
from gpudepin.coordinator import schemas, settlement
from gpudepin.coordinator.api import caller, runtime
from gpudepin.coordinator.app import Runtime
from gpudepin.coordinator.tables_chain import chain_events
from gpudepin.core.errors import Forbidden, InvalidInput
from gpudepin.core.money import format_amount, parse_amount
from gpudepin.identity import normalize_address

router = APIRouter(prefix="/v1")

FAUCET_MAX = "1000000"


def _epoch_view(e: Any, with_leaves: bool = False) -> dict[str, Any]:
    view = {
        "number": e.number,
        "root": e.root,
        "state": e.state,
        "payees": len(e.leaves),
        "total": format_amount(int(e.total)),
        "fees_burned": format_amount(int(e.fees_burned)),
        "tx_hash": e.tx_hash,
        "gas": e.gas,
        "block": e.block,
        "created_at": e.created_at,
        "posted_at": e.posted_at,
    }
    if with_leaves:
        view["leaves"] = e.leaves
    return view


@router.get("/chain/status")
def status(rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    """Whether settlement is on, where, whether it is halted, and the last reconciliation."""
    link: settlement.ChainLink | None = rt.chain
    if link is None:
        return {"enabled": False}
    with rt.reader.connect() as conn:
        last = settlement.latest_epoch(conn)
        view = {
            "enabled": True,
            "rpc_url": link.config.rpc_url,
            "chain_id": link.config.chain_id,
            "local": link.config.chain_id == ANVIL_CHAIN_ID,
            "addresses": link.config.addresses,
            "confirmations": rt.settings.chain_confirmations,
            "epoch_interval_s": rt.settings.epoch_interval_s,
            "halted": settlement.get_state(conn, settlement.HALT),
            "reconciliation": settlement.get_state(conn, settlement.RECONCILED),
            "scan_cursor": settlement.get_state(conn, settlement.CURSOR),
            "last_epoch": _epoch_view(last) if last else None,
        }
    return view


@router.get("/chain/epochs")
def list_epochs(limit: int = 100, rt: Runtime = Depends(runtime)) -> list[dict[str, Any]]:
    settlement.require_chain(rt)
    with rt.reader.connect() as conn:
        return [_epoch_view(e) for e in settlement.epochs(conn, max(1, min(limit, 1000)))]


@router.get("/chain/proof/{address}")
def proof(address: str, rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    """The Merkle proof of ``address``'s cumulative amount in the latest posted root."""
    link = settlement.require_chain(rt)
    with rt.reader.connect() as conn:
        return settlement.proof_for(conn, link, normalize_address(address))


@router.get("/chain/accounts/{address}")
def account(address: str, rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    """Earned (not yet in a root), held, claimable (owed on chain), claimed so far."""
    addr = normalize_address(address)
    with rt.reader.connect() as conn:
        figures = settlement.account_view(conn, addr)
    return {
        "address": addr,
        **{k: format_amount(v) for k, v in figures.items()},
        "units": {k: str(v) for k, v in figures.items()},
    }


@router.get("/chain/deposits/{tx_hash}")
def deposits_of(tx_hash: str, rt: Runtime = Depends(runtime)) -> list[dict[str, Any]]:
    """The deposits of one transaction that the coordinator has credited (empty: not yet)."""
    settlement.require_chain(rt)
    prefix = tx_hash.lower() + ":"
    q = select(chain_events).where(
        chain_events.c.kind == "deposit", chain_events.c.key.like(prefix + "%")
    )
    with rt.reader.connect() as conn:
        return [
            {"key": r.key, "address": r.address, "amount": format_amount(int(r.amount))}
            for r in conn.execute(q)
        ]


@router.post("/chain/faucet")
def faucet(
    body: schemas.AmountIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Local chain only: mint test tokens (0 for gas money alone) to the caller."""
    link = settlement.require_chain(rt)
    if not rt.settings.faucet or link.config.chain_id != ANVIL_CHAIN_ID:
        raise Forbidden(
            f"no faucet on chain {link.config.chain_id}: test tokens exist on the local chain only",
            hint="On a real chain, buy or bridge the token, then `gpudepin wallet deposit`.",
        )
    amount = parse_amount(body.amount, allow_zero=True)
    if amount > parse_amount(FAUCET_MAX):
        raise InvalidInput(f"the faucet gives at most {FAUCET_MAX} test tokens at a time")
    link.client.fund_gas(who)
    tx = link.client.mint(link.minter_key, who, amount) if amount else None
    return {"address": who, "minted": format_amount(amount), "tx_hash": tx.tx_hash if tx else None}
