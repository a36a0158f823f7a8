"""Fair inits, right units, loud failures: what the answer of a run rests on.

Both inits of a seed start from the same head; bits per base count bases, not tokens; a NaN
validation score stops the job; imbalanced tasks select on AUPRC; selection reproduces its
scores and never looks at the test split.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import finetune_outputs, micro_net, train_val_shards
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from dnalm.corpus import tokenize_windows
from dnalm.jobs import build_classifier, run_job
from dnalm.metrics import auto_selection, classification_metrics
from dnalm.models import model_config
from dnalm.shards import TokenShard, write_meta, write_shard
from dnalm.tokenization import (
    bpe_tokenizer,
    char_tokenizer,
    encode_bytes,
    encoder_for,
    kmer_tokenizer,
    lookup_table,
)
from dnalm.training import TrainConfig, evaluate, finetune_classifier, pretrain_lm

CPU = torch.device("cpu")
SPEC = {"name": "m", "arch": "hyena", "size": "micro", "max_seq_len": 64}


def shard(path: Path, seqs, labels, **meta) -> TokenShard:
    table = lookup_table(char_tokenizer())
    write_shard(
        path, [(encode_bytes(s, table), y) for s, y in zip(seqs, labels, strict=True)], np.uint8
    )
    info = {"dtype": "uint8", "labels": ["neg", "pos"], "window_length": len(seqs[0])}
    write_meta(path, info | meta)
    return TokenShard.open(path)


def gc_task(n: int, seed: int, positive: float = 0.5):
    """Label 1 = GC-rich: learnable; `positive` is the share of label 1."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < positive).astype(int)
    labels[:2] = [0, 1]  # both classes, whatever the draw
    seqs = [
        "".join(rng.choice(list("ACGT"), 48, p=[0.2, 0.3, 0.3, 0.2] if y else [0.3, 0.2, 0.2, 0.3]))
        for y in labels
    ]
    return seqs, labels.tolist()


@pytest.mark.parametrize("arch", ["hyena", "gpt"])
def test_both_inits_of_a_seed_share_the_head(tmp_path, arch):
    tok = char_tokenizer()
    torch.manual_seed(123)
    lm = AutoModelForCausalLM.from_config(
        model_config(arch, "micro", vocab_size=len(tok), pad_token_id=4, max_seq_len=64)
    )
    lm.save_pretrained(tmp_path / "pretrained")
    spec = {**SPEC, "arch": arch}
    heads = {}
    for init in ("pretrained", "scratch"):
        for seed in (0, 1):
            params = {
                "model": spec,
                "init": init,
                "seed": seed,
                "pretrained": str(tmp_path / "pretrained"),
            }
            model = build_classifier(params, tok, ["neg", "pos"])
            heads[init, seed] = {k: v.clone() for k, v in model.score.state_dict().items()}
    for seed in (0, 1):
        for name, tensor in heads["pretrained", seed].items():
            assert torch.equal(tensor, heads["scratch", seed][name]), (seed, name)
    assert not torch.equal(heads["scratch", 0]["weight"], heads["scratch", 1]["weight"])
    std = float(heads["scratch", 0]["weight"].std())
    assert 0.01 < std < 0.04  # N(0, initializer_range = 0.02)


def lm_shard_of(tmp_path: Path, tokenizer, seqs: list[str]) -> TokenShard:
    """A shard the tokenize step writes (inline sequences), for any tokenizer kind."""
    table = pd.DataFrame(
        {"genome": "g", "chrom": [f"r{i}" for i in range(len(seqs))], "start": 0}
        | {"end": [len(x) for x in seqs], "strand": "+", "label_id": -1, "sequence": seqs}
    )
    tokenize_windows(table, {}, encoder_for(tokenizer), tmp_path / "lm", meta={"labels": []})
    return TokenShard.open(tmp_path / "lm")


