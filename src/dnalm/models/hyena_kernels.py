"""Speed machinery of the Hyena operator, kept apart so that `modeling_hyena` reads as the paper.

Nothing here changes what the model computes; each piece computes the same maths with less work:

* `fft_size`: the FFT length of a causal convolution (zero-padded to >= 2L, no wrap-around);
* `fft_causal_conv` / `CausalFFTConv`: the long convolution, whose backward reuses the forward
  spectra instead of redoing them;
* `VersionedCache`: values derived from parameters or buffers (the decay window, the inference
  filter spectrum), reused until a tensor they came from changes;
* `project_to_channels_first` / `project_from_channels_first`: the mixer's projections as GEMMs
  that read and write its channels-first layout directly.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

import torch
from torch import nn


def fft_size(n: int) -> int:
    """Smallest even 5-smooth integer >= n, a fast length for real FFTs.

    pocketfft (CPU) and cuFFT have radix-2/3/5 kernels, so e.g. 2L = 2052 (official tiny-1k
    context 1026) becomes 2160, not 4096. Odd lengths are skipped: a real FFT of even length is
    a half-length complex one, and 2187 = 3^7 measured ~3x slower than 2160 here.
    """
    if n < 1:
        raise ValueError(f"FFT size must be positive, got {n}")
    n += n % 2
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 2


def no_autocast(device_type: str):
    """Autocast switched off: the implicit filter and the FFTs need float32 (HyenaDNA does too)."""
    return torch.autocast(device_type=device_type, enabled=False)


class CausalFFTConv(torch.autograd.Function):
    """`y = irfft(rfft(u) * rfft(k))[:L]` whose backward reuses the forward spectra.

    Autograd's own backward of this chain redoes both forward transforms and runs complex-to-complex
    FFTs; here it is one rfft of the output gradient and one irfft per input (the kernel gradient
    is summed over the batch in the frequency domain before its irfft).
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, k: torch.Tensor, n_fft: int) -> torch.Tensor:
        seqlen = u.shape[-1]
        u_f = torch.fft.rfft(u, n=n_fft)
        k_f = torch.fft.rfft(k, n=n_fft)
        ctx.save_for_backward(u_f, k_f)
        ctx.n_fft, ctx.seqlen = n_fft, seqlen
        # A contiguous copy: a view would keep the whole n_fft-long buffer alive for backward.
        return torch.fft.irfft(u_f * k_f, n=n_fft)[..., :seqlen].contiguous()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y: torch.Tensor):
        u_f, k_f = ctx.saved_tensors
        n_fft, seqlen = ctx.n_fft, ctx.seqlen
        # The adjoint of a causal convolution is the correlation with the same kernel; with both
        # signals zero-padded to n_fft >= 2L the circular correlation has no wrap-around either.
        grad_f = torch.fft.rfft(grad_y, n=n_fft)
        grad_u = grad_k = None
        if ctx.needs_input_grad[0]:
            grad_u = torch.fft.irfft(grad_f * k_f.conj(), n=n_fft)[..., :seqlen]
        if ctx.needs_input_grad[1]:
            cross = (grad_f * u_f.conj()).sum(0)
            grad_k = torch.fft.irfft(cross, n=n_fft)[..., :seqlen]
        return grad_u, grad_k, None


