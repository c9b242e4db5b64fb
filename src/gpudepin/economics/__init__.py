"""The economics toolkit: what a GPU earns, whether the token holds, whether the network lasts.

``defaults`` holds every public figure the calculators start from (power, prices, fees,
emissions, hyperscaler prices), each with the place it comes from, so a user can see and
override it. ``profit`` is a provider's daily and monthly account for one GPU, with a
sensitivity table and a chart. ``tokenomics`` projects a burn-and-mint token month by month
under a demand scenario. ``viability`` turns a network's own figures (from the live ledger
or the simulator) into a scorecard over the three pillars: hardware accessibility,
enterprise adoption and sustainable tokenomics.

Amounts here are USD and token projections, not ledger balances: they are floats on purpose
and never move money; the ledger's integer rule applies to ``gpudepin.core``.
"""
