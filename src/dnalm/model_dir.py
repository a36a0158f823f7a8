"""A saved model directory: what it records beside the weights, and loading it with checks.

`save_pretrained` keeps the weights, config and tokenizer; prediction also needs the window
length and labels the model was trained on, and a way to tell that the tokenizer beside it is the
one it was trained with (a swapped tokenizer gives fluent nonsense, not an error). Training writes
`dnalm_training.json` with these; `load_classifier` checks them before anything is predicted.
Every saved model directory also gets a model card (`README.md`, `write_model_card`), so a
directory copied away or pushed to the Hub still says what it is and how to load it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dnalm.files import write_json, write_text
from dnalm.tokenization import SPEC_KEY, tokenizer_spec

TRAINING_INFO = "dnalm_training.json"
MODEL_CARD = "README.md"

__all__ = [
    "MODEL_CARD",
    "TRAINING_INFO",
    "check_tokenizer",
    "load_classifier",
    "model_max_tokens",
    "training_info",
    "training_window",
    "write_model_card",
    "write_training_info",
]


def _vocab_digest(tokenizer) -> str:
    """A short fingerprint of the token -> id map: equal sizes do not make equal vocabularies."""
    items = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def write_training_info(
    model_dir: str | Path, *, window_length: int, labels: list[str], tokenizer=None
) -> None:
    """Record beside a fine-tuned model what prediction needs: the training window, the labels
    and the tokenizer it was trained with (kind, size, vocabulary fingerprint), so that a
    tokenizer swapped in later is caught. Without `tokenizer`, the one saved in `model_dir`."""
    model_dir = Path(model_dir)
    info: dict = {"window_length": int(window_length), "labels": list(labels)}
    if tokenizer is None and (model_dir / "tokenizer.json").exists():
        from dnalm.tokenization import load_tokenizer

        tokenizer = load_tokenizer(model_dir)
    if tokenizer is not None:
        info["tokenizer"] = {
            "spec": tokenizer_spec(tokenizer),
            "size": len(tokenizer),
            "vocab_sha256_16": _vocab_digest(tokenizer),
        }
    write_json(model_dir / TRAINING_INFO, info, indent=None)


def training_info(model_dir: str | Path) -> dict:
    """What the model directory records about its training ({} for older models)."""
    path = Path(model_dir) / TRAINING_INFO
    return json.loads(path.read_text()) if path.exists() else {}


def training_window(model_dir: str | Path) -> int | None:
    """The window length a model was fine-tuned on, if its directory records it."""
    return training_info(model_dir).get("window_length")


def model_max_tokens(model) -> int | None:
    """The longest input (in tokens) the model accepts."""
    cfg = model.config
    return getattr(cfg, "max_seq_len", None) or getattr(cfg, "max_position_embeddings", None)


def check_tokenizer(model_dir: str | Path, config, tokenizer) -> None:
    """Fail unless `tokenizer` belongs to the model of `config` saved in `model_dir`: no more
    tokens than it embeds, the same [PAD] id, and (when the directory records them) the kind and
    vocabulary it was trained with."""
    where = f"{model_dir}: model and tokenizer do not belong together"
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"{where}: the tokenizer has {len(tokenizer)} tokens but the model embeds only "
            f"{config.vocab_size}"
        )
    model_pad = getattr(config, "pad_token_id", None)
    if model_pad is not None and model_pad != tokenizer.pad_token_id:
        raise ValueError(
            f"{where}: the tokenizer's [PAD] id is {tokenizer.pad_token_id} but the model was "
            f"built with pad_token_id {model_pad}"
        )
    trained = training_info(model_dir).get("tokenizer")
    if trained:
        spec = tokenizer_spec(tokenizer)
        if spec != trained["spec"]:
            raise ValueError(
                f"{where}: the model was trained with tokenizer {trained['spec']} but "
                f"tokenizer_config.json ({SPEC_KEY}) says {spec}"
            )
        if len(tokenizer) != trained["size"] or _vocab_digest(tokenizer) != trained.get(
            "vocab_sha256_16", _vocab_digest(tokenizer)
        ):
            raise ValueError(
                f"{where}: the model was trained with a {trained['size']}-token vocabulary "
                f"(fingerprint {trained.get('vocab_sha256_16')}) but tokenizer.json has "
                f"{len(tokenizer)} tokens (fingerprint {_vocab_digest(tokenizer)})"
            )


def load_classifier(model_dir: str | Path, device: torch.device):
    """Load a fine-tuned model and its tokenizer, checking that they belong together.

    A mismatched tokenizer gives fluent-looking nonsense rather than an error, so the size, the
    pad id and (when the model directory records them) the kind and vocabulary it was trained
    with are all compared before anything is predicted.
    """
    from transformers import AutoModelForSequenceClassification

    import dnalm.models  # noqa: F401  (registers the architectures with the Auto classes)
    from dnalm.tokenization import load_tokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{model_dir} is not a model directory (no config.json)")
    if not (model_dir / "tokenizer.json").exists():
        raise FileNotFoundError(
            f"{model_dir} has no tokenizer.json: save the tokenizer the model was trained with beside it"
        )
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).to(device).eval()
    tokenizer = load_tokenizer(model_dir)
    check_tokenizer(model_dir, model.config, tokenizer)
    return model, tokenizer


# --------------------------------------------------------------------------- model cards

_INITS = {
    "published": "the published checkpoint's weights, fine-tuned",
    "pretrained": "dnalm's own pretraining on the study's corpus, fine-tuned",
    "scratch": "random weights (no pretraining): the baseline the other inits are compared with",
}


def _cell(value: Any) -> str:
    """A metric or setting as a table cell; an interval (a pair, or a mapping of bounds) kept."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_cell(v)}" for k, v in value.items())
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) for v in value)
    ):
        return f"[{_cell(float(value[0]))}, {_cell(float(value[1]))}]"
    return str(value).replace("|", "\\|")


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]


