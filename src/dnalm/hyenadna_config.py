"""What an official HyenaDNA checkpoint is, read from its files without torch.

`dnalm.models.load_hyenadna` loads the weights; this module reads the rest: which of the two
official layouts a directory is in, its `config.json` translated into `HyenaConfig` keyword
arguments, and whether it fits a model entry of the pipeline (architecture, named size, context,
tokenizer). It imports neither torch nor transformers, so Snakemake can check a local checkpoint
while it parses the config, and a fetch job can check a downloaded one before any training job
starts. Nothing here executes code from the checkpoint: `config.json` and the tokenizer files
are read as JSON.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dnalm.model_sizes import MODEL_SIZES
from dnalm.tokenization import HYENA_CHARACTERS, HYENA_SPECIAL_TOKENS, char_vocabulary

log = logging.getLogger(__name__)

__all__ = [
    "CONFIG_DEFAULTS",
    "CheckpointError",
    "check_entry",
    "check_entry_settings",
    "check_vocabulary",
    "checkpoint_shape",
    "detect_layout",
    "hf_config_to_kwargs",
    "original_config_to_kwargs",
    "read_checkpoint_config",
    "read_json",
    "size_of",
]


class CheckpointError(ValueError):
    """An official checkpoint directory that cannot be loaded as it stands."""


# --- config translation --------------------------------------------------------------------

# Hugging Face config keys that are HyenaConfig fields of the same name and meaning.
_HF_FIELDS = (
    "vocab_size",
    "d_model",
    "n_layer",
    "d_inner",
    "max_seq_len",
    "hyena_order",
    "filter_order",
    "short_filter_order",
    "emb_dim",
    "num_inner_mlps",
    "activation_freq",
    "train_freq",
    "use_bias",
    "embed_dropout",
    "hyena_dropout",
    "hyena_filter_dropout",
    "layer_norm_epsilon",
    "initializer_range",
    "pad_vocab_size_multiple",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
)
# Keys that describe the file, the remote code or a head, not the backbone.
_HF_METADATA = {
    "architectures",
    "auto_map",
    "model_type",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "_name_or_path",
    "use_return_dict",
    "return_dict",
    "output_hidden_states",
    "tie_word_embeddings",  # decided from the weights (see _lm_head_tied)
    "id2label",
    "label2id",
    "num_labels",
    "problem_type",
    "use_cache",
}

# Original top-level keys -> HyenaConfig fields.
_ORIGINAL_TOP = {
    "d_model": "d_model",
    "n_layer": "n_layer",
    "d_inner": "d_inner",
    "vocab_size": "vocab_size",
    "pad_vocab_size_multiple": "pad_vocab_size_multiple",
    "embed_dropout": "embed_dropout",
    "resid_dropout": "resid_dropout",
    "layer_norm_epsilon": "layer_norm_epsilon",
}
# Original top-level keys about kernels, memory or parallelism: no effect on the outputs.
_ORIGINAL_TOP_IGNORED = {
    "fused_mlp",
    "fused_dropout_add_ln",
    "residual_in_fp32",
    "checkpoint_mixer",
    "checkpoint_mlp",
    "initializer_cfg",
    "sequence_parallel",
    "process_group",
    "return_hidden_state",
    "use_head",
    "n_classes",
    "device",
    "dtype",
}
# Original `layer` keys -> HyenaConfig fields.
_ORIGINAL_LAYER = {
    "l_max": "max_seq_len",
    "order": "hyena_order",
    "filter_order": "filter_order",
    "local_order": "short_filter_order",
    "short_filter_order": "short_filter_order",
    "emb_dim": "emb_dim",
    "w": "activation_freq",
    "num_inner_mlps": "num_inner_mlps",
    "bias": "use_bias",
    "modulate": "modulate",
    "shift": "modulation_shift",
    "dropout": "hyena_dropout",
    "filter_dropout": "hyena_filter_dropout",
}
# Original `layer` keys that only steer training (learning rates, weight decay), kernels, or the
# initial decay rates (the checkpoint holds `deltas` itself).
_ORIGINAL_LAYER_IGNORED = {
    "_name_",
    "d_model",
    "lr",
    "lr_pos_emb",
    "wd",
    "modulation_lr",
    "fused_fft_conv",
    "fused_bias_fc",
    "jit_filter",
    "return_state",
    "filter_cls",
    "fast_decay_pct",
    "slow_decay_pct",
    "target",
    "use_flashfftconv",
    "layer_idx",
}
# Original `layer` options this model does not implement, with the value HyenaDNA releases use.
_ORIGINAL_LAYER_FIXED = {
    "num_heads": 1,
    "inner_factor": 1,
    "num_blocks": 1,
    "outer_mixing": False,
    "post_order_ffn": False,
    "normalized": False,
    "linear_mixer": False,
    "bidirectional": False,
    "activation": "id",
}


def read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"{path}: not valid JSON (line {err.lineno}, column {err.colno})"
        ) from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def hf_config_to_kwargs(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """`HyenaConfig` keyword arguments from a Hugging Face HyenaDNA `config.json`."""
    model_type = raw.get("model_type")
    if model_type not in (None, "hyenadna", "dnalm_hyena"):  # the HF port, HyenaConfig
        raise CheckpointError(f"{source}: model_type {model_type!r} is not a HyenaDNA model")
    kwargs = {key: raw[key] for key in _HF_FIELDS if key in raw}
    ignored = sorted(set(raw) - set(_HF_FIELDS) - _HF_METADATA)
    if ignored:
        log.warning("%s: ignoring config keys %s", source, ", ".join(ignored))
    return kwargs


def original_config_to_kwargs(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """`HyenaConfig` keyword arguments from the original repository's `config.json`."""
    layer = raw.get("layer")
    if not isinstance(layer, Mapping):
        raise CheckpointError(f"{source}: the 'layer' entry must be an object")
    if layer.get("_name_", "hyena") != "hyena":
        raise CheckpointError(
            f"{source}: layer._name_ is {layer['_name_']!r}; only 'hyena' layers are supported"
        )
    if raw.get("attn_layer_idx"):
        raise CheckpointError(
            f"{source}: attn_layer_idx={raw['attn_layer_idx']!r}: hybrid attention layers are "
            "not supported"
        )
    if raw.get("max_position_embeddings", 0):
        raise CheckpointError(
            f"{source}: max_position_embeddings={raw['max_position_embeddings']}: learned "
            "position embeddings are not part of HyenaDNA"
        )
    for key, expected in _ORIGINAL_LAYER_FIXED.items():
        if key in layer and layer[key] != expected:
            raise CheckpointError(
                f"{source}: layer.{key}={layer[key]!r} is not supported (HyenaDNA uses "
                f"{expected!r})"
            )
    kwargs = {field: raw[key] for key, field in _ORIGINAL_TOP.items() if key in raw}
    kwargs.update({field: layer[key] for key, field in _ORIGINAL_LAYER.items() if key in layer})
    known_top = set(_ORIGINAL_TOP) | _ORIGINAL_TOP_IGNORED
    known_top |= {"layer", "attn_layer_idx", "attn_cfg", "max_position_embeddings"}
    known_layer = set(_ORIGINAL_LAYER) | _ORIGINAL_LAYER_IGNORED | set(_ORIGINAL_LAYER_FIXED)
    ignored = sorted(set(raw) - known_top) + [
        f"layer.{k}" for k in sorted(set(layer) - known_layer)
    ]
    if ignored:
        log.warning("%s: ignoring config keys %s", source, ", ".join(ignored))
    return kwargs


