"""Checkpoint and resume: a run killed with SIGKILL ends where an uninterrupted run ends.

The batch order, the augmentation draws and the learning rate are functions of (seed, step), and
a checkpoint holds the model, optimiser and RNG states, so resuming is exact on one machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from conftest import cpu_run, micro_net, write_random_shards
from safetensors.torch import load_file

from dnalm.checkpointing import Checkpoint, fingerprint
from dnalm.shards import TokenShard, write_meta, write_shard
from dnalm.tokenization import char_tokenizer
from dnalm.training import TrainConfig, finetune_classifier, pretrain_lm

COMPLEMENT = np.array([0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11])  # of the char tokenizer's ids
LM = {"steps": 40, "batch_size": 4, "grad_accum_steps": 2, "lr": 3e-3, "warmup_steps": 5}
LM |= {"eval_every": 10, "log_every": 10, "eval_sequences": 8, "checkpoint_every": 10}
LM |= {"rc_augment": 0.5, "seq_len_warmup": {"start": 16, "stages": 2}, "seed": 4}


def _shards(directory: Path) -> dict[str, Path]:
    """LM shards of varying lengths and a labelled pair; every sequence is random ACGT."""
    sizes = {"lm_train": 40, "lm_val": 8, "clf_train": 24, "clf_val": 8}
    return write_random_shards(directory, sizes, (24, 49), 32, ["a", "b"])


def _job(data: Path, out: Path, train: dict) -> Path:
    tok = data / "tokenizer"
    if not tok.exists():
        char_tokenizer().save_pretrained(tok)
    out.mkdir(parents=True, exist_ok=True)
    params = {
        "model": {
            "name": "hyena-micro",
            "arch": "hyena",
            "size": "micro",
            "max_seq_len": 64,
            "config": {"embed_dropout": 0.1, "resid_dropout": 0.1},  # the RNG state must resume
        },
        "train": train,
        "device": "cpu",
        "tokenizer": str(tok),
        "shards": {"train": str(data / "lm_train"), "val": str(data / "lm_val")},
        "outputs": {
            "dir": str(out / "model"),
            "curve": str(out / "curve.tsv"),
            "summary": str(out / "summary.json"),
        },
        "log": str(out / "job.log"),
        "threads": 1,
        "checkpoint": str(out / "checkpoints"),
    }
    path = out / "params.json"
    path.write_text(json.dumps(params))
    return path


def _cmd(params: Path) -> list[str]:
    return [sys.executable, "-m", "dnalm.jobs", "pretrain", "--params", str(params)]


def _env(**more: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **more}


def _run(params: Path) -> None:
    proc = subprocess.run(_cmd(params), env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_kill_9_then_rerun_ends_where_an_uninterrupted_run_ends(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _shards(data)
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    _run(_job(data, ref, LM))
    assert not (ref / "checkpoints" / "checkpoint.pt").exists(), "kept after the outputs"

    params = _job(data, killed, LM)
    ckpt = killed / "checkpoints" / "checkpoint.pt"
    # the job stops itself after its step-20 checkpoint, which follows two evaluations
    env = _env(DNALM_STOP_AFTER_CHECKPOINT="20")
    proc = subprocess.Popen(_cmd(params), env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert proc.poll() is None, "the job ended without stopping after step 20"
        assert time.monotonic() < deadline, "the job did not stop within 240 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "summary.json").exists(), "the job finished before it was killed"
    saved = json.loads(torch.load(ckpt, weights_only=True)["meta"])["step"]
    assert saved == 20

    _run(params)  # the rerun, as the next `snakemake` call would start it
    log = (killed / "job.log").read_text()
    assert f"resuming from checkpoint {ckpt} at step {saved}" in log
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["resumed_from_step"] == saved
    assert not ckpt.exists(), "the checkpoint outlived the outputs"

    a = load_file(ref / "model" / "model.safetensors")
    b = load_file(killed / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=0, rtol=0, msg=k)
    curves = [pd.read_csv(d / "curve.tsv", sep="\t").drop(columns="seconds") for d in (ref, killed)]
    assert curves[0]["step"].tolist() == [10, 20, 30, 40]
    pd.testing.assert_frame_equal(curves[1], curves[0], check_exact=True)
    expected = json.loads((ref / "summary.json").read_text())
    assert summary["val_loss"] == expected["val_loss"]
    assert summary["tokens"] == expected["tokens"]


def test_resume_in_process_and_a_changed_setting_starts_afresh(tmp_path, caplog):
    shards = {k: TokenShard.open(v) for k, v in _shards(tmp_path).items()}
    cfg = TrainConfig(**{**LM, "steps": 6, "checkpoint_every": 2, "eval_every": 2, "log_every": 2})
    ckpt_dir = tmp_path / "ckpt"

    def run(cfg, name, ckpt=True):
        model = micro_net("lm", "gpt")
        check = Checkpoint(ckpt_dir, fingerprint(cfg, model="gpt")) if ckpt else None
        summary = pretrain_lm(
            model,
            shards["lm_train"],
            shards["lm_val"],
            cfg,
            **cpu_run(tmp_path / f"{name}.tsv", checkpoint=check, complement=COMPLEMENT),
        )
        return model, summary

    full, first = run(cfg, "full")  # leaves its step-4 checkpoint (the job deletes it)
    assert first["resumed_from_step"] == 0
    resumed, second = run(cfg, "resumed")
    assert second["resumed_from_step"] == 4
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, atol=0, rtol=0, msg=k)
    curves = [
        pd.read_csv(tmp_path / f"{n}.tsv", sep="\t").drop(columns="seconds")
        for n in ("full", "resumed")
    ]
    pd.testing.assert_frame_equal(curves[1], curves[0])
    assert second["tokens"] == first["tokens"]

    caplog.set_level("INFO", logger="dnalm")
    _, third = run(TrainConfig(**{**cfg.as_dict(), "lr": 1e-3}), "other")
    assert third["resumed_from_step"] == 0
    assert "was written with other training parameters or inputs: ignoring it" in caplog.text
    # reporting settings are not part of the fingerprint
    _, fourth = run(TrainConfig(**{**cfg.as_dict(), "lr": 1e-3, "log_every": 3}), "other")
    assert fourth["resumed_from_step"] == 4


def test_finetune_resume_keeps_the_selection(tmp_path):
    shards = {k: TokenShard.open(v) for k, v in _shards(tmp_path).items()}
    cfg = TrainConfig(steps=6, batch_size=4, lr=2e-3, eval_every=2, checkpoint_every=2, seed=1)
    cfg.class_weight = "balanced"

    def run(name):
        clf = micro_net("clf", resid_dropout=0.1)
        result = finetune_classifier(
            clf,
            shards["clf_train"],
            shards["clf_val"],
            cfg,
            **cpu_run(
                tmp_path / f"{name}.tsv", checkpoint=Checkpoint(tmp_path / "ck", fingerprint(cfg))
            ),
        )
        return clf, result

    full, a = run("full")
    resumed, b = run("resumed")
    assert (a["resumed_from_step"], b["resumed_from_step"]) == (0, 4)
    assert a["best_step"] == b["best_step"] and a["val"] == b["val"]
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, atol=0, rtol=0, msg=k)


def test_unreadable_checkpoint_is_ignored(tmp_path, caplog):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    caplog.set_level("INFO", logger="dnalm")
    assert Checkpoint(tmp_path, {"a": 1}).load() is None
    assert "unreadable" in caplog.text


def test_a_same_size_change_of_the_inputs_is_not_resumed(tmp_path):
    """A genome changed without changing its size gives `char` shards of the same sizes: the
    checkpoint's fingerprint holds the shards' content digests, so the stale state is ignored."""
    data = tmp_path / "data"
    data.mkdir()
    _shards(data)
    out = tmp_path / "run"
    params = _job(data, out, LM)
    proc = subprocess.Popen(
        _cmd(params), env=_env(DNALM_STOP_AFTER_CHECKPOINT="20"), stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert proc.poll() is None and time.monotonic() < deadline, "no stop after step 20"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "checkpoints" / "checkpoint.pt").exists()
    # the same sequences but the first, whose bases change in place: every size stays the same
    train = TokenShard.open(data / "lm_train")
    rows = [np.asarray(train[i]) for i in range(len(train))]
    rows[0] = np.where(rows[0] == 7, 8, 7).astype(np.uint8)  # A <-> C everywhere else
    sizes = {f.name: f.stat().st_size for f in data.glob("lm_train.*")}
    write_shard(data / "lm_train", [(r, -1) for r in rows], np.dtype(np.uint8))
    write_meta(data / "lm_train", {"dtype": "uint8", "labels": ["a", "b"], "window_length": 48})
    assert {f.name: f.stat().st_size for f in data.glob("lm_train.*")} == sizes
    _run(params)
    log = (out / "job.log").read_text()
    assert "was written with other training parameters or inputs: ignoring it" in log
    assert json.loads((out / "summary.json").read_text())["resumed_from_step"] == 0
