"""Real `snakemake` runs of the whole chain on tiny configs, in temporary directories."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from chain_run import GPU_RULES, ChainRun
from conftest import ROOT, micro_model, run_snakemake

pytestmark = pytest.mark.slow

TINY_TRAIN = {"batch_size": 8, "lr": 2.0e-3, "warmup_steps": 2, "eval_every": 10, "log_every": 5}


def tiny_config(genomes: str, **overrides) -> dict:
    config = {
        "genomes": genomes,
        "split": {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0},
        "tasks": {
            "virus_vs_host": {
                "labels": ["host", "virus"],
                "window": {"length": 128, "stride": 128, "max_n_fraction": 0.1},
                "max_windows_per_genome": 60,
                "balance": "downsample",
            }
        },
        "pretrain_corpus": {"window": {"length": 256, "stride": 256, "max_n_fraction": 0.1}},
        "tokenizers": {"char": {"kind": "char"}},
        "models": {
            "hyena-micro": micro_model(),
            "gpt-micro": micro_model("gpt"),
        },
        "pretrain": {"steps": 20, "eval_sequences": 32, **TINY_TRAIN},
        "finetune": {"seeds": [0, 1], "steps": 20, "select_on": "loss", **TINY_TRAIN},
        "predict": {
            "samples": {"mix": "simulated:metagenome?seed=3&contigs=6&max_length=2000"},
            "task": "virus_vs_host",
            "model": "hyena-micro",
            "init": "pretrained",
            "seed": 0,
        },
        "resources": {
            stage: {"threads": 1, "mem_mb": 1000, "runtime": 10, "gpu": 0}
            for stage in ("pretrain", "finetune", "predict")
        },
    }
    config.update(overrides)
    return config


def write_workdir(workdir: Path, config: dict, sheet: list[dict]) -> None:
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    pd.DataFrame(sheet).to_csv(workdir / config["genomes"], sep="\t", index=False)


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = run_snakemake(workdir, *args, cores=2, timeout=1500)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Rule -> job count of a dry run (empty when there is nothing to do)."""
    out = snakemake(workdir, "-n", *args)
    return job_stats(out.stdout + out.stderr)


def job_stats(text: str) -> dict[str, int]:
    """Rule -> job count from the "Job stats" table Snakemake prints before running or dry-running
    (empty when there is nothing to do)."""
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)
        if m.group(1) != "total"
    }


def simulated_sheet() -> list[dict]:
    rows = []
    for fam in range(3):
        rows.append(
            {
                "genome": f"virus{fam}",
                "label": "virus",
                "group": f"vfam{fam}",
                "source": f"simulated:virus?length=12000&family={fam}&seed={fam}",
                "pretrain": "true",
            }
        )
    for sp in range(3):
        rows.append(
            {
                "genome": f"host{sp}",
                "label": "host",
                "group": f"hsp{sp}",
                "source": f"simulated:host?length=25000&family={sp}&seed={sp}&records=2",
                "pretrain": "true",
            }
        )
    return rows


