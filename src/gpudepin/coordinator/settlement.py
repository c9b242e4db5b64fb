"""On-chain settlement: the vault's events into the ledger, epoch roots out to the chain.

Custody is on chain, metering in the database; this module keeps the two in step:

- **Deposits**: each confirmed ``Deposit`` log credits its sender's available balance
  once (its key is the primary key of ``chain_events``), whoever the sender is.
- **Epochs**: on a timer, every ``earned:X`` balance moves to ``claimable:X`` (the
  verification layer's ``held:X`` stays out until released), the Merkle tree of every
  address's cumulative claimable amount is built, the epoch is recorded as *pending*,
  then its root is posted with the burn of what the books burned since the last root, and
  it is recorded as *posted*. Fees of payments still held back stay unburned (a proven
  fault refunds them to the buyer). A pending epoch found later (a crash between the two) is
  looked up on chain and either recorded or posted with the same root — never another.
- **Claims**: each ``Claimed`` log moves the paid amount from ``claimable:X`` to WORLD.
- **Reconciliation**: before an epoch, the vault's balance must equal the sum of every
  account it backs (all but WORLD and BURNED) plus burns not yet done on chain. A
  deficit halts settlement (no roots) until the books agree again; it is logged and shown
  at ``GET /v1/chain/status``. A surplus (tokens sent without ``deposit``) is reported
  only: anyone could cause one, so it must not be able to stop payouts.

Database work happens in short transactions; chain calls happen between them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from gpudepin.coordinator import store
from gpudepin.coordinator.tables_chain import chain_epochs, chain_events, chain_payees, chain_state
from gpudepin.core import ledger
from gpudepin.core.errors import Conflict, GpudepinError, InvalidInput, NotFound, Unavailable

if TYPE_CHECKING:
    from gpudepin.chain.client import ChainClient, ClaimEvent, DepositEvent, VaultState
    from gpudepin.chain.config import ChainConfig
    from gpudepin.chain.merkle import MerkleTree
    from gpudepin.coordinator.app import Runtime
    from gpudepin.settings import CoordinatorSettings

log = logging.getLogger("gpudepin.settlement")

CURSOR = "scan_cursor"
HALT = "halt"
RECONCILED = "reconciled"
CHECKED = "checked_at"  # the last epoch tick, posted or not
# Public RPC endpoints cap eth_getLogs ranges; a coordinator catching up reads in steps.
SCAN_BLOCKS = 2_000
BACKING_EXCLUDED = (ledger.WORLD, ledger.BURNED)


@dataclass
class ChainLink:
    """The coordinator's handle on its chain: client, deployment and role keys."""

    config: ChainConfig
    settlement_key: str
    minter_key: str
    started_at: float
    confirmations: int = 0
    trees: dict[int, MerkleTree] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _client: ChainClient | None = None

    @property
    def client(self) -> ChainClient:
        """The web3 client, built on first use: importing web3 takes seconds, and the
        coordinator should answer /v1/health before that (the loop thread pays it)."""
        with self.lock:
            if self._client is None:
                from gpudepin.chain.client import ChainClient

                self._client = ChainClient(
                    self.config.rpc_url, self.config.addresses, confirmations=self.confirmations
                )
            return self._client

    def tree(self, number: int, leaves: dict[str, str]) -> MerkleTree:
        """The (cached) tree of a recorded epoch."""
        from gpudepin.chain.merkle import build_tree, default_keccak

        with self.lock:
            if number not in self.trees:
                amounts = {a: int(v) for a, v in leaves.items()}
                self.trees = {number: build_tree(amounts, default_keccak())}
            return self.trees[number]


def connect(settings: CoordinatorSettings, now: float) -> ChainLink | None:
    """The chain link for these settings; None when settlement is off (no chain RPC)."""
    if not settings.chain_rpc:
        return None
    from gpudepin.chain.config import ChainConfig, load_config, role_key

    cfg = load_config(settings.home, settings.chain_config)
    cfg = ChainConfig(settings.chain_rpc, cfg.chain_id, cfg.addresses, cfg.deployed_block)
    keys = settings.chain_keys_dir
    return ChainLink(
        config=cfg,
        settlement_key=role_key(settings.home, "settlement", keys),
        minter_key=role_key(settings.home, "minter", keys),
        started_at=now,
        confirmations=settings.chain_confirmations,
    )


