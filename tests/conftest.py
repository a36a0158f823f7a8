"""Shared fixtures: the real data folder, small normalised genomes, one thread for torch, and
what is made once per session: the shipped configs' job graphs, and the simulated chain's run."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (the default, see pyproject.toml): one worker per core, at most 4. Every worker
    runs `snakemake` with up to 2 jobs of about 1 GB each; more workers than cores only queue."""
    return max(1, min(len(os.sched_getaffinity(0)), 4))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The file of the simulated chain's run (minutes) first, so that under pytest-xdist it starts
    at once on one worker while the other workers share the rest of the suite. With
    `--dist loadfile` a file runs on one worker, so a module or session fixture is built once if
    its tests share a file (the chain's two tests; the shipped configs' job graphs)."""
    first = {item.path for item in items if "chain_run" in item.fixturenames}
    items.sort(key=lambda item: item.path not in first)  # stable: the order within is kept


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


def require_data(*paths: Path) -> None:
    """Skip a test whose real data is not here, as on a user's machine; fail instead where the
    data must be (CI sets DNALM_REQUIRE_DATA=1), so that a skip never hides a lost test."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if not missing:
        return
    why = f"real data {', '.join(missing)} is not present (see ../shared/data/README.md)"
    if os.environ.get("DNALM_REQUIRE_DATA") == "1":
        pytest.fail(f"{why}, but DNALM_REQUIRE_DATA=1 says it must be")
    pytest.skip(why)


@pytest.fixture
def shared_data() -> Path:
    require_data(SHARED_DATA)
    return SHARED_DATA


def micro_model(arch: str = "hyena", max_seq_len: int = 256) -> dict:
    """A config model entry of the smallest size, on the char tokenizer."""
    return {"arch": arch, "size": "micro", "tokenizer": "char", "max_seq_len": max_seq_len}


def finetune_outputs(out: Path) -> dict[str, str]:
    """The `outputs` of a fine-tuning job (`dnalm.jobs`) that writes into `out`."""
    names = {"metrics": "metrics.json", "predictions": "predictions.tsv", "curve": "curve.tsv"}
    return {key: str(out / name) for key, name in names.items()} | {"model": str(out / "model")}


def micro_net(task: str, arch: str = "hyena", max_seq_len: int = 64, seed: int = 0, **config):
    """A micro model of the char vocabulary (12 ids, pad 4), its weights drawn from torch
    `seed`: a causal LM for `task` lm, else a sequence classifier."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from dnalm.models import model_config

    torch.manual_seed(seed)
    auto = AutoModelForCausalLM if task == "lm" else AutoModelForSequenceClassification
    kwargs = {"vocab_size": 12, "pad_token_id": 4, "max_seq_len": max_seq_len, **config}
    return auto.from_config(model_config(arch, "micro", **kwargs))


def cpu_run(curve_path: Path, **run) -> dict:
    """The keywords of `dnalm.training.train` for a run on the CPU, with the char vocabulary's
    pad id (4), writing its curve to `curve_path`."""
    import torch

    return {"pad_id": 4, "device": torch.device("cpu"), "curve_path": curve_path, **run}


def train_val_shards(directory: Path, seqs, labels, n_train: int, write) -> tuple:
    """`write(path, seqs, labels)` of the first `n_train` sequences (tr) and of the rest (va)."""
    train = write(directory / "tr", seqs[:n_train], labels[:n_train])
    return train, write(directory / "va", seqs[n_train:], labels[n_train:])


def write_random_shards(
    directory: Path, sizes: dict[str, int], lm_lengths: tuple[int, int], clf_length: int, labels
) -> dict[str, Path]:
    """Char-token shards of random ACGT, one per name in `sizes` (name -> sequences): `lm_*`
    unlabelled, of lengths drawn from `lm_lengths`; `clf_*` of `clf_length` bases, labelled
    alternately 0 and 1 (1 GC-rich)."""
    import numpy as np

    from dnalm.shards import write_meta, write_shard
    from dnalm.tokenization import char_tokenizer, encode_bytes, lookup_table

    table = lookup_table(char_tokenizer())
    rng = np.random.default_rng(0)
    prefixes = {}
    for name, n in sizes.items():
        records = []
        for i in range(n):
            y = i % 2
            p = [0.15, 0.35, 0.35, 0.15] if y else [0.35, 0.15, 0.15, 0.35]
            length = int(rng.integers(*lm_lengths)) if name.startswith("lm") else clf_length
            seq = "".join(rng.choice(list("ACGT"), length, p=p))
            records.append((encode_bytes(seq, table), y if name.startswith("clf") else -1))
        prefixes[name] = directory / name
        write_shard(prefixes[name], records, np.dtype(np.uint8))
        meta = {"dtype": "uint8", "labels": list(labels), "window_length": 48}
        write_meta(prefixes[name], meta)
    return prefixes


def write_genome(directory: Path, name: str, records: list[tuple[str, str]]) -> Path:
    """A normalised (bgzip + .fai/.gzi) genome made from literal records."""
    from dnalm.fasta import normalise_fasta

    raw = directory / f"{name}.fa"
    raw.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in records))
    out = directory / f"{name}.fa.gz"
    normalise_fasta(raw, out)
    raw.unlink()
    return out


def run_snakemake(
    workdir: Path,
    *args: str,
    configfile: Path | None = None,
    cores: int = 1,
    timeout: int = 600,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """A real `snakemake` of this repository's workflow, run in `workdir` as a user would."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir)]
    if configfile is not None:  # before --cores: --configfile takes every word up to the next flag
        cmd += ["--configfile", str(configfile)]
    cmd += ["--cores", str(cores)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="session")
def planned_dag() -> Callable[[str], str]:
    """`snakemake --dag` (DOT text) of a shipped config, planned at most once per session
    whichever tests read it: the study alone takes several seconds to plan."""

    @functools.cache
    def plan(configfile: str) -> str:
        out = run_snakemake(ROOT, "--dag", configfile=ROOT / configfile, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.startswith("digraph"), out.stdout[:500]
        return out.stdout

    return plan


@pytest.fixture(scope="session")
def chain_run(tmp_path_factory):
    """The simulated chain, run once per session (through the test SLURM cluster where it can
    start): `tests/chain_run.py`."""
    from chain_run import run_chain

    yield from run_chain(tmp_path_factory)


def dag_jobs(dot: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """Job id -> rule (a node label's first line), and the job edges (from, to), of
    `snakemake --dag` output, read without graphviz."""
    jobs = {m[1]: m[2] for m in re.finditer(r'^\s*(\d+)\[label = "([^"\\]+)', dot, re.M)}
    edges = {(m[1], m[2]) for m in re.finditer(r"^\s*(\d+) -> (\d+)", dot, re.M)}
    return jobs, edges