def fold_skip_into_kernel(k: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The kernel (channels, L) with the skip term `bias * u[t]` added to its lag-0 tap."""
    return torch.cat([k[:, :1] + bias.to(k.dtype).unsqueeze(-1), k[:, 1:]], dim=-1)


def fft_causal_conv(
    u: torch.Tensor,
    k: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    k_f: torch.Tensor | None = None,
    n_fft: int | None = None,
) -> torch.Tensor:
    """Causal long convolution `y[t] = sum_{s<=t} k[s] u[t-s] + bias * u[t]` via FFT.

    `u` is (batch, channels, L) and `k` is (channels, L). Both are zero-padded to a fast FFT size
    of at least 2L, so the circular convolution has no wrap-around; the skip term is the kernel's
    lag-0 tap. Instead of `k` (and `bias`), inference may pass the kernel's spectrum `k_f`
    (`rfft(k, n_fft)`, cached across calls), with its `n_fft`. Computed in float32 with autocast
    off; the result has `u`'s dtype.
    """
    seqlen = u.shape[-1]
    n_fft = fft_size(2 * seqlen) if n_fft is None else n_fft
    with no_autocast(u.device.type):
        if k_f is not None:
            spectrum = torch.fft.rfft(u.float(), n=n_fft) * k_f
            y = torch.fft.irfft(spectrum, n=n_fft)[..., :seqlen]
        else:
            k = k.float()
            if bias is not None:
                k = fold_skip_into_kernel(k, bias)
            y = CausalFFTConv.apply(u.float(), k, n_fft)
    return y.to(u.dtype)


class VersionedCache:
    """Tensors computed from parameters or buffers, reused until one of those changes.

    A key holds each source tensor's storage address and version counter: an optimizer step or a
    `load_state_dict` (in-place updates) moves the counter, so a stale value is never returned.
    Inference tensors have no version counter; with those as sources nothing is cached.
    """

    def __init__(self, max_entries: int = 4, max_bytes: int | None = None):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._values: dict[Hashable, tuple[tuple, torch.Tensor]] = {}

    def get(
        self, key: Hashable, sources: Iterable[torch.Tensor], compute: Callable[[], torch.Tensor]
    ) -> torch.Tensor:
        """The cached value for `key` if its `sources` are unchanged; else `compute()`, stored."""
        try:
            state = tuple((s.data_ptr(), s._version) for s in sources)
        except RuntimeError:  # inference tensors: no version counter, no caching
            return compute()
        hit = self._values.get(key)
        if hit is not None and hit[0] == state:
            return hit[1]
        value = compute()
        if self.max_bytes is not None and value.numel() * value.element_size() > self.max_bytes:
            return value
        if any(old_state != state for old_state, _ in self._values.values()):
            self._values.clear()  # the sources moved on: every older value is stale
        if key not in self._values and len(self._values) >= self.max_entries:
            self._values.pop(next(iter(self._values)))
        self._values[key] = (state, value)
        return value

    def clear(self) -> None:
        self._values.clear()


def project_to_channels_first(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """`linear(x).transpose(1, 2)` as one contiguous (batch, out, L) batched GEMM.

    The mixer works channels-first, the layout of the short convolution and the FFTs. Reading and
    writing it through transposed GEMM operands avoids the copies that `nn.Linear` + `transpose`
    cost, forward and backward (measured: ~15% of the mixer's time on CPU).
    """
    batch, seqlen = x.shape[0], x.shape[1]
    weight = linear.weight.expand(batch, -1, -1)
    if linear.bias is None:
        return torch.bmm(weight, x.transpose(1, 2))
    bias = linear.bias.unsqueeze(-1).expand(batch, -1, seqlen)
    return torch.baddbmm(bias, weight, x.transpose(1, 2))


def project_from_channels_first(z: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """`linear(z.transpose(1, 2))` for channels-first `z`, as one batched GEMM (batch, L, out)."""
    batch, seqlen = z.shape[0], z.shape[2]
    weight = linear.weight.t().expand(batch, -1, -1)
    if linear.bias is None:
        return torch.bmm(z.transpose(1, 2), weight)
    return torch.baddbmm(linear.bias.expand(batch, seqlen, -1), z.transpose(1, 2), weight)


__all__ = [
    "CausalFFTConv",
    "VersionedCache",
    "fft_causal_conv",
    "fft_size",
    "fold_skip_into_kernel",
    "no_autocast",
    "project_from_channels_first",
    "project_to_channels_first",
]
