"""HyenaDNA (Nguyen et al. 2023) as a native `transformers` model.

Single-file port in the style of `transformers` modeling files: the config class and all model
classes live here. Module, parameter and buffer names follow the Hugging Face HyenaDNA checkpoints
(`LongSafari/hyenadna-*-hf`), so their state dicts line up key for key (`hyena.backbone...`,
`lm_head`); `dnalm.models.hyenadna_checkpoints` loads those and the original repository's
Lightning checkpoints. The maths is HyenaDNA's: order-2 Hyena operator (in-projection, causal
short depthwise convolution, then gate / long convolution / gate), an implicit long filter (an MLP
with sine activations over `[t, cos, sin]` positional features, times an exponential-decay
window), FFT convolution zero-padded to avoid wrap-around, the per-channel skip term `u * bias`,
pre-LayerNorm residual blocks and a final LayerNorm. Differences from the reference code, all
deliberate and none changing what the model computes:

* no `trust_remote_code`; the classes register with the `Auto*` factories in `dnalm.models`;
* dropout defaults to 0 everywhere (dropout masks make CPU training several times slower);
* the operator and the MLP run through `dnalm.models.hyena_kernels` (the speed machinery, kept
  apart so that this file reads as the paper): fused autograd functions with hand-written
  backward passes (forward spectra reused, no transposing copies, cache-sized blocks), a fast
  FFT length >= 2L, the skip term added to the kernel's spectrum, GELU(tanh) as the equal
  `h sigmoid(2c(h + a h^3))`, a cached filter spectrum in inference, and at long lengths blocks
  recomputed in the backward pass instead of saved; the filter and the FFTs run in float32
  (float64 for float64 models), also under bf16 autocast;
* the positional time `t` is a recomputed buffer (`z` and the decay rates are saved, as upstream);
* `HyenaForSequenceClassification` mean-pools over non-pad tokens instead of taking the last one;
* inputs longer than `max_seq_len` raise instead of being silently truncated.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import (
    BaseModelOutputWithNoAttention,
    CausalLMOutput,
    SequenceClassifierOutput,
)

from .heads import classify
from .hyena_kernels import (
    SAVE_LIMIT_BYTES,
    VersionedCache,
    fft_size,
    hyena_mlp,
    hyena_operator,
    kernel_spectrum,
    no_autocast,
)


@strict
class HyenaConfig(PreTrainedConfig):
    r"""Configuration of a HyenaDNA model; field names match the LongSafari checkpoints' config.

    vocab_size: tokens in the tokenizer; the embedding / LM head is padded up to a multiple of
        `pad_vocab_size_multiple` (HyenaDNA: 12 -> 16).
    d_model / n_layer / d_inner: width, depth and MLP width (default `4 * d_model`).
    max_seq_len: longest input; the implicit long filters are defined on this many positions.
    hyena_order: depth of the Hyena recurrence (2 in HyenaDNA: two gates, one long convolution).
    filter_order: width of the implicit filter MLP; `num_inner_mlps` hidden layers inside it.
    short_filter_order: kernel of the depthwise causal short convolution.
    emb_dim: positional features fed to the filter MLP: `[t, cos bands, sin bands]`, odd, >= 3.
    activation_freq / train_freq: initial frequency of the sine activations, and whether it learns.
    use_bias: whether the long convolution adds the per-channel skip term `u * bias`.
    modulate / modulation_shift: the exponential-decay window `exp(-t |delta|) + shift` on the
        filter (shift 0.05 in the HyenaDNA standalone code and the Hugging Face port).
    embed_dropout / resid_dropout / hyena_dropout: dropout on the embeddings, on each sub-layer
        output before its residual add, and on the gated input of each long convolution (HyenaDNA's
        placements). `hyena_filter_dropout` is accepted for config compatibility and, as upstream,
        never applied.
    """

    model_type = "dnalm_hyena"
    attribute_map = {
        "hidden_size": "d_model",
        "num_hidden_layers": "n_layer",
        "intermediate_size": "d_inner",
        "max_position_embeddings": "max_seq_len",
    }

    vocab_size: int = 12
    d_model: int = 128
    n_layer: int = 2
    d_inner: int | None = None
    max_seq_len: int = 1024
    hyena_order: int = 2
    filter_order: int = 64
    short_filter_order: int = 3
    emb_dim: int = 5
    num_inner_mlps: int = 2
    activation_freq: int | float = 10
    train_freq: bool = True
    use_bias: bool = True
    modulate: bool = True
    modulation_shift: float = 0.05
    embed_dropout: float = 0.0
    resid_dropout: float = 0.0
    hyena_dropout: float = 0.0
    hyena_filter_dropout: float = 0.0
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    pad_vocab_size_multiple: int = 8
    pad_token_id: int | None = 4
    bos_token_id: int | None = 2
    eos_token_id: int | None = 1
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        if self.d_inner is None:
            self.d_inner = 4 * self.d_model
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Reject shapes the operator cannot build (called by `@strict` validation)."""
        if self.emb_dim < 3 or self.emb_dim % 2 == 0:
            raise ValueError(f"emb_dim must be odd and >= 3 (t, cos, sin), got {self.emb_dim}")
        if self.hyena_order < 2:
            raise ValueError(f"hyena_order must be >= 2, got {self.hyena_order}")


