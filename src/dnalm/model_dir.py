"""A saved model directory: what it records beside the weights, and loading it with checks.

`save_pretrained` keeps the weights, config and tokenizer; prediction also needs the window
length and labels the model was trained on, and a way to tell that the tokenizer beside it is the
one it was trained with (a swapped tokenizer gives fluent nonsense, not an error). Training writes
`dnalm_training.json` with these; `load_classifier` checks them before anything is predicted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from dnalm.files import write_json
from dnalm.tokenization import SPEC_KEY, tokenizer_spec

TRAINING_INFO = "dnalm_training.json"

__all__ = [
    "TRAINING_INFO",
    "load_classifier",
    "model_max_tokens",
    "training_info",
    "training_window",
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
    where = f"{model_dir}: model and tokenizer do not belong together"
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(
            f"{where}: the tokenizer has {len(tokenizer)} tokens but the model embeds only "
            f"{model.config.vocab_size}"
        )
    model_pad = getattr(model.config, "pad_token_id", None)
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
    return model, tokenizer
