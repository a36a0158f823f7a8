"""How long `snakemake -n` takes to plan the study (hundreds of jobs), beside the default config.

A dry run is what a user waits for before every run, and what `--dag`, `--rulegraph` and a
rerun's "what changed?" pay too. For each shipped config this times, each in a fresh process:

  parse   `snakemake --list-rules`: Python and Snakemake start-up, reading the config and the
          sheets, every parse-time check of workflow/rules/common.smk; no DAG
  plan    `snakemake -n --forceall`: the same plus the DAG of every job (--forceall: the whole
          plan, whatever results/ already holds in this checkout)

and prints the job count, wall and CPU seconds (each the best of --repeats), the DAG's CPU
cost per job ((plan - parse) / jobs) and each plan's CPU time as a ratio of the default
config's (the reference). CPU time (user + system of the child) is the steadier figure on a
shared machine: wall time there also counts waiting for a core.

  python benchmarks/dry_run.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CONFIGS = ["config/config.yaml", "config/study.yaml", "config/real_cpu.yaml"]


def timed(configfile: str, *args: str) -> tuple[float, float, str]:
    """Wall and CPU seconds of one `snakemake` in the repository root, and its output."""
    cmd = [sys.executable, "-m", "snakemake", "--configfile", configfile, *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout + out.stderr


def jobs_planned(text: str) -> int:
    found = re.search(r"^total\s+(\d+)$", text, re.M)
    if not found:
        raise SystemExit(f"no job total in the dry run's output:\n{text[-3000:]}")
    return int(found.group(1))


def best(configfile: str, repeats: int, *args: str) -> tuple[float, float, str]:
    runs = [timed(configfile, *args) for _ in range(repeats)]
    return min(r[0] for r in runs), min(r[1] for r in runs), runs[-1][2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (best kept)")
    args = parser.parse_args()
    configs = [c for c in CONFIGS if c != "config/real_cpu.yaml" or SHARED_DATA.exists()]
    print(f"snakemake -n --forceall in {ROOT}, best of {args.repeats}")
    header = f"{'config':22s} {'jobs':>5s} {'parse CPU s':>11s} {'plan wall s':>11s}"
    print(f"{header} {'plan CPU s':>10s} {'DAG CPU ms/job':>14s} {'vs default':>10s}")
    reference = None
    for configfile in configs:
        _, parse_cpu, _ = best(configfile, args.repeats, "--list-rules")
        wall, cpu, text = best(configfile, args.repeats, "-n", "--forceall")
        jobs = jobs_planned(text)
        reference = reference or cpu
        per_job = 1000 * (cpu - parse_cpu) / jobs
        print(
            f"{configfile:22s} {jobs:5d} {parse_cpu:11.2f} {wall:11.2f} {cpu:10.2f} "
            f"{per_job:14.2f} {cpu / reference:9.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