def detect_layout(path: Path) -> tuple[str, Path]:
    """`("hf" | "original", weights file)` of a checkpoint directory."""
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a directory")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: no config.json")
    raw = read_json(path / "config.json")
    if "layer" in raw:
        weights = path / "weights.ckpt"
        if not weights.is_file():
            raise CheckpointError(
                f"{path}: config.json is in the original repository's format, but there is no "
                "weights.ckpt"
            )
        return "original", weights
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return "hf", path / name
    if (path / "model.safetensors.index.json").is_file():
        raise CheckpointError(f"{path}: sharded checkpoints are not supported")
    raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin")


# HyenaConfig's defaults for the keys the checks read (tests/test_hub.py keeps them equal).
CONFIG_DEFAULTS = {"vocab_size": 12, "d_model": 128, "n_layer": 2, "max_seq_len": 1024}
# Released checkpoints' max_seq_len is the nominal context plus HyenaDNA's two special tokens.
_CONTEXT_SLACK = 2


def read_checkpoint_config(path: str | Path) -> tuple[str, Path, dict[str, Any]]:
    """(layout, weights file, `HyenaConfig` keyword arguments) of a checkpoint directory."""
    path = Path(path)
    layout, weights = detect_layout(path)
    source = str(path / "config.json")
    raw = read_json(path / "config.json")
    if layout == "hf":
        return layout, weights, hf_config_to_kwargs(raw, source)
    return layout, weights, original_config_to_kwargs(raw, source)


