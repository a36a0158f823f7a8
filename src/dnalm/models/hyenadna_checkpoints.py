"""Load the official HyenaDNA checkpoints from a local directory, without running their code.

Two layouts are read (the directory is found by its files, not by its name):

* **Hugging Face** (`LongSafari/hyenadna-*-seqlen-hf`): `config.json` with `model_type`
  `"hyenadna"` and flat keys that match `HyenaConfig` field for field (`d_model`, `n_layer`,
  `d_inner`, `max_seq_len`, `emb_dim`, `filter_order`, `short_filter_order`, `activation_freq`,
  ...), plus `model.safetensors` or `pytorch_model.bin`. Its `auto_map` points at remote code; it
  is ignored and nothing from the directory is ever imported.
* **Original repository** (`LongSafari/hyenadna-*-seqlen`, read by HazyResearch/hyena-dna's
  `huggingface.py` into `standalone_hyenadna.py`): `config.json` with the training repository's
  keys (`d_model`, `n_layer`, `d_inner`, `vocab_size`, `pad_vocab_size_multiple`, and a `layer`
  dict with `l_max`, `emb_dim`, `filter_order`, `local_order`, `w`, ...) and `weights.ckpt`, a
  PyTorch Lightning checkpoint whose `state_dict` holds the model under the prefix `model.`.

Parameter names (`{i}` a layer, `M` = `hyena.backbone.layers.{i}.mixer`, `F` = `M.filter_fn`):

| this package (`HyenaForCausalLM`)      | Hugging Face checkpoint            | original `weights.ckpt` `state_dict`            |
|----------------------------------------|------------------------------------|-------------------------------------------------|
| `hyena.backbone.embeddings.word_embeddings.weight` | same (`backbone.` if saved from the bare model) | `model.backbone.embeddings.word_embeddings.weight` |
| `M.in_proj.*`, `M.out_proj.*`, `M.short_filter.*` | same                    | `model.backbone.layers.{i}.mixer.*` (`mixer.layer.*` if trained with `checkpoint_mixer`) |
| `F.bias`, `F.implicit_filter.{0,2,4}.*`, `F.implicit_filter.6.weight` | same | `model.backbone.layers.{i}.mixer.filter_fn.*` |
| `F.implicit_filter.1.freq` (one tensor shared by every sine) | `.1/.3/.5.freq` (safetensors may keep only some) | `.1/.3/.5.freq` |
| `F.pos_emb.z`, `F.modulation.deltas`   | same                               | same, under `model.backbone...`                 |
| (recomputed) `F.pos_emb.t`             | `F.pos_emb.t`: checked, not loaded | same                                            |
| `hyena.backbone.layers.{i}.norm1/norm2.*`, `.mlp.fc1/fc2.*` | same            | `model.backbone.layers.{i}.*` (`mlp.layer.*` with `checkpoint_mlp`) |
| `hyena.backbone.ln_f.*`                | same                               | `model.backbone.ln_f.*`                         |
| `lm_head.weight` (tied unless it differs) | `lm_head.weight`                | `model.lm_head.weight`                          |
| `score.*` (sequence classification, new) | `score.weight`: not loaded (last-token pooling, no bias) | -                      |

Every backbone key must be present with the right shape and no other key may appear: a mismatch
raises `CheckpointError` listing the missing, unexpected and mis-shaped keys. The outputs equal the
reference implementations' (tests/test_checkpoints.py checks them against the paper's equations).

Loading never executes code from the checkpoint: `config.json` is read as JSON, `.safetensors`
holds only tensors, `.bin` goes through `torch.load(weights_only=True)`. A Lightning `.ckpt` is
first tried the same way; the released ones also pickle OmegaConf configs and training state,
which `weights_only` refuses, so they are then read by an unpickler that rebuilds tensors only and
replaces every other object the file names with an inert placeholder (nothing is imported or
called).
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from dnalm.hyenadna_config import (
    CheckpointError,
    detect_layout,
    hf_config_to_kwargs,
    original_config_to_kwargs,
    read_checkpoint_config,
)

from .modeling_hyena import (
    HyenaConfig,
    HyenaForCausalLM,
    HyenaForSequenceClassification,
    HyenaPositionalEmbedding,
)

log = logging.getLogger(__name__)

TASKS = ("causal_lm", "sequence_classification")


# --- reading weight files ------------------------------------------------------------------


def _check_tensors(state: Any, source: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{source}: expected a mapping of names to tensors, got {state!r:.80}"
        )
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor; refusing "
                "to load a weights file that holds other objects"
            )
    return dict(state)


def _torch_load_weights_only(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise
    except Exception as err:  # truncated zip, not a torch file, ...
        raise CheckpointError(f"{path}: cannot be read as a PyTorch file: {err}") from err


def read_bin(path: Path) -> dict[str, torch.Tensor]:
    """A `pytorch_model.bin` state dict, tensors only (`torch.load(weights_only=True)`)."""
    try:
        state = _torch_load_weights_only(path)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else repr(err)
        raise CheckpointError(
            f"{path}: refused: the file holds objects other than tensors ({first})"
        ) from err
    return _check_tensors(state, str(path))


class _Inert:
    """Stands in for any object a checkpoint names that is not a tensor: it calls nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        return object.__new__(_Inert)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def add(self, item: Any) -> None:
        pass


