"""How the simulator scales: N providers for D simulated days on one core.

Prints wall and CPU time, events and ledger transactions per wall second and peak memory
(max RSS of this process) for each size, smallest first, so growth reads down the table:

    python3 benchmarks/sim_scale.py                       # 1,000 / 10,000 / 100,000 x 30 days
    python3 benchmarks/sim_scale.py --sizes 1000 --days 7
"""

from __future__ import annotations

import argparse
import resource
import time

from gpudepin.sim.engine import SimParams, simulate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(
        f"{'providers':>10} {'days':>5} {'wall s':>8} {'events':>10} {'events/s':>9} "
        f"{'txns':>11} {'txns/s':>8} {'leases':>10} {'peak RSS MiB':>12}"
    )
    for n in args.sizes:
        start, cpu0 = time.perf_counter(), time.process_time()
        result = simulate(SimParams(providers=n, days=args.days, seed=args.seed))
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        leases = sum(d.leases for d in result.days)
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{n:>10,} {args.days:>5} {wall:>8.1f} {cpu:>8.1f} {result.events:>10,} "
            f"{result.events / wall:>9,.0f} {result.transactions:>11,} "
            f"{result.transactions / wall:>8,.0f} {leases:>10,} {rss_mib:>12,.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
