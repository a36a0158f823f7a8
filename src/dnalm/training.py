"""Training loops: next-token pretraining and classification fine-tuning.

Plain loops in the spirit of nanoGPT: sample a batch, forward, backward, clip, step, log. Every
run is driven by a seed that fixes the data order, so a pretrained and a scratch run of one seed
see exactly the same batches.

Under torchrun (several processes) the loops train a DDP-wrapped model: every rank draws the same
global batch and computes the loss on its own slice of it, weighted so that the averaged gradient
is the gradient of the whole batch's loss. The per-step losses and the final weights therefore
match a one-process run with the same `batch_size` (up to float rounding). Evaluation is shared
out the same way and gathered, so every rank takes the same model-selection decision; only the
main rank writes curves and logs progress.
"""

from __future__ import annotations

import copy
import json
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from logging import Logger, getLogger
from pathlib import Path

import numpy as np
import torch

from dnalm import distributed
from dnalm.files import atomic_path
from dnalm.metrics import classification_metrics
from dnalm.runtime import autocast
from dnalm.shards import TokenShard
from dnalm.tokenization import reverse_complement_rows


@dataclass
class TrainConfig:
    batch_size: int
    lr: float
    steps: int = 0
    tokens: int | None = None
    grad_accum_steps: int = 1
    weight_decay: float = 0.1
    warmup_steps: int = 0
    min_lr_fraction: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_sequences: int = 256
    log_every: int = 10
    checkpoint_every: int = 0
    rc_augment: float = 0.0
    seq_len_warmup: dict | None = None
    class_weight: str = "none"
    patience: int = 0
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def global_batch(self) -> int:
        """Rows per optimiser step: `batch_size` rows per forward pass, `grad_accum_steps` passes."""
        return self.batch_size * self.grad_accum_steps


# Settings that change how often a run reports or saves, not what it computes: a checkpoint
# written under other values of these is still resumed.
NOT_IN_FINGERPRINT = ("checkpoint_every", "log_every")


def check_config(cfg: TrainConfig) -> None:
    """Reject settings the loops cannot honour, before any work is done."""
    if cfg.grad_accum_steps < 1:
        raise ValueError(f"grad_accum_steps must be >= 1, not {cfg.grad_accum_steps}")
    if not 0.0 <= cfg.rc_augment <= 1.0:
        raise ValueError(f"rc_augment is a probability in [0, 1], not {cfg.rc_augment}")
    if cfg.class_weight not in ("none", "balanced"):
        raise ValueError(f"class_weight must be none or balanced, not {cfg.class_weight!r}")
    if cfg.steps < 1:
        raise ValueError("the training budget is missing: give steps (or tokens, for pretraining)")
    if cfg.seq_len_warmup:
        w = cfg.seq_len_warmup
        unknown = set(w) - {"start", "stages", "fraction"}
        if unknown or int(w.get("start", 0)) < 1 or int(w.get("stages", 0)) < 1:
            raise ValueError(
                "seq_len_warmup takes start (>= 1), stages (>= 1) and optionally fraction, "
                f"not {w!r}"
            )
        if not 0.0 < float(w.get("fraction", 0.5)) <= 1.0:
            raise ValueError(f"seq_len_warmup fraction must be in (0, 1], not {w['fraction']}")


def resolve_steps(cfg: TrainConfig, tokens_per_row: float) -> TrainConfig:
    """Turn a token budget into optimiser steps: ceil(tokens / (global batch x row length)).

    The row length is the mean training window length in tokens, so the budget counts the
    tokens a run at full length sees (a sequence-length warm-up sees fewer).
    """
    if cfg.tokens is None:
        return cfg
    if cfg.steps:
        raise ValueError(
            f"give the pretraining budget as steps ({cfg.steps}) or tokens ({cfg.tokens}), not both"
        )
    if cfg.tokens < 1 or tokens_per_row <= 0:
        raise ValueError(f"token budget {cfg.tokens} needs positive tokens and windows")
    steps = math.ceil(cfg.tokens / (cfg.global_batch * tokens_per_row))
    return replace(cfg, steps=steps)


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to `min_lr_fraction` of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    floor = cfg.lr * cfg.min_lr_fraction
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def train_length(step: int, cfg: TrainConfig, full: int) -> int:
    """HyenaDNA's sequence-length warm-up: the training length at 0-based `step`.

    The first `fraction` (default 0.5) of the steps is cut into `stages` equal stages training
    on start, 2 x start, 4 x start, ... tokens (never above the full length); then full length.
    """
    w = cfg.seq_len_warmup
    if not w:
        return full
    warm = int(cfg.steps * float(w.get("fraction", 0.5)))
    if step >= warm:
        return full
    stage = step * int(w["stages"]) // warm
    return min(full, int(w["start"]) * 2**stage)


