"""On-chain custody and settlement: contracts, their compiler cache, Anvil and a client.

- ``contracts/``: the Vyper 0.4 sources. ``Token`` (the ERC-20 with a minter and burn),
  ``Vault`` (buyers' deposits and epoch settlement by Merkle root of cumulative amounts,
  with fee burns) and ``Stakes`` (provider bonds, unbonding delay, slashing by verdict).
- ``compile``: compiles them with vyper's Python API into ``build/*.json``, which is
  committed, so running nodes need no compiler.
- ``merkle``: the pure tree of cumulative claimable amounts and its proofs.
- ``anvil``: finds, starts and stops the local Anvil node with a persistent state file.
- ``client``: ``ChainClient``, the web3.py gateway the coordinator, agent and CLI use.

Nothing here is imported by ``gpudepin.core``; web3 is imported only inside ``client``.
"""