def checkpoint_shape(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Width, depth, MLP width, context, vocabulary and [PAD] id of a checkpoint's config
    (`pad_token_id` None when the config does not say)."""
    shape = {key: int(kwargs.get(key, default)) for key, default in CONFIG_DEFAULTS.items()}
    shape["d_inner"] = int(kwargs.get("d_inner") or 4 * shape["d_model"])
    shape["pad_token_id"] = kwargs.get("pad_token_id")
    return shape


def size_of(shape: Mapping[str, Any]) -> str | None:
    """The named hyena size of a checkpoint: same width, depth and MLP width, and a context
    within two tokens of the size's (1,026 is tiny-1k's released context); None if none is."""
    for name, size in MODEL_SIZES["hyena"].items():
        same = all(size[k] == shape[k] for k in ("d_model", "n_layer", "d_inner"))
        if same and 0 <= shape["max_seq_len"] - size["max_seq_len"] <= _CONTEXT_SLACK:
            return name
    return None


def _describe(shape: Mapping[str, Any], name: bool = True) -> str:
    named = size_of(shape) if name else None
    return (
        f"d_model {shape['d_model']}, n_layer {shape['n_layer']}, d_inner {shape['d_inner']}, "
        f"max_seq_len {shape['max_seq_len']}" + (f" (size {named})" if named else "")
    )


def _token(value: Any) -> str | None:
    """A tokenizer_config.json token entry: a string, or an AddedToken dict with `content`."""
    if isinstance(value, Mapping):
        value = value.get("content")
    return value if isinstance(value, str) else None


def check_vocabulary(path: str | Path, kwargs: Mapping[str, Any] | None = None) -> None:
    """The checkpoint reads HyenaDNA's character ids, as dnalm's `char` tokenizer writes them.

    Compares what the checkpoint states: its vocabulary size and [PAD] id (config.json), and,
    when the files are there, the characters, special tokens and token ids of its tokenizer
    (tokenizer_config.json, tokenizer.json, vocab.json). A mismatch would give fluent nonsense
    rather than an error later, so it fails here, naming the file and the difference.
    """
    path = Path(path)
    if kwargs is None:
        kwargs = read_checkpoint_config(path)[2]
    shape = checkpoint_shape(kwargs)
    ours = char_vocabulary()
    where = f"{path}: the checkpoint's vocabulary is not dnalm's char tokenizer's"
    if shape["vocab_size"] != len(ours):
        raise CheckpointError(
            f"{where}: config.json has vocab_size {shape['vocab_size']}, the char tokenizer "
            f"{len(ours)} tokens ({', '.join(ours)}); use a checkpoint trained on HyenaDNA's "
            "character ids"
        )
    pad = ours["[PAD]"]
    if shape["pad_token_id"] is not None and int(shape["pad_token_id"]) != pad:
        raise CheckpointError(
            f"{where}: config.json has pad_token_id {shape['pad_token_id']}, the char tokenizer "
            f"pads with id {pad} ([PAD])"
        )
    config_file = path / "tokenizer_config.json"
    if config_file.is_file():
        cfg = read_json(config_file)
        characters = cfg.get("characters")
        if characters is not None and list(characters) != list(HYENA_CHARACTERS):
            raise CheckpointError(
                f"{where}: {config_file.name} has characters {characters}, the char tokenizer "
                f"{list(HYENA_CHARACTERS)} (ids {len(HYENA_SPECIAL_TOKENS)} on)"
            )
        for key, entry in (cfg.get("added_tokens_decoder") or {}).items():
            content = _token(entry)
            if content is None or not str(key).isdigit():
                continue
            if ours.get(content) != int(key):
                raise CheckpointError(
                    f"{where}: {config_file.name} gives {content!r} id {key}, the char tokenizer "
                    f"{ours.get(content, 'no id (unknown token)')}"
                )
        for key in ("pad_token", "unk_token"):
            content = _token(cfg.get(key))
            expected = "[PAD]" if key == "pad_token" else "[UNK]"
            if content is not None and content != expected:
                raise CheckpointError(
                    f"{where}: {config_file.name} has {key} {content!r}, the char tokenizer "
                    f"{expected!r}"
                )
    for name in ("tokenizer.json", "vocab.json"):
        file = path / name
        if not file.is_file():
            continue
        data = read_json(file)
        vocab = data.get("model", {}).get("vocab") if name == "tokenizer.json" else data
        if not isinstance(vocab, Mapping):
            continue
        wrong = sorted(t for t, i in vocab.items() if ours.get(t) != i)
        if wrong or len(vocab) != len(ours):
            shown = ", ".join(f"{t!r}: {vocab[t]} (ours {ours.get(t)})" for t in wrong[:5])
            raise CheckpointError(
                f"{where}: {name} has {len(vocab)} tokens, the char tokenizer {len(ours)}"
                + (f"; different ids: {shown}" if shown else "")
            )


def check_entry_settings(spec: Mapping[str, Any], tokenizer: Mapping[str, Any], where: str) -> None:
    """What a model entry with `init_from` must be whatever the checkpoint: HyenaDNA (arch
    hyena), read through HyenaDNA's character ids (a `char` tokenizer), a hyena size if named."""
    name = spec.get("name", "?")
    if spec.get("arch", "hyena") != "hyena":
        raise CheckpointError(
            f"{where}: init_from loads official HyenaDNA checkpoints, but arch is "
            f"{spec['arch']!r}; set models.{name}.arch to hyena"
        )
    if tokenizer.get("kind") != "char":
        raise CheckpointError(
            f"{where}: HyenaDNA checkpoints read one token per base (HyenaDNA's character ids), "
            f"but the model's tokenizer is {tokenizer.get('kind')!r}; give models.{name}.tokenizer "
            "a tokenizer of kind char"
        )
    if spec.get("size") is not None and spec["size"] not in MODEL_SIZES["hyena"]:
        raise CheckpointError(
            f"{where}: size {spec['size']!r} is not a hyena size "
            f"({', '.join(MODEL_SIZES['hyena'])}); leave models.{name}.size out to take the "
            "checkpoint's"
        )


