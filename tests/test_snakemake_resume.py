"""Resume after `kill -9` at the Snakemake level: the next `snakemake` call ends where an
uninterrupted run ends.

A real `snakemake` (with the workflow's default profile, as a user runs it) is killed together
with its training job (SIGKILL to the whole process group) at a known point: the job stops itself
(`DNALM_STOP_AFTER_CHECKPOINT`) right after its checkpoint of step 20, which follows two
evaluations, so the resumed run must carry over the curve, the best-so-far weights (fine-tuning)
and, with dropout on, the random state. This happens during pretraining and, marked slow, during
fine-tuning. The user then unlocks the directory and runs the same command again. The resumed
job must say so in its log, delete its checkpoint once its outputs are written, and produce
exactly the weights and curve (and the scores and predictions) of an uninterrupted run of the
same config in another directory; the two directories share their upstream results, copied
before either trains.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT
from safetensors.torch import load_file

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="needs /proc to see the killed process group"
)

MODEL = "hyena-micro"
TASK = "virus_vs_host"
PRETRAINED = f"results/pretrain/{MODEL}"
FINETUNED = f"results/finetune/{TASK}/{MODEL}/pretrained/seed0"
PRETRAIN_CKPT = f"results/checkpoints/pretrain/{MODEL}/checkpoint.pt"
FINETUNE_CKPT = f"results/checkpoints/finetune/{TASK}/{MODEL}/pretrained/seed0/checkpoint.pt"
TARGET = f"{FINETUNED}/metrics.json"
PRETRAIN_STEPS, FINETUNE_STEPS, EVERY, STOP = 40, 40, 5, 20
TRAIN = {
    "batch_size": 4,
    "lr": 2.0e-3,
    "warmup_steps": 2,
    "log_every": 5,
    "checkpoint_every": EVERY,
}


def config() -> dict:
    window = {"length": 128, "stride": 128, "max_n_fraction": 0.1}
    return {
        "genomes": "config/genomes.tsv",
        "split": {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0},
        "tasks": {
            TASK: {
                "labels": ["host", "virus"],
                "window": window,
                "max_windows_per_genome": 30,
                "balance": "downsample",
            }
        },
        "pretrain_corpus": {"window": window},
        "tokenizers": {"char": {"kind": "char"}},
        "models": {
            MODEL: {
                "arch": "hyena",
                "size": "micro",
                "tokenizer": "char",
                "max_seq_len": 128,
                "config": {"embed_dropout": 0.1, "resid_dropout": 0.1},  # the RNG must resume
            }
        },
        "pretrain": {"steps": PRETRAIN_STEPS, "eval_every": 10, "eval_sequences": 8, **TRAIN},
        "finetune": {
            "seeds": [0],
            "steps": FINETUNE_STEPS,
            "eval_every": 10,
            "eval_sequences": 16,
            "select_on": "loss",
            **TRAIN,
        },
        "resources": {
            stage: {"threads": 1, "mem_mb": 1000, "runtime": 10, "gpu": 0}
            for stage in ("pretrain", "finetune", "predict")
        },
    }


def sheet() -> pd.DataFrame:
    """Six small simulated genomes: three virus families, three host species."""
    rows = [
        {
            "genome": f"virus{i}",
            "label": "virus",
            "group": f"vfam{i}",
            "source": f"simulated:virus?length=4000&family={i}&seed={i}",
            "pretrain": "true",
        }
        for i in range(3)
    ]
    rows += [
        {
            "genome": f"host{i}",
            "label": "host",
            "group": f"hsp{i}",
            "source": f"simulated:host?length=6000&family={i}&seed={i}",
            "pretrain": "true",
        }
        for i in range(3)
    ]
    return pd.DataFrame(rows)


def workdir(path: Path) -> Path:
    (path / "config").mkdir(parents=True)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config(), sort_keys=False))
    sheet().to_csv(path / "config" / "genomes.tsv", sep="\t", index=False)
    return path


def command(path: Path, *args: str) -> list[str]:
    """`snakemake` as a user runs it: the workflow's default profile applies (rerun-incomplete)."""
    snakefile = str(ROOT / "Snakefile")
    return [sys.executable, "-m", "snakemake", "-s", snakefile, "-d", str(path), *args]


def snakemake(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(path, *args), capture_output=True, text=True, timeout=600)


