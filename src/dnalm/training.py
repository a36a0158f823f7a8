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
import math
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from logging import Logger, getLogger
from pathlib import Path

import numpy as np
import torch

from dnalm import distributed
from dnalm.metrics import classification_metrics
from dnalm.shards import TokenShard


@dataclass
class TrainConfig:
    steps: int
    batch_size: int
    lr: float
    weight_decay: float = 0.1
    warmup_steps: int = 0
    min_lr_fraction: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_sequences: int = 256
    log_every: int = 10
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to `min_lr_fraction` of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    floor = cfg.lr * cfg.min_lr_fraction
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on norms, biases or 1-d filter parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), fused=False)


def set_learning_rate(opt: torch.optim.Optimizer, step: int, cfg: TrainConfig) -> float:
    """Apply the schedule's rate for `step` (0-based) to every parameter group."""
    lr = learning_rate(step, cfg)
    for group in opt.param_groups:
        group["lr"] = lr
    return lr


def optimizer_step(model, opt: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float) -> None:
    """Backward, clip the global gradient norm, update."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()


def check_world(cfg: TrainConfig) -> int:
    """The number of processes; each needs at least one row of every global batch."""
    world = distributed.world_size()
    if cfg.batch_size < world:
        raise ValueError(
            f"batch_size {cfg.batch_size} is smaller than the {world} training processes: "
            "the batch size is the global batch, split across processes"
        )
    return world


def batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless shuffled epochs over n rows."""
    if n == 0:
        raise ValueError("cannot train on an empty split")
    while True:
        order = rng.permutation(n)
        for lo in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            yield order[lo : lo + batch_size]


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


class CurveWriter:
    """Appends one TSV row per logged point so a killed run still leaves its curve.

    Under torchrun only the main rank opens the file; on the others every call does nothing.
    """

    def __init__(self, path: str | Path, columns: list[str]):
        self.columns = columns
        self.handle = None
        if distributed.is_main():
            self.handle = open(path, "w")  # noqa: SIM115 - closed in close()
            self.handle.write("\t".join(columns) + "\n")

    def write(self, **row) -> None:
        if self.handle is None:
            return
        self.handle.write("\t".join(_fmt(row.get(c, "")) for c in self.columns) + "\n")
        self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def lm_batch(
    shard: TokenShard, rows: np.ndarray, pad_id: int, device, length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids, LM labels) for some rows; padding is ignored by the loss (label -100)."""
    ids, mask = shard.batch(rows, pad_id, length)
    ids_t = torch.from_numpy(ids).to(device)
    return ids_t, ids_t.masked_fill(torch.from_numpy(mask).to(device) == 0, -100)


def lm_targets(shard: TokenShard, rows: np.ndarray) -> int:
    """Predicted positions (tokens after the first of each row): what the LM loss averages over."""
    return int(np.maximum(shard.lengths[rows].astype(np.int64) - 1, 0).sum())


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
) -> dict:
    """Next-token pretraining; returns a summary with the final validation loss."""
    log = log or getLogger("dnalm")
    world = check_world(cfg)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model.to(device).train()
    net = distributed.wrap_model(model, device)
    opt = make_optimizer(model, cfg)
    val_rows = np.arange(min(len(val), cfg.eval_sequences))
    curve = CurveWriter(
        curve_path,
        ["step", "tokens", "lr", "train_loss", "val_loss", "val_bits_per_base", "seconds"],
    )
    stream = batches(len(train), cfg.batch_size, rng)
    tokens, t0, running = 0, time.perf_counter(), []
    val_loss = float("nan")
    try:
        for step in range(1, cfg.steps + 1):
            lr = set_learning_rate(opt, step - 1, cfg)
            rows = next(stream)  # the global batch, the same on every rank
            mine = distributed.rank_slice(rows)
            width = int(train.lengths[rows].max())
            ids_t, labels = lm_batch(train, mine, pad_id, device, width)
            with autocast(device):
                loss = net(input_ids=ids_t, labels=labels).loss
            if world > 1:
                loss = loss * rank_share(lm_targets(train, mine), lm_targets(train, rows))
            optimizer_step(model, opt, loss, cfg.grad_clip)
            tokens += int(np.minimum(train.lengths[rows], width).sum())
            running.append(loss.item())
            if step % cfg.log_every == 0 or step == cfg.steps:
                elapsed = time.perf_counter() - t0
                log.info(
                    "pretrain step %d/%d  loss %.4f  lr %.2e  %.0f tokens/s  eta %.0fs",
                    step,
                    cfg.steps,
                    distributed.mean_across_ranks(np.mean(running)),
                    lr,
                    tokens / elapsed,
                    elapsed / step * (cfg.steps - step),
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
) -> dict:
    """Train a classifier, keeping the weights that score best on VALIDATION.

    The test split is never seen here; the caller scores it once with the selected weights.
    """
    log = log or getLogger("dnalm")
    world = check_world(cfg)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model.to(device).train()
    net = distributed.wrap_model(model, device)
    opt = make_optimizer(model, cfg)
    curve = CurveWriter(
        curve_path,
        ["step", "lr", "train_loss", "val_loss", "val_accuracy", "val_mcc", "val_auroc", "seconds"],
    )
    sign = 1.0 if select_on == "loss" else -1.0  # lower loss is better, higher metrics are
    best = {"score": math.inf, "step": 0, "state": None, "val": {}}
    stream = batches(len(train), cfg.batch_size, rng)
    t0, running = time.perf_counter(), []
    try:
        for step in range(1, cfg.steps + 1):
            lr = set_learning_rate(opt, step - 1, cfg)
            rows = next(stream)  # the global batch, the same on every rank
            mine = distributed.rank_slice(rows)
            ids, mask = train.batch(mine, pad_id, int(train.lengths[rows].max()))
            with autocast(device):
                loss = net(
                    input_ids=torch.from_numpy(ids).to(device),
                    attention_mask=torch.from_numpy(mask).to(device),
                    labels=torch.from_numpy(train.labels[mine].astype(np.int64)).to(device),
                ).loss
            if world > 1:
                loss = loss * rank_share(len(mine), len(rows))
            optimizer_step(model, opt, loss, cfg.grad_clip)
            running.append(loss.item())
            if step % cfg.log_every == 0 or step == cfg.steps:
                log.info(
                    "finetune step %d/%d  loss %.4f  lr %.2e",
                    step,
                    cfg.steps,
                    distributed.mean_across_ranks(np.mean(running)),
                    lr,
                )
            if step % cfg.eval_every == 0 or step == cfg.steps:
                scores, _ = evaluate(model, val, cfg.batch_size, pad_id, device)
                score = sign * scores[select_on]
                if score < best["score"]:
                    best = {
                        "score": score,
                        "step": step,
                        "val": scores,
                        "state": copy.deepcopy(
                            {k: v.detach().cpu() for k, v in model.state_dict().items()}
                        ),
                    }
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
    finally:
        curve.close()
    model.load_state_dict(best["state"])
    return {
        "best_step": best["step"],
        "selected_on": select_on,
        "val": best["val"],
        "seconds": time.perf_counter() - t0,
        "processes": world,
    }