class _StorageType:
    """What a pickled `torch.<Name>Storage` global resolves to: just its dtype."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
}


def _rebuild_tensor(storage: Any, offset: int, size: Any, stride: Any, *_: Any) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor):
        raise CheckpointError("a tensor in the checkpoint does not point at stored data")
    return torch.as_strided(storage, tuple(size), tuple(stride), int(offset))


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    # `func` came from find_class, so it is one of the rebuild functions above or `_Inert`.
    return func(*args)


class _TensorOnlyUnpickler(pickle.Unpickler):
    """Unpickles a `torch.save` zip archive, rebuilding tensors and nothing else."""

    _ALLOWED = {
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set,
        ("__builtin__", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("__builtin__", "frozenset"): frozenset,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    }

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, source: str):
        super().__init__(file)
        self.archive, self.prefix, self.source = archive, prefix, source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        return _Inert

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise CheckpointError(f"{self.source}: unsupported persistent id {pid!r:.80}")
        storage_type, key = pid[1], pid[2]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"{self.source}: storage {key!r} has an unsupported type")
        try:
            raw = self.archive.read(f"{self.prefix}data/{key}")
        except KeyError as err:
            raise CheckpointError(f"{self.source}: storage {key!r} is missing") from err
        itemsize = torch.empty((), dtype=storage_type.dtype).element_size()
        if len(raw) % itemsize:
            raise CheckpointError(f"{self.source}: storage {key!r} has a truncated last element")
        if not raw:
            return torch.empty(0, dtype=storage_type.dtype)
        return torch.frombuffer(bytearray(raw), dtype=storage_type.dtype)


def read_tensors_inertly(path: Path) -> Any:
    """Unpickle a `torch.save` zip file, keeping tensors and making every other object inert."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise CheckpointError(
            f"{path}: not a zip-format PyTorch checkpoint (the legacy format is not supported)"
        ) from err
    with archive:
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: expected one data.pkl in the archive, found {pickles}")
        prefix = pickles[0][: -len("data.pkl")]
        order = f"{prefix}byteorder"
        if order in archive.namelist() and archive.read(order).strip() != b"little":
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
        with archive.open(pickles[0]) as handle:
            try:
                return _TensorOnlyUnpickler(handle, archive, prefix, str(path)).load()
            except CheckpointError:
                raise
            except Exception as err:
                raise CheckpointError(f"{path}: cannot be unpickled: {err}") from err


