# pragma version ~=0.4.0
"""
@title gpudepin vault: custody of buyers' deposits and epoch settlement
@notice Buyers deposit tokens here. Tokens leave only two ways: a claim against the
        latest epoch root (provider earnings, buyer withdrawals) or a fee burn posted
        with that root. Each root commits to every address's CUMULATIVE claimable
        amount; a claim pays the difference between the proven amount and what the
        address has already been paid, so the newest root supersedes all older ones.
@dev Leaf = keccak256(keccak256(abi_encode(account, cumulative))); inner node =
     keccak256 of the two children, smaller first. Hashing the leaf twice keeps a leaf
     from ever being mistaken for an inner node (both would otherwise hash 64 bytes).
"""

interface Token:
    def transfer(receiver: address, amount: uint256) -> bool: nonpayable
    def transferFrom(sender: address, receiver: address, amount: uint256) -> bool: nonpayable
    def burn(amount: uint256): nonpayable

event Deposit:
    sender: indexed(address)
    amount: uint256
    nonce: uint256

event RootPosted:
    epoch: indexed(uint256)
    root: bytes32
    totalCumulative: uint256
    feesBurned: uint256

event Claimed:
    account: indexed(address)
    amount: uint256

MAX_DEPTH: constant(uint256) = 32

token: public(immutable(Token))
settler: public(immutable(address))

depositCount: public(uint256)
totalDeposited: public(uint256)
root: public(bytes32)
epoch: public(uint256)
totalCumulative: public(uint256)
totalBurned: public(uint256)
claimed: public(HashMap[address, uint256])


@deploy
def __init__(token_: address, settler_: address):
    assert token_ != empty(address), "token is zero"
    assert settler_ != empty(address), "settler is zero"
    token = Token(token_)
    settler = settler_


@external
@nonreentrant
def deposit(amount: uint256) -> uint256:
    """
    @notice Move `amount` of the caller's tokens (approved beforehand) into the vault.
    @return The deposit's nonce, unique within this vault.
    """
    assert amount > 0, "deposit is zero"
    nonce: uint256 = self.depositCount + 1
    self.depositCount = nonce
    self.totalDeposited += amount
    assert extcall token.transferFrom(msg.sender, self, amount), "transferFrom failed"
    log Deposit(sender=msg.sender, amount=amount, nonce=nonce)
    return nonce


@external
@nonreentrant
def postRoot(epoch_: uint256, root_: bytes32, totalCumulative_: uint256, feesToBurn: uint256):
    """
    @notice Publish epoch `epoch_`'s root of cumulative claimable amounts and burn the
            epoch's protocol fees. Only the settlement key; epochs strictly increase.
    """
    assert msg.sender == settler, "only the settlement key"
    assert epoch_ > self.epoch, "epoch already posted or out of order"
    assert totalCumulative_ >= self.totalCumulative, "cumulative total went down"
    # Everything ever owed plus everything ever burned must come out of deposits; then
    # the vault's balance (deposits - burns - claims) covers every claim this root allows.
    # Checking totals, not the balance, keeps claims from writing a running total.
    owed_and_burned: uint256 = self.totalBurned + feesToBurn + totalCumulative_
    assert self.totalDeposited >= owed_and_burned, "deposits cannot cover root"
    self.epoch = epoch_
    self.root = root_
    self.totalCumulative = totalCumulative_
    self.totalBurned += feesToBurn
    if feesToBurn > 0:
        extcall token.burn(feesToBurn)
    log RootPosted(epoch=epoch_, root=root_, totalCumulative=totalCumulative_, feesBurned=feesToBurn)


@external
@nonreentrant
def claim(account: address, cumulative: uint256, proof: DynArray[bytes32, MAX_DEPTH]) -> uint256:
    """
    @notice Pay `account` what the latest root owes it beyond what it already received.
            Anyone may send this; the tokens always go to `account`.
    @return The amount paid.
    """
    node: bytes32 = keccak256(keccak256(abi_encode(account, cumulative)))
    for sibling: bytes32 in proof:
        if convert(node, uint256) < convert(sibling, uint256):
            node = keccak256(concat(node, sibling))
        else:
            node = keccak256(concat(sibling, node))
    assert node == self.root, "invalid proof"
    paid: uint256 = self.claimed[account]
    assert cumulative > paid, "nothing to claim"
    owed: uint256 = cumulative - paid
    # Effects before the transfer: a re-entered claim already sees the new total.
    self.claimed[account] = cumulative
    assert extcall token.transfer(account, owed), "transfer failed"
    log Claimed(account=account, amount=owed)
    return owed