def checkpoint_due(step: int, cfg: TrainConfig) -> bool:
    """Save every `checkpoint_every` steps; not after the last one (the outputs follow)."""
    return bool(cfg.checkpoint_every) and step % cfg.checkpoint_every == 0 and step < cfg.steps


def no_decay(name: str, param: torch.nn.Parameter) -> bool:
    """Norms, biases (every parameter under 2-d) and Hyena's implicit filters skip weight decay.

    The filter MLP, its positional encoding and modulation (`filter_fn`) define long
    convolution kernels; HyenaDNA trains them without weight decay, like norms and biases.
    """
    return param.dim() < 2 or "filter_fn" in name


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only (see `no_decay`)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), fused=False)


def set_learning_rate(opt: torch.optim.Optimizer, step: int, cfg: TrainConfig) -> float:
    """Apply the schedule's rate for `step` (0-based) to every parameter group."""
    lr = learning_rate(step, cfg)
    for group in opt.param_groups:
        group["lr"] = lr
    return lr


def finish_step(model, opt: torch.optim.Optimizer, grad_clip: float) -> None:
    """Clip the global gradient norm (over all accumulated micro-batches), update, reset."""
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)


def check_world(cfg: TrainConfig) -> int:
    """The number of processes; each needs at least one row of every global batch."""
    world = distributed.world_size()
    if cfg.batch_size < world:
        raise ValueError(
            f"batch_size {cfg.batch_size} is smaller than the {world} training processes: "
            "the batch size is the global batch, split across processes"
        )
    return world


class BatchSampler:
    """Shuffled epochs over n rows, as a pure function of (seed, step).

    Epoch e is the permutation drawn from the generator seeded with (seed, e), cut into full
    batches; so the rows of any step are known without replaying the steps before it, and a
    run resumed from a checkpoint sees exactly the batches an uninterrupted run sees.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        if n == 0:
            raise ValueError("cannot train on an empty split")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.per_epoch = max(1, n // batch_size)
        self._epoch, self._order = -1, np.zeros(0, dtype=np.int64)

    def rows(self, step: int) -> np.ndarray:
        """The global batch of 0-based `step`."""
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._epoch = epoch
        return self._order[i * self.batch_size : (i + 1) * self.batch_size]


def micro_batches(rows: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """A global batch cut into forward passes of `batch_size` rows (gradient accumulation)."""
    return [rows[lo : lo + batch_size] for lo in range(0, len(rows), batch_size)]


def row_draws(rows: np.ndarray, seed: int, step: int, salt: int) -> dict[int, float]:
    """One uniform number per row, a pure function of (seed, step, row): every rank and a
    resumed run draw the same augmentation for the same row."""
    u = np.random.default_rng([seed, step, salt]).random(len(rows))
    return dict(zip(rows.tolist(), u.tolist(), strict=True))


def crop_rows(
    ids: np.ndarray, mask: np.ndarray, length: int, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cut rows longer than `length` to a window starting at fraction `offsets` of the slack."""
    if ids.shape[1] <= length:
        return ids, mask
    ids, mask = ids.copy(), mask.copy()
    for j in range(len(ids)):
        n = int(mask[j].sum())
        if n > length:
            lo = int(offsets[j] * (n - length + 1))
            ids[j, :length] = ids[j, lo : lo + length]
    return ids[:, :length], mask[:, :length]