def check_entry(
    path: str | Path,
    spec: Mapping[str, Any],
    tokenizer: Mapping[str, Any],
    where: str | None = None,
) -> dict[str, Any]:
    """Fail unless the checkpoint at `path` can be model entry `spec`: HyenaDNA architecture,
    a `char` tokenizer with the checkpoint's ids, the entry's `size` (if given) equal to the
    checkpoint's shape and its `max_seq_len` (if given) within the checkpoint's context. The
    checkpoint decides the model, so the message names the entry key to change. Returns the
    checkpoint's shape (`checkpoint_shape`) plus its `layout` and named `size` (or None)."""
    name = spec.get("name", "?")
    where = where or f"model {name!r} (init_from {spec.get('init_from', path)})"
    check_entry_settings(spec, tokenizer, where)
    layout, _, kwargs = read_checkpoint_config(path)
    shape = checkpoint_shape(kwargs)
    named = size_of(shape)
    size = spec.get("size")
    if size is not None and size != named:
        wanted = MODEL_SIZES["hyena"].get(size)
        fix = f"set models.{name}.size to {named}" if named else f"remove models.{name}.size"
        raise CheckpointError(
            f"{where}: size {size!r}"
            + (f" ({_describe(wanted, name=False)})" if wanted else " is not a hyena size")
            + f" contradicts the checkpoint ({_describe(shape)}); the checkpoint decides the "
            f"model: {fix}"
        )
    length = spec.get("max_seq_len")
    if length is not None and int(length) > shape["max_seq_len"]:
        raise CheckpointError(
            f"{where}: max_seq_len {length} is longer than the checkpoint's context "
            f"({shape['max_seq_len']}); set models.{name}.max_seq_len to at most "
            f"{shape['max_seq_len']} (and windows no longer)"
        )
    check_vocabulary(path, kwargs)
    return shape | {"layout": layout, "size": named}
