"""Erasure-coding throughput (zfec through gpudepin.storage.erasure) and durability figures.

Run: python3 benchmarks/erasure.py [--mb 64]
Prints encode and decode MB/s for k-of-n codes (decode from the k slowest case: parity
shards only, where possible) and the durability estimate of gpudepin.core.shards.
"""

from __future__ import annotations

import argparse
import random
import time

from gpudepin.core.shards import durability, shard_loss_probability
from gpudepin.storage.erasure import decode_blobs, encode, manifest_of


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=64)
    args = parser.parse_args()
    data = random.Random(0).randbytes(args.mb * 1024 * 1024)
    print(f"artifact: {args.mb} MB")
    print(f"{'code':>8} {'encode MB/s':>12} {'decode MB/s':>12} {'overhead':>9}")
    for k, n in ((4, 8), (8, 12), (10, 16)):
        t0 = time.perf_counter()
        shards = encode(data, k, n)
        t1 = time.perf_counter()
        manifest = manifest_of(data, shards)
        # Parity shards first: decoding from them is the expensive path.
        chosen = list(range(n - 1, n - 1 - k, -1))
        t2 = time.perf_counter()
        out = decode_blobs(manifest, {i: shards[i].data for i in chosen})
        t3 = time.perf_counter()
        assert out == data
        print(
            f"{k:>3}-of-{n:<3} {args.mb / (t1 - t0):12.0f} {args.mb / (t3 - t2):12.0f}"
            f" {n / k:8.2f}x"
        )
    print()
    print(f"holder loss per hour (steady state): {shard_loss_probability(1.0):.4f}")
    print(f"{'code':>8} {'repair every':>12} {'loss/interval':>14} {'loss/year':>10} {'nines':>6}")
    for k, n in ((4, 8), (8, 12), (10, 16)):
        for hours in (0.25, 1.0, 6.0):
            d = durability(k, n, hours)
            print(
                f"{k:>3}-of-{n:<3} {hours:>10.2f} h {d.loss_per_interval:14.2e}"
                f" {d.loss_per_year:10.2e} {d.nines:6.1f}"
            )


if __name__ == "__main__":
    main()
