"""The pipeline through `--profile profiles/slurm` on a real single-node SLURM cluster
(tests/slurm_cluster.py): every job is submitted with sbatch, accounted in slurmdbd, and the GPU
rules ask for what the profile says. The run is the simulated chain's (tests/chain_run.py), whose
outputs and reruns `test_pipeline` checks."""

from __future__ import annotations

import re

import pytest
import yaml
from chain_run import GPU_RULES, ChainRun
from conftest import ROOT
from test_pipeline import job_stats

pytestmark = pytest.mark.slow


def test_pipeline_runs_through_slurm(chain_run: ChainRun) -> None:
    if chain_run.jobs is None:
        pytest.skip(chain_run.why_local)
    config = chain_run.config
    # every job the run planned (but the `all` target) went through sbatch and completed
    jobs = chain_run.jobs
    assert (jobs["state"] == "COMPLETED").all(), jobs
    assert (jobs["account"] == "dnalm").all()
    counts = jobs["rule"].value_counts().to_dict()
    planned = job_stats(chain_run.log)
    planned.pop("all", None)  # the target has no action: it is never submitted
    assert counts == planned
    n_runs = len(config["models"]) * len(config["finetune"]["seeds"])  # one task
    expected = {"pretrain": len(config["models"]), "finetune": 2 * n_runs, "predict": 1}
    assert expected.items() <= counts.items()
    submitted = set(re.findall(r"has been submitted with SLURM jobid (\d+)", chain_run.log))
    assert submitted == set(jobs["job"]), (submitted, set(jobs["job"]))

    # GPU rules asked for the profile's GPU, CPUs per GPU and memory; CPU rules for no GPU
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    # (the request as submitted, and the allocation: --cpus-per-gpu shows only in the latter)
    for row in jobs.itertuples():
        tres = dict(item.split("=", 1) for item in row.tres.split(","))
        alloc = dict(item.split("=", 1) for item in row.alloc.split(","))
        if row.rule in GPU_RULES:
            want = profile["set-resources"][row.rule]
            assert tres["gres/gpu"] == alloc["gres/gpu"] == str(want["gpu"]), row
            assert alloc["cpu"] == str(want["cpus_per_gpu"] * want["gpu"]), row
            assert tres["mem"] == f"{want['mem_mb']}M", row
        else:
            assert "gres/gpu" not in tres and "gres/gpu" not in alloc, row
            assert alloc["cpu"] == "1", row
