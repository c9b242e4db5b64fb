"""The pure domain of gpudepin: no I/O, no clock, no global randomness.

Modules and their roles: ``errors`` (the exception tree), ``money`` (integer base units),
``hardware`` (GPU catalog and tiers), ``jobs`` (job and task state machines),
``ledger`` (double-entry postings and the operations on them). Time arrives as a ``now``
argument and randomness as an ``rng`` argument, so the coordinator and the simulator
run the very same rules.
"""