def read_lightning_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The `state_dict` of a Lightning checkpoint, read without executing code from it."""
    try:
        checkpoint = _torch_load_weights_only(path)
    except pickle.UnpicklingError:
        checkpoint = read_tensors_inertly(path)
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict' entry)")
    return _check_tensors(checkpoint["state_dict"], f"{path} ['state_dict']")


# --- key mapping -----------------------------------------------------------------------------

_CHECKPOINTED = re.compile(r"\.(mixer|mlp)\.layer\.")


def hf_key(key: str) -> str:
    """A Hugging Face checkpoint key as this package names it (without the head's prefix)."""
    return key[len("hyena.") :] if key.startswith("hyena.") else key


def original_key(key: str, source: str) -> str:
    """An original Lightning `state_dict` key as this package names it."""
    if not key.startswith("model."):
        raise CheckpointError(
            f"{source}: unexpected key {key!r} (the model's keys start with 'model.')"
        )
    return _CHECKPOINTED.sub(r".\1.", key[len("model.") :])


def _sine_groups(model: torch.nn.Module) -> list[list[str]]:
    """For each filter's shared sine frequency, the (backbone-relative) names it appears under."""
    groups = []
    for name, module in model.hyena.backbone.named_modules():
        if name.endswith("implicit_filter"):
            names = [
                f"backbone.{name}.{i}.freq"
                for i, m in enumerate(module)
                if isinstance(getattr(m, "freq", None), torch.nn.Parameter)
            ]
            if names:
                groups.append(names)
    return groups


def _format_keys(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _assign(
    model: torch.nn.Module, state: dict[str, torch.Tensor], head_keys: dict[str, str], source: str
) -> None:
    """Copy `state` (backbone-relative keys) into `model`, strictly."""
    ours = {
        k[len("hyena.") :]: v
        for k, v in model.state_dict().items()
        if k.startswith("hyena.backbone.")
    }
    state = dict(state)
    # Shared sine frequencies: any saved copy will do, but the copies must agree.
    for names in _sine_groups(model):
        present = [n for n in names if n in state]
        if present:
            first = state[present[0]]
            for other in present[1:]:
                if not torch.equal(state[other], first):
                    raise CheckpointError(
                        f"{source}: {present[0]} and {other} differ, but HyenaDNA shares one "
                        "sine frequency per filter"
                    )
            for n in names:
                state[n] = first
    # The positional time is recomputed; a saved copy must be what HyenaDNA computes.
    for key in [k for k in state if k.endswith("pos_emb.t")]:
        saved = state.pop(key)
        length = saved.shape[1] if saved.dim() == 3 else -1
        expected = HyenaPositionalEmbedding.features(max(length, 1), 3)[1]
        if saved.shape != expected.shape or not torch.allclose(saved.float(), expected, atol=1e-6):
            raise CheckpointError(f"{source}: {key} is not linspace(0, 1, L)")
    missing = sorted(set(ours) - set(state))
    unexpected = sorted(set(state) - set(ours) - set(head_keys))
    model_state = model.state_dict()
    shapes = {k: v.shape for k, v in ours.items()}
    shapes.update({k: model_state[v].shape for k, v in head_keys.items()})
    mismatched = [
        f"{k} {tuple(state[k].shape)} (model: {tuple(shapes[k])})"
        for k in sorted(set(shapes) & set(state))
        if state[k].shape != shapes[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_format_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_format_keys(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_format_keys(mismatched)}")
    if problems:
        raise CheckpointError(
            f"{source}: the weights do not match the config ({'; '.join(problems)})"
        )
    full = {f"hyena.{k}": state[k] for k in ours}
    for checkpoint_key, model_key in head_keys.items():
        full[model_key] = state[checkpoint_key]
    result = model.load_state_dict(full, strict=False)
    left = [k for k in result.missing_keys if not k.startswith(("lm_head.", "score."))]
    if left or result.unexpected_keys:  # cannot happen after the checks above
        raise CheckpointError(f"{source}: not loaded: {left + result.unexpected_keys}")


def _lm_head_tied(state: Mapping[str, torch.Tensor]) -> bool:
    """HyenaDNA ties its LM head to the embeddings; keep it tied unless the weights differ."""
    head = state.get("lm_head.weight")
    embed = state.get("backbone.embeddings.word_embeddings.weight")
    if head is None or embed is None:
        return True
    return head.shape == embed.shape and torch.equal(head, embed)


# --- entry point ---------------------------------------------------------------------------


def hyenadna_config(path: str | Path, **config_overrides: Any) -> HyenaConfig:
    """The architecture of an official checkpoint as a `HyenaConfig`, without its weights.

    A model trained from scratch to compare with the checkpoint's fine-tuning is built from
    this, so both inits are the same network; `config_overrides` (e.g. dropout, num_labels) go
    to the config last.
    """
    _, _, kwargs = read_checkpoint_config(path)
    try:
        return HyenaConfig(**(kwargs | config_overrides))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{Path(path) / 'config.json'}: {err}") from err


def load_hyenadna(
    path: str | Path,
    task: str = "causal_lm",
    num_labels: int = 2,
    **config_overrides: Any,
) -> HyenaForCausalLM | HyenaForSequenceClassification:
    """Load an official HyenaDNA checkpoint directory (either layout) into this package's model.

    `task="causal_lm"` gives `HyenaForCausalLM` with the checkpoint's LM head;
    `task="sequence_classification"` gives `HyenaForSequenceClassification` with the pretrained
    backbone and a new `score` head of `num_labels` outputs. `config_overrides` (e.g. dropout)
    go to `HyenaConfig` last. The model is returned in eval mode, in float32, on the CPU.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    path = Path(path)
    layout, weights, kwargs = read_checkpoint_config(path)
    source = str(path / "config.json")
    if layout == "hf":
        if weights.suffix == ".safetensors":
            try:
                checkpoint = load_file(weights)
            except Exception as err:
                raise CheckpointError(f"{weights}: not a readable safetensors file: {err}") from err
        else:
            checkpoint = read_bin(weights)
        state = {hf_key(k): v for k, v in checkpoint.items()}
    else:
        checkpoint = read_lightning_state_dict(weights)
        state = {original_key(k, str(weights)): v for k, v in checkpoint.items()}

    head_keys: dict[str, str] = {}
    if task == "causal_lm":
        tied = _lm_head_tied(state)
        if not tied:
            head_keys["lm_head.weight"] = "lm_head.weight"
        kwargs["tie_word_embeddings"] = tied
    ignored_heads = [k for k in ("lm_head.weight", "score.weight", "score.bias") if k in state]
    for key in ignored_heads:
        if key not in head_keys:
            state.pop(key)
    if ignored_heads and task == "sequence_classification":
        log.info("%s: heads not loaded: %s", weights, ", ".join(ignored_heads))
    kwargs["num_labels"] = num_labels
    kwargs.update(config_overrides)
    try:
        config = HyenaConfig(**kwargs)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: {err}") from err
    model_class = HyenaForCausalLM if task == "causal_lm" else HyenaForSequenceClassification
    model = model_class(config)
    _assign(model, state, head_keys, str(weights))
    return model.eval()


__all__ = [
    "TASKS",
    "CheckpointError",
    "detect_layout",
    "hf_config_to_kwargs",
    "hyenadna_config",
    "load_hyenadna",
    "original_config_to_kwargs",
    "read_bin",
    "read_lightning_state_dict",
    "read_tensors_inertly",
]
