# pragma version ~=0.4.0
"""
A hostile token for the re-entrancy test: when the vault pays it out, it calls the
vault's claim again with the same proof and records whether that second claim paid.
"""

balanceOf: public(HashMap[address, uint256])
vault: public(address)
armed: public(bool)
reentryPaid: public(bool)
reentryTried: public(bool)
account: address
cumulative: uint256
proof: DynArray[bytes32, 32]


@external
def arm(vault_: address, account_: address, cumulative_: uint256, proof_: DynArray[bytes32, 32]):
    self.vault = vault_
    self.account = account_
    self.cumulative = cumulative_
    self.proof = proof_
    self.armed = True


@external
def mint(receiver: address, amount: uint256):
    self.balanceOf[receiver] += amount


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    self.balanceOf[sender] -= amount
    self.balanceOf[receiver] += amount
    return True


@external
def burn(amount: uint256):
    self.balanceOf[msg.sender] -= amount


@external
def transfer(receiver: address, amount: uint256) -> bool:
    self.balanceOf[msg.sender] -= amount
    self.balanceOf[receiver] += amount
    if self.armed:
        self.armed = False
        self.reentryTried = True
        data: Bytes[1220] = abi_encode(
            self.account, self.cumulative, self.proof, method_id=method_id("claim(address,uint256,bytes32[])")
        )
        ok: bool = raw_call(self.vault, data, revert_on_failure=False)
        self.reentryPaid = ok
    return True
