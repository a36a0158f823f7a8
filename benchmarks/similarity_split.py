"""Time and peak memory of `split_by: similarity` on 10k, 30k and 100k synthetic sequences.

A similarity split must stay cheap on a labelled task of 100k sequences on a 2-core machine, so
for each size this script runs, in a fresh subprocess (so that the peak RSS is that size's own):

  clusters  `similarity_clusters` (`dnalm.similarity`): canonical 21-mers, candidate pairs from
            the k-mer postings, exact shared counts, connected components
  draw      `labelled_windows` on the clustered table: the seeded, stratified group draw of test
            and val (best of 16 greedy passes each) and the tables
  audit     the near-duplicate audit of the resulting test split against train, which should find
            nothing but the sequences the repeats alone flag (not part of the split's cost)

The sequences (251 bases, as GenomicBenchmarks' promoters) are made with a seeded generator:
`--family-fraction` of them are tiles of random 400-base regions (2-12 tiles a region, random
offsets, 0.5% substitutions: near-duplicate families, as the nontata negatives are), the rest are
random, and a 120-base repeat element is written into 1% of all sequences, so that at 30k and
100k its k-mers are repeats (in more than 256 sequences). Labels are drawn per family.

Both wall-clock and CPU seconds are printed, with the load average before and after; on a shared
machine the CPU seconds are the steadier figure.

  python benchmarks/similarity_split.py [--sizes 10000 30000 100000] [--family-fraction 0.4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LENGTH = 251
REGION = 400
SETTINGS = {"k": 21, "min_shared": 0.5, "max_kmer_windows": 256}


def _rss_mb() -> float:
    """Peak resident memory of this process (VmHWM: ru_maxrss would carry the parent's over)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def synthetic(n: int, family_fraction: float, seed: int = 0):
    """A labelled table of `n` sequences with planted near-duplicate families and a repeat."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < n * family_fraction:
        sizes.append(int(rng.integers(2, 13)))
    family = np.repeat(np.arange(len(sizes)), sizes)[: int(n * family_fraction)]
    regions = rng.integers(0, 4, (len(sizes), REGION), dtype=np.uint8)
    offsets = rng.integers(0, REGION - LENGTH + 1, len(family))
    tiles = regions[family[:, None], offsets[:, None] + np.arange(LENGTH)]
    mutated = rng.random(tiles.shape) < 0.005
    tiles[mutated] = rng.integers(0, 4, int(mutated.sum()), dtype=np.uint8)
    codes = np.concatenate([tiles, rng.integers(0, 4, (n - len(family), LENGTH), dtype=np.uint8)])
    element = rng.integers(0, 4, 120, dtype=np.uint8)
    carriers = rng.choice(n, n // 100, replace=False)
    starts = rng.integers(0, LENGTH - len(element) + 1, len(carriers))
    codes[carriers[:, None], starts[:, None] + np.arange(len(element))] = element
    order = rng.permutation(n)
    family_label = rng.integers(0, 2, len(sizes))
    labels = np.concatenate([family_label[family], rng.integers(0, 2, n - len(family))])[order]
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)[codes[order]]
    seqs = [row.tobytes().decode() for row in letters]
    return pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(n)],
            "sequence": seqs,
            "label": labels.astype(str),
            "source": "synthetic",
            "file": "synthetic",
            "line": np.arange(n) + 1,
        }
    )


def measure(n: int, family_fraction: float) -> dict:
    """One size, in this process; returns the numbers as a dict."""
    from dnalm.audit import AuditSettings, audit_task
    from dnalm.labelled import labelled_windows, similarity_groups

    table = synthetic(n, family_fraction)
    base_rss = _rss_mb()
    times = {}
    wall, cpu = time.perf_counter(), time.process_time()
    grouped, clusters = similarity_groups(table, **SETTINGS)
    times["clusters"] = (time.perf_counter() - wall, time.process_time() - cpu)
    cluster_rss = _rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    splits = labelled_windows(
        grouped, task="synthetic", labels=["0", "1"], val_fraction=0.15, test_fraction=0.2, seed=0
    )
    times["draw"] = (time.perf_counter() - wall, time.process_time() - cpu)
    split_rss = _rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    settings = AuditSettings(**SETTINGS)
    _, per_window = audit_task(splits["train"], splits["test"], {}, settings, "synthetic")
    times["audit"] = (time.perf_counter() - wall, time.process_time() - cpu)
    near = per_window.loc[per_window["max_shared"] >= settings.min_shared, "chrom"]
    bound = set(grouped["id"][clusters.repeat_bound])
    return {
        "n": n,
        "clusters": clusters.count,
        "largest": int(clusters.sizes.max()),
        "largest_share": clusters.largest_share,
        "pairs": clusters.pairs,
        "links": clusters.links,
        "repeats": clusters.repeats,
        "repeat_bound": int(clusters.repeat_bound.sum()),
        "times": times,
        "table_mb": base_rss,
        "split_peak_mb": max(cluster_rss, split_rss),
        "test": len(splits["test"]),
        "near_duplicates": len(near),
        "near_not_repeat_bound": int((~near.isin(bound)).sum()),
    }


def run(n: int, family_fraction: float) -> dict:
    cmd = [sys.executable, __file__, "--measure", str(n), "--family-fraction", str(family_fraction)]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--family-fraction", type=float, default=0.4)
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.family_fraction)))
        return
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    header = (
        "| sequences | clusters | largest | candidate pairs | links | repeat k-mers | "
        "clusters s (CPU) | draw s (CPU) | split s (CPU) | peak RSS MB (table) | "
        "audit s | near-duplicate test | of them not repeat-bound |"
    )
    print(header)
    print("|" + "---:|" * (header.count("|") - 1))
    for n in args.sizes:
        r = run(n, args.family_fraction)
        (cw, cc), (dw, dc), (aw, _) = (r["times"][s] for s in ("clusters", "draw", "audit"))
        print(
            f"| {n:,} | {r['clusters']:,} | {r['largest']} ({100 * r['largest_share']:.2f}%) | "
            f"{r['pairs']:,} | {r['links']:,} | {r['repeats']:,} | {cw:.1f} ({cc:.1f}) | "
            f"{dw:.1f} ({dc:.1f}) | {cw + dw:.1f} ({cc + dc:.1f}) | "
            f"{r['split_peak_mb']:.0f} ({r['table_mb']:.0f}) | {aw:.1f} | "
            f"{r['near_duplicates']} of {r['test']:,} | {r['near_not_repeat_bound']} |",
            flush=True,
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
