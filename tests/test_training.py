import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from dnalm.cli import main as cli_main
from dnalm.models import model_config
from dnalm.predict import load_classifier, predict_fasta, record_windows
from dnalm.shards import TokenShard, write_meta, write_shard
from dnalm.tokenization import char_tokenizer, encode_bytes, lookup_table
from dnalm.training import TrainConfig, finetune_classifier, learning_rate, pretrain_lm


def test_learning_rate_schedule():
    cfg = TrainConfig(steps=100, batch_size=1, lr=1.0, warmup_steps=10, min_lr_fraction=0.1)
    assert learning_rate(0, cfg) == pytest.approx(0.1)
    assert learning_rate(9, cfg) == pytest.approx(1.0)
    assert learning_rate(10, cfg) == pytest.approx(1.0)
    assert learning_rate(55, cfg) == pytest.approx(0.55)
    assert learning_rate(100, cfg) == pytest.approx(0.1)


def _shard(path, seqs, labels):
    tok = char_tokenizer()
    table = lookup_table(tok)
    write_shard(
        path,
        [(encode_bytes(s, table), y) for s, y in zip(seqs, labels, strict=True)],
        np.dtype(np.uint8),
    )
    write_meta(path, {"dtype": "uint8", "labels": ["host", "virus"], "window_length": len(seqs[0])})
    return TokenShard.open(path)


def _gc_task(rng, n):
    """Label 1 = GC-rich sequence: learnable by any working classifier."""
    seqs, labels = [], []
    for i in range(n):
        y = i % 2
        p = [0.15, 0.35, 0.35, 0.15] if y else [0.35, 0.15, 0.15, 0.35]
        seqs.append("".join(rng.choice(list("ACGT"), 64, p=p)))
        labels.append(y)
    return seqs, labels


@pytest.mark.parametrize("arch", ["hyena", "gpt"])
def test_pretraining_lowers_the_loss_and_finetuning_selects_on_val(tmp_path, arch):
    rng = np.random.default_rng(0)
    motif = "ACGGTCATTGCA" * 6
    lm = _shard(tmp_path / "lm", [motif[i : i + 64] for i in range(8)] * 8, [-1] * 64)
    torch.manual_seed(0)
    cfg = model_config(arch, "micro", vocab_size=12, pad_token_id=4, max_seq_len=128)
    model = AutoModelForCausalLM.from_config(cfg)
    train = TrainConfig(
        steps=30, batch_size=8, lr=3e-3, eval_every=15, log_every=10, eval_sequences=16
    )
    summary = pretrain_lm(
        model, lm, lm, train, pad_id=4, device=torch.device("cpu"), curve_path=tmp_path / "lm.tsv"
    )
    curve = pd.read_csv(tmp_path / "lm.tsv", sep="\t")
    assert summary["val_loss"] < math.log(4) * 0.6  # a repeated motif is easy to predict
    assert list(curve["step"]) == [15, 30]
    assert curve["val_loss"].iloc[1] < curve["val_loss"].iloc[0]

    seqs, labels = _gc_task(rng, 256)
    tr = _shard(tmp_path / "train", seqs[:192], labels[:192])
    va = _shard(tmp_path / "val", seqs[192:], labels[192:])
    clf = AutoModelForSequenceClassification.from_config(
        model_config(arch, "micro", vocab_size=12, pad_token_id=4, max_seq_len=128)
    )
    ft = TrainConfig(steps=60, batch_size=16, lr=2e-3, eval_every=20, log_every=20)
    result = finetune_classifier(
        clf,
        tr,
        va,
        ft,
        pad_id=4,
        device=torch.device("cpu"),
        curve_path=tmp_path / "ft.tsv",
        select_on="loss",
    )
    curve = pd.read_csv(tmp_path / "ft.tsv", sep="\t")
    best = curve.loc[curve["val_loss"].idxmin()]
    assert result["best_step"] == best["step"]
    assert result["val"]["accuracy"] > 0.8


def test_predict_fasta_and_cli(tmp_path, capsys):
    tok = char_tokenizer()
    torch.manual_seed(0)
    cfg = model_config("hyena", "micro", vocab_size=12, pad_token_id=4, max_seq_len=128)
    cfg.update({"id2label": {0: "host", 1: "virus"}, "label2id": {"host": 0, "virus": 1}})
    model = AutoModelForSequenceClassification.from_config(cfg)
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    (model_dir / "dnalm_training.json").write_text(json.dumps({"window_length": 100}))
    fasta = tmp_path / "contigs.fa"
    rng = np.random.default_rng(1)
    fasta.write_text(">long\n" + "".join(rng.choice(list("ACGT"), 250)) + "\n>short\nACGTAC\n")

    model, tokenizer = load_classifier(model_dir, torch.device("cpu"))
    out, win = tmp_path / "records.tsv", tmp_path / "windows.tsv"
    assert predict_fasta(model, tokenizer, fasta, out, window=100, stride=100, out_windows=win) == 2
    records = pd.read_csv(out, sep="\t")
    windows = pd.read_csv(win, sep="\t")
    assert records["record"].tolist() == ["long", "short"]
    assert records["windows"].tolist() == [3, 1]
    assert windows[["start", "end"]].values.tolist() == [[0, 100], [100, 200], [150, 250], [0, 6]]
    long = windows[windows["record"] == "long"]
    assert records.loc[0, "prob_virus"] == pytest.approx(long["prob_virus"].mean(), abs=1e-5)
    assert records.loc[0, "max_virus"] == pytest.approx(long["prob_virus"].max(), abs=1e-5)
    weighted = np.average(long["prob_virus"], weights=[100, 100, 50])
    assert records.loc[0, "weighted_virus"] == pytest.approx(weighted, abs=1e-5)

    cli_out = tmp_path / "cli.tsv"
    assert (
        cli_main(
            [
                "predict",
                "--model",
                str(model_dir),
                "--fasta",
                str(fasta),
                "--out",
                str(cli_out),
                "--quiet",
            ]
        )
        == 0
    )
    assert pd.read_csv(cli_out, sep="\t").equals(records)


def test_predict_rejects_bad_input_and_leaves_nothing(tmp_path, capsys):
    tok = char_tokenizer()
    cfg = model_config("hyena", "micro", vocab_size=12, pad_token_id=4, max_seq_len=128)
    model_dir = tmp_path / "model"
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(model_dir)
    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nACGT\n>b\nACXT\n")
    out = tmp_path / "out.tsv"
    # no tokenizer beside the model
    assert (
        cli_main(
            [
                "predict",
                "--model",
                str(model_dir),
                "--fasta",
                str(bad),
                "--out",
                str(out),
                "--window",
                "50",
            ]
        )
        == 2
    )
    assert "no tokenizer.json" in capsys.readouterr().err
    tok.save_pretrained(model_dir)
    assert (
        cli_main(
            [
                "predict",
                "--model",
                str(model_dir),
                "--fasta",
                str(bad),
                "--out",
                str(out),
                "--window",
                "50",
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "record 'b'" in err and "position 3" in err
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_record_windows():
    assert record_windows(10, 100, 50) == [(0, 10)]
    assert record_windows(100, 100, 50) == [(0, 100)]
    assert record_windows(230, 100, 100) == [(0, 100), (100, 200), (130, 230)]
    assert record_windows(200, 100, 50) == [(0, 100), (50, 150), (100, 200)]
