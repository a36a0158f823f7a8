"""Tests of the model code: shapes, causality, checkpoints, pooling, sizes, and that models learn."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
)

import dnalm.models as models
from dnalm.model_sizes import MODEL_SIZES, PAPER_PARAMETERS_M, PARAMETER_COUNTS
from dnalm.models import (
    ARCHITECTURES,
    DnaGPTForCausalLM,
    DnaGPTForSequenceClassification,
    DnaGPTModel,
    HyenaForCausalLM,
    HyenaForSequenceClassification,
    HyenaModel,
    count_parameters,
    hyena_kernels,
    model_config,
    modeling_hyena,
)
from dnalm.models.hyena_kernels import fft_size, hyena_mlp, hyena_operator

torch.set_num_threads(1)

VOCAB, PAD = 12, 4  # HyenaDNA character tokenizer: A, C, G, T = 7, 8, 9, 10; [PAD] = 4
A, C, G, T = 7, 8, 9, 10
CLASSES = {
    "hyena": (HyenaModel, HyenaForCausalLM, HyenaForSequenceClassification),
    "gpt": (DnaGPTModel, DnaGPTForCausalLM, DnaGPTForSequenceClassification),
}


def micro_config(arch: str, max_seq_len: int = 64, **overrides):
    return model_config(
        arch, "micro", vocab_size=VOCAB, pad_token_id=PAD, max_seq_len=max_seq_len, **overrides
    )


def random_dna(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(A, T + 1, shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def perturb(model: torch.nn.Module, seed: int = 0) -> None:
    """Move every parameter off its init, so loading cannot pass by re-initialising."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.add_(0.05 * torch.randn(p.shape, generator=g))


def test_unknown_arch_or_size_names_the_choices():
    with pytest.raises(ValueError, match="hyena, gpt"):
        model_config("mamba", "micro", vocab_size=VOCAB, pad_token_id=PAD, max_seq_len=64)
    with pytest.raises(ValueError, match="micro, tiny-1k"):
        model_config("gpt", "huge", vocab_size=VOCAB, pad_token_id=PAD, max_seq_len=64)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_config_fields_and_auto_classes(arch):
    cfg = micro_config(arch, max_seq_len=96, num_labels=3, initializer_range=0.01)
    assert AutoConfig.for_model(cfg.model_type).__class__ is type(cfg)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (64, 2, 256)
    assert cfg.pad_token_id == PAD and cfg.vocab_size == VOCAB and cfg.num_labels == 3
    assert cfg.max_position_embeddings == 96 and cfg.initializer_range == 0.01
    base, lm, clf = CLASSES[arch]
    assert type(AutoModel.from_config(cfg)) is base
    assert type(AutoModelForCausalLM.from_config(cfg)) is lm
    assert type(AutoModelForSequenceClassification.from_config(cfg)) is clf


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_forward_shapes_and_losses(arch):
    torch.manual_seed(0)
    cfg = micro_config(arch)
    x = random_dna(3, 40)
    lm = AutoModelForCausalLM.from_config(cfg)
    out = lm(x, labels=x)
    n_logits = 16 if arch == "hyena" else VOCAB  # HyenaDNA pads its vocabulary to a multiple of 8
    assert out.logits.shape == (3, 40, n_logits)
    # Next-token loss: position t predicts token t+1; -100 is ignored.
    labels = x.clone()
    labels[:, 20:] = -100
    expected = torch.nn.functional.cross_entropy(
        out.logits[:, :19].reshape(-1, n_logits).float(), x[:, 1:20].reshape(-1)
    )
    torch.testing.assert_close(lm(x, labels=labels).loss, expected)
    # Trainer's gradient-accumulation contract: sum over tokens / num_items_in_batch.
    summed = lm(x, labels=labels, num_items_in_batch=torch.tensor(19 * 3 * 2)).loss
    torch.testing.assert_close(summed, expected / 2)

    clf = AutoModelForSequenceClassification.from_config(micro_config(arch, num_labels=3))
    out = clf(x, attention_mask=torch.ones_like(x), labels=torch.tensor([0, 2, 1]))
    assert out.logits.shape == (3, 3)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in clf.parameters() if p.requires_grad)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_lm_is_causal(arch):
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(micro_config(arch)).eval()
    x = random_dna(2, 48)
    y = x.clone()
    y[:, 30] = torch.where(x[:, 30] == A, C, A)
    with torch.no_grad():
        a, b = lm(x).logits, lm(y).logits
    torch.testing.assert_close(a[:, :30], b[:, :30], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, 30:], b[:, 30:], atol=1e-4)


