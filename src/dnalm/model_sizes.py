"""Named model sizes for each architecture: size name -> config keyword arguments.

Kept outside `dnalm.models` (and free of torch) so that the Snakefile can check sizes at parse
time without importing torch and transformers (~4.5 s per `snakemake` call).

Hyena sizes are HyenaDNA's published checkpoints (Nguyen et al. 2023, table of pretrained
models); `max_seq_len` is the context length of that checkpoint and is only a reference value
(`dnalm.models.model_config` always sets it from its own argument). GPT sizes copy the width,
depth and MLP width (heads of dimension 32, at least 2).

Trainable parameters, measured for the causal LM (vocab 12, tied embeddings; HyenaDNA pads
its embedding to 16 rows):

    size          hyena      paper    gpt
    micro           128,512      -      132,160
    tiny-1k         436,096   0.44M     526,464
    small-32k     3,277,568    3.3M   4,199,680
    medium-160k   6,550,528    6.6M   8,396,032
    medium-450k   6,550,528    6.6M   8,396,032
    large-1m      6,550,528    6.6M   8,396,032

The Hyena counts reproduce the paper's. They include one shared sine-frequency vector per
filter (as HyenaDNA) and exclude the fixed buffers (positional features, decay rates). The GPT
baseline is ~20-28% larger at equal shapes, because its SwiGLU MLP has three matrices, not two.

medium-450k is the shape of the paper's table (width 256, 8 layers, 450k context); the published
checkpoints' own `config.json` could not be read where this was written. The released
checkpoints' `max_seq_len` is the nominal context plus 2 (1,026 for tiny-1k), which
`dnalm.hyenadna_config.size_of` allows for when it names a checkpoint's size.
"""

from __future__ import annotations

from typing import Any

SIZE_NAMES = ("micro", "tiny-1k", "small-32k", "medium-160k", "medium-450k", "large-1m")

_SHAPES: dict[str, dict[str, int]] = {
    # name: width, depth, MLP width, reference context length
    "micro": {"d_model": 64, "n_layer": 2, "d_inner": 256, "max_seq_len": 1024},
    "tiny-1k": {"d_model": 128, "n_layer": 2, "d_inner": 512, "max_seq_len": 1024},
    "small-32k": {"d_model": 256, "n_layer": 4, "d_inner": 1024, "max_seq_len": 32768},
    "medium-160k": {"d_model": 256, "n_layer": 8, "d_inner": 1024, "max_seq_len": 160000},
    "medium-450k": {"d_model": 256, "n_layer": 8, "d_inner": 1024, "max_seq_len": 450000},
    "large-1m": {"d_model": 256, "n_layer": 8, "d_inner": 1024, "max_seq_len": 1_000_000},
}


def _gpt(shape: dict[str, int]) -> dict[str, Any]:
    return {
        "hidden_size": shape["d_model"],
        "num_hidden_layers": shape["n_layer"],
        "intermediate_size": shape["d_inner"],
        "num_attention_heads": max(2, shape["d_model"] // 32),
        "max_position_embeddings": shape["max_seq_len"],
    }


MODEL_SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "hyena": {name: dict(shape) for name, shape in _SHAPES.items()},
    "gpt": {name: _gpt(shape) for name, shape in _SHAPES.items()},
}

# Parameter counts of the causal LMs above (vocab_size=12), checked by tests/test_models.py.
PARAMETER_COUNTS: dict[str, dict[str, int]] = {
    "hyena": {
        "micro": 128_512,
        "tiny-1k": 436_096,
        "small-32k": 3_277_568,
        "medium-160k": 6_550_528,
        "medium-450k": 6_550_528,
        "large-1m": 6_550_528,
    },
    "gpt": {
        "micro": 132_160,
        "tiny-1k": 526_464,
        "small-32k": 4_199_680,
        "medium-160k": 8_396_032,
        "medium-450k": 8_396_032,
        "large-1m": 8_396_032,
    },
}

# HyenaDNA paper's reported sizes (millions of parameters).
PAPER_PARAMETERS_M: dict[str, float] = {
    "tiny-1k": 0.44,
    "small-32k": 3.3,
    "medium-160k": 6.6,
    "medium-450k": 6.6,
    "large-1m": 6.6,
}
