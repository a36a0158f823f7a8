"""A real `snakemake` run from the Hub: a published checkpoint and a Hub dataset, fetched from a
loopback Hub (tests/hub_server.py), fine-tuned as `published` and `scratch`; a rerun has nothing
to do, and a deleted checkpoint comes back offline, from the cache, without asking the Hub."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_snakemake
from hub_server import HubServer
from test_hub import files_of, parquet_bytes, publish

pytestmark = pytest.mark.slow

RUNS = [f"results/finetune/gc/hy/{init}/seed0/metrics.json" for init in ("published", "scratch")]


def gc_rows(rng, n: int) -> pd.DataFrame:
    """32-base sequences, label 1 GC-rich, 0 AT-rich."""
    labels = [i % 2 for i in range(n)]
    seqs = [
        "".join(
            rng.choice(
                list("ACGT"), 32, p=[0.15, 0.35, 0.35, 0.15] if y else [0.35, 0.15, 0.15, 0.35]
            )
        )
        for y in labels
    ]
    return pd.DataFrame({"seq": seqs, "label": labels})


def write_config(workdir) -> None:
    (workdir / "genomes.tsv").write_text(  # every config has a sheet; no job here reads it
        "genome\tlabel\tgroup\tsource\nv0\tvirus\tv0\tsimulated:virus?length=3000&family=0\n"
    )
    small = {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 0}
    config = {
        "genomes": "genomes.tsv",
        "tasks": {
            "gc": {
                "source": {"format": "hf_dataset", "repo": "owner/gc"},
                "labels": ["0", "1"],
                "baselines": [],
            }
        },
        "pretrain_corpus": {"window": {"length": 32, "stride": 32}},
        "tokenizers": {"char": {"kind": "char"}},
        "models": {
            "hy": {
                "arch": "hyena",
                "tokenizer": "char",
                "init_from": "owner/hyenadna-test-hf",
                "max_seq_len": 32,
            }
        },
        "pretrain": {"steps": 1, "batch_size": 4, "lr": 1.0e-3},
        "finetune": {
            "inits": ["published", "scratch"],
            "seeds": [0],
            "steps": 4,
            "batch_size": 8,
            "lr": 1.0e-2,
            "eval_every": 2,
            "log_every": 2,
            "select_on": "loss",
        },
        "device": "cpu",
        "resources": {"pretrain": small, "finetune": small, "predict": small},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def test_published_and_scratch_runs_from_the_hub(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    work = tmp_path / "work"
    work.mkdir()
    write_config(work)
    with HubServer() as hub:
        _, _, commit = publish(hub, tmp_path, repo="owner/hyenadna-test-hf")
        data_commit = hub.add(
            "owner/gc",
            {
                "data/train-00000-of-00001.parquet": parquet_bytes(
                    tmp_path, "a.parquet", gc_rows(rng, 60)
                ),
                "data/test-00000-of-00001.parquet": parquet_bytes(
                    tmp_path, "b.parquet", gc_rows(rng, 20)
                ),
            },
            repo_type="dataset",
        )
        for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))

        out = run_snakemake(work, *RUNS, configfile=work / "config.yaml", cores=2, timeout=900)
        assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
        source = json.loads((work / "resources/checkpoints/hy/source.json").read_text())
        assert source["repo_id"] == "owner/hyenadna-test-hf" and source["commit"] == commit
        assert not list((work / "resources/checkpoints/hy").glob("*.py"))  # no code fetched
        dataset = json.loads((work / "resources/hub_datasets/owner--gc/source.json").read_text())
        assert dataset["commit"] == data_commit and dataset["repo_type"] == "dataset"
        runs = {m["init"]: m for m in (json.loads((work / r).read_text()) for r in RUNS)}
        assert runs["published"]["published"]["commit"] == commit
        assert runs["published"]["windows"] == runs["scratch"]["windows"]
        assert runs["published"]["windows"]["test"] == 20  # the dataset's own test split
        assert runs["published"]["params"] == runs["scratch"]["params"]  # one architecture
        assert runs["published"]["size"] == "d32x2"
        for init in ("published", "scratch"):
            card = (work / f"results/finetune/gc/hy/{init}/seed0/model/README.md").read_text()
            assert f"# hy: gc ({init} init, seed 0)" in card and "owner/hyenadna-test-hf" in card
            # the Hub's base_model names where the weights came from, not only the shape
            assert ("base_model: owner/hyenadna-test-hf" in card) == (init == "published")
        asked = len(hub.requests)

        again = run_snakemake(work, *RUNS, "-n", configfile=work / "config.yaml")
        assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

        # the checkpoint again, offline: from the Hub cache, checked, the Hub never asked
        target = "resources/checkpoints/hy"
        (work / target / "source.json").unlink()
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        offline = run_snakemake(
            work, target, "--forcerun", "fetch_checkpoint", configfile=work / "config.yaml"
        )
        assert offline.returncode == 0, (offline.stdout + offline.stderr)[-5000:]
        record = json.loads((work / target / "source.json").read_text())
        assert record["offline"] and record["commit"] == commit
        fetched = set(files_of(work / target)) - {"source.json", ".snakemake_timestamp"}
        assert fetched == set(source["files"])
        assert len(hub.requests) == asked