def sync_gradients(net, last: bool):
    """DDP all-reduces gradients only on the last micro-batch of a step."""
    if not last and hasattr(net, "no_sync"):
        return net.no_sync()
    return nullcontext()


class CurveWriter:
    """Appends one TSV row per logged point so a killed run still leaves its curve.

    Under torchrun only the main rank opens the file; on the others every call does nothing.
    """

    def __init__(self, path: str | Path, columns: list[str], rows: list[dict] | None = None):
        self.columns = columns
        self.rows: list[dict] = []
        self.handle = None
        if distributed.is_main():
            self.handle = open(path, "w")  # noqa: SIM115 - closed in close()
            self.handle.write("\t".join(columns) + "\n")
        for row in rows or []:  # the rows a resumed run had written before its checkpoint
            self.write(**row)

    def write(self, **row) -> None:
        self.rows.append(row)
        if self.handle is None:
            return
        self.handle.write("\t".join(_fmt(row.get(c, "")) for c in self.columns) + "\n")
        self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class Checkpoint:
    """A run's resumable state in one file, outside Snakemake's outputs.

    Holds model and optimiser tensors, the torch RNG states and, as JSON, the step, the
    training settings it was written under (the fingerprint) and the loop's bookkeeping. It is
    written whole (temp file + `os.replace`) by the main rank and read back with
    `torch.load(weights_only=True)` by every rank. A checkpoint whose fingerprint differs from
    the current run's is ignored and later overwritten.
    """

    def __init__(self, directory: str | Path, fingerprint: dict, log: Logger | None = None):
        self.path = Path(directory) / "checkpoint.pt"
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        self.log = log or getLogger("dnalm")

    def load(self) -> dict | None:
        """The saved state if it belongs to this run, else None (and why, in the log)."""
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            meta = json.loads(state["meta"])
        except Exception as err:  # a foreign or damaged file: start afresh, say so
            self.log.warning("checkpoint %s is unreadable (%s): starting afresh", self.path, err)
            return None
        if meta.get("fingerprint") != self.fingerprint:
            self.log.info(
                "checkpoint %s was written with other training parameters: ignoring it "
                "(it will be overwritten)",
                self.path,
            )
            return None
        self.log.info("resuming from checkpoint %s at step %d", self.path, meta["step"])
        state["meta"] = meta
        return state

    def save(self, step: int, model, opt, meta: dict, tensors: dict | None = None) -> None:
        if not distributed.is_main():
            return
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = {
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(),
            "rng": rng,
            "meta": json.dumps({**meta, "step": step, "fingerprint": self.fingerprint}),
            **(tensors or {}),
        }
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)
        self.log.info("checkpoint at step %d: %s", step, self.path)

    def remove(self) -> None:
        """Called once the run's outputs are written: nothing is left to resume."""
        if distributed.is_main():
            self.path.unlink(missing_ok=True)


def restore(state: dict, model, opt) -> None:
    """Model, optimiser and RNG states of a checkpoint, into this process."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])


def fingerprint(cfg: TrainConfig, **extra) -> dict:
    """What a run's result depends on: its settings (less reporting ones) and the caller's."""
    settings = {k: v for k, v in cfg.as_dict().items() if k not in NOT_IN_FINGERPRINT}
    return {"train": settings, **extra}


def lm_batch(
    shard: TokenShard, rows: np.ndarray, pad_id: int, device, length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids, LM labels) for some rows; padding is ignored by the loss (label -100)."""
    ids, mask = shard.batch(rows, pad_id, length)
    return lm_tensors(ids, mask, device)