def require_chain(rt: Runtime) -> ChainLink:
    link: ChainLink | None = getattr(rt, "chain", None)
    if link is None:
        raise NotFound(
            "this coordinator does not settle on chain",
            hint="Start it with --chain-rpc URL (gpudepin up does so when Anvil is installed).",
        )
    return link


# ---- small state -----------------------------------------------------------------------


def get_state(conn: Connection, key: str, default: Any = None) -> Any:
    row = conn.execute(select(chain_state.c.value).where(chain_state.c.key == key)).first()
    return default if row is None else row.value


def set_state(conn: Connection, key: str, value: Any) -> None:
    if conn.execute(select(chain_state.c.key).where(chain_state.c.key == key)).first():
        conn.execute(update(chain_state).where(chain_state.c.key == key).values(value=value))
    else:
        conn.execute(insert(chain_state).values(key=key, value=value))


def _seen(conn: Connection, key: str) -> bool:
    q = select(chain_events.c.key).where(chain_events.c.key == key)
    return conn.execute(q).first() is not None


def _remember(
    conn: Connection, key: str, kind: str, address: str, amount: int, block: int, now: float
) -> None:
    conn.execute(
        insert(chain_events).values(
            key=key, kind=kind, address=address.lower(), amount=amount, block=block, at=now
        )
    )


# ---- events into the ledger ------------------------------------------------------------


def credit_deposit(conn: Connection, event: DepositEvent, now: float) -> bool:
    """Credit one Deposit log to its sender, once; False when it was credited before."""
    if _seen(conn, event.key):
        return False
    sender = event.sender.lower()
    _remember(conn, event.key, "deposit", sender, event.amount, event.block_number, now)
    store.apply(conn, ledger.deposit(sender, event.amount, ref=event.key), now)
    store.record(conn, now, "chain_deposit", actor=sender, amount=str(event.amount), key=event.key)
    return True


def record_claim(conn: Connection, event: ClaimEvent, now: float) -> bool:
    """Book one Claimed log: the paid tokens leave ``claimable:X`` for WORLD, once."""
    if _seen(conn, event.key):
        return False
    account = event.account.lower()
    _remember(conn, event.key, "claim", account, event.amount, event.block_number, now)
    acct = ledger.claimable_account(account)
    txn = ledger.pay_claim(store.lock_balances(conn, [acct]), account, event.amount, event.key)
    store.apply(conn, txn, now)
    store.record(conn, now, "chain_claim", actor=account, amount=str(event.amount), key=event.key)
    return True


def _add_cumulative(conn: Connection, added: dict[str, int]) -> None:
    """Raise each address's cumulative amount (in bulk: an epoch may add thousands)."""
    if not added:
        return
    q = select(chain_payees).where(chain_payees.c.address.in_(list(added)))
    have = {r.address: r.cumulative for r in conn.execute(q)}
    fresh = [{"address": a, "cumulative": v} for a, v in added.items() if a not in have]
    grown = [{"addr": a, "total": have[a] + v} for a, v in added.items() if a in have]
    if fresh:
        conn.execute(insert(chain_payees), fresh)
    if grown:
        conn.execute(
            update(chain_payees)
            .where(chain_payees.c.address == bindparam("addr"))
            .values(cumulative=bindparam("total")),
            grown,
        )


def _promise(conn: Connection, owner: str, source: str, amount: int, ref: str, now: float) -> None:
    bals = store.lock_balances(conn, [source])
    store.apply(conn, ledger.make_claimable(bals, owner, source, amount, ref), now)
    _add_cumulative(conn, {owner: amount})


