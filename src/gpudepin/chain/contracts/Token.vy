# pragma version ~=0.4.0
"""
@title gpudepin network token
@notice ERC-20 with 18 decimals. One minter, fixed at deployment, creates tokens
        (emissions; on a local chain also the faucet). Anyone may burn their own
        tokens: the vault burns protocol fees and the stake pool burns slashes that way.
        The token has no transfer hooks, so paying with it never runs foreign code.
"""

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

name: public(String[32])
symbol: public(String[8])
decimals: public(constant(uint8)) = 18
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
minter: public(immutable(address))


@deploy
def __init__(name_: String[32], symbol_: String[8], minter_: address):
    assert minter_ != empty(address), "minter is zero"
    self.name = name_
    self.symbol = symbol_
    minter = minter_


@internal
def _transfer(sender: address, receiver: address, amount: uint256):
    assert receiver != empty(address), "transfer to zero address"
    bal: uint256 = self.balanceOf[sender]
    assert bal >= amount, "balance too low"
    self.balanceOf[sender] = bal - amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=sender, receiver=receiver, value=amount)


@external
def transfer(receiver: address, amount: uint256) -> bool:
    self._transfer(msg.sender, receiver, amount)
    return True


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    allowed: uint256 = self.allowance[sender][msg.sender]
    if allowed != max_value(uint256):
        assert allowed >= amount, "allowance too low"
        self.allowance[sender][msg.sender] = allowed - amount
    self._transfer(sender, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def mint(receiver: address, amount: uint256):
    assert msg.sender == minter, "only the minter"
    assert receiver != empty(address), "mint to zero address"
    self.totalSupply += amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=empty(address), receiver=receiver, value=amount)


@external
def burn(amount: uint256):
    bal: uint256 = self.balanceOf[msg.sender]
    assert bal >= amount, "balance too low"
    self.balanceOf[msg.sender] = bal - amount
    self.totalSupply -= amount
    log Transfer(sender=msg.sender, receiver=empty(address), value=amount)
