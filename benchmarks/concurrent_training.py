"""Two training jobs on a 2-core machine: together vs one after the other.

Snakemake with `--cores 2` runs two 1-thread training jobs at once. This is only a win if each job
really stays on its one thread: oversubscribed oneDNN/OpenMP threads spin-wait, which can slow a
job many times over (docs/performance.md has the figures). This script times, with the real
training loop (`dnalm.training.pretrain_lm`, hyena micro, batch 8 x 512):

  sequential, 1 thread each   (reference)
  sequential, 2 threads each  (a rule declaring threads: 2 on 2 cores)
  concurrent, 1 thread each   (what the pipeline does: threads pinned by dnalm.runtime)
  concurrent, unpinned        (each job free to use every core: the failure mode)

Run it on an otherwise idle machine:  python benchmarks/concurrent_training.py [--steps 40]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def job(threads: int, steps: int, arch: str) -> None:
    """One training job; threads=0 leaves torch's defaults alone (all cores)."""
    if threads:
        from dnalm.runtime import limit_threads

        limit_threads(threads)
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from dnalm.models import model_config
    from dnalm.shards import TokenShard, write_shard
    from dnalm.training import TrainConfig, pretrain_lm

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        seqs = [(rng.integers(7, 11, 512).astype(np.uint8), -1) for _ in range(64)]
        write_shard(Path(tmp) / "train", seqs, np.dtype(np.uint8))
        shard = TokenShard(Path(tmp) / "train", "uint8")
        cfg = model_config(arch, "micro", vocab_size=12, pad_token_id=4, max_seq_len=512)
        model = AutoModelForCausalLM.from_config(cfg)
        train = TrainConfig(
            steps=steps, batch_size=8, lr=1e-3, eval_every=10**9, log_every=10**9, eval_sequences=8
        )
        pretrain_lm(
            model,
            shard,
            shard,
            train,
            pad_id=4,
            device=torch.device("cpu"),
            curve_path=Path(tmp) / "curve.tsv",
        )


def launch(threads: int, steps: int, arch: str) -> subprocess.Popen:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)
    cmd = [
        sys.executable,
        __file__,
        "--job",
        "--threads",
        str(threads),
        "--steps",
        str(steps),
        "--arch",
        arch,
    ]
    return subprocess.Popen(cmd, env=env)


def timed(runs: list[list[int]], steps: int, arch: str) -> float:
    """Wall time of groups run one after another; jobs within a group run at once."""
    t0 = time.perf_counter()
    for group in runs:
        procs = [launch(t, steps, arch) for t in group]
        for p in procs:
            if p.wait() != 0:
                raise SystemExit("a training job failed")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--arch", default="hyena", choices=["hyena", "gpt"])
    parser.add_argument("--job", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        job(args.threads, args.steps, args.arch)
        return
    print(
        f"{args.arch} micro, {args.steps} steps of 8 x 512 tokens per job, 2 jobs, {os.cpu_count()} cores"
    )
    cases = [
        ("sequential, 1 thread each", [[1], [1]]),
        ("sequential, 2 threads each", [[2], [2]]),
        ("concurrent, 1 thread each (pinned)", [[1, 1]]),
        ("concurrent, unpinned (all cores each)", [[0, 0]]),
    ]
    reference = None
    print(f"{'case':40s} {'wall s':>8s} {'vs sequential':>14s}")
    for name, runs in cases:
        seconds = timed(runs, args.steps, args.arch)
        reference = reference or seconds
        print(f"{name:40s} {seconds:8.1f} {seconds / reference:13.2f}x", flush=True)


if __name__ == "__main__":
    main()
