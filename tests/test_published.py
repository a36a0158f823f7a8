"""Published checkpoints in training jobs: the three inits, the shared head, the linear probe.

Each test writes a small random HyenaDNA checkpoint in the Hugging Face layout (the helpers of
test_checkpoints.py: width 32, 2 layers, context 38) and runs the real job functions on a
few shards of 32-base sequences.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import finetune_outputs
from test_checkpoints import random_official_state, write_hf
from test_training import _shard
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from dnalm.hub import fetch_checkpoint
from dnalm.jobs import INITS, build_classifier, run_job
from dnalm.models import config_for, load_hyenadna
from dnalm.tokenization import char_tokenizer, save_tokenizer

LABELS = ["host", "virus"]
SPEC = {"name": "hy", "arch": "hyena", "tokenizer": "char", "max_seq_len": 32}


@pytest.fixture
def published(tmp_path):
    """A published checkpoint as the fetch rule leaves it (files + source.json)."""
    source = write_hf(tmp_path / "official", random_official_state(seed=4))
    fetch_checkpoint(str(source), tmp_path / "checkpoints" / "hy")
    return tmp_path / "checkpoints" / "hy"


def _pretrained_dir(tmp_path, published):
    """What dnalm's pretraining of this model saves: an LM of the checkpoint's architecture."""
    torch.manual_seed(9)
    lm = AutoModelForCausalLM.from_config(config_for(SPEC, char_tokenizer(), published))
    lm.save_pretrained(tmp_path / "pretrained")
    return tmp_path / "pretrained"


def _params(init, published, pretrained=None, seed=0, **extra):
    spec = SPEC | {"init_from": "owner/hyenadna-test-hf"}
    return (
        {"model": spec, "init": init, "seed": seed, "published": str(published)}
        | ({"pretrained": str(pretrained)} if pretrained else {})
        | extra
    )


def test_every_init_of_a_seed_starts_from_the_same_head(tmp_path, published):
    pretrained = _pretrained_dir(tmp_path, published)
    tok = char_tokenizer()
    models = {
        init: build_classifier(_params(init, published, pretrained), tok, LABELS) for init in INITS
    }
    heads = {
        init: {k: v for k, v in m.state_dict().items() if k.startswith("score.")}
        for init, m in models.items()
    }
    for init in ("pretrained", "scratch"):
        assert heads[init].keys() == heads["published"].keys() == {"score.weight", "score.bias"}
        for key, value in heads["published"].items():
            assert torch.equal(heads[init][key], value), (init, key)
    # ... and differ in the backbone only: published is the checkpoint, scratch is random
    official = load_hyenadna(published).hyena.state_dict()
    for key, value in official.items():
        assert torch.equal(models["published"].hyena.state_dict()[key], value), key
    backbone = "hyena.backbone.layers.0.mixer.in_proj.weight"
    values = [models[i].state_dict()[backbone] for i in INITS]
    assert not torch.equal(values[0], values[1]) and not torch.equal(values[0], values[2])
    # one architecture for all three: the checkpoint's
    for model in models.values():
        cfg = model.config
        assert (cfg.d_model, cfg.n_layer, cfg.d_inner, cfg.max_seq_len) == (32, 2, 64, 38)
        assert cfg.filter_order == 16 and cfg.id2label == dict(enumerate(LABELS))
    # another seed, another head
    other = build_classifier(_params("published", published, seed=1), tok, LABELS)
    assert not torch.equal(other.score.weight, heads["published"]["score.weight"])


def test_init_published_needs_the_checkpoint(tmp_path, published):
    params = _params("published", published) | {"published": None}
    with pytest.raises(ValueError, match="init published needs the model's fetched init_from"):
        build_classifier(params, char_tokenizer(), LABELS)
    with pytest.raises(ValueError, match="init must be one of published, pretrained, scratch"):
        build_classifier(_params("random", published), char_tokenizer(), LABELS)
    params = _params("scratch", published) | {"model": SPEC | {"size": "tiny-1k"}}
    with pytest.raises(ValueError, match="contradicts the checkpoint"):
        build_classifier(params, char_tokenizer(), LABELS)


def _task(tmp_path, n=48, length=32):
    """Tokenizer directory, train/val/test shards of a GC-rich vs AT-rich task, test windows."""
    rng = np.random.default_rng(0)
    tokenizer = save_tokenizer(char_tokenizer(), tmp_path / "tokenizer")
    shards = {}
    for split, count in (("train", n), ("val", n // 2), ("test", n // 2)):
        labels = [i % 2 for i in range(count)]
        seqs = [
            "".join(
                rng.choice(
                    list("ACGT"),
                    length,
                    p=[0.15, 0.35, 0.35, 0.15] if y else [0.35, 0.15, 0.15, 0.35],
                )
            )
            for y in labels
        ]
        _shard(tmp_path / "tokens" / split, seqs, labels)
        shards[split] = str(tmp_path / "tokens" / split)
        if split == "test":
            windows = pd.DataFrame(
                {
                    "genome": "g",
                    "chrom": [f"s{i}" for i in range(count)],
                    "start": 0,
                    "end": length,
                    "label": [LABELS[y] for y in labels],
                    "group": [f"s{i}" for i in range(count)],
                }
            )
            windows.to_parquet(tmp_path / "test.parquet")
    return tokenizer, shards


def _finetune(tmp_path, published, init, freeze, name):
    tokenizer, shards = _task(tmp_path)
    out = tmp_path / name
    out.mkdir()  # Snakemake makes the outputs' directories
    params = _params(init, published) | {
        "task": "gc",
        "train": {
            "steps": 6,
            "batch_size": 8,
            "lr": 3e-2,
            "eval_every": 3,
            "log_every": 3,
            "select_on": "loss",
            "freeze_backbone": freeze,
        },
        "device": "cpu",
        "tokenizer": str(tokenizer),
        "shards": shards,
        "test_windows": str(tmp_path / "test.parquet"),
        "outputs": finetune_outputs(out),
        "data": {"source": {"format": "hf_dataset", "repo": "owner/gc"}},
        "threads": 1,
    }
    run_job("finetune", params)
    return out


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_freeze_backbone_trains_the_head_alone(tmp_path, published):
    start = build_classifier(_params("published", published), char_tokenizer(), LABELS)
    before = _state(start)
    frozen = _finetune(tmp_path, published, "published", True, "frozen")
    after = _state(AutoModelForSequenceClassification.from_pretrained(frozen / "model"))
    backbone = [k for k in before if not k.startswith("score.")]
    assert backbone and all(torch.equal(after[k], before[k]) for k in backbone), [
        k for k in backbone if not torch.equal(after[k], before[k])
    ]
    assert not torch.equal(after["score.weight"], before["score.weight"])
    metrics = json.loads((frozen / "metrics.json").read_text())
    assert metrics["freeze_backbone"] is True
    assert metrics["trainable_params"] == 2 * 32 + 2 < metrics["params"]
    assert metrics["published"]["source"] == "local" and metrics["size"] == "d32x2"
    # the same run without freezing moves the backbone: the check above can fail
    free = _finetune(tmp_path, published, "published", False, "free")
    moved = _state(AutoModelForSequenceClassification.from_pretrained(free / "model"))
    assert any(not torch.equal(moved[k], before[k]) for k in backbone)
    assert json.loads((free / "metrics.json").read_text())["trainable_params"] == metrics["params"]


def test_every_saved_model_gets_a_model_card(tmp_path, published):
    out = _finetune(tmp_path, published, "scratch", False, "scratch")
    card = (out / "model" / "README.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert card.startswith("---\nlibrary_name: transformers\n")
    assert "# hy: gc (scratch init, seed 0)" in card
    assert "`host`, `virus` (the second is the positive class)" in card
    assert "The architecture is that of the local checkpoint" in card
    assert '"repo": "owner/gc"' in card  # the data source
    for split, n in metrics["windows"].items():
        assert f"| {split} | {n} |" in card
    assert f"| auroc | {metrics['test']['auroc']:.4g} |" in card
    assert "results/summary/pretrain_effect.tsv" in card  # where the intervals are
    assert "| lr | 0.03 |" in card and "| freeze_backbone | false |" in card
    assert f"dnalm predict --model {out / 'model'}" in card
    # the card's own loading code runs and gives the model's probabilities
    code = card.split("```python\n")[1].split("```")[0]
    scope: dict = {}
    exec(code, scope)
    assert scope["probabilities"].shape == (1, 2)
    assert torch.allclose(scope["probabilities"].sum(-1), torch.ones(1))


def test_pretraining_can_start_from_the_published_weights(tmp_path, published):
    tokenizer, shards = _task(tmp_path)
    official = load_hyenadna(published).state_dict()

    def pretrain(start, name):
        out = tmp_path / name
        out.mkdir()
        params = {
            "model": SPEC | {"init_from": "owner/hyenadna-test-hf"},
            "train": {
                "steps": 2,
                "batch_size": 4,
                "lr": 1e-9,
                "weight_decay": 0.0,
                "eval_every": 2,
            },
            "device": "cpu",
            "tokenizer": str(tokenizer),
            "shards": {"train": shards["train"], "val": shards["val"]},
            "outputs": {
                "dir": str(out),
                "curve": str(out / "curve.tsv"),
                "summary": str(out / "s.json"),
            },
            "published": str(published),
            "start": start,
            "threads": 1,
        }
        run_job("pretrain", params)
        return out, AutoModelForCausalLM.from_pretrained(out).state_dict()

    out, continued = pretrain("published", "continued")
    key = "hyena.backbone.layers.1.mlp.fc1.weight"
    torch.testing.assert_close(continued[key], official[key], atol=1e-6, rtol=0)
    summary = json.loads((out / "s.json").read_text())
    assert summary["start"] == "published" and summary["published"]["source"] == "local"
    card = (out / "README.md").read_text()
    assert "pretrained by dnalm" in card and "continuing from the local checkpoint" in card
    _, fresh = pretrain("scratch", "fresh")
    assert fresh[key].shape == official[key].shape
    assert not torch.allclose(fresh[key], official[key], atol=1e-3)