@pytest.mark.parametrize("kind", ["char", "kmer", "bpe"])
def test_bits_per_base_divides_by_bases_per_token(tmp_path, kind):
    """A char token is one base, a non-overlapping 3-mer three, a BPE token several: the loss
    per token over ln 2 is bits per token; divided by bases per token, bits per base."""
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 60)) for _ in range(24)]
    tokenizer = {
        "char": char_tokenizer,
        "kmer": lambda: kmer_tokenizer(3),
        "bpe": lambda: bpe_tokenizer(seqs * 4, 64),
    }[kind]()
    lm = lm_shard_of(tmp_path, tokenizer, seqs)
    per_token = 60 * 24 / int(lm.lengths.sum())
    assert lm.meta["bases"] == 60 * 24
    if kind == "char":
        assert per_token == 1.0
    elif kind == "kmer":
        assert per_token == 3.0  # 60 bases are 20 whole 3-mers
    else:
        assert per_token > 1.5  # merges learned from the same sequences
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        model_config("hyena", "micro", vocab_size=len(tokenizer), pad_token_id=4, max_seq_len=64)
    )
    cfg = TrainConfig(steps=2, batch_size=4, lr=1e-3, eval_every=2)
    summary = pretrain_lm(model, lm, lm, cfg, pad_id=4, device=CPU, curve_path=tmp_path / "c.tsv")
    assert summary["bases_per_token"] == pytest.approx(per_token)
    bits = summary["val_loss"] / math.log(2) / per_token
    assert summary["val_bits_per_base"] == pytest.approx(bits)
    curve = pd.read_csv(tmp_path / "c.tsv", sep="\t")
    assert curve["val_bits_per_base"].iloc[-1] == pytest.approx(bits, rel=1e-5)


def test_a_nan_validation_score_fails_naming_the_step(tmp_path):
    seqs, labels = gc_task(32, 0)
    tr = shard(tmp_path / "tr", seqs, labels)
    clf = micro_net("clf", "gpt")
    with torch.no_grad():
        clf.score.bias.fill_(float("nan"))
    cfg = TrainConfig(steps=4, batch_size=8, lr=1e-3, eval_every=2)
    with pytest.raises(FloatingPointError) as err:
        finetune_classifier(clf, tr, tr, cfg, pad_id=4, device=CPU, curve_path=tmp_path / "c.tsv")
    assert str(err.value) == (
        "validation loss is nan at step 2: the model diverged (or its outputs are not numbers); "
        "lower the learning rate or raise warmup_steps, then rerun"
    )


def test_an_empty_pretraining_val_split_fails(tmp_path):
    lm = shard(tmp_path / "lm", ["ACGT" * 10] * 4, [-1] * 4)
    write_shard(tmp_path / "val", [], np.uint8)
    write_meta(tmp_path / "val", {"dtype": "uint8", "labels": [], "window_length": 0})
    val = TokenShard.open(tmp_path / "val")
    model = AutoModelForCausalLM.from_config(
        model_config("hyena", "micro", vocab_size=12, pad_token_id=4, max_seq_len=64)
    )
    cfg = TrainConfig(steps=2, batch_size=2, lr=1e-3)
    with pytest.raises(ValueError) as err:
        pretrain_lm(model, lm, val, cfg, pad_id=4, device=CPU, curve_path=tmp_path / "c.tsv")
    assert str(err.value) == (
        f"the pretraining val split {tmp_path / 'val'} has no windows, so pretraining cannot be "
        "validated: mark more genomes pretrain=true or shorten pretrain_corpus.window"
    )


