# pragma version ~=0.4.0
"""
@title gpudepin provider stakes
@notice Providers stake tokens as a bond. Unbonding starts a delay during which the
        tokens can still be slashed; after it the provider withdraws them. The arbiter
        key, fixed at deployment, slashes with the hash of the verdict's evidence and
        sends the slashed tokens where the verdict says: to addresses (a buyer's refund,
        a whistleblower) or, for the zero address, burned.
"""

interface Token:
    def transfer(receiver: address, amount: uint256) -> bool: nonpayable
    def transferFrom(sender: address, receiver: address, amount: uint256) -> bool: nonpayable
    def burn(amount: uint256): nonpayable

event Staked:
    provider: indexed(address)
    amount: uint256
    total: uint256

event Unbonding:
    provider: indexed(address)
    amount: uint256
    releaseAt: uint256

event Withdrawn:
    provider: indexed(address)
    amount: uint256

event Slashed:
    provider: indexed(address)
    evidence: indexed(bytes32)
    amount: uint256

event SlashPaid:
    evidence: indexed(bytes32)
    receiver: address
    amount: uint256

MAX_SHARES: constant(uint256) = 8

token: public(immutable(Token))
arbiter: public(immutable(address))
unbondDelay: public(immutable(uint256))

staked: public(HashMap[address, uint256])
unbonding: public(HashMap[address, uint256])
releaseAt: public(HashMap[address, uint256])
evidenceUsed: public(HashMap[bytes32, bool])


@deploy
def __init__(token_: address, arbiter_: address, unbondDelay_: uint256):
    assert token_ != empty(address), "token is zero"
    assert arbiter_ != empty(address), "arbiter is zero"
    token = Token(token_)
    arbiter = arbiter_
    unbondDelay = unbondDelay_


@external
@nonreentrant
def stake(amount: uint256):
    assert amount > 0, "stake is zero"
    total: uint256 = self.staked[msg.sender] + amount
    self.staked[msg.sender] = total
    assert extcall token.transferFrom(msg.sender, self, amount), "transferFrom failed"
    log Staked(provider=msg.sender, amount=amount, total=total)


@external
def unbond(amount: uint256):
    """
    @notice Start unbonding `amount`; the delay restarts for everything unbonding.
    """
    assert amount > 0, "unbond is zero"
    bal: uint256 = self.staked[msg.sender]
    assert bal >= amount, "stake too low"
    self.staked[msg.sender] = bal - amount
    self.unbonding[msg.sender] += amount
    release: uint256 = block.timestamp + unbondDelay
    self.releaseAt[msg.sender] = release
    log Unbonding(provider=msg.sender, amount=amount, releaseAt=release)


@external
@nonreentrant
def withdraw() -> uint256:
    amount: uint256 = self.unbonding[msg.sender]
    assert amount > 0, "nothing unbonding"
    assert block.timestamp >= self.releaseAt[msg.sender], "still unbonding"
    self.unbonding[msg.sender] = 0
    assert extcall token.transfer(msg.sender, amount), "transfer failed"
    log Withdrawn(provider=msg.sender, amount=amount)
    return amount


@external
@nonreentrant
def slash(
    provider: address,
    evidence: bytes32,
    receivers: DynArray[address, MAX_SHARES],
    amounts: DynArray[uint256, MAX_SHARES],
):
    """
    @notice Take the sum of `amounts` from `provider`'s stake (then from what it is
            unbonding) and pay each amount to its receiver; the zero address burns.
            Each evidence hash slashes once.
    """
    assert msg.sender == arbiter, "only the arbiter"
    assert len(receivers) == len(amounts), "receivers and amounts differ in length"
    assert not self.evidenceUsed[evidence], "evidence already used"
    total: uint256 = 0
    for a: uint256 in amounts:
        total += a
    assert total > 0, "slash is zero"
    bonded: uint256 = self.staked[provider]
    pending: uint256 = self.unbonding[provider]
    assert bonded + pending >= total, "stake too low"
    self.evidenceUsed[evidence] = True
    if total <= bonded:
        self.staked[provider] = bonded - total
    else:
        self.staked[provider] = 0
        self.unbonding[provider] = pending - (total - bonded)
    log Slashed(provider=provider, evidence=evidence, amount=total)
    burned: uint256 = 0
    for i: uint256 in range(len(receivers), bound=MAX_SHARES):
        if amounts[i] == 0:
            continue
        if receivers[i] == empty(address):
            burned += amounts[i]
        else:
            assert extcall token.transfer(receivers[i], amounts[i]), "transfer failed"
        log SlashPaid(evidence=evidence, receiver=receivers[i], amount=amounts[i])
    if burned > 0:
        extcall token.burn(burned)
