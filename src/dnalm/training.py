"""The training loop: next-token pretraining and classification fine-tuning share it.

One plain loop in the spirit of nanoGPT (`train`): sample a batch, forward, backward, clip, step,
log, evaluate, save. What differs between the two stages, the loss of a forward pass and how they
evaluate, is an `Objective` of one screen each: `LanguageModelling` and `Classification`. Every
run is driven by a seed that fixes the data order, so a pretrained and a scratch run of one seed
see exactly the same batches.

Under torchrun (several processes) the loop trains a DDP-wrapped model: every rank draws the same
global batch and computes the loss on its own slice of it, weighted so that the averaged gradient
is the gradient of the whole batch's loss. The per-step losses and the final weights therefore
match a one-process run with the same `batch_size` (up to float rounding). Evaluation is shared
out the same way and gathered, so every rank takes the same model-selection decision; only the
main rank writes curves and logs progress.
"""

from __future__ import annotations

import copy
import math
import os
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from logging import Logger, getLogger
from pathlib import Path

import numpy as np
import torch

from dnalm import distributed
from dnalm.checkpointing import Checkpoint
from dnalm.metrics import METRICS, auto_selection, classification_metrics
from dnalm.models import make_optimizer
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


def check_config(cfg: TrainConfig, world: int = 1) -> None:
    """Reject settings the loop cannot honour, before any work is done."""
    if cfg.batch_size < world:
        raise ValueError(
            f"batch_size {cfg.batch_size} is smaller than the {world} training processes: "
            "the batch size is the global batch, split across processes"
        )
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


def micro_batch(
    shard: TokenShard,
    micro: np.ndarray,
    cfg: TrainConfig,
    step: int,
    pad_id: int,
    complement: np.ndarray | None,
    length: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, ids, mask) of this rank's part of one forward pass, cropped to `length` (the
    sequence-length warm-up) and randomly reverse-complemented. Each random draw is a function
    of (seed, step, position in the global batch), so every rank and a resumed run draw alike."""
    at = distributed.rank_slice(np.arange(len(micro)))
    mine = micro[at]
    ids, mask = shard.batch(mine, pad_id, int(shard.lengths[micro].max()))
    if length is not None and length < ids.shape[1]:
        offsets = np.random.default_rng([cfg.seed, step, 1]).random(len(micro))[at]
        ids, mask = crop_rows(ids, mask, length, offsets)
    if complement is not None and cfg.rc_augment > 0:
        flip = np.random.default_rng([cfg.seed, step, 2]).random(len(micro))[at] < cfg.rc_augment
        reverse_complement_rows(ids, mask, flip, complement)
    return mine, ids, mask


def sync_gradients(net, last: bool):
    """DDP all-reduces gradients only on the last micro-batch of a step."""
    if not last and hasattr(net, "no_sync"):
        return net.no_sync()
    return nullcontext()


class CurveWriter:
    """Appends one TSV row per logged point so a killed run still leaves its curve; under
    torchrun only the main rank writes."""

    def __init__(self, path: str | Path, columns: list[str], rows: list[dict] | None = None):
        self.columns, self.rows, self.handle = columns, [], None
        if distributed.is_main():
            self.handle = open(path, "w")  # noqa: SIM115 - closed in close()
            self.handle.write("\t".join(columns) + "\n")
        for row in rows or []:  # the rows a resumed run had written before its checkpoint
            self.write(**row)

    def write(self, **row) -> None:
        self.rows.append(row)
        if self.handle is not None:
            cells = (row.get(c, "") for c in self.columns)
            cells = (f"{v:.6g}" if isinstance(v, float) else str(v) for v in cells)
            self.handle.write("\t".join(cells) + "\n")
            self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def finite(value: float, what: str, step: int) -> float:
    """A validation score that selection can trust; NaN or infinity stops the job."""
    if not math.isfinite(value):
        raise FloatingPointError(
            f"validation {what} is {value} at step {step}: the model diverged (or its outputs "
            "are not numbers); lower the learning rate or raise warmup_steps, then rerun"
        )
    return value


# --------------------------------------------------------------------------- the skeleton


class Objective:
    """What pretraining and fine-tuning do differently: the loss of a forward pass and how they
    evaluate. `state` (JSON) and `tensors` are the objective's part of a checkpoint."""

    name = "train"
    columns: tuple[str, ...] = ()  # its curve columns, after step, lr and train_loss

    def __init__(self, train: TokenShard, val: TokenShard, cfg: TrainConfig, pad_id: int):
        self.train, self.val, self.cfg, self.pad_id = train, val, cfg, pad_id
        self.state: dict = {}
        self.tensors: dict = {}

    def begin_step(self, step: int, rows: np.ndarray) -> int | None:
        """Sees each global batch first; returns the length to crop rows to (None: whole)."""
        return None

    def progress(self, step: int, seconds: float, start: int) -> str:
        return ""