def lm_tensors(ids: np.ndarray, mask: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and their LM labels on `device`: padding gets label -100, which the loss skips."""
    ids_t = torch.from_numpy(ids).to(device)
    return ids_t, ids_t.masked_fill(torch.from_numpy(mask).to(device) == 0, -100)


def lm_targets(shard: TokenShard, rows: np.ndarray, length: int | None = None) -> int:
    """Predicted positions (tokens after the first of each row, rows cut to `length`): what the
    LM loss averages over."""
    lens = shard.lengths[rows].astype(np.int64)
    if length is not None:
        lens = np.minimum(lens, length)
    return int(np.maximum(lens - 1, 0).sum())


def rank_share(local: float, total: float) -> float:
    """Weight of this rank's mean loss so that DDP's gradient average is the global mean's."""
    return local / total * distributed.world_size()


@torch.no_grad()
def lm_loss(
    model, shard: TokenShard, rows: np.ndarray, batch_size: int, pad_id: int, device
) -> float:
    """Mean next-token loss (nats per token) over the given rows, on every rank alike."""
    model.eval()
    total, count = 0.0, 0
    for lo in range(0, len(rows), batch_size):
        chunk = rows[lo : lo + batch_size]
        mine = distributed.rank_slice(chunk)
        if len(mine) == 0:
            continue
        width = int(shard.lengths[chunk].max())
        ids_t, labels = lm_batch(shard, mine, pad_id, device, width)
        with autocast(device):
            loss = model(input_ids=ids_t, labels=labels).loss
        n = int((labels[:, 1:] != -100).sum())
        total += float(loss) * n
        count += n
    model.train()
    total, count = distributed.all_reduce_sum([total, count])
    return total / max(1, count)


def lm_micro_batch(
    shard: TokenShard,
    micro: np.ndarray,
    *,
    cfg: TrainConfig,
    step: int,
    length: int,
    pad_id: int,
    complement: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask) of this rank's rows of one forward pass, cropped to the warm-up length and
    randomly reverse-complemented; every random choice is a function of (seed, step, row)."""
    mine = distributed.rank_slice(micro)
    width = int(shard.lengths[micro].max())
    ids, mask = shard.batch(mine, pad_id, width)
    if length < width:
        offsets = row_draws(micro, cfg.seed, step, salt=1)
        ids, mask = crop_rows(ids, mask, length, np.array([offsets[int(r)] for r in mine]))
    if complement is not None and cfg.rc_augment > 0:
        draws = row_draws(micro, cfg.seed, step, salt=2)
        flip = np.array([draws[int(r)] < cfg.rc_augment for r in mine])
        reverse_complement_rows(ids, mask, flip, complement)
    return ids, mask


def pretrain_lm(
    model,
    train: TokenShard,
    val: TokenShard,
    cfg: TrainConfig,
    *,
    pad_id: int,
    device: torch.device,
    curve_path: str | Path,
    log: Logger | None = None,
    checkpoint: Checkpoint | None = None,
    complement: np.ndarray | None = None,
) -> dict:
    """Next-token pretraining; returns a summary with the final validation loss.

    `cfg.tokens` (instead of `cfg.steps`) sets the budget in tokens; `complement` (from
    `complement_ids`) is needed when `cfg.rc_augment` > 0. With a `checkpoint`, the state is
    saved every `cfg.checkpoint_every` steps and a matching saved state is resumed.
    """
    log = log or getLogger("dnalm")
    cfg = resolve_steps(cfg, float(np.mean(train.lengths)) if len(train) else 0.0)
    check_config(cfg)
    if cfg.rc_augment > 0 and complement is None:
        raise ValueError("rc_augment > 0 needs the tokenizer's complement map (complement_ids)")
    world = check_world(cfg)
    torch.manual_seed(cfg.seed)
    model.to(device).train()
    opt = make_optimizer(model, cfg)
    state = checkpoint.load() if checkpoint else None
    meta = state["meta"] if state else {"step": 0, "tokens": 0, "seconds": 0.0, "running": []}
    if state:
        restore(state, model, opt)
    net = distributed.wrap_model(model, device)
    val_rows = np.arange(min(len(val), cfg.eval_sequences))
    curve = CurveWriter(
        curve_path,
        ["step", "tokens", "lr", "train_loss", "val_loss", "val_bits_per_base", "seconds"],
        meta.get("curve"),
    )
    sampler = BatchSampler(len(train), cfg.global_batch, cfg.seed)
    full = int(train.lengths.max())
    tokens, running = int(meta["tokens"]), list(meta["running"])
    t0 = time.perf_counter() - float(meta["seconds"])
    val_loss = float(meta.get("val_loss", float("nan")))
    start = int(meta["step"])
    try:
        for step in range(start + 1, cfg.steps + 1):
            lr = set_learning_rate(opt, step - 1, cfg)
            rows = sampler.rows(step - 1)  # the global batch, the same on every rank
            length = train_length(step - 1, cfg, full)
            total = lm_targets(train, rows, length)
            parts = micro_batches(rows, cfg.batch_size)
            step_loss = 0.0
            for k, micro in enumerate(parts):
                ids, mask = lm_micro_batch(
                    train,
                    micro,
                    cfg=cfg,
                    step=step - 1,
                    length=length,
                    pad_id=pad_id,
                    complement=complement,
                )
                ids_t, labels = lm_tensors(ids, mask, device)
                share = rank_share(int(np.maximum(mask.sum(axis=1) - 1, 0).sum()), total)
                with sync_gradients(net, k == len(parts) - 1):
                    with autocast(device):
                        loss = net(input_ids=ids_t, labels=labels).loss * share
                    loss.backward()
                step_loss += loss.item()
            tokens += int(np.minimum(train.lengths[rows], length).sum())  # the global batch's
            finish_step(model, opt, cfg.grad_clip)
            running.append(step_loss)
            if step % cfg.log_every == 0 or step == cfg.steps:
                elapsed = time.perf_counter() - t0
                log.info(
                    "pretrain step %d/%d  loss %.4f  lr %.2e  len %d  %.0f tokens/s  eta %.0fs",
                    step,
                    cfg.steps,
                    distributed.mean_across_ranks(np.mean(running)),
                    lr,
                    length,
                    tokens / elapsed,
                    elapsed / max(1, step - start) * (cfg.steps - step),
                )
            if step % cfg.eval_every == 0 or step == cfg.steps:
                val_loss = lm_loss(model, val, val_rows, cfg.batch_size, pad_id, device)
                log.info(
                    "pretrain step %d  val loss %.4f  (%.3f bits/base)",
                    step,
                    val_loss,
                    val_loss / math.log(2),
                )
                curve.write(
                    step=step,
                    tokens=tokens,
                    lr=lr,
                    train_loss=distributed.mean_across_ranks(np.mean(running)),
                    val_loss=val_loss,
                    val_bits_per_base=val_loss / math.log(2),
                    seconds=time.perf_counter() - t0,
                )
                running = []
            if checkpoint and checkpoint_due(step, cfg):
                checkpoint.save(
                    step,
                    model,
                    opt,
                    {
                        "tokens": tokens,
                        "seconds": time.perf_counter() - t0,
                        "running": running,
                        "val_loss": val_loss,
                        "curve": curve.rows,
                    },
                )
    finally:
        curve.close()
    seconds = time.perf_counter() - t0
    return {
        "steps": cfg.steps,
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "val_loss": val_loss,
        "val_bits_per_base": val_loss / math.log(2),
        "val_sequences": len(val_rows),
        "processes": world,
        "resumed_from_step": start,
    }


@torch.no_grad()
def predict_proba(model, shard: TokenShard, batch_size: int, pad_id: int, device) -> np.ndarray:
    """Class probabilities for every sequence of a shard, in shard order (on every rank)."""
    model.eval()
    n_labels = model.config.num_labels
    out, mine_all = [], []
    for lo in range(0, len(shard), batch_size):
        rows = np.arange(lo, min(lo + batch_size, len(shard)))
        mine = distributed.rank_slice(rows)
        if len(mine) == 0:
            continue
        ids, mask = shard.batch(mine, pad_id, int(shard.lengths[rows].max()))
        with autocast(device):
            logits = model(
                input_ids=torch.from_numpy(ids).to(device),
                attention_mask=torch.from_numpy(mask).to(device),
            ).logits
        out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        mine_all.append(mine)
    model.train()
    local = np.concatenate(out) if out else np.zeros((0, n_labels), dtype=np.float32)
    if distributed.world_size() == 1:
        return local if out else np.zeros((0, n_labels))
    return _gather_by_row(local, len(shard), batch_size)


def _gather_by_row(local: np.ndarray, n: int, batch_size: int) -> np.ndarray:
    """Put every rank's rows (chunked as in `predict_proba`) back into shard order."""
    world = distributed.world_size()
    owned = [
        np.concatenate(
            [
                distributed.rank_slice(np.arange(lo, min(lo + batch_size, n)), world, r)
                for lo in range(0, n, batch_size)
            ]
            or [np.zeros(0, dtype=np.int64)]
        )
        for r in range(world)
    ]
    parts = distributed.all_gather_rows(local, [len(o) for o in owned])
    full = np.empty((n, *local.shape[1:]), dtype=local.dtype)
    for rows, part in zip(owned, parts, strict=True):
        full[rows] = part
    return full


def evaluate(
    model, shard: TokenShard, batch_size: int, pad_id: int, device
) -> tuple[dict, np.ndarray]:
    """Cross-entropy loss and classification metrics over a whole split."""
    probs = predict_proba(model, shard, batch_size, pad_id, device)
    labels = shard.labels.astype(np.int64)
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))))
    return {"loss": loss, **classification_metrics(labels, probs)}, probs


