"""The chain client: deploys the contracts and calls them through web3.py.

Every write signs locally with the caller's key (``eth-account``), waits for the
receipt, then for ``confirmations`` further blocks, and returns a :class:`TxResult`.
Reverts come back as gpudepin errors carrying the contract's reason; a node that does
not answer raises Unavailable. web3's HTTPProvider opens a connection per request as
needed, so a node restarted on the same URL is picked up by the next call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from gpudepin.chain.anvil import ANVIL_CHAIN_ID
from gpudepin.chain.compile import load_artifact
from gpudepin.core.errors import (
    Conflict,
    Forbidden,
    GpudepinError,
    InsufficientFunds,
    InvalidInput,
    NotFound,
    Unavailable,
)

T = TypeVar("T")
DEFAULT_UNBOND_DELAY_S = 7 * 24 * 3600
# A gas allowance for one wallet on the local chain: enough for thousands of calls.
LOCAL_GAS_ALLOWANCE_WEI = 10**20


@dataclass(frozen=True)
class TxResult:
    """A mined transaction."""

    tx_hash: str
    gas_used: int
    block_number: int
    contract_address: str | None = None


@dataclass(frozen=True)
class DepositEvent:
    """One Deposit log of the vault; ``key`` (tx hash and log index) is unique on a chain."""

    key: str
    sender: str
    amount: int
    nonce: int
    block_number: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class ClaimEvent:
    """One Claimed log of the vault: ``amount`` was paid to ``account``."""

    key: str
    account: str
    amount: int
    block_number: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class RootPostedEvent:
    epoch: int
    root: bytes
    total_cumulative: int
    fees_burned: int
    tx_hash: str
    block_number: int


@dataclass(frozen=True)
class StakeInfo:
    staked: int
    unbonding: int
    release_at: int


@dataclass(frozen=True)
class VaultState:
    epoch: int
    root: bytes
    total_deposited: int
    total_cumulative: int
    total_burned: int
    balance: int

    @property
    def total_claimed(self) -> int:
        """Paid out by claims: deposits less burns less what is left (tokens sent to the
        vault without ``deposit`` would hide inside this figure; the vault never pays them)."""
        return self.total_deposited - self.total_burned - self.balance


@dataclass(frozen=True)
class ChainAddresses:
    """Where the contracts live; kept in the config file as a plain dict."""

    token: str
    vault: str
    stakes: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> ChainAddresses:
        try:
            return cls(token=data["token"], vault=data["vault"], stakes=data["stakes"])
        except KeyError as exc:
            raise InvalidInput(
                f"chain addresses lack {exc.args[0]!r}",
                hint="Deploy with `gpudepin chain deploy` or fill token/vault/stakes in.",
            ) from exc


_REASONS: tuple[tuple[str, type[GpudepinError]], ...] = (
    ("only the", Forbidden),
    ("too low", InsufficientFunds),
    ("cannot cover", InsufficientFunds),
    ("invalid proof", InvalidInput),
    ("is zero", InvalidInput),
    ("differ in length", InvalidInput),
    ("zero address", InvalidInput),
)


def revert_error(reason: str) -> GpudepinError:
    """The gpudepin error for a contract's revert reason."""
    for fragment, cls in _REASONS:
        if fragment in reason:
            return cls(f"the contract refused: {reason}", hint=_hint(reason))
    return Conflict(f"the contract refused: {reason}", hint=_hint(reason))


def _hint(reason: str) -> str:
    if "invalid proof" in reason:
        return "Fetch a fresh proof: a newer epoch root has replaced the one it was made for."
    if "nothing to claim" in reason:
        return "Everything this address is owed has been paid; wait for the next epoch."
    if "only the" in reason:
        return "Sign with the key the contracts were deployed with for this role."
    return "Check the chain state with `gpudepin chain epochs` and try again."


def _hex(value: bytes | str) -> str:
    if isinstance(value, str):
        return value if value.startswith("0x") else "0x" + value
    return "0x" + value.hex()