def test_auto_selection_picks_auprc_for_an_imbalanced_task(tmp_path, caplog):
    assert auto_selection(np.array([0] * 85 + [1] * 15)) == "auprc"
    assert auto_selection(np.array([0] * 80 + [1] * 20)) == "loss"  # 20% is not under 20%
    assert auto_selection(np.array([0] * 10 + [1] * 10 + [2] * 1)) == "loss"  # not binary
    seqs, labels = gc_task(96, 1, positive=0.1)
    tr, va = train_val_shards(tmp_path, seqs, labels, 64, shard)
    clf = micro_net("clf")
    caplog.set_level("INFO", logger="dnalm")
    cfg = TrainConfig(steps=2, batch_size=8, lr=1e-3, eval_every=2)
    result = finetune_classifier(
        clf, tr, va, cfg, pad_id=4, device=CPU, curve_path=tmp_path / "c.tsv", select_on="auto"
    )
    assert result["selected_on"] == "auprc"
    share = min(np.bincount(labels[:64])) / 64
    assert f"select_on auto: auprc (rarest class {share:.1%} of train)" in caplog.text


@pytest.mark.parametrize("select_on", ["auroc", "mcc"])
def test_selected_weights_give_the_recorded_val_scores(tmp_path, select_on):
    seqs, labels = gc_task(160, 2)
    tr, va = train_val_shards(tmp_path, seqs, labels, 120, shard)
    clf = micro_net("clf")
    cfg = TrainConfig(steps=40, batch_size=16, lr=3e-3, eval_every=5)
    result = finetune_classifier(
        clf, tr, va, cfg, pad_id=4, device=CPU, curve_path=tmp_path / "c.tsv", select_on=select_on
    )
    curve = pd.read_csv(tmp_path / "c.tsv", sep="\t")
    column = curve[f"val_{select_on}"]
    assert result["best_step"] == int(curve.loc[column.idxmax(), "step"])  # the first best
    assert result["best_step"] != curve["step"].iloc[-1] or column.iloc[-1] == column.max()
    again, probs = evaluate(clf, va, 16, 4, CPU)
    assert again == result["val"]  # the returned weights are the selected ones
    assert again[select_on] == classification_metrics(va.labels, probs)[select_on]


def test_test_labels_never_influence_selection(tmp_path):
    """A fine-tuning job run twice, the second time with the test labels permuted: the same
    selected step, validation scores and weights."""
    tok_dir = tmp_path / "tok"
    char_tokenizer().save_pretrained(tok_dir)
    seqs, labels = gc_task(200, 3)
    shard(tmp_path / "train", seqs[:120], labels[:120])
    shard(tmp_path / "val", seqs[120:160], labels[120:160])
    test_labels = labels[160:]
    permuted = list(np.random.default_rng(0).permutation(test_labels))
    outputs = {}
    for name, y in (("plain", test_labels), ("permuted", permuted)):
        shard(tmp_path / f"test_{name}", seqs[160:], y)
        pd.DataFrame(
            {
                "genome": "g",
                "chrom": [f"r{i}" for i in range(40)],
                "start": 0,
                "end": 48,
                "group": "g",
            }
            | {"label": [["neg", "pos"][v] for v in y]}
        ).to_parquet(tmp_path / f"test_{name}.parquet")
        out = tmp_path / name
        out.mkdir()
        run_job(
            "finetune",
            {
                "model": SPEC,
                "init": "scratch",
                "seed": 0,
                "task": "t",
                "train": {"steps": 30, "batch_size": 16, "lr": 3e-3, "eval_every": 5}
                | {"select_on": "auroc"},
                "device": "cpu",
                "tokenizer": str(tok_dir),
                "shards": {
                    "train": str(tmp_path / "train"),
                    "val": str(tmp_path / "val"),
                    "test": str(tmp_path / f"test_{name}"),
                },
                "test_windows": str(tmp_path / f"test_{name}.parquet"),
                "outputs": finetune_outputs(out),
                "threads": 1,
                "log": None,
            },
        )
        outputs[name] = json.loads((out / "metrics.json").read_text()), out
    (a, dir_a), (b, dir_b) = outputs["plain"], outputs["permuted"]
    assert (a["best_step"], a["val"]) == (b["best_step"], b["val"])
    assert a["test"] != b["test"]  # the permutation did reach the test scores
    wa, wb = (load_file(d / "model" / "model.safetensors") for d in (dir_a, dir_b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