def check_results(workdir: Path, config: dict) -> pd.DataFrame:
    runs = pd.read_csv(workdir / "results/summary/metrics.tsv", sep="\t")
    expected = {
        (t, m, i, s)
        for t in config["tasks"]
        for m in config["models"]
        for i in ("pretrained", "scratch")
        for s in config["finetune"]["seeds"]
    }
    baseline_runs = {
        (t, b, "baseline", s)
        for t, task in config["tasks"].items()
        for b in task.get("baselines", ["kmer_lr", "cnn"])  # the schema's default
        for s in config["finetune"]["seeds"]
    }
    expected |= baseline_runs
    assert (
        set(zip(runs["task"], runs["model"], runs["init"], runs["seed"], strict=True)) == expected
    )
    assert len(runs) == len(expected)
    for metric in ("accuracy", "f1", "auroc", "auprc"):
        assert runs[metric].between(0, 1).all(), metric
    assert runs["mcc"].between(-1, 1).all()
    effect = pd.read_csv(workdir / "results/summary/pretrain_effect.tsv", sep="\t")
    assert len(effect) == len(config["tasks"]) * len(config["models"]) * 5
    assert (effect["n_pairs"] == len(config["finetune"]["seeds"])).all()
    # each model x init against the task's best baseline, and the answer table the report opens on
    versus = pd.read_csv(workdir / "results/summary/vs_baseline.tsv", sep="\t")
    assert len(versus) == len(config["tasks"]) * len(config["models"]) * 2 * 5
    answer = pd.read_csv(workdir / "results/summary/answer.tsv", sep="\t")
    assert set(answer["task"]) == set(config["tasks"])
    figures = ("metric_vs_size", "pretrain_effect", "pretrain_loss", "finetune_curves", "roc_pr")
    for fig in (*figures, "rule_benchmarks"):
        assert (workdir / f"results/summary/figures/{fig}.png").stat().st_size > 10_000
    # one benchmark per job of every rule of the run but provenance, whose own comes after it
    bench = pd.read_csv(workdir / "results/summary/rule_benchmarks.tsv", sep="\t")
    jobs = dict(zip(bench["rule"], bench["jobs"], strict=True))
    n_runs = len(config["tasks"]) * len(config["models"]) * len(config["finetune"]["seeds"])
    assert jobs["pretrain"] == len(config["models"]) and jobs["aggregate"] == 1
    assert jobs["finetune"] == 2 * n_runs  # both inits are one rule
    assert jobs["baseline"] == len(baseline_runs)  # one job per baseline run
    assert (bench["total_s"] > 0).all() and (bench["max_rss_mb"] > 0).all()
    software = pd.read_csv(workdir / "results/summary/software.tsv", sep="\t")
    assert {"python", "torch", "transformers", "snakemake", "cuda_available"} <= set(
        software["software"]
    )
    used = yaml.safe_load((workdir / "results/summary/config.yaml").read_text())
    assert set(used["models"]) == set(config["models"])
    assert set(used["tasks"]) == set(config["tasks"])
    return runs


def plan_after(workdir: Path, config: dict, change=None, sheet: list[dict] | None = None) -> dict:
    """The dry-run plan after one change to the config (`change` edits a copy) or the sheet;
    the finished run's config and sheet are put back afterwards, whatever happens."""
    changed = json.loads(json.dumps(config))
    if change is not None:
        change(changed)
    try:
        write_workdir(workdir, changed, sheet if sheet is not None else simulated_sheet())
        return planned_jobs(workdir)
    finally:
        write_workdir(workdir, config, simulated_sheet())