def padded_vocab_size(config: HyenaConfig) -> int:
    """Embedding rows: `vocab_size` rounded up to `pad_vocab_size_multiple`, as HyenaDNA does."""
    multiple = config.pad_vocab_size_multiple
    return math.ceil(config.vocab_size / multiple) * multiple


class HyenaSin(nn.Module):
    """Sine activation with a (learnable) per-unit frequency, for the implicit filter MLP."""

    def __init__(self, config: HyenaConfig):
        super().__init__()
        freq = torch.full((1, config.filter_order), float(config.activation_freq))
        if config.train_freq:
            self.freq = nn.Parameter(freq)
        else:  # HyenaDNA keeps a fixed frequency out of the state dict
            self.register_buffer("freq", freq, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class HyenaPositionalEmbedding(nn.Module):
    """Features `z = [t, cos(f w), -sin(f w)]` of each filter position and the time `t`.

    `z` is saved (the official checkpoints hold it, and HyenaDNA's training could nudge it with
    `lr_pos_emb`); `t` is `linspace(0, 1, L)` and recomputed. Both are sliced, never rebuilt.
    """

    def __init__(self, config: HyenaConfig):
        super().__init__()
        z, t = self.features(config.max_seq_len, config.emb_dim)
        self.register_buffer("z", z)
        self.register_buffer("t", t, persistent=False)

    @staticmethod
    def features(seq_len: int, emb_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return `z` (1, L, emb_dim) and normalised time `t` (1, L, 1) as HyenaDNA defines them."""
        t = torch.linspace(0, 1, seq_len)[None, :, None]
        bands = (emb_dim - 1) // 2
        w = 2 * math.pi * torch.linspace(0, seq_len - 1, seq_len)[None, :, None] / seq_len
        f = torch.linspace(1e-4, bands - 1, bands)[None, None]
        z = torch.cat([t, torch.cos(-f * w), torch.sin(-f * w)], dim=-1)
        return z, t

    def forward(self, seqlen: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.z[:, :seqlen], self.t[:, :seqlen]


class HyenaExponentialModulation(nn.Module):
    """Exponential decay window on the filter: channels range from slow to fast decay.

    The window depends only on buffers, so it is computed once per length, device and dtype and
    reused until `deltas` changes (its version counter moves on any in-place update or load).
    """

    def __init__(
        self,
        d_model: int,
        fast_decay_pct: float = 0.3,
        slow_decay_pct: float = 1.5,
        target: float = 1e-2,
        shift: float = 0.05,
        modulate: bool = True,
    ):
        super().__init__()
        self.shift = shift
        self.modulate = modulate
        self.decay_range = (math.log(target) / slow_decay_pct, math.log(target) / fast_decay_pct)
        self.register_buffer("deltas", self.initial_deltas(d_model))
        self._windows = VersionedCache(max_entries=8, max_bytes=64 * 2**20)

    def initial_deltas(self, d_model: int) -> torch.Tensor:
        """Fixed (non-trainable, as in HyenaDNA) decay rates, shape (1, 1, d_model)."""
        return torch.linspace(*self.decay_range, d_model)[None, None]

    def window(self, t: torch.Tensor) -> torch.Tensor:
        """`exp(-t |deltas|) + shift`, shape (1, L, d_model), cached up to 64 MiB (at 1M
        positions it would hold a gigabyte per layer)."""

        @torch.no_grad()
        def compute() -> torch.Tensor:
            return torch.exp(-t * self.deltas.abs().to(t.dtype)) + self.shift

        # Inference-mode tensors cannot join autograd later, so they are cached apart.
        key = (t.shape[1], t.device, t.dtype, t.data_ptr(), torch.is_inference_mode_enabled())
        return self._windows.get(key, [self.deltas], compute)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not self.modulate:
            return x
        return x * self.window(t).to(x.dtype)


class HyenaFilter(nn.Module):
    """Implicit long filter: an MLP with sine activations over positional features, then decay.

    As in HyenaDNA, one sine module (one `freq` vector) is shared by every activation of the MLP;
    it is saved once, as `implicit_filter.1.freq`.
    """

    # Upper bound on a cached inference spectrum (complex64 bytes) per filter.
    spectrum_cache_bytes = 256 * 2**20

    def __init__(self, config: HyenaConfig):
        super().__init__()
        self.d_filter = config.d_model * (config.hyena_order - 1)
        self.use_bias = config.use_bias
        self.bias = nn.Parameter(torch.randn(self.d_filter))
        self.pos_emb = HyenaPositionalEmbedding(config)
        act = HyenaSin(config)
        layers: list[nn.Module] = [nn.Linear(config.emb_dim, config.filter_order), act]
        for _ in range(config.num_inner_mlps):
            layers += [nn.Linear(config.filter_order, config.filter_order), act]
        layers.append(nn.Linear(config.filter_order, self.d_filter, bias=False))
        self.implicit_filter = nn.Sequential(*layers)
        self.modulation = HyenaExponentialModulation(
            self.d_filter, shift=config.modulation_shift, modulate=config.modulate
        )
        self._spectra = VersionedCache(max_entries=4, max_bytes=self.spectrum_cache_bytes)
        # Every sine after the first is the same module: declare the copies tied for saving.
        sin_positions = [i for i, m in enumerate(layers) if m is act]
        self._tied_weights_keys = {
            rf"implicit_filter\.{i}\.freq": "implicit_filter.1.freq" for i in sin_positions[1:]
        }

    def filter(self, seqlen: int) -> torch.Tensor:
        """The modulated filter for `seqlen` positions, shape (seqlen, d_filter), autocast off."""
        z, t = self.pos_emb(seqlen)
        with no_autocast(z.device.type):
            h = self.implicit_filter(z.to(dtype=self.implicit_filter[0].weight.dtype))
            return self.modulation(t, h)[0]

    def kernels(self, seqlen: int) -> torch.Tensor:
        """The long convolution kernels `h`, (d_filter, seqlen).

        Past `SAVE_LIMIT_BYTES` (at 1M positions the filter MLP's activations are ~4 GB per
        layer) the filter is recomputed in the backward pass instead of kept.
        """
        if torch.is_grad_enabled() and seqlen * self.d_filter * 4 > SAVE_LIMIT_BYTES:
            h = checkpoint(self.filter, seqlen, use_reentrant=False)
        else:
            h = self.filter(seqlen)
        return h.transpose(0, 1)

    def spectrum_is_cached(self, seqlen: int, n_fft: int) -> bool:
        """Whether inference caches the spectrum of this length (else the operator computes it
        block by block from `kernels`, which holds less memory)."""
        return self.d_filter * (n_fft // 2 + 1) * 8 <= self.spectrum_cache_bytes

    @torch.no_grad()
    def spectrum(self, seqlen: int, n_fft: int) -> torch.Tensor:
        """`rfft` of the kernels with the skip term, for inference; cached until a parameter
        changes, since in inference the filter is the same for every batch."""

        def compute() -> torch.Tensor:
            with no_autocast(self.bias.device.type):
                skip = self.bias if self.use_bias else None
                return kernel_spectrum(self.kernels(seqlen), skip, n_fft)

        key = (seqlen, n_fft, self.bias.device)
        return self._spectra.get(key, [*self.parameters(), *self.buffers()], compute)


class HyenaOperator(nn.Module):
    """Order-N Hyena mixer: projections, short conv, then alternating gating and long convolution.

    With `x_0 .. x_{N-1}, v` the short-convolved projections: `v <- h_o * (x_o . v) + D_o x_o . v`
    for o = N-1 .. 1 (`h_o` the implicit filter, `D_o` its skip weight `filter_fn.bias`), then
    `y = x_0 . v`, projected out.
    """

    def __init__(self, config: HyenaConfig):
        super().__init__()
        self.d_model = config.d_model
        self.l_max = config.max_seq_len
        self.order = config.hyena_order
        inner_width = config.d_model * (self.order + 1)
        self.in_proj = nn.Linear(self.d_model, inner_width)
        self.out_proj = nn.Linear(self.d_model, self.d_model)
        self.out_proj._is_residual_proj = True
        self.short_filter = nn.Conv1d(
            inner_width,
            inner_width,
            config.short_filter_order,
            padding=config.short_filter_order - 1,
            groups=inner_width,
        )
        self.filter_fn = HyenaFilter(config)
        self.dropout = nn.Dropout(config.hyena_dropout) if config.hyena_dropout > 0 else None

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        seqlen = u.shape[1]
        if seqlen > self.l_max:
            raise ValueError(f"input length {seqlen} exceeds max_seq_len={self.l_max}")
        shape = (self.order - 1, self.d_model)
        n_fft = fft_size(2 * seqlen)
        kernels = skip = spectra = None
        if not torch.is_grad_enabled() and self.filter_fn.spectrum_is_cached(seqlen, n_fft):
            # inference: the filter's spectrum is the same for every batch, and cached
            spectra = self.filter_fn.spectrum(seqlen, n_fft).view(*shape, -1)
        else:
            kernels = self.filter_fn.kernels(seqlen).reshape(*shape, seqlen)
            skip = self.filter_fn.bias.view(shape) if self.filter_fn.use_bias else None
        masks = None
        if self.dropout is not None and self.training:  # dropout on each gated signal x_o v
            ones = u.new_ones((self.order - 1, u.shape[0], self.d_model, seqlen))
            masks = self.dropout(ones)
        return hyena_operator(
            u,
            self.in_proj.weight,
            self.in_proj.bias,
            self.short_filter.weight[:, 0],
            self.short_filter.bias,
            kernels,
            skip,
            self.out_proj.weight,
            self.out_proj.bias,
            order=self.order,
            k_f=spectra,
            masks=masks,
        )


class HyenaMlp(nn.Module):
    """Position-wise MLP (tanh-approximated GELU, as HyenaDNA)."""

    def __init__(self, config: HyenaConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.d_inner)
        self.fc2 = nn.Linear(config.d_inner, config.d_model)
        self.fc2._is_residual_proj = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fc2(gelu_tanh(fc1(x))), in blocks of rows at long lengths
        return hyena_mlp(x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)


class HyenaBlock(nn.Module):
    """Pre-LayerNorm residual block: `x + drop(mixer(norm1(x)))`, then `x + drop(mlp(norm2(x)))`.

    HyenaDNA's fused form (dropout -> add -> LayerNorm, carrying the residual between blocks)
    computes the same thing.
    """

    def __init__(self, config: HyenaConfig):
        super().__init__()
        self.mixer = HyenaOperator(config)
        self.norm1 = nn.LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.mlp = HyenaMlp(config)
        self.norm2 = nn.LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.resid_dropout) if config.resid_dropout > 0 else None

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.dropout is None else self.dropout(x)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self._drop(self.mixer(self.norm1(hidden_states)))
        return hidden_states + self._drop(self.mlp(self.norm2(hidden_states)))


def compile_blocks(model: nn.Module, **compile_kwargs) -> nn.Module:
    """Compile each `HyenaBlock` of `model` in place with `torch.compile`; returns `model`.

    Per block rather than the whole model, so the graph is small and identical blocks share
    compiled code; the FFT convolution's custom autograd function compiles too. Measured on the
    2-core CPU machine (tiny-1k, batch 8 x 1,024, 1 thread): ~75 s to compile and no faster
    than eager (the step is GEMM-bound); it is meant for GPUs, where it fuses the element-wise
    gating, GELU and LayerNorm kernels.
    """
    for module in model.modules():
        if isinstance(module, HyenaBlock):
            module.compile(**compile_kwargs)
    return model


class HyenaEmbeddings(nn.Module):
    """Token embeddings only: Hyena needs no position embeddings (its filters are positional)."""

    def __init__(self, config: HyenaConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(padded_vocab_size(config), config.d_model)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.word_embeddings(input_ids)


class HyenaLMBackbone(nn.Module):
    """Embeddings, `n_layer` Hyena blocks and the final LayerNorm.

    With gradient checkpointing (`model.gradient_checkpointing_enable()`, or
    `gradient_checkpointing=True` in the config), training keeps only each block's input and
    recomputes the block in the backward pass, as HyenaDNA trains its long-context models.
    """

    def __init__(self, config: HyenaConfig):
        super().__init__()
        self.gradient_checkpointing = False
        self.embeddings = HyenaEmbeddings(config)
        self.dropout = nn.Dropout(config.embed_dropout) if config.embed_dropout > 0 else None
        self.layers = nn.ModuleList([HyenaBlock(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.d_model, eps=config.layer_norm_epsilon)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        output_hidden_states: bool,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        hidden_states = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if self.dropout is not None:
            hidden_states = self.dropout(hidden_states)
        all_hidden = [hidden_states] if output_hidden_states else None
        for layer in self.layers:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                hidden_states = self._gradient_checkpointing_func(layer.__call__, hidden_states)
            else:
                hidden_states = layer(hidden_states)
            if all_hidden is not None:
                all_hidden.append(hidden_states)
        hidden_states = self.ln_f(hidden_states)
        return hidden_states, tuple(all_hidden) if all_hidden is not None else None


class HyenaPreTrainedModel(PreTrainedModel):
    """Weight init and loading rules shared by all Hyena models."""

    config_class = HyenaConfig
    base_model_prefix = "hyena"
    supports_gradient_checkpointing = True
    _no_split_modules = ["HyenaBlock"]
    # Official checkpoints store the positional time `t`; here it is a recomputed buffer.
    _keys_to_ignore_on_load_unexpected = {r"pos_emb\.t$"}

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2 style init as HyenaDNA: N(0, 0.02), residual out-projections scaled by 1/sqrt(2N)."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            if getattr(module, "_is_residual_proj", False):
                init.normal_(module.weight, std=std / math.sqrt(2 * self.config.n_layer))
            else:
                init.normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv1d):
            # HyenaDNA keeps PyTorch's default init for the short depthwise convolution; an
            # N(0, 0.02) kernel would shrink the gates and stall training.
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight.shape[1] * module.weight.shape[2]
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, HyenaSin):
            init.constant_(module.freq, float(self.config.activation_freq))
        elif isinstance(module, HyenaPositionalEmbedding):
            z, t = module.features(self.config.max_seq_len, self.config.emb_dim)
            init.copy_(module.z, z)
            init.copy_(module.t, t)
        elif isinstance(module, HyenaExponentialModulation):
            init.copy_(module.deltas, module.initial_deltas(module.deltas.shape[-1]))
        elif isinstance(module, HyenaFilter):
            init.normal_(module.bias, std=1.0)


class HyenaModel(HyenaPreTrainedModel):
    """The HyenaDNA backbone; returns the final (LayerNorm-ed) hidden states."""

    def __init__(self, config: HyenaConfig):
        super().__init__(config)
        self.backbone = HyenaLMBackbone(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.backbone.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.backbone.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithNoAttention:
        """`attention_mask` is accepted and unused: the model is causal, so right padding never
        reaches the real tokens (left padding is not supported)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        hidden_states, all_hidden = self.backbone(
            input_ids, inputs_embeds, bool(output_hidden_states)
        )
        return BaseModelOutputWithNoAttention(
            last_hidden_state=hidden_states, hidden_states=all_hidden
        )


class HyenaWithHead(HyenaPreTrainedModel):
    """What both heads on the `hyena` backbone share: its input embeddings, and a forward pass
    that hands the backbone's outputs to the subclass's `head` (which says what it returns)."""

    def get_input_embeddings(self) -> nn.Embedding:
        return self.hyena.backbone.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.hyena.backbone.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ):
        outputs = self.hyena(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
        )
        return self.head(outputs, attention_mask, labels, **kwargs)


class HyenaForCausalLM(HyenaWithHead):
    """HyenaDNA with a next-token head tied to the input embeddings (padded vocabulary)."""

    _tied_weights_keys = {"lm_head.weight": "hyena.backbone.embeddings.word_embeddings.weight"}

    def __init__(self, config: HyenaConfig):
        super().__init__(config)
        self.hyena = HyenaModel(config)
        self.lm_head = nn.Linear(config.d_model, padded_vocab_size(config), bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    def head(self, outputs, attention_mask, labels, **kwargs) -> CausalLMOutput:
        """Logits over the padded vocabulary; with `labels`, the mean next-token cross-entropy
        (position t predicts label t+1; label -100 is ignored). Like Llama's loss, a
        `num_items_in_batch` from `Trainer` turns the mean into sum / num_items_in_batch."""
        logits = self.lm_head(outputs.last_hidden_state).float()
        loss = None
        if labels is not None:
            shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
            shift_labels = labels[:, 1:].reshape(-1).to(logits.device)
            num_items = kwargs.get("num_items_in_batch")
            reduction = "mean" if num_items is None else "sum"
            loss = F.cross_entropy(
                shift_logits, shift_labels, ignore_index=-100, reduction=reduction
            )
            if num_items is not None:
                loss = loss / torch.as_tensor(num_items, device=loss.device)
        return CausalLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


class HyenaForSequenceClassification(HyenaWithHead):
    """HyenaDNA backbone + linear `score` head on the mean of the non-pad hidden states.

    Loads the `hyena.*` weights of a `HyenaForCausalLM` checkpoint; only `score` is new.
    """

    def __init__(self, config: HyenaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.hyena = HyenaModel(config)
        self.score = nn.Linear(config.d_model, config.num_labels)
        self.post_init()

    def head(self, outputs, attention_mask, labels, **kwargs) -> SequenceClassifierOutput:
        """Logits (batch, num_labels); with `labels`, cross-entropy (MSE if num_labels == 1)."""
        return classify(self.score, outputs, attention_mask, labels, self.num_labels)


__all__ = [
    "compile_blocks",
    "HyenaConfig",
    "HyenaPreTrainedModel",
    "HyenaModel",
    "HyenaForCausalLM",
    "HyenaForSequenceClassification",
]
