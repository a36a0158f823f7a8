"""The simulated chain, run once per test session and read by two tests of `test_pipeline.py`.

`test_simulated_chain_end_to_end` checks its outputs and what each change reruns;
`test_pipeline_runs_through_slurm` checks that every job went through SLURM with the profile's
requests. One run serves both: where the test SLURM cluster can start (CI installs it, and fails
rather than skips without it), the data preparation runs locally and the rest through
`--profile profiles/slurm`; elsewhere the whole run uses the local executor and the SLURM test is
skipped with the reason. A whole run of the tiny study costs minutes of job start-ups (each torch
job imports ~8 s of torch and transformers), so it is not paid twice: both tests are in one file,
which pytest-xdist (`--dist loadfile`) keeps on one worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT
from slurm_cluster import SlurmCluster, missing_programs

# the rules the SLURM profile gives a GPU
GPU_RULES = ("pretrain", "finetune", "predict")
# the last rules of the data preparation (with all they need: acquire, split, windows,
# tokenizers), run locally before the SLURM run
PREPARATION = ("tokenize", "audit")


@dataclass
class ChainRun:
    workdir: Path
    config: dict
    log: str  # snakemake's stdout and stderr
    jobs: pd.DataFrame | None  # sacct's rows, None when the run was local
    why_local: str | None  # why the run did not go through SLURM


def chain_config() -> dict:
    from test_pipeline import tiny_config

    config = tiny_config("config/genomes.tsv")
    # gpt-micro reads 2-mers, so a tokenizer change can be seen to leave hyena-micro alone
    config["tokenizers"]["kmer"] = {"kind": "kmer", "k": 2}
    config["models"]["gpt-micro"]["tokenizer"] = "kmer"
    # SLURM hands GPU rules its stand-in GPUs; the jobs must not try to use them
    config["device"] = "cpu"
    return config


def slurm_unavailable() -> str | None:
    missing = missing_programs()
    if missing:
        return f"SLURM daemons not installed ({', '.join(missing)}); .ci/run installs them"
    if os.geteuid() != 0:
        return "the test SLURM cluster runs its daemons as root"
    return None


def accounting(cluster: SlurmCluster) -> pd.DataFrame:
    """One row per job (allocation, not steps) as sacct records it."""
    out = cluster.run(
        "sacct", "-X", "-n", "-P", "-a", "--format=JobID,State,Comment,ReqTRES,AllocTRES,Account"
    )
    rows = [line.split("|") for line in out.strip().splitlines()]
    table = pd.DataFrame(rows, columns=["job", "state", "comment", "tres", "alloc", "account"])
    table["rule"] = table["comment"].str.extract(r"^rule_([a-z_]+?)(?:_wildcards_|$)")[0]
    return table


def _through_slurm(workdir: Path, cluster: SlurmCluster) -> subprocess.CompletedProcess:
    cmd = [
        *(sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir)),
        *("--profile", str(ROOT / "profiles/slurm"), "--jobs", "6"),
        # the profile's thread counts (8) are for real GPU nodes; this machine has 2 cores. The
        # sbatch request keeps the profile's cpus_per_gpu, which the SLURM test checks.
        "--set-threads",
        *(f"{rule}=1" for rule in GPU_RULES),
        *("--slurm-init-seconds-before-status-checks", "1"),
        *("--seconds-between-status-checks", "2", "--latency-wait", "5"),
    ]
    env = {**cluster.env, "PATH": f"{Path(sys.executable).parent}:{cluster.env['PATH']}"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)


def run_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChainRun]:
    from test_pipeline import simulated_sheet, snakemake, write_workdir

    workdir = tmp_path_factory.mktemp("chain")
    config = chain_config()
    write_workdir(workdir, config, simulated_sheet())
    why = slurm_unavailable()
    if why is not None and os.environ.get("DNALM_REQUIRE_SLURM"):  # CI: never skip silently
        pytest.fail(why)
    if why is None:
        # The data preparation runs here, as the SLURM docs advise for a login node (the
        # acquire jobs need the network); training, baselines, prediction and the summary go
        # through SLURM. Each SLURM job costs about twice a local one (sbatch, status polls, the
        # job step re-reading the workflow), so the cheap preparation jobs run locally.
        snakemake(workdir, "--until", *PREPARATION)
        with SlurmCluster(tmp_path_factory.mktemp("slurm"), cpus=16, memory_mb=65536) as cluster:
            proc = _through_slurm(workdir, cluster)
            assert proc.returncode == 0, proc.stderr[-6000:]
            jobs = accounting(cluster)
    else:
        proc, jobs = snakemake(workdir), None
    yield ChainRun(workdir, config, proc.stdout + proc.stderr, jobs, why)