def _source_line(source: Mapping[str, Any] | None) -> str:
    if not source:
        return ""
    if source.get("source") == "hub":
        return (
            f"`{source['repo_id']}` from the Hugging Face Hub, commit `{source['commit']}`"
            f" (revision {source.get('revision', 'main')})"
        )
    return f"the local checkpoint `{source.get('path')}`"


def _front_matter(run: Mapping[str, Any], pipeline_tag: str) -> list[str]:
    tags = ["dna", "genomics", "dnalm", str(run.get("arch", ""))]
    lines = ["---", "library_name: transformers", f"pipeline_tag: {pipeline_tag}", "tags:"]
    lines += [f"  - {t}" for t in tags if t]
    source = run.get("published") or {}
    from_weights = run.get("init") == "published" or run.get("start") == "published"
    if source.get("source") == "hub" and from_weights:  # not when only its shape is used
        lines.append(f"base_model: {source['repo_id']}")
    return [*lines, "---", ""]


def write_model_card(
    model_dir: str | Path,
    run: Mapping[str, Any],
    *,
    labels: list[str] | None = None,
    data: Mapping[str, Any] | None = None,
) -> Path:
    """Write `README.md` into a saved model directory: what the model is, the data and splits it
    was trained and scored on, its metrics, its training settings and how to load it.

    `run` is what the job writes beside the model: `metrics.json` of a fine-tuning run (it has
    `test`) or `summary.json` of pretraining. The card holds this run's own numbers; intervals
    over seeds and the comparison of inits are the aggregate's (results/summary/), and the card
    says so. `data` is the task's config entry, shown as the data source.
    """
    model_dir = Path(model_dir)
    classifier = "test" in run
    name, arch, size = run.get("model", "?"), run.get("arch", "?"), run.get("size", "?")
    params = run.get("params")
    shape = f"{arch} {size}" + (f", {params:,} parameters" if isinstance(params, int) else "")
    source = _source_line(run.get("published"))
    lines = _front_matter(run, "text-classification" if classifier else "text-generation")
    if classifier:
        task, init, seed = run.get("task", "?"), run.get("init", "?"), run.get("seed", "?")
        lines += [f"# {name}: {task} ({init} init, seed {seed})", ""]
        lines += [
            f"A DNA language model ({shape}) fine-tuned by dnalm to classify sequences of the "
            f"task `{task}` as {', '.join(f'`{x}`' for x in labels or [])}"
            + (" (the second is the positive class)." if labels and len(labels) == 2 else "."),
            "",
            f"Initialisation: **{init}**, {_INITS.get(init, init)}"
            + (f"; the checkpoint is {source}." if source and init != "scratch" else ".")
            + (f" The architecture is that of {source}." if source and init == "scratch" else ""),
            "",
            "## Data",
            "",
        ]
        if data:
            described = data.get("source") or {"genomes": data.get("genomes", "all")}
            lines += [f"Task config: `{json.dumps(dict(described), sort_keys=True)}`.", ""]
        windows = run.get("windows") or {}
        lines += _table(("split", "sequences"), [(k, v) for k, v in windows.items()])
        lines += [
            "",
            f"Sequences of up to {run.get('window_length', '?')} bases (the training window). "
            "The split is dnalm's: whole groups (genomes, species, experiments) or the source's "
            "own test split stay on one side, so no group is in two splits; validation selects "
            "the weights and the test split is scored once.",
            "",
            "## Metrics",
            "",
            f"Test split, scored once with the weights selected on validation "
            f"({run.get('selected_on', '?')}, step {run.get('best_step', '?')} of "
            f"{(run.get('train') or {}).get('steps', '?')}):",
            "",
        ]
        val = run.get("val") or {}
        rows = [(m, v, val.get(m, "")) for m, v in run["test"].items()]
        lines += _table(("metric", "test", "validation (selected step)"), rows)
        lines += [
            "",
            "These are this run's own numbers. Intervals over seeds, and the paired difference "
            "from the other inits of the same model and seed, are in "
            "`results/summary/pretrain_effect.tsv` (and every run in `results/summary/"
            "metrics.tsv`), written by the pipeline's `aggregate` rule.",
        ]
    else:
        lines += [f"# {name}: pretrained by dnalm", ""]
        lines += [
            f"A DNA language model ({shape}) trained by dnalm on next-token prediction over the "
            "study's pretraining corpus"
            + (f", continuing from {source}." if source else ", from random weights."),
            "",
            "## Data",
            "",
            f"{run.get('train_windows', '?')} training and {run.get('val_windows', '?')} "
            "validation windows; genomes that a task tests on are left out of the corpus "
            "(results/windows/pretrain/corpus.tsv lists each genome's role).",
            "",
            "## Metrics",
            "",
        ]
        rows = [
            (k, run[k])
            for k in ("val_loss", "val_bits_per_base", "steps", "tokens", "tokens_per_second")
            if k in run
        ]
        lines += _table(("metric", "value"), rows)
        lines += [
            "",
            "Validation loss is in nats per token; bits per base divide it by ln 2 and by the "
            "bases per token.",
        ]
    train = run.get("train") or {}
    lines += ["", "## Training", ""]
    lines += _table(("setting", "value"), sorted(train.items()))
    extra = [(k, run[k]) for k in ("freeze_backbone", "device", "threads", "processes") if k in run]
    if extra:
        lines += ["", *_table(("run", "value"), extra)]
    auto = "AutoModelForSequenceClassification" if classifier else "AutoModelForCausalLM"
    lines += [
        "",
        "## Use",
        "",
        "With `transformers` (the architectures are dnalm's, registered on import; no remote "
        "code is run):",
        "",
        "```python",
        "import dnalm.models  # registers dnalm_hyena and dnalm_gpt with the Auto classes",
        f"from transformers import AutoTokenizer, {auto}",
        "",
        f'model = {auto}.from_pretrained("{model_dir}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{model_dir}")',
        'batch = tokenizer(["ACGTTGCA"], return_tensors="pt", add_special_tokens=False)',
    ]
    if classifier:
        lines += ["probabilities = model(**batch).logits.softmax(-1)", "```", ""]
        lines += [
            "With dnalm (windows of the training length, per-record and per-window scores):",
            "",
            "```bash",
            f"dnalm predict --model {model_dir} --fasta sequences.fa --out records.tsv",
            f"dnalm embed --model {model_dir} --fasta sequences.fa --out embeddings.parquet",
            "```",
        ]
    else:
        lines += ["logits = model(**batch).logits", "```", ""]
        lines += [
            "With dnalm: fine-tune it (init `pretrained`) through the pipeline, or embed "
            "sequences:",
            "",
            "```bash",
            f"dnalm embed --model {model_dir} --fasta sequences.fa --out embeddings.parquet",
            "```",
        ]
    path = model_dir / MODEL_CARD
    write_text(path, "\n".join(lines) + "\n")
    return path
