"""How the simulator scales: N providers for D simulated days on one core.

Prints, for each size (smallest first, so growth reads down the table): wall and CPU
seconds (``resource.getrusage``; on a shared machine CPU time is the simulator's own
cost, wall time also counts waiting for a core), events and ledger transactions per
wall and per CPU second, leases, peak memory (max RSS of this process, which only grows,
so each row is the peak so far) and the growth of CPU time against the previous size.
The load average before and after each run says how busy the machine was.

    python3 benchmarks/sim_scale.py                       # 1,000 / 10,000 / 100,000 x 30 days
    python3 benchmarks/sim_scale.py --sizes 1000 --days 7

Target (issue 8): 100,000 providers x 30 days within 10 minutes and 4 GiB.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from gpudepin.sim.engine import SimParams, simulate


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(
        f"{'providers':>10} {'days':>4} {'wall s':>7} {'CPU s':>7} {'events':>10} "
        f"{'ev/s wall':>9} {'ev/s CPU':>8} {'txns':>10} {'txns/s CPU':>10} {'leases':>9} "
        f"{'RSS MiB':>7} {'CPU x':>6} {'load before/after':>18}"
    )
    previous: tuple[int, float] | None = None
    for n in args.sizes:
        load0 = os.getloadavg()[0]
        start, cpu0 = time.perf_counter(), _cpu_s()
        result = simulate(SimParams(providers=n, days=args.days, seed=args.seed))
        wall = time.perf_counter() - start
        cpu = _cpu_s() - cpu0
        load1 = os.getloadavg()[0]
        leases = sum(d.leases for d in result.days)
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        growth = f"{cpu / previous[1]:.1f}/{n / previous[0]:.0f}" if previous else "-"
        print(
            f"{n:>10,} {args.days:>4} {wall:>7.1f} {cpu:>7.1f} {result.events:>10,} "
            f"{result.events / wall:>9,.0f} {result.events / cpu:>8,.0f} "
            f"{result.transactions:>10,} {result.transactions / cpu:>10,.0f} {leases:>9,} "
            f"{rss_mib:>7,.0f} {growth:>6} {load0:>8.1f}/{load1:<8.1f}",
            flush=True,
        )
        previous = (n, cpu)


if __name__ == "__main__":
    main()
