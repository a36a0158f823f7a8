"""Multi-process training (DDP under a real torchrun, gloo on the CPU) matches one process.

Two ranks split each global batch; their per-step losses, validation scores, selection decision
and final weights must equal a one-process run with the same global batch (up to float
rounding), and only rank 0 may write files. The same file is the torchrun worker: run as a
script it trains as one rank (`python -m torch.distributed.run ... tests/test_distributed.py`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import cpu_run, finetune_outputs, write_random_shards

WORLD = 2
ATOL = 1e-5  # losses, metrics, probabilities
# Weights: Adam scales each coordinate's step by its own gradient RMS, so coordinates whose
# gradient is near zero take lr-sized steps driven by rounding (which differs between one batch
# of 5 rows and slices of 3 + 2): measured up to 1.1e-5 after 6 steps at lr 2e-3.
WEIGHT_ATOL = 5e-5
HERE = Path(__file__).resolve()
# Odd global batches on purpose: the two ranks get 3 and 2 rows, with different token counts.
LM_TRAIN = {"steps": 6, "batch_size": 5, "lr": 3e-3, "warmup_steps": 2, "eval_every": 1}
LM_TRAIN |= {"log_every": 1, "eval_sequences": 7, "seed": 0}
CLF_TRAIN = {"steps": 6, "batch_size": 5, "lr": 2e-3, "warmup_steps": 1, "eval_every": 2}
CLF_TRAIN |= {"log_every": 1, "seed": 3}


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _write_shards(directory: Path) -> dict[str, Path]:
    """Token shards; LM sequences differ in length, so padding and token counts vary by rank.

    Classification sequences have one length: a pad token's embedding has a zero gradient up to
    rounding, which Adam would turn into rounding-driven steps (see WEIGHT_ATOL).
    """
    sizes = {"lm_train": 23, "lm_val": 9, "clf_train": 22, "clf_val": 11, "clf_test": 7}
    return write_random_shards(directory, sizes, (20, 49), 40, ["host", "virus"])


def _train_all(data: Path, out: Path) -> None:
    """Pretrain a micro Hyena, fine-tune a classifier from it, score a split; rank 0 saves all.

    Runs unchanged in one process (the reference) and on every torchrun rank.
    """
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from dnalm import distributed
    from dnalm.models import model_config
    from dnalm.shards import TokenShard
    from dnalm.training import TrainConfig, finetune_classifier, predict_proba, pretrain_lm

    cpu = torch.device("cpu")
    rank = distributed.rank()
    shard = {name: TokenShard.open(data / name) for name in ("lm_train", "lm_val")}
    shard |= {name: TokenShard.open(data / name) for name in ("clf_train", "clf_val", "clf_test")}
    config = model_config("hyena", "micro", vocab_size=12, pad_token_id=4, max_seq_len=64)
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(config)
    summary = pretrain_lm(
        lm,
        shard["lm_train"],
        shard["lm_val"],
        TrainConfig(**LM_TRAIN),
        **cpu_run(out / f"lm_curve.rank{rank}.tsv"),
    )
    torch.manual_seed(1)
    clf = AutoModelForSequenceClassification.from_config(config)
    missing = clf.load_state_dict(lm.state_dict(), strict=False).missing_keys
    assert all(k.startswith("score") for k in missing), missing  # only the head is new
    result = finetune_classifier(
        clf,
        shard["clf_train"],
        shard["clf_val"],
        TrainConfig(**CLF_TRAIN),
        **cpu_run(out / f"clf_curve.rank{rank}.tsv", select_on="loss"),
    )
    probs = predict_proba(clf, shard["clf_test"], 3, 4, cpu)
    if distributed.is_main():
        save_file({k: v.contiguous().clone() for k, v in lm.state_dict().items()}, out / "lm.st")
        save_file({k: v.contiguous().clone() for k, v in clf.state_dict().items()}, out / "clf.st")
        np.save(out / "test_probs.npy", probs)
        summary.pop("seconds"), summary.pop("tokens_per_second"), result.pop("seconds")
        (out / "results.json").write_text(json.dumps({"lm": summary, "clf": result}))


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc_per_node", str(WORLD), *args]
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def _assert_same_weights(a: Path, b: Path) -> None:
    from safetensors.torch import load_file

    ta, tb = load_file(a), load_file(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], atol=WEIGHT_ATOL, rtol=0, msg=k)


def test_two_ranks_match_one_process_and_only_rank0_writes(tmp_path):
    data = _write_shards(tmp_path / "data")["lm_train"].parent
    single, multi = tmp_path / "single", tmp_path / "multi"
    single.mkdir(), multi.mkdir()
    _train_all(data, single)
    _torchrun(str(HERE), str(data), str(multi), cwd=tmp_path)

    for name in ("lm_curve", "clf_curve"):
        ref = pd.read_csv(single / f"{name}.rank0.tsv", sep="\t").drop(columns="seconds")
        got = pd.read_csv(multi / f"{name}.rank0.tsv", sep="\t").drop(columns="seconds")
        assert not (multi / f"{name}.rank1.tsv").exists(), "rank 1 wrote a curve"
        # curves hold 6 significant digits: allow one unit in the last one
        pd.testing.assert_frame_equal(got, ref, check_exact=False, atol=ATOL, rtol=1e-5)
    # per-step losses: one curve row per step (eval_every=1) in pretraining
    assert len(pd.read_csv(multi / "lm_curve.rank0.tsv", sep="\t")) == LM_TRAIN["steps"]
    assert sorted(p.name for p in multi.iterdir()) == sorted(p.name for p in single.iterdir())

    ref, got = (json.loads((d / "results.json").read_text()) for d in (single, multi))
    assert got["lm"].pop("processes") == WORLD and ref["lm"].pop("processes") == 1
    assert got["clf"].pop("processes") == WORLD and ref["clf"].pop("processes") == 1
    assert got["clf"].pop("best_step") == ref["clf"].pop("best_step")
    assert got["clf"].pop("selected_on") == ref["clf"].pop("selected_on")
    assert got["lm"]["tokens"] == ref["lm"]["tokens"]
    assert got["lm"] == pytest.approx(ref["lm"], abs=ATOL)
    assert got["clf"]["val"] == pytest.approx(ref["clf"]["val"], abs=ATOL)
    np.testing.assert_allclose(
        np.load(multi / "test_probs.npy"), np.load(single / "test_probs.npy"), atol=ATOL, rtol=0
    )
    _assert_same_weights(multi / "lm.st", single / "lm.st")
    _assert_same_weights(multi / "clf.st", single / "clf.st")


def _finetune_job(tmp: Path, data: Path, out: Path, **extra) -> dict:
    """A fine-tuning job as the Snakemake adapter describes it (GPT, from "pretrained" weights)."""
    from transformers import AutoModelForCausalLM

    from dnalm.models import model_config
    from dnalm.tokenization import char_tokenizer

    pretrained = tmp / "pretrained"
    if not pretrained.exists():
        torch.manual_seed(0)
        config = model_config("gpt", "micro", vocab_size=12, pad_token_id=4, max_seq_len=64)
        AutoModelForCausalLM.from_config(config).save_pretrained(pretrained)
        char_tokenizer().save_pretrained(pretrained)
        n = len(np.load(data / "clf_test.idx"))
        pd.DataFrame(
            {"genome": "g", "chrom": "c", "start": np.arange(n) * 40, "label": "host", "group": "g"}
        ).assign(end=lambda t: t["start"] + 40).to_parquet(tmp / "test.parquet")
    out.mkdir()
    train = {k: v for k, v in CLF_TRAIN.items() if k != "seed"}
    return {
        "model": {"name": "gpt-micro", "arch": "gpt", "size": "micro", "max_seq_len": 64},
        "init": "pretrained",
        "pretrained": str(pretrained),
        "seed": 2,
        "task": "gc",
        "train": {**train, "select_on": "loss"},
        "device": "cpu",
        "tokenizer": str(pretrained),
        "shards": {s: str(data / f"clf_{s}") for s in ("train", "val", "test")},
        "test_windows": str(tmp / "test.parquet"),
        "outputs": finetune_outputs(out),
        "log": str(out / "job.log"),
        "threads": 1,
        **extra,
    }


def test_job_relaunches_under_torchrun_and_matches_one_process(tmp_path):
    from dnalm.jobs import run_job

    data = _write_shards(tmp_path / "data")["lm_train"].parent
    single = _finetune_job(tmp_path, data, tmp_path / "single")
    run_job("finetune", single)
    # 2 processes on the CPU with gloo, through the command line a torchrun rank also runs;
    # the job's 2 threads are shared out, 1 per process
    multi = _finetune_job(tmp_path, data, tmp_path / "multi", nproc=2, backend="gloo", threads=2)
    (tmp_path / "multi.json").write_text(json.dumps(multi))
    cmd = [
        sys.executable,
        "-m",
        "dnalm.jobs",
        "finetune",
        "--params",
        str(tmp_path / "multi.json"),
    ]
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300
    )
    log = (tmp_path / "multi" / "job.log").read_text()
    assert proc.returncode == 0, proc.stderr[-3000:] + log[-6000:]

    assert "torch.distributed.run --standalone --nproc_per_node 2 -m dnalm.jobs" in log
    assert "cpu x 2 processes, 1 thread(s)" in log
    assert log.count("finetune step 6/6") == 1, "only rank 0 logs progress"
    ref, got = (
        json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("single", "multi")
    )
    assert (ref.pop("processes"), got.pop("processes")) == (1, 2)
    assert got.pop("best_step") == ref.pop("best_step")
    assert got["test"] == pytest.approx(ref["test"], abs=ATOL)
    assert got["val"] == pytest.approx(ref["val"], abs=ATOL)
    preds = [pd.read_csv(tmp_path / d / "predictions.tsv", sep="\t") for d in ("single", "multi")]
    pd.testing.assert_frame_equal(preds[1], preds[0], check_exact=False, atol=ATOL, rtol=0)
    _assert_same_weights(
        tmp_path / "multi/model/model.safetensors", tmp_path / "single/model/model.safetensors"
    )
    assert sorted(p.name for p in (tmp_path / "multi").iterdir()) == sorted(
        p.name for p in (tmp_path / "single").iterdir()
    )


def test_bad_job_parameters_fail_before_launching(tmp_path, capsys):
    from dnalm.jobs import main

    job = {"model": {}, "train": {"batch_size": 1}, "tokenizer": "t", "shards": {}, "outputs": {}}
    path = tmp_path / "job.json"
    path.write_text(json.dumps({**job, "nproc": 2}))
    assert main(["pretrain", "--params", str(path)]) == 2
    assert "batch_size 1 is smaller than the 2 processes" in capsys.readouterr().err
    path.write_text(json.dumps({k: v for k, v in job.items() if k != "shards"}))
    assert main(["pretrain", "--params", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "missing shards" in err
    path.write_text("{not json")
    assert main(["finetune", "--params", str(path)]) == 2
    assert "cannot read job parameters" in capsys.readouterr().err


@pytest.mark.slow
def test_rule_with_two_gpus_launches_torchrun(tmp_path):
    """`resources.gpu: 2` makes the pretrain rule run 2 ranks (here on the CPU, with gloo)."""
    from test_pipeline import simulated_sheet, snakemake, tiny_config, write_workdir

    config = tiny_config("config/genomes.tsv")
    config["models"] = {"hyena-micro": config["models"]["hyena-micro"]}
    config["pretrain"] |= {"steps": 4, "eval_every": 2, "log_every": 2}
    config["resources"]["pretrain"] |= {"threads": 2, "gpu": 2}
    write_workdir(tmp_path, config, simulated_sheet())
    snakemake(tmp_path, "results/pretrain/hyena-micro/summary.json")
    log = (tmp_path / "logs/pretrain/hyena-micro.log").read_text()
    assert "--nproc_per_node 2 -m dnalm.jobs pretrain" in log
    assert "parameters) on cpu x 2 processes, 1 thread(s): " in log
    summary = json.loads((tmp_path / "results/pretrain/hyena-micro/summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 4
    assert (tmp_path / "results/pretrain/hyena-micro/model.safetensors").exists()


def test_rank_slices_cover_the_batch_in_order():
    from dnalm.distributed import rank_slice

    rows = np.arange(7) * 10
    parts = [rank_slice(rows, 3, r) for r in range(3)]
    assert [len(p) for p in parts] == [3, 2, 2]
    np.testing.assert_array_equal(np.concatenate(parts), rows)
    np.testing.assert_array_equal(rank_slice(rows, 1, 0), rows)


if __name__ == "__main__":  # one torchrun rank of the test above
    from dnalm.distributed import init_distributed, teardown
    from dnalm.runtime import limit_threads

    limit_threads(1)
    init_distributed(torch.device("cpu"), "gloo")
    try:
        _train_all(Path(sys.argv[1]), Path(sys.argv[2]))
    finally:
        teardown()
