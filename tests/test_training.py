import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import micro_net, train_val_shards
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from dnalm.models import make_optimizer, model_config
from dnalm.shards import TokenShard, write_meta, write_shard
from dnalm.tokenization import (
    char_tokenizer,
    complement_ids,
    encode_bytes,
    kmer_tokenizer,
    lookup_table,
    reverse_complement_rows,
)
from dnalm.training import (
    TrainConfig,
    class_weights,
    finetune_classifier,
    learning_rate,
    pretrain_lm,
    resolve_steps,
    train_length,
)


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


def _lm_shard(path, n=24, seed=0):
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGT"), int(rng.integers(20, 41)))) for _ in range(n)]
    return _shard(path, seqs, [-1] * n)


def test_gradient_accumulation_equals_the_large_batch(tmp_path):
    """4 rows x 2 passes and 8 rows x 1 pass draw the same rows and take the same steps."""
    lm = _lm_shard(tmp_path / "lm")
    runs = {}
    for accum in (1, 2):
        model = micro_net("lm")
        cfg = TrainConfig(
            steps=4, batch_size=8 // accum, grad_accum_steps=accum, lr=3e-3, eval_every=2
        )
        runs[accum] = (
            pretrain_lm(
                model, lm, lm, cfg, pad_id=4, device=torch.device("cpu"), curve_path=tmp_path / "c"
            ),
            model.state_dict(),
        )
    assert runs[1][0]["tokens"] == runs[2][0]["tokens"]
    assert runs[2][0]["val_loss"] == pytest.approx(runs[1][0]["val_loss"], abs=1e-5)
    for k, v in runs[1][1].items():
        torch.testing.assert_close(runs[2][1][k], v, atol=5e-5, rtol=0, msg=k)


def test_weight_decay_skips_norms_biases_and_hyena_filters():
    model = micro_net("lm")
    opt = make_optimizer(model, TrainConfig(steps=1, batch_size=1, lr=1e-3, weight_decay=0.1))
    names = {id(p): n for n, p in model.named_parameters()}
    decay, plain = ({names[id(p)] for p in g["params"]} for g in opt.param_groups)
    assert opt.param_groups[1]["weight_decay"] == 0.0
    assert any("filter_fn.implicit_filter.2.weight" in n for n in plain)
    assert not any("filter_fn" in n or "norm" in n or n.endswith("bias") for n in decay)
    assert any("mlp.fc1.weight" in n for n in decay)


def test_token_budget_and_sequence_length_warmup(tmp_path):
    cfg = TrainConfig(batch_size=4, grad_accum_steps=2, lr=1e-3, tokens=1000)
    assert resolve_steps(cfg, 30.0).steps == math.ceil(1000 / (8 * 30))
    with pytest.raises(ValueError, match="not both"):
        resolve_steps(TrainConfig(batch_size=4, lr=1e-3, tokens=10, steps=5), 30.0)
    warm = TrainConfig(steps=40, batch_size=4, lr=1e-3, seq_len_warmup={"start": 8, "stages": 2})
    assert [train_length(s, warm, 40) for s in (0, 9, 10, 19, 20, 39)] == [8, 8, 16, 16, 40, 40]
    lm = _lm_shard(tmp_path / "lm")
    summary = pretrain_lm(
        micro_net("lm", "gpt"),
        lm,
        lm,
        TrainConfig(batch_size=4, lr=1e-3, tokens=600, seq_len_warmup={"start": 8, "stages": 1}),
        pad_id=4,
        device=torch.device("cpu"),
        curve_path=tmp_path / "c.tsv",
    )
    assert summary["steps"] == math.ceil(600 / (4 * float(np.mean(lm.lengths))))
    assert summary["tokens"] < 600  # the warm-up stage trained on 8-token crops


def test_reverse_complement_on_ids():
    tok = char_tokenizer()
    comp = complement_ids(tok)
    table = lookup_table(tok)
    ids = np.array([encode_bytes("AACGN", table), encode_bytes("ACGT", table).tolist() + [4]])
    mask = (ids != 4).astype(np.int64)
    reverse_complement_rows(ids, mask, np.array([True, True]), comp)
    assert ids[0].tolist() == encode_bytes("NCGTT", table).tolist()
    assert ids[1].tolist() == encode_bytes("ACGT", table).tolist() + [4]  # palindrome, pad kept
    with pytest.raises(ValueError, match="rc_augment works on character tokens"):
        complement_ids(kmer_tokenizer(3))


def test_class_weights_and_early_stopping(tmp_path):
    assert class_weights(np.array([0, 0, 0, 1]), 2, "balanced").tolist() == [4 / 6, 2.0]
    assert class_weights(np.array([0, 1]), 2, "none").tolist() == [1.0, 1.0]
    rng = np.random.default_rng(0)
    seqs, labels = _gc_task(rng, 48)
    tr, va = train_val_shards(tmp_path, seqs, labels, 32, _shard)
    clf = micro_net("clf", "gpt", max_seq_len=128)
    # lr 0: validation never improves after the first pass, so patience 2 stops at step 6
    cfg = TrainConfig(steps=40, batch_size=8, lr=1e-30, eval_every=2, patience=2)
    result = finetune_classifier(
        clf, tr, va, cfg, pad_id=4, device=torch.device("cpu"), curve_path=tmp_path / "ft.tsv"
    )
    assert (result["best_step"], result["last_step"], result["early_stopped"]) == (2, 6, True)
    assert pd.read_csv(tmp_path / "ft.tsv", sep="\t")["step"].tolist() == [2, 4, 6]