def succeeded(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group, from /proc (field 5 of `stat`, after the name)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def stopped(pgid: int) -> bool:
    """Whether a process of the group is stopped (state T: the job's SIGSTOP after its
    checkpoint)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] == "T":
            return True
    return False


def kill_at_checkpoint(path: Path, target: str, checkpoint: str, timeout: float = 300) -> None:
    """Run `snakemake target`; SIGKILL it and its job once the job has stopped itself right
    after writing its checkpoint of step STOP."""
    log = path / "killed_run.log"
    env = {**os.environ, "DNALM_STOP_AFTER_CHECKPOINT": str(STOP)}
    with open(log, "a") as out:
        proc = subprocess.Popen(
            command(path, "--cores", "1", target),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: snakemake and the job it runs
        )
        deadline = time.monotonic() + timeout
        while not stopped(proc.pid):
            if proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                pytest.fail(f"the job never stopped after step {STOP}:\n{read(log)[-6000:]}")
            time.sleep(0.05)
        assert (path / checkpoint).exists()
        alive = group_members(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(alive) >= 2, f"the training job was not running under snakemake: {alive}"
    deadline = time.monotonic() + 30
    while group_members(proc.pid):  # the job died with it (its zombie reaped by init)
        assert time.monotonic() < deadline, "a process of the killed snakemake is still alive"
        time.sleep(0.1)


def resumed_step(log: Path, checkpoint: str) -> int:
    lines = [line for line in read(log).splitlines() if "resuming from checkpoint" in line]
    assert len(lines) == 1 and checkpoint in lines[0], read(log)
    return int(lines[0].rsplit("at step", 1)[1])


def curve(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t").drop(columns="seconds")  # wall time differs, nothing else


def same_tensors(a: Path, b: Path) -> None:
    left, right = load_file(a), load_file(b)
    assert left.keys() == right.keys()
    for name in left:
        assert left[name].equal(right[name]), name


def rerun_after_kill(path: Path, target: str) -> None:
    """What a user does after a kill -9: the same command, which Snakemake 9 refuses while the
    killed run's lock is there (naming `--unlock`); then `--unlock` and the same command again.
    """
    locked = snakemake(path, "--cores", "1", target)
    text = locked.stdout + locked.stderr
    assert locked.returncode != 0, text[-3000:]
    assert "Directory cannot be locked" in text and "--unlock" in text, text[-3000:]
    assert "localrule" not in text  # it started nothing
    succeeded(snakemake(path, "--unlock"))
    succeeded(snakemake(path, "--cores", "1", target))
    assert not list((path / ".snakemake" / "locks").glob("*"))  # the rerun left no lock


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An uninterrupted directory, pretrained, and a copy of it taken before it trained.

    The copy shares the upstream results (genomes, windows, tokens) and Snakemake's records of
    them, so only training differs between the two.
    """
    plain = workdir(tmp_path_factory.mktemp("resume") / "uninterrupted")
    target = f"{PRETRAINED}/model.safetensors"
    succeeded(snakemake(plain, "--cores", "2", target, "--omit-from", "pretrain"))
    killed = plain.parent / "killed"
    shutil.copytree(plain, killed, symlinks=True)
    succeeded(snakemake(plain, "--cores", "1", target))
    assert not (plain / PRETRAIN_CKPT).exists()
    return plain, killed


def test_pretraining_resumes_after_kill(dirs: tuple[Path, Path]) -> None:
    plain, killed = dirs
    target = f"{PRETRAINED}/model.safetensors"
    kill_at_checkpoint(killed, target, PRETRAIN_CKPT)
    # no weights yet; a partial curve (an incomplete output: the profile's rerun-incomplete
    # reruns the job) and the checkpoint, which is no output, so Snakemake leaves it be
    assert not (killed / target).exists()
    assert (killed / PRETRAINED / "curve.tsv").exists() and (killed / PRETRAIN_CKPT).exists()

    rerun_after_kill(killed, target)
    assert resumed_step(killed / f"logs/pretrain/{MODEL}.log", PRETRAIN_CKPT) == STOP
    assert not (killed / PRETRAIN_CKPT).exists()
    for name in ("config.json", "model.safetensors", "curve.tsv", "summary.json"):
        assert (killed / PRETRAINED / name).exists(), name
    same_tensors(killed / target, plain / target)
    resumed, uninterrupted = (curve(d / PRETRAINED / "curve.tsv") for d in (killed, plain))
    assert uninterrupted["step"].tolist() == [10, 20, 30, 40]  # two evaluations before the kill
    pd.testing.assert_frame_equal(resumed, uninterrupted, check_exact=True)


@pytest.mark.slow
def test_finetuning_resumes_after_kill(dirs: tuple[Path, Path]) -> None:
    """The same for a fine-tuning job (its task's windows and tokens are made on the way)."""
    plain, killed = dirs
    succeeded(snakemake(plain, "--cores", "1", TARGET))
    assert not (plain / FINETUNE_CKPT).exists()
    kill_at_checkpoint(killed, TARGET, FINETUNE_CKPT)
    assert not (killed / TARGET).exists() and (killed / FINETUNE_CKPT).exists()

    rerun_after_kill(killed, TARGET)
    step = resumed_step(
        killed / f"logs/finetune/{TASK}/{MODEL}/pretrained/seed0.log", FINETUNE_CKPT
    )
    assert step == STOP
    assert not (killed / FINETUNE_CKPT).exists()
    for name in ("metrics.json", "predictions.tsv", "curve.tsv", "model/model.safetensors"):
        assert (killed / FINETUNED / name).exists(), name

    resumed = json.loads((killed / TARGET).read_text())
    uninterrupted = json.loads((plain / TARGET).read_text())
    assert resumed["test"] == uninterrupted["test"] and resumed["val"] == uninterrupted["val"]
    assert resumed["best_step"] == uninterrupted["best_step"]
    assert resumed["resumed_from_step"] == step and uninterrupted["resumed_from_step"] == 0
    pd.testing.assert_frame_equal(
        pd.read_csv(killed / FINETUNED / "predictions.tsv", sep="\t"),
        pd.read_csv(plain / FINETUNED / "predictions.tsv", sep="\t"),
        check_exact=True,
    )
    pd.testing.assert_frame_equal(
        curve(killed / FINETUNED / "curve.tsv"),
        curve(plain / FINETUNED / "curve.tsv"),
        check_exact=True,
    )
    same_tensors(
        killed / FINETUNED / "model/model.safetensors",
        plain / FINETUNED / "model/model.safetensors",
    )