def test_simulated_chain_end_to_end(chain_run):
    """The chain's run (tests/chain_run.py: through SLURM where the test cluster starts, else
    local), its outputs, and what each change to it reruns."""
    work, config = chain_run.workdir, chain_run.config
    runs = check_results(work, config)
    models = runs[runs["init"] != "baseline"]
    assert models["params"].gt(50_000).all()
    assert runs.loc[runs["init"] == "baseline", "params"].gt(1_000).all()  # k-mer LR, CNN

    # genomes normalised and indexed; pretraining corpus excludes the test genomes
    for g in ("virus0", "host2"):
        for ext in ("", ".fai", ".gzi"):
            assert (work / f"resources/genomes/{g}.fa.gz{ext}").exists()
    corpus = pd.read_csv(work / "results/windows/pretrain/corpus.tsv", sep="\t")
    test_genomes = set(
        pd.read_parquet(work / "results/windows/virus_vs_host/test.parquet")["genome"]
    )
    assert set(corpus.loc[corpus["role"] == "excluded", "genome"]) == test_genomes
    # no group on two sides of the split
    sides = {
        s: set(pd.read_parquet(work / f"results/windows/virus_vs_host/{s}.parquet")["group"])
        for s in ("train", "val", "test")
    }
    assert not (sides["train"] & sides["val"]) and not (sides["train"] & sides["test"])
    assert not (sides["val"] & sides["test"])

    # every job used exactly the threads it was given, and logged its progress
    assert "cpu, 1 thread(s):" in (work / "logs/pretrain/gpt-micro.log").read_text()
    run = work / "results/finetune/virus_vs_host/hyena-micro/pretrained/seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["windows"]["test"] == len(pd.read_csv(run / "predictions.tsv", sep="\t"))
    assert (run / "model" / "model.safetensors").exists() and (
        run / "model" / "tokenizer.json"
    ).exists()
    assert not list((run / "model").glob("*.bin")) and not list((run / "model").glob("*.pt"))

    records = pd.read_csv(work / "results/predict/mix/records.tsv", sep="\t")
    assert len(records) == 6
    assert ((records["prob_host"] + records["prob_virus"]).round(4) == 1).all()

    # Reruns are incremental: what each change reruns, exactly (1 task x 2 models x 2 seeds).
    # provenance keeps the whole config as a param, so any config change reruns it (cheap), and
    # `all` is counted whenever any of its inputs is remade.
    assert planned_jobs(work) == {}
    tail = {"aggregate": 1, "provenance": 1, "all": 1}
    # a fine-tuning setting: every run and the prediction from one of them, not the baselines
    plan = plan_after(work, config, lambda c: c["finetune"].update(lr=5.0e-4))
    assert plan == {"finetune": 8, "predict": 1, **tail}, plan
    # a baseline's setting: that baseline's runs only (1 task x 2 seeds)
    plan = plan_after(work, config, lambda c: c.update(baselines={"cnn": {"epochs": 3}}))
    assert plan == {"baseline": 2, **tail}, plan
    # a task's windowing: its windows, audit and tokens onward; never the split or pretraining
    plan = plan_after(
        work, config, lambda c: c["tasks"]["virus_vs_host"].update(max_windows_per_genome=50)
    )
    task_tokens = 3 * 2  # train/val/test x 2 tokenizers
    expected = {"task_windows": 1, "audit": 1, "tokenize": task_tokens, "predict": 1}
    assert plan == {**expected, "finetune": 8, "baseline": 4, **tail}, plan
    # a tokenizer setting (k of gpt-micro's k-mers): that tokenizer's shards (pretraining
    # train/val + the task's 3 splits), gpt-micro's pretraining and runs; hyena-micro's char
    # tokens, its runs and the prediction (made with hyena-micro) are left alone
    plan = plan_after(work, config, lambda c: c["tokenizers"]["kmer"].update(k=3))
    expected = {"build_tokenizer": 1, "tokenize": 5, "pretrain": 1, "finetune": 4}
    assert plan == {**expected, **tail}, plan
    # a pretraining setting: both pretrainings and the runs that start from them, not the
    # scratch runs (`finetune` jobs with init=scratch)
    plan = plan_after(work, config, lambda c: c["pretrain"].update(lr=1.0e-3))
    assert plan == {"pretrain": 2, "finetune": 4, "predict": 1, **tail}, plan
    # a new seed: only its runs (one per init, task and model); the seed list is not a run's
    # param, so the existing seeds' runs stay
    plan = plan_after(work, config, lambda c: c["finetune"].update(seeds=[0, 1, 2]))
    assert plan == {"finetune": 4, "baseline": 2, **tail}, plan
    # nor is the list of inits: listed in another order, nothing but the config record reruns
    plan = plan_after(work, config, lambda c: c["finetune"].update(inits=["scratch", "pretrained"]))
    assert plan == {"provenance": 1, "all": 1}, plan
    # a new genome (a new group, pretrained on): only it is acquired; the split, both window
    # sets, every token shard, both pretrainings and every run are redone, since any of them may
    # change with the new genome
    new = {
        "genome": "virus3",
        "label": "virus",
        "group": "vfam3",
        "source": "simulated:virus?length=12000&family=3&seed=3",
        "pretrain": "true",
    }
    plan = plan_after(work, config, sheet=[*simulated_sheet(), new])
    expected = {"acquire_genome": 1, "split_groups": 1, "pretrain_windows": 1, "task_windows": 1}
    expected |= {"audit": 1, "tokenize": 2 * 5, "pretrain": 2, "finetune": 8, "baseline": 4}
    assert plan == {**expected, "predict": 1, **tail}, plan
    assert planned_jobs(work) == {}  # every case put the finished run's config back

    # the report builds from the finished run
    snakemake(work, "--report", str(work / "report.zip"))
    assert (work / "report.zip").stat().st_size > 50_000