class ChainClient:
    """web3.py access to the token, vault and stake contracts at ``addresses``."""

    def __init__(
        self,
        rpc_url: str,
        addresses: ChainAddresses | Mapping[str, str] | None = None,
        *,
        confirmations: int = 0,
        timeout_s: float = 30.0,
        poll_interval_s: float = 0.05,
    ) -> None:
        from requests.exceptions import ConnectionError as RequestsConnectionError
        from requests.exceptions import Timeout
        from web3 import Web3
        from web3.providers.rpc.utils import ExceptionRetryConfiguration

        if confirmations < 0:
            raise InvalidInput(f"confirmations must be >= 0, got {confirmations}")
        self.rpc_url = rpc_url
        self.confirmations = confirmations
        self.timeout_s = timeout_s
        self.poll_interval_s = poll_interval_s
        provider = Web3.HTTPProvider(
            rpc_url,
            request_kwargs={"timeout": timeout_s},
            # One quick retry rides over a node restart; more would hide a dead node.
            exception_retry_configuration=ExceptionRetryConfiguration(
                errors=(RequestsConnectionError, Timeout), retries=1, backoff_factor=0.2
            ),
        )
        self.w3 = Web3(provider)
        self._chain_id: int | None = None
        self._contracts: dict[str, Any] = {}
        self.addresses: ChainAddresses | None = None
        if addresses is not None:
            self.use(addresses)

    # -- plumbing --------------------------------------------------------------------

    def _rpc(self, fn: Callable[[], T]) -> T:
        """Run one read, turning connection failures and reverts into gpudepin errors."""
        from requests.exceptions import ConnectionError as RequestsConnectionError
        from requests.exceptions import Timeout
        from web3.exceptions import ContractLogicError, ProviderConnectionError, TimeExhausted

        try:
            return fn()
        except ContractLogicError as exc:
            raise revert_error(_reason(exc)) from exc
        except (RequestsConnectionError, Timeout, ProviderConnectionError, TimeExhausted) as exc:
            raise Unavailable(
                f"the chain node at {self.rpc_url} does not answer",
                hint="Start it with `gpudepin up`, or check --chain-rpc.",
            ) from exc

    def use(self, addresses: ChainAddresses | Mapping[str, str]) -> None:
        """Point the client at deployed contracts."""
        if not isinstance(addresses, ChainAddresses):
            addresses = ChainAddresses.from_dict(addresses)
        self.addresses = addresses
        for name, addr in (("Token", addresses.token), ("Vault", addresses.vault)):
            self._contracts[name] = self._contract(name, addr)
        self._contracts["Stakes"] = self._contract("Stakes", addresses.stakes)

    def _contract(self, name: str, address: str) -> Any:
        art = load_artifact(name)
        return self.w3.eth.contract(address=self.w3.to_checksum_address(address), abi=art.abi)

    def _c(self, name: str) -> Any:
        if name not in self._contracts:
            raise NotFound(
                "no contract addresses configured",
                hint="Deploy with `gpudepin chain deploy` or set them in the config file.",
            )
        return self._contracts[name]

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self._rpc(lambda: self.w3.eth.chain_id))
        return self._chain_id

    @property
    def is_local(self) -> bool:
        """Whether this is the local Anvil chain, where faucets and time travel are allowed."""
        return self.chain_id == ANVIL_CHAIN_ID

    def block_number(self) -> int:
        return int(self._rpc(lambda: self.w3.eth.block_number))

    def confirmed_block_number(self) -> int:
        """The newest block with ``confirmations`` blocks on top of it (-1 if none yet)."""
        return self.block_number() - self.confirmations

    def _require_local(self, what: str) -> None:
        if not self.is_local:
            raise Forbidden(
                f"{what} only exists on the local chain (id {ANVIL_CHAIN_ID}), "
                f"this is chain {self.chain_id}",
                hint="On a real chain, buy or bridge the token instead.",
            )

    @staticmethod
    def address_of(key: str) -> str:
        """The checksummed address of a private key."""
        from eth_account import Account

        return str(Account.from_key(key).address)

    def _transact(self, key: str, call: Any) -> TxResult:
        from eth_account import Account
        from web3.exceptions import ContractLogicError

        account = Account.from_key(key)

        def build() -> Any:
            nonce = self.w3.eth.get_transaction_count(account.address, "pending")
            tx = call.build_transaction(
                {"from": account.address, "nonce": nonce, "chainId": self.chain_id}
            )
            return account.sign_transaction(tx)

        signed = self._rpc(build)
        tx_hash = self._rpc(lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction))
        receipt = self._rpc(
            lambda: self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=self.timeout_s, poll_latency=self.poll_interval_s
            )
        )
        if receipt["status"] != 1:
            # Mined yet reverted (the state moved since gas estimation): replay for the reason.
            try:
                call.call({"from": account.address}, block_identifier=receipt["blockNumber"] - 1)
            except ContractLogicError as exc:
                raise revert_error(_reason(exc)) from exc
            raise Conflict(f"transaction {_hex(tx_hash)} reverted")
        self._wait_confirmations(int(receipt["blockNumber"]))
        created = receipt.get("contractAddress")
        return TxResult(
            _hex(tx_hash),
            int(receipt["gasUsed"]),
            int(receipt["blockNumber"]),
            str(created) if created else None,
        )

    def _wait_confirmations(self, block: int) -> None:
        if self.confirmations == 0:
            return
        deadline = time.monotonic() + self.timeout_s
        while self.block_number() < block + self.confirmations:
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"block {block} did not reach {self.confirmations} confirmations "
                    f"within {self.timeout_s:.0f} s",
                    hint="A local Anvil mines only on demand: start it with a block time.",
                )
            time.sleep(self.poll_interval_s)  # polling interval of a bounded wait

    # -- deployment and local-only helpers ------------------------------------------

    def deploy_all(
        self,
        deployer_key: str,
        settlement_addr: str,
        arbiter_addr: str,
        *,
        minter_addr: str | None = None,
        unbond_delay_s: int = DEFAULT_UNBOND_DELAY_S,
        token_name: str = "GPU DePIN",
        token_symbol: str = "GPUD",
    ) -> dict[str, str]:
        """Deploy Token, Vault and Stakes with their roles fixed; returns their addresses.

        The minter defaults to the deployer. The client then uses the new contracts.
        """
        minter = minter_addr or self.address_of(deployer_key)
        token = self._deploy(deployer_key, "Token", token_name, token_symbol, minter)
        vault = self._deploy(deployer_key, "Vault", token, settlement_addr)
        stakes = self._deploy(deployer_key, "Stakes", token, arbiter_addr, unbond_delay_s)
        addresses = ChainAddresses(token=token, vault=vault, stakes=stakes)
        self.use(addresses)
        return addresses.to_dict()

    def _deploy(self, key: str, name: str, *args: Any) -> str:
        art = load_artifact(name)
        factory = self.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
        created = self._transact(key, factory.constructor(*args)).contract_address
        if created is None:
            raise Conflict(f"deploying {name} created no contract")
        return created

    def fund_gas(self, address: str, wei: int = LOCAL_GAS_ALLOWANCE_WEI) -> None:
        """Local chain only: give ``address`` ether for gas."""
        self._require_local("funding gas")
        addr = self.w3.to_checksum_address(address)
        self._local_rpc("anvil_setBalance", [addr, hex(wei)])

    def faucet_mint(self, minter_key: str, to: str, amount: int) -> TxResult:
        """Local chain only: mint ``amount`` test tokens to ``to`` and give it gas money."""
        self._require_local("the faucet")
        self.fund_gas(to)
        return self.mint(minter_key, to, amount)

    def mint(self, minter_key: str, to: str, amount: int) -> TxResult:
        """Mint with the minter role (emissions); the contract refuses any other key."""
        return self._transact(minter_key, self._c("Token").functions.mint(self._cs(to), amount))

    def advance_time(self, seconds: int) -> None:
        """Local chain only: move the clock forward and mine a block."""
        self._require_local("time travel")
        self._local_rpc("evm_increaseTime", [seconds])
        self.mine()

    def mine(self, blocks: int = 1) -> None:
        """Local chain only: mine ``blocks`` empty blocks."""
        self._require_local("mining on demand")
        self._local_rpc("anvil_mine", [hex(blocks)])

    def _local_rpc(self, method: str, params: list[Any]) -> None:
        from web3.types import RPCEndpoint

        response = self._rpc(lambda: self.w3.provider.make_request(RPCEndpoint(method), params))
        if "error" in response:
            raise Unavailable(f"{method} failed: {response['error']}")

    def _cs(self, address: str) -> str:
        try:
            return str(self.w3.to_checksum_address(address))
        except ValueError as exc:
            raise InvalidInput(f"not an address: {address!r}") from exc

    # -- token ------------------------------------------------------------------------

    def balance_of(self, address: str, block: int | None = None) -> int:
        """Token balance in base units (at ``block``, else now)."""
        fn = self._c("Token").functions.balanceOf(self._cs(address))
        at = "latest" if block is None else block
        return int(self._rpc(lambda: fn.call(block_identifier=at)))

    def has_code(self, address: str) -> bool:
        """Whether a contract lives at ``address`` (a fresh chain has none of ours)."""
        return len(self._rpc(lambda: self.w3.eth.get_code(self._cs(address)))) > 0

    def eth_balance(self, address: str) -> int:
        return int(self._rpc(lambda: self.w3.eth.get_balance(self.w3.to_checksum_address(address))))

    def total_supply(self) -> int:
        return int(self._rpc(self._c("Token").functions.totalSupply().call))

    def transfer(self, key: str, to: str, amount: int) -> TxResult:
        return self._transact(key, self._c("Token").functions.transfer(self._cs(to), amount))

    def _ensure_allowance(self, key: str, spender: str, amount: int) -> None:
        token = self._c("Token")
        owner = self.address_of(key)
        allowed = int(self._rpc(token.functions.allowance(owner, spender).call))
        if allowed < amount:
            self._transact(key, token.functions.approve(spender, amount))

    # -- vault: deposits and settlement -------------------------------------------------

    def deposit(self, buyer_key: str, amount: int) -> TxResult:
        """Approve (when needed) and deposit ``amount`` into the vault."""
        if amount <= 0:
            raise InvalidInput(f"deposit must be positive, got {amount}")
        vault = self._c("Vault")
        self._ensure_allowance(buyer_key, vault.address, amount)
        return self._transact(buyer_key, vault.functions.deposit(amount))

    def deposits_since(self, from_block: int, to_block: int | None = None) -> list[DepositEvent]:
        """Deposit events in ``[from_block, to_block]``, never past the confirmed block.

        Credit each by its ``key`` exactly once; the usual loop keeps a cursor:
        ``to = client.confirmed_block_number(); client.deposits_since(cursor, to);
        cursor = to + 1``.
        """
        last = self.confirmed_block_number()
        end = last if to_block is None else min(to_block, last)
        if end < from_block:
            return []
        event = self._c("Vault").events.Deposit
        logs = self._rpc(lambda: event.get_logs(from_block=from_block, to_block=end))
        out = []
        for log in logs:
            tx_hash = _hex(log["transactionHash"])
            out.append(
                DepositEvent(
                    key=f"{tx_hash}:{int(log['logIndex'])}",
                    sender=str(log["args"]["sender"]),
                    amount=int(log["args"]["amount"]),
                    nonce=int(log["args"]["nonce"]),
                    block_number=int(log["blockNumber"]),
                    tx_hash=tx_hash,
                    log_index=int(log["logIndex"]),
                )
            )
        return sorted(out, key=lambda e: (e.block_number, e.log_index))

    def claims_since(self, from_block: int, to_block: int | None = None) -> list[ClaimEvent]:
        """Claimed events in ``[from_block, to_block]``, never past the confirmed block."""
        last = self.confirmed_block_number()
        end = last if to_block is None else min(to_block, last)
        if end < from_block:
            return []
        event = self._c("Vault").events.Claimed
        logs = self._rpc(lambda: event.get_logs(from_block=from_block, to_block=end))
        out = [
            ClaimEvent(
                key=f"{_hex(log['transactionHash'])}:{int(log['logIndex'])}",
                account=str(log["args"]["account"]),
                amount=int(log["args"]["amount"]),
                block_number=int(log["blockNumber"]),
                tx_hash=_hex(log["transactionHash"]),
                log_index=int(log["logIndex"]),
            )
            for log in logs
        ]
        return sorted(out, key=lambda e: (e.block_number, e.log_index))

    def post_root(
        self, settler_key: str, epoch: int, root: bytes, total_cumulative: int, fees_to_burn: int
    ) -> TxResult:
        """Publish epoch ``epoch``'s root and burn its fees (settlement key only)."""
        if len(root) != 32:
            raise InvalidInput(f"a root is 32 bytes, got {len(root)}")
        fn = self._c("Vault").functions.postRoot(epoch, root, total_cumulative, fees_to_burn)
        return self._transact(settler_key, fn)

    def root_posted(self, epoch: int, from_block: int = 0) -> RootPostedEvent | None:
        """The on-chain record of epoch ``epoch``'s root, if it was posted (crash recovery)."""
        event = self._c("Vault").events.RootPosted
        logs = self._rpc(
            lambda: event.get_logs(
                from_block=from_block, to_block="latest", argument_filters={"epoch": epoch}
            )
        )
        if not logs:
            return None
        log = logs[-1]
        return RootPostedEvent(
            epoch=int(log["args"]["epoch"]),
            root=bytes(log["args"]["root"]),
            total_cumulative=int(log["args"]["totalCumulative"]),
            fees_burned=int(log["args"]["feesBurned"]),
            tx_hash=_hex(log["transactionHash"]),
            block_number=int(log["blockNumber"]),
        )

    def claim(
        self, key: str, cumulative: int, proof: Sequence[bytes], account: str | None = None
    ) -> TxResult:
        """Claim what the latest root owes ``account`` (the key's own address by default).

        Anyone may pay the gas for someone else's claim; the tokens go to ``account``.
        """
        target = self._cs(account) if account else self.address_of(key)
        fn = self._c("Vault").functions.claim(target, cumulative, [bytes(p) for p in proof])
        return self._transact(key, fn)

    def gas_used(self, tx_hash: str) -> int:
        """The gas a mined transaction used (crash recovery records it from the chain)."""
        receipt = self._rpc(lambda: self.w3.eth.get_transaction_receipt(_hex(tx_hash)))
        return int(receipt["gasUsed"])

    def claimed(self, address: str) -> int:
        """What ``address`` has been paid by claims so far (cumulative)."""
        return int(self._rpc(self._c("Vault").functions.claimed(self._cs(address)).call))

    def vault_balance(self, block: int | None = None) -> int:
        return self.balance_of(self._c("Vault").address, block)

    def vault_state(self, block: int | None = None) -> VaultState:
        """The vault's figures at ``block`` (else now): reconciliation reads them at the
        block its event scan reached, so a deposit mined meanwhile cannot skew them."""
        f = self._c("Vault").functions
        at = "latest" if block is None else block

        def read(fn: Any) -> Any:
            return self._rpc(lambda: fn.call(block_identifier=at))

        return VaultState(
            epoch=int(read(f.epoch())),
            root=bytes(read(f.root())),
            total_deposited=int(read(f.totalDeposited())),
            total_cumulative=int(read(f.totalCumulative())),
            total_burned=int(read(f.totalBurned())),
            balance=self.vault_balance(block),
        )

    # -- stakes -------------------------------------------------------------------------

    def stake(self, provider_key: str, amount: int) -> TxResult:
        """Approve (when needed) and stake ``amount``."""
        stakes = self._c("Stakes")
        self._ensure_allowance(provider_key, stakes.address, amount)
        return self._transact(provider_key, stakes.functions.stake(amount))

    def unbond(self, provider_key: str, amount: int) -> TxResult:
        """Start unbonding ``amount``; it can be withdrawn after the unbonding delay."""
        return self._transact(provider_key, self._c("Stakes").functions.unbond(amount))

    def withdraw_stake(self, provider_key: str) -> TxResult:
        """Withdraw everything whose unbonding delay has passed."""
        return self._transact(provider_key, self._c("Stakes").functions.withdraw())

    def slash(
        self,
        arbiter_key: str,
        provider: str,
        evidence: bytes,
        payouts: Sequence[tuple[str | None, int]],
    ) -> TxResult:
        """Slash ``provider`` (arbiter key only); each payout is (receiver, amount),
        a receiver of None burns its amount. ``evidence`` is the verdict's 32-byte hash."""
        if len(evidence) != 32:
            raise InvalidInput(f"evidence is a 32-byte hash, got {len(evidence)} bytes")
        zero = "0x" + "00" * 20
        receivers = [self._cs(r or zero) for r, _ in payouts]
        amounts = [a for _, a in payouts]
        fn = self._c("Stakes").functions.slash(self._cs(provider), evidence, receivers, amounts)
        return self._transact(arbiter_key, fn)

    def stake_of(self, provider: str) -> StakeInfo:
        f = self._c("Stakes").functions
        addr = self._cs(provider)
        return StakeInfo(
            staked=int(self._rpc(f.staked(addr).call)),
            unbonding=int(self._rpc(f.unbonding(addr).call)),
            release_at=int(self._rpc(f.releaseAt(addr).call)),
        )


def _reason(exc: Exception) -> str:
    text = str(getattr(exc, "message", None) or exc)
    for prefix in ("execution reverted: ", "execution reverted"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text.strip() or "reverted without a reason"
