"""Official HyenaDNA checkpoints: both layouts load, give the reference outputs, refuse bad files.

No official checkpoint is on this machine (no network), so each test writes a directory in an
official layout: the config with the official keys, the weights under the official names (the
Hugging Face port's, or the original Lightning `state_dict`'s with its `model.` prefix and the
`.layer` wrapper of gradient-checkpointed blocks). The expected outputs come from
`reference_logits`, an independent O(L^2) implementation of HyenaDNA's equations that reads the
official state dict directly, so "same outputs as the original code" is tested, not assumed.
"""

from __future__ import annotations

import json
import math
import os
import re

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from dnalm.models import CheckpointError, HyenaConfig, HyenaForCausalLM, load_hyenadna

torch.set_num_threads(1)

# A small model in HyenaDNA's shape (tiny-1k has d_model 128, 2 layers, l_max 1026).
D_MODEL, N_LAYER, D_INNER, L_MAX, VOCAB = 32, 2, 64, 38, 12
A, T = 7, 10


def dna(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(A, T + 1, shape, generator=torch.Generator().manual_seed(seed))


def hf_config() -> dict:
    """config.json of a LongSafari `*-hf` checkpoint (keys as the Hugging Face port writes them)."""
    return {
        "_name_or_path": "LongSafari/hyenadna-tiny-1k-seqlen-hf",
        "activation_freq": 10,
        "architectures": ["HyenaDNAForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_hyena.HyenaConfig",
            "AutoModelForCausalLM": "modeling_hyena.HyenaDNAForCausalLM",
        },
        "d_inner": D_INNER,
        "d_model": D_MODEL,
        "emb_dim": 5,
        "embed_dropout": 0.1,
        "filter_order": 16,
        "hyena_dropout": 0.0,
        "hyena_filter_dropout": 0.0,
        "hyena_order": 2,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "max_seq_len": L_MAX,
        "model_type": "hyenadna",
        "n_layer": N_LAYER,
        "num_inner_mlps": 2,
        "pad_vocab_size_multiple": 8,
        "short_filter_order": 3,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "train_freq": True,
        "transformers_version": "4.35.0",
        "use_bias": True,
        "vocab_size": VOCAB,
    }


def original_config(checkpoint_mixer: bool) -> dict:
    """config.json of an original `hyenadna-*-seqlen` checkpoint (the training repo's keys)."""
    return {
        "d_model": D_MODEL,
        "n_layer": N_LAYER,
        "d_inner": D_INNER,
        "vocab_size": VOCAB,
        "resid_dropout": 0.0,
        "embed_dropout": 0.1,
        "fused_mlp": False,
        "fused_dropout_add_ln": True,
        "checkpoint_mixer": checkpoint_mixer,
        "checkpoint_mlp": checkpoint_mixer,
        "residual_in_fp32": True,
        "pad_vocab_size_multiple": 8,
        "layer": {
            "_name_": "hyena",
            "emb_dim": 5,
            "filter_order": 16,
            "local_order": 3,
            "l_max": L_MAX,
            "modulate": True,
            "w": 10,
            "lr": 6e-4,
            "wd": 0.0,
            "lr_pos_emb": 0.0,
        },
    }


def random_official_state(seed: int = 0, nudge_z: bool = True) -> dict[str, torch.Tensor]:
    """A randomly initialised HyenaDNA state dict under the Hugging Face port's names.

    `nudge_z` moves the positional features off their formula, as training with `lr_pos_emb > 0`
    does: the loaded model must use the saved `z`, not recompute it.
    """
    torch.manual_seed(seed)
    cfg = HyenaConfig(
        vocab_size=VOCAB,
        d_model=D_MODEL,
        n_layer=N_LAYER,
        d_inner=D_INNER,
        max_seq_len=L_MAX,
        filter_order=16,
    )
    model = HyenaForCausalLM(cfg)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in model.parameters():  # off the init (shared tensors moved once)
            param += 0.05 * torch.randn(param.shape, generator=g)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    if nudge_z:
        for key in [k for k in state if k.endswith("pos_emb.z")]:
            state[key] += 0.01 * torch.randn(state[key].shape, generator=g)
    # The official files also hold the positional time t = linspace(0, 1, l_max).
    for i in range(N_LAYER):
        state[f"hyena.backbone.layers.{i}.mixer.filter_fn.pos_emb.t"] = torch.linspace(0, 1, L_MAX)[
            None, :, None
        ]
    state["lm_head.weight"] = state["hyena.backbone.embeddings.word_embeddings.weight"].clone()
    return state


def as_original_keys(state: dict[str, torch.Tensor], checkpoint_mixer: bool) -> dict:
    """HF port names -> the original Lightning `state_dict` names."""
    out = {}
    for key, value in state.items():
        key = "model." + key.removeprefix("hyena.")
        if checkpoint_mixer:
            key = re.sub(r"\.(mixer|mlp)\.", r".\1.layer.", key)
        out[key] = value
    return out


# --- the reference: HyenaDNA's equations, read off the official state dict --------------------


def layer_norm(x, sd, prefix):
    return F.layer_norm(x, x.shape[-1:], sd[prefix + ".weight"], sd[prefix + ".bias"], 1e-5)


def reference_hyena(x: torch.Tensor, sd: dict, p: str, shift: float = 0.05) -> torch.Tensor:
    """Order-2 Hyena operator, computed the slow way (no FFT, explicit causal sums)."""
    batch, length, d = x.shape
    u = x @ sd[p + "in_proj.weight"].T + sd[p + "in_proj.bias"]  # (B, L, 3d)
    # Causal depthwise short convolution: uc[t] = sum_j w[j] * u[t - (K-1) + j] + b.
    w, taps = sd[p + "short_filter.weight"][:, 0, :], sd[p + "short_filter.weight"].shape[-1]
    uc = sd[p + "short_filter.bias"].expand(batch, length, -1).clone()
    for j in range(taps):
        lag = taps - 1 - j
        uc[:, lag:] += w[:, j] * u[:, : length - lag]
    x0, x1, v = uc.split(d, dim=-1)
    # Implicit filter: sine MLP over the saved positional features, times the decay window.
    f = p + "filter_fn."
    z = sd[f + "pos_emb.z"][0, :length]
    t = torch.linspace(0, 1, sd[f + "pos_emb.z"].shape[1], dtype=x.dtype)[:length, None]
    freq = sd[f + "implicit_filter.1.freq"]
    h = torch.sin(
        freq * (z @ sd[f + "implicit_filter.0.weight"].T + sd[f + "implicit_filter.0.bias"])
    )
    h = torch.sin(
        freq * (h @ sd[f + "implicit_filter.2.weight"].T + sd[f + "implicit_filter.2.bias"])
    )
    h = torch.sin(
        freq * (h @ sd[f + "implicit_filter.4.weight"].T + sd[f + "implicit_filter.4.bias"])
    )
    k = h @ sd[f + "implicit_filter.6.weight"].T  # (L, d)
    k = k * (torch.exp(-t * sd[f + "modulation.deltas"][0, 0].abs()) + shift)
    # Gate, long causal convolution y[t] = sum_{s<=t} k[s] v[t-s] + D v[t], gate.
    v = v * x1
    lag = torch.arange(length)[:, None] - torch.arange(length)[None, :]
    toeplitz = k[lag.clamp(min=0)] * (lag >= 0)[..., None]  # (t, s, d): k[t - s]
    y = torch.einsum("tsc,bsc->btc", toeplitz, v) + sd[f + "bias"] * v
    return (y * x0) @ sd[p + "out_proj.weight"].T + sd[p + "out_proj.bias"]


def reference_logits(state: dict, input_ids: torch.Tensor, n_layer: int = N_LAYER) -> torch.Tensor:
    """HyenaDNA's LM in float64 from a state dict under the HF port's names."""
    sd = {k.removeprefix("hyena."): v.double() for k, v in state.items()}
    h = sd["backbone.embeddings.word_embeddings.weight"][input_ids]
    for i in range(n_layer):
        p = f"backbone.layers.{i}."
        h = h + reference_hyena(layer_norm(h, sd, p + "norm1"), sd, p + "mixer.")
        x = layer_norm(h, sd, p + "norm2")
        x = F.gelu(x @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"], approximate="tanh")
        h = h + x @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]
    return layer_norm(h, sd, "backbone.ln_f") @ sd["lm_head.weight"].T


def test_reference_reads_the_formula_features():
    """The saved `z` is HyenaDNA's `[t, Re, Im] of exp(-i f w)`: the reference may use it."""
    z = random_official_state(nudge_z=False)
    z = z["hyena.backbone.layers.0.mixer.filter_fn.pos_emb.z"][0]
    t = torch.linspace(0, 1, L_MAX)
    w = 2 * math.pi * torch.arange(L_MAX) / L_MAX
    f = torch.linspace(1e-4, 1, 2)
    expected = torch.exp(-1j * f[None] * w[:, None])
    torch.testing.assert_close(z[:, 0], t)
    torch.testing.assert_close(z[:, 1:3], expected.real.float())
    torch.testing.assert_close(z[:, 3:5], expected.imag.float())


# --- loading ---------------------------------------------------------------------------------


def write_hf(tmp_path, state, fmt: str = "safetensors", config: dict | None = None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config or hf_config()))
    if fmt == "safetensors":
        # transformers stores a tensor shared under several names once: keep the first copy.
        kept = {k: v.contiguous() for k, v in state.items() if not re.search(r"\.[35]\.freq$", k)}
        save_file(kept, tmp_path / "model.safetensors")
    else:
        torch.save(state, tmp_path / "pytorch_model.bin")
    return tmp_path