def test_real_genomes_beat_chance(tmp_path, shared_data):
    """Viral isolates (one species per group) vs bacterial, archaeal and human DNA."""
    viral = shared_data / "genomes/viral/nextclade_isolates"
    nonviral = shared_data / "genomes/nonviral"
    sources = {
        "virus": {
            "zika": viral / "community__itps__zikav.fasta",
            "hiv1": viral / "community__neherlab__hiv-1__hxb2.fasta",
            "chikv": viral / "community__v-gen-lab__chikV__genotypes.fasta",
            "denv2": viral / "community__v-gen-lab__dengue__denv2.fasta",
            "hmpv": viral / "nextstrain__hmpv__all-clades__NC_039199.fasta",
        },
        "host": {
            "ecoli": nonviral / "Ecoli_K12_MG1655_NC_000913.3.fna.gz",
            "bsubtilis": nonviral / "Bsubtilis_168_NC_000964.3.fna.gz",
            "mvoltae": nonviral / "Mvoltae_A3_NC_014222.1.fna.gz",
            "human_chr2": nonviral / "Hsapiens_hg38_chr2_1-2333275.fa.gz",
            "athaliana": nonviral / "Athaliana_1pct.fa.gz",
        },
    }
    sheet = [
        {"genome": name, "label": label, "group": name, "source": str(path), "pretrain": "true"}
        for label, genomes in sources.items()
        for name, path in genomes.items()
    ]
    config = tiny_config(
        "config/genomes.tsv",
        models={"hyena-micro": micro_model()},
        predict={},
    )
    config["tasks"]["virus_vs_host"]["max_windows_per_genome"] = 150
    config["pretrain"]["steps"] = 40
    config["finetune"].update(steps=60, seeds=[0])
    write_workdir(tmp_path, config, sheet)
    snakemake(tmp_path)
    runs = check_results(tmp_path, config)
    baselines = runs[runs["init"] == "baseline"]
    runs = runs[runs["init"] != "baseline"]
    test = pd.read_parquet(tmp_path / "results/windows/virus_vs_host/test.parquet")
    assert set(test["label"]) == {"host", "virus"}
    # Beats chance on held-out species for both inits. Under the null, AUROC on 150 + 150 windows
    # has an sd of ~0.033, so 0.65 is 4.5 sd above chance (measured: 0.75 pretrained, 0.76 scratch).
    assert (runs["auroc"] > 0.65).all(), runs[["init", "auroc", "accuracy"]]
    # the baselines are scored on the same held-out species, and learn there too
    assert set(baselines["model"]) == {"kmer_lr", "cnn"}
    assert (baselines["auroc"] > 0.65).all(), baselines[["model", "auroc", "accuracy"]]


# ---- the chain's run through SLURM ------------------------------------------------------------
# `--profile profiles/slurm` on a real single-node SLURM cluster (tests/slurm_cluster.py): every
# job is submitted with sbatch, accounted in slurmdbd, and the GPU rules ask for what the profile
# says. The run is the simulated chain's (tests/chain_run.py), which test_simulated_chain_end_to_end
# checks; the two tests share a file so that pytest-xdist (`--dist loadfile`) runs the chain once.


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