def request_withdrawal(
    conn: Connection, address: str, source: str, amount: int, now: float
) -> None:
    """A withdrawal on a chain network: the tokens become claimable at the next epoch."""
    accounts = {"available": ledger.available_account, "earned": ledger.earned_account}
    if source not in accounts:
        raise InvalidInput(f"cannot withdraw from {source!r}", hint="Use available or earned.")
    addr = address.lower()
    _promise(conn, addr, accounts[source](addr), amount, "withdraw", now)
    store.record(conn, now, "withdraw_requested", actor=addr, amount=str(amount), source=source)


# ---- epochs ----------------------------------------------------------------------------


def epochs(conn: Connection, limit: int = 100) -> list[Any]:
    q = select(chain_epochs).order_by(chain_epochs.c.number.desc()).limit(limit)
    return list(conn.execute(q))


def latest_epoch(conn: Connection, state: str | None = None) -> Any | None:
    q = select(chain_epochs)
    if state:
        q = q.where(chain_epochs.c.state == state)
    return conn.execute(q.order_by(chain_epochs.c.number.desc()).limit(1)).first()


def close_epoch(conn: Connection, link: ChainLink, now: float) -> Any | None:
    """Move released earnings to claimable, burn the fees in the books and record the
    next epoch as pending; None when nothing changed since the last epoch."""
    last = latest_epoch(conn)
    if last is not None and last.state == "pending":
        return None  # another coordinator closed one first: it must be posted before the next
    number = (last.number if last else 0) + 1
    ref = f"epoch-{number}"
    earned = {
        acct.split(":", 1)[1]: amt
        for acct, amt in store.all_balances(conn).items()
        if acct.startswith("earned:") and amt > 0
    }
    if earned:
        names = [ledger.earned_account(o) for o in earned]
        # all_balances read without a row lock; re-read them locked for the move
        store.apply(
            conn, ledger.epoch_claimable(store.lock_balances(conn, names), earned, ref), now
        )
        _add_cumulative(conn, earned)
    fees = store.lock_balances(conn, [ledger.FEES])
    burnable = fees.get(ledger.FEES, 0) - _reserved_fees(conn)
    if burnable > 0:
        store.apply(conn, ledger.burn_fees(fees, burnable), now)
    burned_books = store.balances_for(conn, [ledger.BURNED])[ledger.BURNED]
    recorded = conn.execute(select(chain_epochs.c.fees_burned)).scalars()
    # Fees and any other burn the books made (a slash's burned share) since the last root.
    to_burn = burned_books - sum(int(v) for v in recorded)
    leaves = {r.address: str(r.cumulative) for r in conn.execute(select(chain_payees))}
    if last is not None and leaves == last.leaves and to_burn == 0:
        return None
    if not leaves and to_burn == 0:
        return None
    tree = link.tree(number, leaves)
    conn.execute(
        insert(chain_epochs).values(
            number=number,
            root="0x" + tree.root.hex(),
            leaves=leaves,
            total=sum(int(v) for v in leaves.values()),
            fees_burned=to_burn,
            state="pending",
            created_at=now,
        )
    )
    store.record(conn, now, "epoch_closed", epoch=number, payees=len(leaves), burn=str(to_burn))
    return conn.execute(select(chain_epochs).where(chain_epochs.c.number == number)).one()


def _reserved_fees(conn: Connection) -> int:
    """Fees of payments still in their hold-back: a proven fault refunds them to the
    buyer, so they are not the protocol's to burn yet (docs/verification.md)."""
    from gpudepin.coordinator import tables_verification as tv

    held = select(tv.payouts.c.fee).where(tv.payouts.c.state == "held")
    return sum(int(r.fee) for r in conn.execute(held))


def mark_posted(
    conn: Connection, number: int, tx_hash: str, gas: int, block: int, now: float
) -> None:
    conn.execute(
        update(chain_epochs)
        .where(chain_epochs.c.number == number, chain_epochs.c.state == "pending")
        .values(state="posted", tx_hash=tx_hash, gas=gas, block=block, posted_at=now)
    )
    store.record(conn, now, "epoch_posted", epoch=number, tx_hash=tx_hash, gas=gas)


# ---- reconciliation ----------------------------------------------------------------------