def test_hyena_rejects_inputs_longer_than_max_seq_len():
    lm = AutoModelForCausalLM.from_config(micro_config("hyena", max_seq_len=32))
    with pytest.raises(ValueError, match="max_seq_len"):
        lm(random_dna(1, 33))


def test_hyena_parameter_names_follow_hf_hyenadna():
    lm = AutoModelForCausalLM.from_config(micro_config("hyena"))
    names = set(lm.state_dict())
    layer = "hyena.backbone.layers.1."
    for name in [
        "hyena.backbone.embeddings.word_embeddings.weight",
        layer + "mixer.in_proj.weight",
        layer + "mixer.short_filter.weight",
        layer + "mixer.filter_fn.bias",
        layer + "mixer.filter_fn.implicit_filter.0.weight",
        layer + "mixer.filter_fn.implicit_filter.1.freq",
        layer + "mixer.filter_fn.implicit_filter.6.weight",
        layer + "mixer.filter_fn.modulation.deltas",
        layer + "mixer.out_proj.weight",
        layer + "norm1.weight",
        layer + "norm2.bias",
        layer + "mlp.fc1.weight",
        layer + "mlp.fc2.bias",
        "hyena.backbone.ln_f.weight",
        "lm_head.weight",
    ]:
        assert name in names, name
    # As in the official checkpoints, the positional features `z` are saved; the time `t` is
    # recomputed (it is always linspace(0, 1, L)).
    assert layer + "mixer.filter_fn.pos_emb.z" in names
    assert not any(n.endswith("pos_emb.t") for n in names)
    mixer = lm.hyena.backbone.layers[1].mixer
    assert mixer.in_proj.weight.shape == (3 * 64, 64)
    assert mixer.short_filter.weight.shape == (3 * 64, 1, 3)
    assert mixer.filter_fn.pos_emb.z.shape == (1, 64, 5)
    assert lm.lm_head.weight is lm.hyena.backbone.embeddings.word_embeddings.weight


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_save_load_round_trip(arch, tmp_path):
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(micro_config(arch)).eval()
    perturb(lm)
    lm.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert "model.safetensors" in files and "config.json" in files
    assert not any(f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt")) for f in files)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(lm)
    x = random_dna(2, 50)
    with torch.no_grad():
        assert torch.equal(lm(x).logits, loaded(x).logits)
    if arch == "hyena":  # the sine frequency stays one shared tensor per filter
        filt = loaded.hyena.backbone.layers[0].mixer.filter_fn.implicit_filter
        assert filt[3].freq is filt[1].freq and filt[5].freq is filt[1].freq


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_classifier_from_lm_checkpoint_keeps_backbone_and_adds_fresh_head(arch, tmp_path):
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(micro_config(arch))
    perturb(lm)
    lm.save_pretrained(tmp_path)
    clf, info = AutoModelForSequenceClassification.from_pretrained(
        tmp_path, num_labels=3, output_loading_info=True
    )
    assert type(clf) is CLASSES[arch][2]
    assert set(info["missing_keys"]) == {"score.weight", "score.bias"}
    assert not info["mismatched_keys"]
    backbone = lm.base_model_prefix  # "hyena" or "model": same prefix in both heads
    lm_state, clf_state = lm.state_dict(), clf.state_dict()
    shared = [k for k in clf_state if k.startswith(backbone + ".")]
    assert len(shared) == sum(k.startswith(backbone + ".") for k in lm_state)
    for key in shared:
        assert torch.equal(clf_state[key], lm_state[key]), key
    # The head is newly initialised: small random weights, zero bias, right shape.
    assert clf.score.weight.shape == (3, 64)
    assert 0 < clf.score.weight.std() < 0.1 and torch.all(clf.score.bias == 0)
    assert clf(random_dna(2, 20)).logits.shape == (2, 3)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_mean_pooling_ignores_right_padding(arch):
    torch.manual_seed(0)
    clf = AutoModelForSequenceClassification.from_config(micro_config(arch)).eval()
    perturb(clf)
    x = random_dna(2, 40)
    padded = torch.cat([x, torch.full((2, 9), PAD)], dim=1)
    mask = torch.cat([torch.ones(2, 40), torch.zeros(2, 9)], dim=1).long()
    # A batch of unequal lengths: the second sequence is 31 long, padded to 40.
    ragged = x.clone()
    ragged[1, 31:] = PAD
    ragged_mask = (ragged != PAD).long()
    with torch.no_grad():
        plain = clf(x).logits
        torch.testing.assert_close(
            clf(padded, attention_mask=mask).logits, plain, atol=1e-5, rtol=0
        )
        both = clf(ragged, attention_mask=ragged_mask).logits
        short = clf(x[1:, :31]).logits
        # Without the mask the pads would be pooled too: make sure the mask matters.
        unmasked = clf(padded).logits
    torch.testing.assert_close(both[0], plain[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(both[1], short[0], atol=1e-5, rtol=0)
    assert not torch.allclose(unmasked, plain, atol=1e-3)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_parameter_counts_of_named_sizes(arch):
    assert set(MODEL_SIZES[arch]) == set(PARAMETER_COUNTS[arch]) == set(models.SIZE_NAMES)
    for size in MODEL_SIZES[arch]:
        cfg = model_config(arch, size, vocab_size=VOCAB, pad_token_id=PAD, max_seq_len=1024)
        n = count_parameters(AutoModelForCausalLM.from_config(cfg))
        print(f"{arch:6s} {size:12s} {n:>10,d}")
        assert n == PARAMETER_COUNTS[arch][size], (size, n)
        if arch == "hyena" and size in PAPER_PARAMETERS_M:
            # The paper reports 0.44M, 3.3M, 6.6M: equal after its rounding.
            paper = PAPER_PARAMETERS_M[size]
            assert round(n / 1e6, 2 if paper < 1 else 1) == paper, (size, n, paper)


# --- learning check -------------------------------------------------------------------------

MOTIF = torch.tensor([T, A, T, A])  # "TATA"


def contains_motif(x: torch.Tensor) -> torch.Tensor:
    return (x.unfold(1, len(MOTIF), 1) == MOTIF).all(-1).any(-1)


def motif_task(
    n: int, length: int, seed: int, copies: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label 1: `copies` TATA inserted in random DNA. Label 0: as many scrambled copies of the same
    letters (ATAT, AATT, TAAT, ...) and no TATA anywhere. Both classes have the same base
    composition, so only the order of the bases tells them apart."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(A, T + 1, (n, length), generator=g)
    y = torch.arange(n) % 2
    for i in range(n):
        while True:
            x[i] = torch.randint(A, T + 1, (length,), generator=g)
            for _ in range(copies):
                at = int(torch.randint(0, length - len(MOTIF) + 1, (1,), generator=g))
                order = (
                    torch.arange(len(MOTIF)) if y[i] else torch.randperm(len(MOTIF), generator=g)
                )
                x[i, at : at + len(MOTIF)] = MOTIF[order]
            if bool(contains_motif(x[i : i + 1])) == bool(y[i]):
                break
    return x, y


def train_classifier(model, x, y, steps: int, batch: int, lr: float = 1e-3) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for step in range(steps):
        xb, yb = x[step * batch : (step + 1) * batch], y[step * batch : (step + 1) * batch]
        loss = model(xb, attention_mask=torch.ones_like(xb), labels=yb).loss
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def accuracy(model, x, y) -> float:
    model.eval()
    return (model(x).logits.argmax(-1) == y).float().mean().item()


class BagOfBases(torch.nn.Module):
    """Control: a classifier that sees only base counts must stay at chance on this task."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(VOCAB, 2)

    def forward(self, input_ids, attention_mask=None, labels=None):
        counts = torch.nn.functional.one_hot(input_ids, VOCAB).float().mean(1)
        logits = self.linear(counts * 10)
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return type("Out", (), {"loss": loss, "logits": logits})


STEPS, BATCH, LENGTH = 300, 64, 32


@pytest.fixture(scope="module")
def motif_data():
    return motif_task(STEPS * BATCH, LENGTH, seed=1), motif_task(1024, LENGTH, seed=2)


def test_motif_task_needs_sequence_order(motif_data):
    (x, y), (x_test, y_test) = motif_data
    assert abs(y_test.float().mean().item() - 0.5) < 0.01
    assert torch.equal(contains_motif(x_test), y_test.bool())
    torch.manual_seed(0)
    control = BagOfBases()
    train_classifier(control, x, y, STEPS, BATCH, lr=1e-2)
    assert accuracy(control, x_test, y_test) < 0.6


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_micro_classifier_learns_motif_from_scratch(arch, motif_data):
    """A from-scratch `micro` classifier must read the sequence: well above chance."""
    (x, y), (x_test, y_test) = motif_data
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(micro_config(arch, max_seq_len=LENGTH))
    train_classifier(model, x, y, STEPS, BATCH)
    acc = accuracy(model, x_test, y_test)
    print(f"{arch}: held-out accuracy {acc:.3f}")
    assert acc > 0.75


# --- the fast Hyena path: fused operator and MLP, caches, autocast, checkpointing ------------


def naive_causal_conv(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """`y[t] = sum_{s<=t} k[s] u[t-s] + bias * u[t]` as an explicit (Toeplitz) sum."""
    length = u.shape[-1]
    lag = torch.arange(length)[:, None] - torch.arange(length)[None, :]
    toeplitz = k[:, lag.clamp(min=0)] * (lag >= 0)  # (channels, t, s)
    return torch.einsum("cts,bcs->bct", toeplitz, u) + bias[:, None] * u


def naive_operator(x, in_w, in_b, conv_w, conv_b, k, skip, out_w, out_b, order, masks=None):
    """The order-N Hyena operator as its equations (no FFT), differentiated by autograd."""
    d_model, taps = x.shape[-1], conv_w.shape[-1]
    u = (x @ in_w.T + in_b).transpose(1, 2)
    uc = F.conv1d(u, conv_w.unsqueeze(1), conv_b, padding=taps - 1, groups=u.shape[1])
    *gates, v = uc[..., : x.shape[1]].split(d_model, dim=1)
    for s, gate in enumerate(reversed(gates[1:])):
        z = v * gate if masks is None else v * gate * masks[s]
        v = naive_causal_conv(z, k[s], skip[s])
    return (v * gates[0]).transpose(1, 2) @ out_w.T + out_b


def operator_inputs(order: int, batch=2, length=23, d_model=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    channels = (order + 1) * d_model
    shapes = [
        (batch, length, d_model),  # x
        (channels, d_model),  # in_w
        (channels,),  # in_b
        (channels, 3),  # conv_w
        (channels,),  # conv_b
        (order - 1, d_model, length),  # k
        (order - 1, d_model),  # skip
        (d_model, d_model),  # out_w
        (d_model,),  # out_b
    ]
    return [torch.randn(s, generator=g, dtype=torch.float64).requires_grad_() for s in shapes]


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("layout", ["whole", "channel blocks", "cache blocks"])
def test_hyena_operator_and_its_backward_match_the_equations(order, layout, monkeypatch):
    """The fused operator computes the paper's equations, forward and backward, however it
    splits the channels: all at once (saving), in recomputed channel blocks (long sequences),
    or in cache-sized sub-blocks."""
    inputs = operator_inputs(order)
    blocks = [(0, 4), (4, 6)] if layout == "channel blocks" else None
    if layout == "cache blocks":
        monkeypatch.setattr(hyena_kernels, "CACHE_BYTES", 2 * 64 * 8)  # 1 channel per block
    masks = torch.rand(order - 1, 2, 6, 23, generator=torch.Generator().manual_seed(1)) * 2
    for m in (None, masks.double()):
        got = hyena_operator(*inputs, order=order, masks=m, blocks=blocks)
        want = naive_operator(*inputs, order=order, masks=m)
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
        weights = torch.randn(got.shape, generator=torch.Generator().manual_seed(2))
        grads = torch.autograd.grad((got * weights.double()).sum(), inputs)
        want_grads = torch.autograd.grad((want * weights.double()).sum(), inputs)
        for i, (a, b) in enumerate(zip(grads, want_grads, strict=True)):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10, msg=f"input {i}")


def test_hyena_operator_backward_against_finite_differences():
    inputs = operator_inputs(2, batch=2, length=9, d_model=3)
    assert torch.autograd.gradcheck(lambda *t: hyena_operator(*t, order=2), inputs)
    assert torch.autograd.gradcheck(
        lambda *t: hyena_operator(*t, order=2, blocks=[(0, 2), (2, 3)]), inputs
    )


def test_hyena_operator_inference_from_a_cached_spectrum():
    inputs = [t.detach() for t in operator_inputs(2)]
    k, skip = inputs[5], inputs[6]
    k_f = hyena_kernels.kernel_spectrum(k, skip, fft_size(2 * 23))
    with torch.no_grad():
        got = hyena_operator(*inputs[:5], None, None, *inputs[7:], order=2, k_f=k_f)
    torch.testing.assert_close(got, naive_operator(*inputs, order=2), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("rows", ["whole", "blocks"])
def test_hyena_mlp_matches_gelu_tanh_mlp(rows, monkeypatch):
    """GELU(tanh) computed as h * sigmoid(2c(h + a h^3)) is the same function; the backward,
    written by hand, matches autograd's; in blocks of rows (long sequences) too."""
    if rows == "blocks":
        monkeypatch.setattr(hyena_kernels, "SAVE_LIMIT_BYTES", 1)
        monkeypatch.setattr(hyena_kernels, "BLOCK_BYTES", 7 * 16 * 4)  # 7 rows per block
        monkeypatch.setattr(hyena_kernels, "CACHE_BYTES", 3 * 16 * 4)  # GELU: 3 rows at a time
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 11, 8), (16, 8), (16,), (8, 16), (8,)]
    inputs = [torch.randn(s, generator=g, dtype=torch.float64).requires_grad_() for s in shapes]
    x, w1, b1, w2, b2 = inputs
    got = hyena_mlp(*inputs)
    want = F.linear(F.gelu(F.linear(x, w1, b1), approximate="tanh"), w2, b2)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    weights = torch.randn(got.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((got * weights).sum(), inputs)
    want_grads = torch.autograd.grad((want * weights).sum(), inputs)
    for a, b in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(hyena_mlp(*inputs), want, atol=1e-12, rtol=1e-12)


def test_fft_size_is_the_smallest_fast_even_length():
    def smooth(m: int) -> bool:
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for n in range(1, 2500):
        m = fft_size(n)
        assert m >= n and m % 2 == 0 and smooth(m), (n, m)
        assert not any(smooth(c) for c in range(n + n % 2, m, 2)), (n, m)
    assert fft_size(2 * 1024) == 2048
    assert fft_size(2 * 1026) == 2160  # official tiny-1k context: not 4096
    assert fft_size(2 * 1093) == 2250  # 2187 = 3^7 is odd: skipped


def test_gradient_checkpointing_gives_the_same_gradients_and_keeps_less():
    """Per-block checkpointing recomputes each block in the backward pass: the loss and every
    gradient are bitwise equal to those of the plain step, while the tensors kept for the
    backward pass shrink to the blocks' inputs (and the head)."""
    torch.manual_seed(0)
    plain = AutoModelForCausalLM.from_config(micro_config("hyena", max_seq_len=512))
    perturb(plain)
    config = micro_config("hyena", max_seq_len=512, gradient_checkpointing=True)
    checkpointed = AutoModelForCausalLM.from_config(config)
    checkpointed.load_state_dict(plain.state_dict())
    assert checkpointed.hyena.backbone.gradient_checkpointing
    assert "gradient_checkpointing" not in checkpointed.config.to_dict()  # not saved
    x = random_dna(2, 512)
    kept = {}
    for name, model in (("plain", plain), ("checkpointed", checkpointed)):
        model.train()
        sizes = []

        def pack(t, sizes=sizes):
            sizes.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = model(x, labels=x).loss
        loss.backward()
        kept[name] = (loss.detach(), sum(sizes))
    assert torch.equal(kept["plain"][0], kept["checkpointed"][0])
    for (n, p), q in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad), n
    assert kept["checkpointed"][1] < kept["plain"][1] / 4, kept
    # The transformers switch turns it off again (`gradient_checkpointing_*` are its aliases).
    checkpointed.activation_checkpointing_disable()
    assert not checkpointed.hyena.backbone.gradient_checkpointing


def test_long_inputs_run_in_blocks_and_recompute_with_the_same_gradients(monkeypatch):
    """Past the memory limits the operator, the MLP and the filter recompute in the backward
    pass instead of saving; the results are those of the saving path (to float rounding)."""
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(micro_config("hyena", max_seq_len=256))
    perturb(lm)
    x = random_dna(2, 256)
    lm.train()
    out = lm(x, labels=x)
    out.loss.backward()
    grads = [p.grad.clone() for p in lm.parameters()]
    lm.zero_grad()
    monkeypatch.setattr(hyena_kernels, "SAVE_LIMIT_BYTES", 2**14)
    monkeypatch.setattr(hyena_kernels, "BLOCK_BYTES", 2**16)
    monkeypatch.setattr(modeling_hyena, "SAVE_LIMIT_BYTES", 2**14)
    assert len(hyena_kernels.channel_blocks(2, 64, 256, 2)) > 1
    lm.activation_checkpointing_enable()
    blocked = lm(x, labels=x)
    blocked.loss.backward()
    torch.testing.assert_close(blocked.logits, out.logits, atol=1e-5, rtol=1e-5)
    for g, p in zip(grads, lm.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-4)


def test_inference_reuses_the_filter_spectrum_until_parameters_change():
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(micro_config("hyena")).eval()
    perturb(lm)
    saved = {k: v.clone() for k, v in lm.state_dict().items()}
    x = random_dna(2, 40)
    filt = lm.hyena.backbone.layers[0].mixer.filter_fn
    with torch.no_grad():
        first = lm(x).logits
        spectrum = filt.spectrum(40, fft_size(80))
        assert filt.spectrum(40, fft_size(80)) is spectrum  # cached, not recomputed
        assert torch.equal(lm(x).logits, first)
    torch.testing.assert_close(lm(x).logits.detach(), first, atol=1e-5, rtol=1e-5)  # grad path
    # A training step moves the filter: inference must see the new parameters.
    lm.train()
    torch.optim.SGD(lm.parameters(), lr=0.1).zero_grad()
    lm(x, labels=x).loss.backward()
    torch.optim.SGD(lm.parameters(), lr=0.1).step()
    lm.eval()
    with torch.no_grad():
        moved = lm(x).logits
        assert filt.spectrum(40, fft_size(80)) is not spectrum
    assert not torch.allclose(moved, first, atol=1e-3)
    torch.testing.assert_close(lm(x).logits.detach(), moved, atol=1e-5, rtol=1e-5)
    # Loading weights back (an in-place copy) invalidates the cache too.
    lm.load_state_dict(saved)
    with torch.inference_mode():
        torch.testing.assert_close(lm(x).logits, first, atol=1e-5, rtol=1e-5)
    # Tensors cached in inference mode never leak into a later backward pass.
    lm.train()
    lm(x, labels=x).loss.backward()


def test_bf16_autocast_keeps_the_filter_and_ffts_in_float32():
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(micro_config("hyena"))
    perturb(lm)
    x = random_dna(2, 40)
    reference = lm(x).logits.detach()
    filt = lm.hyena.backbone.layers[0].mixer.filter_fn
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert filt.filter(40).dtype == torch.float32
        out = lm(x, labels=x)  # an rfft of bf16 would raise on the CPU
    out.loss.backward()
    assert all(p.grad is not None for p in lm.parameters())
    error = (out.logits.float() - reference).abs().max()
    assert error < 0.05 * reference.abs().max(), error


@pytest.mark.parametrize("arch", ["hyena", "gpt"])
def test_compile_model_compiles_blocks_in_place_and_keeps_state_dict_names(arch):
    from dnalm.models import compile_model, model_config

    config = model_config(arch, "micro", vocab_size=12, pad_token_id=4, max_seq_len=256)
    model = AutoModelForCausalLM.from_config(config)
    names = list(model.state_dict())
    compile_model(model)
    blocks = model.hyena.backbone.layers if arch == "hyena" else model.model.layers
    assert all(block._compiled_call_impl is not None for block in blocks)
    assert list(model.state_dict()) == names  # no _orig_mod prefix: checkpoints stay plain