def class_weights(labels: np.ndarray, n_labels: int, how: str) -> np.ndarray:
    """Per-class loss weights: ones, or `balanced` = n / (classes x count), as scikit-learn."""
    if how == "none":
        return np.ones(n_labels)
    counts = np.bincount(labels.astype(np.int64), minlength=n_labels).astype(np.float64)
    weights = np.zeros(n_labels)
    present = counts > 0
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights


def finetune_classifier(
    model,
    train: TokenShard,
    val: TokenShard,
    cfg: TrainConfig,
    *,
    pad_id: int,
    device: torch.device,
    curve_path: str | Path,
    select_on: str = "loss",
    log: Logger | None = None,
    checkpoint: Checkpoint | None = None,
    complement: np.ndarray | None = None,
) -> dict:
    """Train a classifier, keeping the weights that score best on VALIDATION.

    The test split is never seen here; the caller scores it once with the selected weights.
    `cfg.class_weight: balanced` weighs the loss against class imbalance; `cfg.patience` > 0
    stops after that many evaluations without a better validation score.
    """
    log = log or getLogger("dnalm")
    check_config(cfg)
    if cfg.rc_augment > 0 and complement is None:
        raise ValueError("rc_augment > 0 needs the tokenizer's complement map (complement_ids)")
    world = check_world(cfg)
    torch.manual_seed(cfg.seed)
    model.to(device).train()
    opt = make_optimizer(model, cfg)
    state = checkpoint.load() if checkpoint else None
    meta = state["meta"] if state else {"step": 0, "seconds": 0.0, "running": []}
    if state:
        restore(state, model, opt)
    net = distributed.wrap_model(model, device)
    curve = CurveWriter(
        curve_path,
        ["step", "lr", "train_loss", "val_loss", "val_accuracy", "val_mcc", "val_auroc", "seconds"],
        meta.get("curve"),
    )
    sign = 1.0 if select_on == "loss" else -1.0  # lower loss is better, higher metrics are
    best = {"score": math.inf, "step": 0, "state": None, "val": {}, "stale": 0}
    if state and "best" in meta:
        best = {**meta["best"], "state": state.get("best_state")}
    train_labels = train.labels.astype(np.int64)
    weights = class_weights(train_labels, model.config.num_labels, cfg.class_weight)
    if cfg.class_weight != "none":
        log.info("class weights (%s): %s", cfg.class_weight, np.round(weights, 4).tolist())
    weights_t = torch.tensor(weights, dtype=torch.float32, device=device)
    sampler = BatchSampler(len(train), cfg.global_batch, cfg.seed)
    t0, running = time.perf_counter() - float(meta["seconds"]), list(meta["running"])
    start, last = int(meta["step"]), int(meta["step"])
    try:
        for step in range(start + 1, cfg.steps + 1):
            last = step
            lr = set_learning_rate(opt, step - 1, cfg)
            rows = sampler.rows(step - 1)  # the global batch, the same on every rank
            total = float(weights[train_labels[rows]].sum())
            parts = micro_batches(rows, cfg.batch_size)
            step_loss = 0.0
            for k, micro in enumerate(parts):
                mine = distributed.rank_slice(micro)
                ids, mask = train.batch(mine, pad_id, int(train.lengths[micro].max()))
                if complement is not None and cfg.rc_augment > 0:
                    draws = row_draws(micro, cfg.seed, step - 1, salt=2)
                    flip = np.array([draws[int(r)] < cfg.rc_augment for r in mine])
                    reverse_complement_rows(ids, mask, flip, complement)
                y = torch.from_numpy(train_labels[mine]).to(device)
                with sync_gradients(net, k == len(parts) - 1):
                    with autocast(device):
                        logits = net(
                            input_ids=torch.from_numpy(ids).to(device),
                            attention_mask=torch.from_numpy(mask).to(device),
                        ).logits
                    # sum of weighted row losses over the global batch's total weight: the
                    # same gradient for any split into ranks and micro-batches
                    per_row = torch.nn.functional.cross_entropy(
                        logits.float(), y, weight=weights_t, reduction="sum"
                    )
                    loss = per_row * (world / total)
                    loss.backward()
                step_loss += loss.item()
            finish_step(model, opt, cfg.grad_clip)
            running.append(step_loss)
            if step % cfg.log_every == 0 or step == cfg.steps:
                log.info(
                    "finetune step %d/%d  loss %.4f  lr %.2e",
                    step,
                    cfg.steps,
                    distributed.mean_across_ranks(np.mean(running)),
                    lr,
                )
            stop = False
            if step % cfg.eval_every == 0 or step == cfg.steps:
                scores, _ = evaluate(model, val, cfg.batch_size, pad_id, device)
                score = sign * scores[select_on]
                if score < best["score"]:
                    best = {
                        "score": score,
                        "step": step,
                        "val": scores,
                        "stale": 0,
                        "state": copy.deepcopy(
                            {k: v.detach().cpu() for k, v in model.state_dict().items()}
                        ),
                    }
                else:
                    best["stale"] += 1
                log.info(
                    "finetune step %d  val loss %.4f  acc %.3f  mcc %.3f  auroc %.3f%s",
                    step,
                    scores["loss"],
                    scores["accuracy"],
                    scores["mcc"],
                    scores["auroc"],
                    "  (best)" if best["step"] == step else "",
                )
                curve.write(
                    step=step,
                    lr=lr,
                    train_loss=distributed.mean_across_ranks(np.mean(running)),
                    val_loss=scores["loss"],
                    val_accuracy=scores["accuracy"],
                    val_mcc=scores["mcc"],
                    val_auroc=scores["auroc"],
                    seconds=time.perf_counter() - t0,
                )
                running = []
                if cfg.patience and best["stale"] >= cfg.patience:
                    log.info(
                        "early stop at step %d: no better validation %s in %d evaluations",
                        step,
                        select_on,
                        cfg.patience,
                    )
                    stop = True
            if stop:
                break
            if checkpoint and checkpoint_due(step, cfg):
                checkpoint.save(
                    step,
                    model,
                    opt,
                    {
                        "seconds": time.perf_counter() - t0,
                        "running": running,
                        "curve": curve.rows,
                        "best": {k: v for k, v in best.items() if k != "state"},
                    },
                    {"best_state": best["state"]} if best["state"] is not None else None,
                )
    finally:
        curve.close()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    return {
        "best_step": best["step"],
        "selected_on": select_on,
        "val": best["val"],
        "last_step": last,
        "early_stopped": last < cfg.steps,
        "class_weights": weights.tolist(),
        "seconds": time.perf_counter() - t0,
        "processes": world,
        "resumed_from_step": start,
    }