def reconcile(conn: Connection, vault: VaultState, block: int, now: float) -> dict[str, Any]:
    """Compare the vault at ``block`` with the books (scanned up to that block)."""
    bals = store.all_balances(conn)
    backed = sum(v for a, v in bals.items() if a not in BACKING_EXCLUDED)
    unburned = bals.get(ledger.BURNED, 0) - vault.total_burned
    expected = backed + unburned
    diff = vault.balance - expected
    result = {
        "at": now,
        "block": block,
        "vault_balance": str(vault.balance),
        "expected": str(expected),
        "backed": str(backed),
        "burns_pending": str(unburned),
        "difference": str(diff),
        "ok": diff >= 0,
        "surplus": str(max(diff, 0)),
    }
    set_state(conn, RECONCILED, result)
    return result


# ---- the duty ----------------------------------------------------------------------------


def settle(rt: Runtime) -> None:
    """Loop duty: credit events, finish a pending epoch, and close one when it is due.

    A chain node that does not answer only postpones the work to the next pass.
    """
    link: ChainLink | None = getattr(rt, "chain", None)
    if link is None:
        return
    try:
        block, current = scan(rt, link)
        finish_pending(rt, link)
        if current and _epoch_due(rt, link):
            run_epoch(rt, link, block)
    except Unavailable as exc:
        log.warning("settlement postponed: %s", exc.message)


def scan(rt: Runtime, link: ChainLink) -> tuple[int, bool]:
    """Credit the vault's confirmed Deposit and Claimed logs, at most ``SCAN_BLOCKS``
    blocks a pass; returns the block reached and whether that is the confirmed head."""
    head = link.client.confirmed_block_number()
    with rt.reader.connect() as conn:
        cursor = int(get_state(conn, CURSOR, link.config.deployed_block))
    if head + 1 < cursor:
        # The chain is shorter than what we read (a local node restarted from an older
        # state file): read it again; credited keys make that harmless.
        log.warning("the chain is at block %s, behind our cursor %s: rescanning", head, cursor)
        cursor = link.config.deployed_block
    if head < cursor:
        return head, True
    end = min(head, cursor + SCAN_BLOCKS - 1)
    deposits = link.client.deposits_since(cursor, end)
    claims = link.client.claims_since(cursor, end)
    now = rt.clock()
    with rt.engine.begin() as conn:
        credited = sum(credit_deposit(conn, e, now) for e in deposits)
        for c in claims:
            record_claim(conn, c, now)
        set_state(conn, CURSOR, end + 1)
    if credited:
        rt.notify_work()
    return end, end == head


def finish_pending(rt: Runtime, link: ChainLink) -> None:
    """Post (or find already posted) the pending epoch, with the root recorded for it."""
    with rt.reader.connect() as conn:
        pending = latest_epoch(conn, "pending")
        halted = get_state(conn, HALT)
    if pending is None:
        return
    posted = link.client.root_posted(pending.number, link.config.deployed_block)
    if posted is None:
        if halted:
            return
        try:
            tx = link.client.post_root(
                link.settlement_key,
                pending.number,
                bytes.fromhex(pending.root[2:]),
                int(pending.total),
                int(pending.fees_burned),
            )
        except Unavailable:
            raise
        except GpudepinError as exc:
            posted = link.client.root_posted(pending.number, link.config.deployed_block)
            if posted is None:
                _halt(rt, f"posting epoch {pending.number} failed: {exc.message}")
                return
        else:
            with rt.engine.begin() as conn:
                mark_posted(
                    conn, pending.number, tx.tx_hash, tx.gas_used, tx.block_number, rt.clock()
                )
            log.info("epoch %s posted in %s (%s gas)", pending.number, tx.tx_hash, tx.gas_used)
            return
    if "0x" + posted.root.hex() != pending.root:
        _halt(
            rt,
            f"epoch {pending.number} on chain has root 0x{posted.root.hex()}, "
            f"the database recorded {pending.root}",
        )
        return
    gas = link.client.gas_used(posted.tx_hash)
    with rt.engine.begin() as conn:
        mark_posted(conn, pending.number, posted.tx_hash, gas, posted.block_number, rt.clock())
    log.info("epoch %s was already on chain (%s): recorded", pending.number, posted.tx_hash)


