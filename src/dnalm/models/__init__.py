"""Model architectures of the study, registered with the `transformers` Auto classes on import.

After `import dnalm.models`, `AutoConfig`, `AutoModel`, `AutoModelForCausalLM` and
`AutoModelForSequenceClassification` resolve the `dnalm_hyena` and `dnalm_gpt` model types
(from configs and from `save_pretrained` directories) without `trust_remote_code`.
`load_hyenadna` reads the official HyenaDNA checkpoints (Hugging Face or original layout).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PreTrainedConfig,
)

from dnalm.model_sizes import MODEL_SIZES, PARAMETER_COUNTS, SIZE_NAMES

from .hyenadna_checkpoints import CheckpointError, hyenadna_config, load_hyenadna
from .modeling_gpt import (
    DnaGPTConfig,
    DnaGPTForCausalLM,
    DnaGPTForSequenceClassification,
    DnaGPTModel,
)
from .modeling_hyena import (
    HyenaConfig,
    HyenaForCausalLM,
    HyenaForSequenceClassification,
    HyenaModel,
    compile_blocks,
)

ARCHITECTURES = ("hyena", "gpt")

_CONFIGS: dict[str, type[PreTrainedConfig]] = {"hyena": HyenaConfig, "gpt": DnaGPTConfig}

for _config, _base, _lm, _clf in (
    (HyenaConfig, HyenaModel, HyenaForCausalLM, HyenaForSequenceClassification),
    (DnaGPTConfig, DnaGPTModel, DnaGPTForCausalLM, DnaGPTForSequenceClassification),
):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _base, exist_ok=True)
    AutoModelForCausalLM.register(_config, _lm, exist_ok=True)
    AutoModelForSequenceClassification.register(_config, _clf, exist_ok=True)


def model_config(
    arch: str,
    size: str,
    *,
    vocab_size: int,
    pad_token_id: int,
    max_seq_len: int,
    num_labels: int = 2,
    **overrides: Any,
) -> PreTrainedConfig:
    """Config of the named `size` of `arch`, for `AutoModelFor*.from_config`.

    `max_seq_len` is the longest input the model must accept (for GPT it becomes
    `max_position_embeddings`); `overrides` are passed to the config class last.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    sizes = MODEL_SIZES[arch]
    if size not in sizes:
        raise ValueError(f"unknown {arch} size {size!r}; choose one of {', '.join(sizes)}")
    length_key = "max_seq_len" if arch == "hyena" else "max_position_embeddings"
    kwargs: dict[str, Any] = {
        **sizes[size],
        "vocab_size": vocab_size,
        "pad_token_id": pad_token_id,
        length_key: max_seq_len,
        "num_labels": num_labels,
        **overrides,
    }
    return _CONFIGS[arch](**kwargs)


def entry_overrides(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A model entry's `config` overrides (e.g. dropout), checked against its architecture: an
    override the config does not have would be kept silently by transformers and read by
    nothing, so it is an error."""
    extra = dict(spec.get("config") or {})
    unknown = sorted(set(extra) - set(_CONFIGS[spec["arch"]]().to_dict()))
    if unknown:
        raise ValueError(
            f"model {spec.get('name', spec['arch'])!r}: config key(s) {', '.join(unknown)} are "
            f"not settings of the {spec['arch']} architecture"
        )
    return extra


def config_for(
    spec: Mapping[str, Any], tokenizer, published: str | Path | None = None, **overrides: Any
) -> PreTrainedConfig:
    """Config of a pipeline model entry (arch, size, max_seq_len, optional `config` overrides
    such as dropout) for `tokenizer`; with `published` (the entry's fetched `init_from`
    checkpoint), that checkpoint's own architecture instead of a named size.

    Pretraining and scratch training both build their network here, so every init of a model is
    always the same architecture.
    """
    extra = entry_overrides(spec) | overrides
    if published is not None:
        return hyenadna_config(published, **extra)
    return model_config(
        spec["arch"],
        spec["size"],
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        max_seq_len=spec["max_seq_len"],
        **extra,
    )


def compile_model(model: torch.nn.Module, **compile_kwargs: Any) -> torch.nn.Module:
    """`torch.compile` each block in place (Hyena blocks, GPT decoder layers); returns `model`.

    Per block: small graphs that identical blocks share, and the state dict keeps its names (no
    `_orig_mod.` prefix), so checkpoints stay loadable without compiling. Worth it on GPUs; on
    the 2-core CPU it compiled for ~75 s and ran no faster (see `compile_blocks`).
    """
    if getattr(model.config, "model_type", "") == "dnalm_hyena":
        return compile_blocks(model, **compile_kwargs)
    for layer in model.model.layers:
        layer.compile(**compile_kwargs)
    return model


def init_head(model: torch.nn.Module, seed: int) -> None:
    """Draw the classification head (`score`) from a generator seeded by `seed`.

    Called after the model is built, whatever it was built from, so every init of one seed
    starts from the same head: `from_pretrained` and `from_config` consume the global random
    stream differently (the former builds on the meta device and initialises only the head).
    Weights N(0, initializer_range), bias 0, as both architectures initialise linear layers.
    """
    generator = torch.Generator().manual_seed(int(seed))
    head = model.score
    std = model.config.initializer_range
    with torch.no_grad():
        weight = torch.randn(head.weight.shape, generator=generator, dtype=torch.float32)
        head.weight.copy_(weight * std)
        if head.bias is not None:
            head.bias.zero_()


def freeze_backbone(model: torch.nn.Module) -> int:
    """Train the classification head alone (a linear probe): every parameter but `score.*`
    stops requiring gradients, so the optimiser (which takes only those that do) never sees
    them. Returns the number of parameters left to train."""
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("score."))
    return count_parameters(model)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters (shared and tied tensors counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def no_decay(name: str, param: torch.nn.Parameter) -> bool:
    """Norms, biases (every parameter under 2-d) and Hyena's implicit filters skip weight decay.

    The filter MLP, its positional encoding and modulation (`filter_fn`) define long
    convolution kernels; HyenaDNA trains them without weight decay, like norms and biases.
    """
    return param.dim() < 2 or "filter_fn" in name


def make_optimizer(model: torch.nn.Module, cfg: Any) -> torch.optim.AdamW:
    """AdamW with `cfg.lr` and `cfg.weight_decay` on weight matrices only (see `no_decay`)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), fused=False)


__all__ = [
    "ARCHITECTURES",
    "CheckpointError",
    "MODEL_SIZES",
    "PARAMETER_COUNTS",
    "SIZE_NAMES",
    "DnaGPTConfig",
    "DnaGPTForCausalLM",
    "DnaGPTForSequenceClassification",
    "DnaGPTModel",
    "HyenaConfig",
    "HyenaForCausalLM",
    "HyenaForSequenceClassification",
    "HyenaModel",
    "compile_blocks",
    "compile_model",
    "config_for",
    "count_parameters",
    "entry_overrides",
    "freeze_backbone",
    "hyenadna_config",
    "init_head",
    "load_hyenadna",
    "make_optimizer",
    "model_config",
    "no_decay",
]