class TrainingState:
    """Stands in for the OmegaConf configs and loop state a Lightning checkpoint pickles."""

    def __init__(self):
        self.lr = 6e-4
        self.layers = [1, 2]


class MakesDirectory:
    """Unpickling this creates `path` if the loader runs code from the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def write_original(tmp_path, state, checkpoint_mixer: bool, extras: dict | None = None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(original_config(checkpoint_mixer)))
    ckpt = {"state_dict": as_original_keys(state, checkpoint_mixer), **(extras or {})}
    torch.save(ckpt, tmp_path / "weights.ckpt")
    return tmp_path


def assert_matches_reference(model, state, length: int = 33):
    x = dna(2, length, seed=3)
    with torch.no_grad():
        logits = model(x).logits.double()
    torch.testing.assert_close(logits, reference_logits(state, x), atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_hf_layout_loads_and_matches_reference(tmp_path, fmt):
    state = random_official_state()
    model = load_hyenadna(write_hf(tmp_path, state, fmt))
    assert type(model) is HyenaForCausalLM and not model.training
    cfg = model.config
    assert (cfg.d_model, cfg.n_layer, cfg.d_inner, cfg.max_seq_len) == (32, 2, 64, L_MAX)
    assert (cfg.filter_order, cfg.activation_freq, cfg.emb_dim) == (16, 10, 5)
    # The head equals the embeddings, so it stays tied (as in HyenaDNA).
    assert model.lm_head.weight is model.hyena.backbone.embeddings.word_embeddings.weight
    assert_matches_reference(model, state)
    assert_matches_reference(model, state, length=L_MAX)  # the full context, FFT size 80


def test_hf_untied_head_is_loaded_as_saved(tmp_path):
    state = random_official_state()
    state["lm_head.weight"] = state["lm_head.weight"] + 0.1
    model = load_hyenadna(write_hf(tmp_path, state, "bin"))
    assert not model.config.tie_word_embeddings
    assert not torch.equal(model.lm_head.weight, model.get_input_embeddings().weight)
    assert_matches_reference(model, state)


@pytest.mark.parametrize("checkpoint_mixer", [False, True])
def test_original_layout_loads_and_matches_reference(tmp_path, checkpoint_mixer):
    state = random_official_state(seed=1)
    directory = write_original(tmp_path, state, checkpoint_mixer)
    prefix = "model.backbone.layers.1.mixer." + ("layer." if checkpoint_mixer else "")
    saved = torch.load(directory / "weights.ckpt", weights_only=True)["state_dict"]
    assert prefix + "filter_fn.implicit_filter.5.freq" in saved and "model.lm_head.weight" in saved
    model = load_hyenadna(directory)
    assert model.config.max_seq_len == L_MAX and model.config.short_filter_order == 3
    assert_matches_reference(model, state)


def test_lightning_checkpoint_with_training_state_loads_without_running_its_code(tmp_path):
    """Released `weights.ckpt` files pickle configs and loop state next to the weights:
    `weights_only` refuses them, and the fallback must rebuild the tensors and call nothing."""
    marker = tmp_path / "code_ran"
    state = random_official_state(seed=2)
    extras = {
        "hyper_parameters": TrainingState(),
        "callbacks": {"evil": MakesDirectory(marker)},
        "optimizer_states": [{"state": {0: {"exp_avg": torch.ones(3)}}}],
        "epoch": 3,
    }
    with pytest.raises(Exception, match="(?i)weights only|unsupported global"):
        torch.load(write_original(tmp_path / "ckpt", state, True, extras) / "weights.ckpt")
    model = load_hyenadna(tmp_path / "ckpt")
    assert not marker.exists()
    assert_matches_reference(model, state)


def test_sequence_classification_keeps_backbone_and_adds_fresh_head(tmp_path):
    state = random_official_state()
    directory = write_hf(tmp_path, state)
    clf = load_hyenadna(directory, task="sequence_classification", num_labels=3)
    lm = load_hyenadna(directory)
    for key, value in lm.hyena.state_dict().items():
        assert torch.equal(clf.hyena.state_dict()[key], value), key
    assert clf.score.weight.shape == (3, D_MODEL) and clf.config.num_labels == 3
    assert clf(dna(2, 20)).logits.shape == (2, 3)
    with pytest.raises(ValueError, match="causal_lm, sequence_classification"):
        load_hyenadna(directory, task="masked_lm")


# --- refusals --------------------------------------------------------------------------------


def test_bin_holding_a_non_tensor_object_is_refused(tmp_path):
    marker = tmp_path / "code_ran"
    state = random_official_state()
    state["evil"] = MakesDirectory(marker)
    directory = write_hf(tmp_path / "ckpt", state, "bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin: refused"):
        load_hyenadna(directory)
    assert not marker.exists()
    # Plain (allow-listed) Python objects are refused too: a weights file holds tensors only.
    state = random_official_state()
    state["step"] = 3
    directory = write_hf(tmp_path / "ckpt2", state, "bin")
    with pytest.raises(CheckpointError, match="entry 'step' is a int, not a tensor"):
        load_hyenadna(directory)


def test_missing_unexpected_and_misshaped_keys_are_listed(tmp_path):
    state = random_official_state()
    del state["hyena.backbone.layers.1.mlp.fc2.bias"]
    state["hyena.backbone.layers.1.mixer.extra.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError) as err:
        load_hyenadna(write_hf(tmp_path / "a", state))
    message = str(err.value)
    assert "model.safetensors" in message
    assert "missing keys: backbone.layers.1.mlp.fc2.bias" in message
    assert "unexpected keys: backbone.layers.1.mixer.extra.weight" in message

    state = random_official_state()
    state["lm_head.weight"] = torch.zeros(VOCAB, D_MODEL)  # an unpadded, untied head
    with pytest.raises(CheckpointError, match=r"lm_head\.weight \(12, 32\) \(model: \(16, 32\)\)"):
        load_hyenadna(write_hf(tmp_path / "c", state, "bin"))

    config = hf_config() | {"d_inner": 128}
    with pytest.raises(
        CheckpointError, match=r"shape mismatches: .*fc1\.bias \(64,\) \(model: \(128,\)\)"
    ):
        load_hyenadna(write_hf(tmp_path / "b", random_official_state(), config=config))


def test_disagreeing_copies_of_the_shared_sine_frequency_are_refused(tmp_path):
    state = random_official_state()
    state["hyena.backbone.layers.0.mixer.filter_fn.implicit_filter.3.freq"] += 1
    with pytest.raises(CheckpointError, match=r"implicit_filter\.1\.freq and .*3\.freq differ"):
        load_hyenadna(write_hf(tmp_path, state, "bin"))


def test_positional_time_must_be_hyenadnas(tmp_path):
    state = random_official_state()
    state["hyena.backbone.layers.0.mixer.filter_fn.pos_emb.t"] *= 2
    with pytest.raises(CheckpointError, match=r"pos_emb\.t is not linspace"):
        load_hyenadna(write_hf(tmp_path, state))


def test_unsupported_configs_and_directories_fail_clearly(tmp_path):
    state = random_official_state()
    directory = write_original(tmp_path / "orig", state, False)
    config = original_config(False)
    config["attn_layer_idx"] = [1]
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="config.json: attn_layer_idx"):
        load_hyenadna(directory)
    config = original_config(False)
    config["layer"]["num_heads"] = 2
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"layer\.num_heads=2 is not supported"):
        load_hyenadna(directory)
    (directory / "weights.ckpt").unlink()
    with pytest.raises(CheckpointError, match="no weights.ckpt"):
        load_hyenadna(directory)

    hf = write_hf(tmp_path / "hf", state)
    (hf / "config.json").write_text(json.dumps(hf_config() | {"model_type": "llama"}))
    with pytest.raises(CheckpointError, match="model_type 'llama' is not a HyenaDNA model"):
        load_hyenadna(hf)
    (hf / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        load_hyenadna(hf)
    with pytest.raises(CheckpointError, match="not a directory"):
        load_hyenadna(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps(hf_config()))
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin"):
        load_hyenadna(tmp_path / "empty")