def train(
    model,
    objective: Objective,
    *,
    device: torch.device,
    curve_path: str | Path,
    log: Logger | None = None,
    checkpoint: Checkpoint | None = None,
    complement: np.ndarray | None = None,
) -> dict:
    """The one training loop: sample, forward, backward, clip, step; log, evaluate, save.

    `complement` (`tokenization.complement_ids`) is needed when `cfg.rc_augment` > 0. With a
    `checkpoint`, the state is saved every `cfg.checkpoint_every` steps and resumed when it
    belongs to this run.
    """
    log, cfg, data = log or getLogger("dnalm"), objective.cfg, objective.train
    world = distributed.world_size()
    check_config(cfg, world)
    if cfg.rc_augment > 0 and complement is None:
        raise ValueError("rc_augment > 0 needs the tokenizer's complement map (complement_ids)")
    torch.manual_seed(cfg.seed)
    model.to(device).train()
    opt = make_optimizer(model, cfg)
    saved = checkpoint.load() if checkpoint else None
    meta = saved["meta"] if saved else {"step": 0, "seconds": 0.0, "running": []}
    if saved:
        checkpoint.restore(saved, model, opt)
        objective.state, objective.tensors = meta["objective"], saved["tensors"]
    net = distributed.wrap_model(model, device)
    columns = ["step", "lr", "train_loss", *objective.columns, "seconds"]
    curve = CurveWriter(curve_path, columns, meta.get("curve"))
    sampler = BatchSampler(len(data), cfg.global_batch, cfg.seed)
    t0, running = time.perf_counter() - float(meta["seconds"]), list(meta["running"])
    start = last = int(meta["step"])
    try:
        for step in range(start + 1, cfg.steps + 1):
            last = step
            lr = learning_rate(step - 1, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            rows = sampler.rows(step - 1)  # the global batch, the same on every rank
            length = objective.begin_step(step - 1, rows)
            parts = [rows[i : i + cfg.batch_size] for i in range(0, len(rows), cfg.batch_size)]
            step_loss = 0.0
            for k, micro in enumerate(parts):  # gradient accumulation over forward passes
                mine, ids, mask = micro_batch(
                    data, micro, cfg, step - 1, objective.pad_id, complement, length
                )
                with sync_gradients(net, k == len(parts) - 1):
                    with autocast(device):
                        loss = objective.loss(net, mine, ids, mask, device)
                    loss.backward()
                step_loss += loss.item()
            if cfg.grad_clip:  # the global norm, over every micro-batch of the step
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            running.append(step_loss)
            logged, evaluated = step % cfg.log_every == 0, step % cfg.eval_every == 0
            if logged or evaluated or step == cfg.steps:
                train_loss = distributed.mean_across_ranks(np.mean(running))
            if logged or step == cfg.steps:
                more = objective.progress(step, time.perf_counter() - t0, start)
                log.info(
                    f"{objective.name} step {step}/{cfg.steps}  loss {train_loss:.4f}  "
                    f"lr {lr:.2e}{more}"
                )
            stop = False
            if evaluated or step == cfg.steps:
                scores, stop = objective.evaluate(model, step, device, log)
                seconds = time.perf_counter() - t0
                curve.write(step=step, lr=lr, train_loss=train_loss, **scores, seconds=seconds)
                running = []
            if stop:
                break
            due = cfg.checkpoint_every and step % cfg.checkpoint_every == 0
            if checkpoint and due and step < cfg.steps:  # after the last step, the outputs
                meta = {"seconds": time.perf_counter() - t0, "running": running}
                meta |= {"curve": curve.rows, "objective": objective.state}
                checkpoint.save(step, model, opt, meta, objective.tensors)
                if os.environ.get("DNALM_STOP_AFTER_CHECKPOINT") == str(step):
                    os.kill(os.getpid(), signal.SIGSTOP)  # for tests: a kill at a known step
    finally:
        curve.close()
    result = objective.result(model)
    return result | {
        "last_step": last,
        "seconds": time.perf_counter() - t0,
        "processes": world,
        "resumed_from_step": start,
    }


def eval_batches(shard: TokenShard, rows: np.ndarray, batch_size: int, pad_id: int, device):
    """This rank's contiguous part of `rows`, as (ids, mask) tensors of `batch_size` rows."""
    mine = distributed.rank_slice(rows)
    for lo in range(0, len(mine), batch_size):
        chunk = mine[lo : lo + batch_size]
        ids, mask = shard.batch(chunk, pad_id, int(shard.lengths[chunk].max()))
        yield torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


# --------------------------------------------------------------------------- pretraining


@torch.inference_mode()
def lm_loss(model, shard: TokenShard, rows: np.ndarray, batch_size: int, pad_id: int, device):
    """Mean next-token loss (nats per token) over the given rows, on every rank alike."""
    model.eval()
    total, count = 0.0, 0
    for ids, mask in eval_batches(shard, rows, batch_size, pad_id, device):
        labels = ids.masked_fill(mask == 0, -100)  # padding: the loss skips it
        with autocast(device):
            loss = model(input_ids=ids, labels=labels).loss
        n = int((labels[:, 1:] != -100).sum())
        total, count = total + float(loss) * n, count + n
    model.train()
    total, count = distributed.all_reduce_sum([total, count])
    return total / max(1, count)


class LanguageModelling(Objective):
    """Next-token prediction; the loss is the mean over every predicted token of the batch."""

    name, columns = "pretrain", ("tokens", "val_loss", "val_bits_per_base")

    def __init__(self, train: TokenShard, val: TokenShard, cfg: TrainConfig, pad_id: int):
        super().__init__(train, val, cfg, pad_id)
        if len(val) == 0:
            raise ValueError(
                f"the pretraining val split {val.prefix} has no windows, so pretraining cannot be "
                "validated: mark more genomes pretrain=true or shorten pretrain_corpus.window"
            )
        self.val_rows = np.arange(min(len(val), cfg.eval_sequences))
        self.full = int(train.lengths.max())
        self.state = {"tokens": 0, "val_loss": float("nan")}
        # a k-mer or BPE token stands for several bases: bits per base divides by their mean
        tokens = int(val.lengths.sum())
        self.bases_per_token = val.meta["bases"] / tokens if val.meta.get("bases") else 1.0

    def begin_step(self, step: int, rows: np.ndarray) -> int:
        self.length = train_length(step, self.cfg, self.full)
        lengths = np.minimum(self.train.lengths[rows].astype(np.int64), self.length)
        self.targets = int(np.maximum(lengths - 1, 0).sum())  # what the mean loss is over
        self.state["tokens"] += int(lengths.sum())
        return self.length

    def loss(self, net, mine, ids, mask, device):
        ids_t = torch.from_numpy(ids).to(device)
        labels = ids_t.masked_fill(torch.from_numpy(mask).to(device) == 0, -100)
        local = int(np.maximum(mask.sum(axis=1) - 1, 0).sum())
        share = local / self.targets * distributed.world_size()  # DDP averages over ranks
        return net(input_ids=ids_t, labels=labels).loss * share

    def progress(self, step: int, seconds: float, start: int) -> str:
        eta = seconds / max(1, step - start) * (self.cfg.steps - step)
        return f"  len {self.length}  {self.state['tokens'] / seconds:.0f} tokens/s  eta {eta:.0f}s"

    def evaluate(self, model, step, device, log):
        val_loss = lm_loss(model, self.val, self.val_rows, self.cfg.batch_size, self.pad_id, device)
        self.state["val_loss"] = finite(val_loss, "loss", step)
        bits = val_loss / math.log(2) / self.bases_per_token
        log.info(f"pretrain step {step}  val loss {val_loss:.4f}  ({bits:.3f} bits/base)")
        return {
            "tokens": self.state["tokens"],
            "val_loss": val_loss,
            "val_bits_per_base": bits,
        }, False

    def result(self, model) -> dict:
        val_loss = float(self.state["val_loss"])
        return {
            "steps": self.cfg.steps,
            "tokens": self.state["tokens"],
            "val_loss": val_loss,
            "val_bits_per_base": val_loss / math.log(2) / self.bases_per_token,
            "bases_per_token": self.bases_per_token,
            "val_sequences": len(self.val_rows),
        }


def pretrain_lm(model, train_shard, val, cfg: TrainConfig, *, pad_id: int, **run) -> dict:
    """Next-token pretraining (`run`: the keywords of `train`); a token budget becomes steps."""
    mean_length = float(np.mean(train_shard.lengths)) if len(train_shard) else 0.0
    cfg = resolve_steps(cfg, mean_length)
    summary = train(model, LanguageModelling(train_shard, val, cfg, pad_id), **run)
    del summary["last_step"]
    return summary | {"tokens_per_second": summary["tokens"] / summary["seconds"]}


# --------------------------------------------------------------------------- fine-tuning


@torch.inference_mode()
def predict_proba(model, shard: TokenShard, batch_size: int, pad_id: int, device) -> np.ndarray:
    """Class probabilities for every sequence of a shard, in shard order (on every rank).

    Sequences go by length, so that a batch of a labelled task whose lengths differ pads little;
    the result is put back in shard order."""
    model.eval()
    out = [np.zeros((0, model.config.num_labels), dtype=np.float32)]
    rows = np.argsort(shard.lengths, kind="stable")
    for ids, mask in eval_batches(shard, rows, batch_size, pad_id, device):
        with autocast(device):
            logits = model(input_ids=ids, attention_mask=mask).logits
        out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    model.train()
    sizes = [len(distributed.rank_slice(rows, at=r)) for r in range(distributed.world_size())]
    probs = np.empty((len(rows), model.config.num_labels), dtype=np.float32)
    probs[rows] = np.concatenate(distributed.all_gather_rows(np.concatenate(out), sizes))
    return probs


def evaluate(
    model, shard: TokenShard, batch_size: int, pad_id: int, device
) -> tuple[dict, np.ndarray]:
    """Cross-entropy loss and classification metrics over a whole split."""
    probs = predict_proba(model, shard, batch_size, pad_id, device)
    if not np.isfinite(probs).all():  # scikit-learn would refuse them: say what happened instead
        return {"loss": math.nan} | dict.fromkeys(METRICS, math.nan), probs
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


class Classification(Objective):
    """Sequence classification, keeping the weights that score best on VALIDATION.

    The loss is the class-weighted cross-entropy summed over the global batch and divided by its
    total weight, so any split into ranks and micro-batches gives the same gradient. `patience`
    > 0 stops after that many evaluations without a better `select_on` score.
    """

    name, columns = "finetune", ("val_loss", "val_accuracy", "val_mcc", "val_auroc")

    def __init__(self, train, val, cfg: TrainConfig, pad_id: int, *, n_labels: int, select_on):
        super().__init__(train, val, cfg, pad_id)
        self.labels = train.labels.astype(np.int64)
        self.select_on = select_on if select_on != "auto" else auto_selection(self.labels)
        if len(val) == 0 or (self.select_on != "loss" and len(np.unique(val.labels)) < 2):
            raise ValueError(
                f"validation split {val.prefix} has {len(val)} sequence(s) of "
                f"{len(np.unique(val.labels))} class(es): selection on {self.select_on} needs "
                "both classes there; change the split (split.val_fraction, val_groups)"
            )
        self.sign = 1.0 if self.select_on == "loss" else -1.0  # lower loss is better
        self.weights = class_weights(self.labels, n_labels, cfg.class_weight)
        self.state = {"score": math.inf, "step": 0, "val": {}, "stale": 0}

    def begin_step(self, step: int, rows: np.ndarray) -> None:
        self.total = float(self.weights[self.labels[rows]].sum())

    def loss(self, net, mine, ids, mask, device):
        logits = net(
            input_ids=torch.from_numpy(ids).to(device),
            attention_mask=torch.from_numpy(mask).to(device),
        ).logits
        weights = torch.tensor(self.weights, dtype=torch.float32, device=device)
        y = torch.from_numpy(self.labels[mine]).to(device)
        summed = torch.nn.functional.cross_entropy(
            logits.float(), y, weight=weights, reduction="sum"
        )
        return summed * (distributed.world_size() / self.total)

    def evaluate(self, model, step, device, log):
        scores, _ = evaluate(model, self.val, self.cfg.batch_size, self.pad_id, device)
        finite(scores["loss"], "loss", step)
        best, score = self.state, self.sign * finite(scores[self.select_on], self.select_on, step)
        if score < best["score"]:
            best.update(score=score, step=step, val=scores, stale=0)
            weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            self.tensors = {"best_state": copy.deepcopy(weights)}
        else:
            best["stale"] += 1
        log.info(
            f"finetune step {step}  val loss {scores['loss']:.4f}  acc {scores['accuracy']:.3f}  "
            f"mcc {scores['mcc']:.3f}  auroc {scores['auroc']:.3f}"
            + ("  (best)" if best["step"] == step else "")
        )
        stop = bool(self.cfg.patience) and best["stale"] >= self.cfg.patience
        if stop:
            log.info(
                f"early stop at step {step}: no better validation {self.select_on} in "
                f"{self.cfg.patience} evaluations"
            )
        return {f"val_{k}": scores[k] for k in ("loss", "accuracy", "mcc", "auroc")}, stop

    def result(self, model) -> dict:
        if "best_state" in self.tensors:
            model.load_state_dict(self.tensors["best_state"])
        return {
            "best_step": self.state["step"],
            "selected_on": self.select_on,
            "val": self.state["val"],
            "class_weights": self.weights.tolist(),
        }


def finetune_classifier(
    model, train_shard, val, cfg: TrainConfig, *, pad_id: int, select_on: str = "loss", **run
) -> dict:
    """Train a classifier (`run`: the keywords of `train`) and return with the weights selected
    on validation loaded. The test split is never seen here: the caller scores it once."""
    n_labels = model.config.num_labels
    objective = Classification(
        train_shard, val, cfg, pad_id, n_labels=n_labels, select_on=select_on
    )
    log = run.get("log") or getLogger("dnalm")
    if select_on == "auto":
        counts = np.bincount(objective.labels)
        share = counts[counts > 0].min() / len(objective.labels)
        log.info(f"select_on auto: {objective.select_on} (rarest class {share:.1%} of train)")
    if cfg.class_weight != "none":
        log.info(f"class weights ({cfg.class_weight}): {np.round(objective.weights, 4).tolist()}")
    result = train(model, objective, **run)
    return result | {"early_stopped": result["last_step"] < cfg.steps}