def _epoch_due(rt: Runtime, link: ChainLink) -> bool:
    with rt.reader.connect() as conn:
        last = conn.execute(select(func.max(chain_epochs.c.created_at))).scalar()
        checked = get_state(conn, CHECKED)
    since = max(float(last or 0), float(checked or 0), link.started_at)
    return rt.clock() - since >= rt.settings.epoch_interval_s


def run_epoch(rt: Runtime, link: ChainLink, block: int) -> None:
    """Reconcile, then close and post the next epoch unless the books disagree."""
    vault = link.client.vault_state(block)
    now = rt.clock()
    with rt.engine.begin() as conn:
        if latest_epoch(conn, "pending") is not None:
            return
        last = latest_epoch(conn)
        known = last.number if last else 0
        result = reconcile(conn, vault, block, now)
        set_state(conn, CHECKED, now)
    if vault.epoch > known:
        _halt(rt, f"the vault is at epoch {vault.epoch} but this database knows {known}")
        return
    if not result["ok"]:
        _halt(
            rt,
            f"reconciliation failed at block {block}: the vault holds {result['vault_balance']} "
            f"but the books need {result['expected']} (short by {-int(result['difference'])})",
        )
        return
    if int(result["surplus"]):
        log.warning("the vault holds %s more than the books back", result["surplus"])
    _resume(rt)
    with rt.engine.begin() as conn:
        closed = close_epoch(conn, link, now)
    if closed is not None:
        finish_pending(rt, link)


def _halt(rt: Runtime, reason: str) -> None:
    log.error("SETTLEMENT HALTED: %s", reason)
    with rt.engine.begin() as conn:
        current = get_state(conn, HALT)
        if not current or current.get("reason") != reason:
            set_state(conn, HALT, {"reason": reason, "at": rt.clock()})
            store.record(conn, rt.clock(), "settlement_halted", reason=reason)


def _resume(rt: Runtime) -> None:
    with rt.engine.begin() as conn:
        if get_state(conn, HALT):
            set_state(conn, HALT, None)
            store.record(conn, rt.clock(), "settlement_resumed")
            log.warning("settlement resumed: the vault and the books agree again")


# ---- read models -------------------------------------------------------------------------


def account_view(conn: Connection, address: str) -> dict[str, int]:
    """What an address earned, has promised on chain, and has been paid by claims."""
    addr = address.lower()
    names = [
        ledger.earned_account(addr),
        ledger.held_account(addr),
        ledger.claimable_account(addr),
        ledger.available_account(addr),
    ]
    b = store.balances_for(conn, names)
    row = conn.execute(
        select(chain_payees.c.cumulative).where(chain_payees.c.address == addr)
    ).first()
    cumulative = int(row.cumulative) if row else 0
    claimable = b[ledger.claimable_account(addr)]
    return {
        "earned": b[ledger.earned_account(addr)],
        "held": b[ledger.held_account(addr)],
        "claimable": claimable,
        "claimed": cumulative - claimable,
        "cumulative": cumulative,
        "available": b[ledger.available_account(addr)],
    }


def proof_for(conn: Connection, link: ChainLink, address: str) -> dict[str, Any]:
    """The latest posted root's leaf and proof for ``address``."""
    epoch = latest_epoch(conn, "posted")
    if epoch is None:
        raise NotFound("no epoch has been posted yet", hint="Wait for the next epoch.")
    addr = address.lower()
    if addr not in epoch.leaves:
        raise NotFound(
            f"{address} is owed nothing in epoch {epoch.number}",
            hint="Earnings and withdrawals enter the next epoch's root.",
        )
    tree = link.tree(epoch.number, epoch.leaves)
    if "0x" + tree.root.hex() != epoch.root:
        raise Conflict(f"epoch {epoch.number}'s leaves do not rebuild its root")
    return {
        "epoch": epoch.number,
        "root": epoch.root,
        "address": addr,
        "cumulative": epoch.leaves[addr],
        "proof": ["0x" + p.hex() for p in tree.proof(addr)],
    }
