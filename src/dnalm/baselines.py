"""Simple baselines a DNA language model must beat, run like any fine-tuning run.

A language model's score means little alone: on small real tasks a k-mer logistic regression is
strong (84% accuracy on nontata promoters), and a model below it has not learned enough. Two
baselines therefore train on the same train and val splits, select on val, score the test split
once and write the same `metrics.json` and `predictions.tsv` as a fine-tuning run:

- `kmer_lr`: the frequencies of every k-mer for k in `k` (default 1..6, overlapping, ACGT only;
  a k-mer with another base is skipped), standardised, and a scikit-learn logistic regression
  whose regularisation `C` is chosen on val from a grid.
- `cnn`: the GenomicBenchmarks baseline CNN shape: an embedding of the bases, three blocks of
  convolution (kernel 8), batch norm, ReLU and max-pool (16, 8 and 4 channels), and two dense
  layers (512 units). Trained per seed with Adam, evaluated on val after every epoch, the best
  epoch's weights kept.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from logging import Logger, getLogger
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from dnalm.corpus import window_sequences
from dnalm.metrics import as_written, auto_selection, classification_metrics, prediction_table

BASELINES = ("kmer_lr", "cnn")
_CODE = np.full(256, 4, dtype=np.int64)  # A C G T -> 0..3 (either case); anything else -> 4
for _i, _bases in enumerate(("Aa", "Cc", "Gg", "Tt")):
    for _b in _bases:
        _CODE[ord(_b)] = _i


def read_split(windows: str | Path, genome_paths: Mapping[str, str | Path]) -> tuple[list, Any]:
    """The sequences of a split's windows (inline or cut from the genomes) and its table."""
    table = pd.read_parquet(windows)
    return list(window_sequences(table, genome_paths)), table


# --------------------------------------------------------------------------- k-mer LR


def kmer_frequencies(sequences: Sequence[bytes], ks: Sequence[int]) -> np.ndarray:
    """Rows of k-mer frequencies (each k's counts sum to 1 where the row has such k-mers)."""
    blocks = []
    for k in ks:
        counts = np.zeros((len(sequences), 4**k), dtype=np.float32)
        for row, seq in enumerate(sequences):
            codes = _CODE[np.frombuffer(seq, dtype=np.uint8)]
            if len(codes) < k:
                continue
            windows = np.lib.stride_tricks.sliding_window_view(codes, k)
            valid = (windows < 4).all(axis=1)
            index = (windows[valid] * (4 ** np.arange(k - 1, -1, -1))).sum(axis=1)
            counts[row] = np.bincount(index, minlength=4**k)
        totals = counts.sum(axis=1, keepdims=True)
        blocks.append(np.divide(counts, totals, out=counts, where=totals > 0))
    return np.concatenate(blocks, axis=1)


def fit_kmer_lr(
    train: tuple[list, np.ndarray],
    val: tuple[list, np.ndarray],
    *,
    ks: Sequence[int],
    c_grid: Sequence[float],
    select_on: str,
    seed: int,
    max_iter: int,
    log: Logger,
):
    """The logistic regression of the `C` that scores best on val; returns (predict, val scores,
    C, number of parameters)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_val = kmer_frequencies(train[0], ks), kmer_frequencies(val[0], ks)
    best = None
    for c in c_grid:
        model = make_pipeline(
            StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
        )
        model.fit(x_train, train[1])
        scores = scores_of(val[1], model.predict_proba(x_val), n_labels=model[-1].classes_.size)
        log.info(f"kmer_lr C={c:g}: val {format_scores(scores)}")
        if best is None or better(scores, best[1], select_on):
            best = (model, scores, c)
    model, scores, c = best
    if len(c_grid) > 1 and c in (min(c_grid), max(c_grid)):
        log.warning(f"kmer_lr: the best C on val, {c:g}, is at the end of the grid; widen C")
    params = model[-1].coef_.size + model[-1].intercept_.size
    return (lambda seqs: model.predict_proba(kmer_frequencies(seqs, ks))), scores, c, int(params)


# --------------------------------------------------------------------------- CNN


class GenomicBenchmarksCNN(nn.Module):
    """The GenomicBenchmarks baseline CNN shape, on dnalm's character ids."""

    def __init__(self, n_labels: int, input_len: int, vocab_size: int = 12, embedding: int = 100):
        super().__init__()
        self.input_len = max(input_len, 70)  # three conv + pool blocks need 70 bases
        self.embeddings = nn.Embedding(vocab_size, embedding)
        blocks, channels = [], embedding
        for out in (16, 8, 4):
            blocks += [nn.Conv1d(channels, out, kernel_size=8), nn.BatchNorm1d(out)]
            blocks += [nn.ReLU(), nn.MaxPool1d(2)]
            channels = out
        self.cnn = nn.Sequential(*blocks, nn.Flatten())
        with torch.no_grad():
            flat = self.cnn(torch.zeros(1, embedding, self.input_len)).shape[1]
        self.dense = nn.Sequential(nn.Linear(flat, 512), nn.ReLU(), nn.Linear(512, n_labels))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.dense(self.cnn(self.embeddings(ids).transpose(1, 2)))


def char_ids(sequences: Sequence[bytes], length: int) -> np.ndarray:
    """HyenaDNA character ids (A=7 C=8 G=9 T=10 N=11, other bases [UNK]=6), right-padded with
    [PAD]=4 or cut to `length`."""
    table = np.full(256, 6, dtype=np.int64)
    for i, bases in enumerate(("Aa", "Cc", "Gg", "Tt", "Nn")):
        for b in bases:
            table[ord(b)] = 7 + i
    out = np.full((len(sequences), length), 4, dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids = table[np.frombuffer(seq[:length], dtype=np.uint8)]
        out[row, : len(ids)] = ids
    return out


@torch.no_grad()
def cnn_probs(model: GenomicBenchmarksCNN, ids: np.ndarray, batch_size: int) -> np.ndarray:
    model.eval()
    out = [
        torch.softmax(model(torch.from_numpy(ids[i : i + batch_size])), -1).numpy()
        for i in range(0, len(ids), batch_size)
    ]
    model.train()
    return np.concatenate(out).astype(np.float64)


def fit_cnn(
    train: tuple[list, np.ndarray],
    val: tuple[list, np.ndarray],
    *,
    n_labels: int,
    epochs: int,
    batch_size: int,
    lr: float,
    select_on: str,
    seed: int,
    log: Logger,
):
    """Train the CNN for `epochs`, keeping the epoch that scores best on val; returns (predict,
    val scores, best epoch, number of parameters)."""
    length = max(len(s) for s in train[0])
    x_train, y_train = char_ids(train[0], length), torch.tensor(np.asarray(train[1]))
    x_val = char_ids(val[0], length)
    torch.manual_seed(seed)
    model = GenomicBenchmarksCNN(n_labels, length)
    x_train, x_val = (
        np.pad(x, ((0, 0), (0, model.input_len - length)), constant_values=4)
        for x in (x_train, x_val)
    )
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order_rng = np.random.default_rng(seed)
    best = None
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        for rows in np.array_split(
            order_rng.permutation(len(x_train)), max(1, len(x_train) // batch_size)
        ):
            if len(rows) < 2:  # batch norm needs two rows
                continue
            loss = nn.functional.cross_entropy(
                model(torch.from_numpy(x_train[rows])), y_train[rows]
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        scores = scores_of(val[1], cnn_probs(model, x_val, 256), n_labels)
        log.info(
            f"cnn epoch {epoch}/{epochs}: val {format_scores(scores)} ({time.perf_counter() - started:.1f} s)"
        )
        if best is None or better(scores, best[1], select_on):
            best = (copy.deepcopy(model.state_dict()), scores, epoch)
    state, scores, epoch = best
    model.load_state_dict(state)

    def predict(seqs: Sequence[bytes]) -> np.ndarray:
        ids = char_ids(seqs, model.input_len)
        return cnn_probs(model, ids, 256)

    return predict, scores, epoch, sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- one run


def scores_of(labels: np.ndarray, probs: np.ndarray, n_labels: int) -> dict[str, float]:
    """Validation loss and metrics, as a fine-tuning run records them."""
    labels = np.asarray(labels, dtype=np.int64)
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)
    return {"loss": float(-np.mean(np.log(picked))), **classification_metrics(labels, probs)}


def better(scores: dict, best: dict, select_on: str) -> bool:
    """Lower loss or a higher metric (first best kept on ties, as fine-tuning does)."""
    if select_on == "loss":
        return scores["loss"] < best["loss"]
    return scores[select_on] > best[select_on]


def format_scores(scores: dict) -> str:
    return "  ".join(f"{k} {v:.3f}" for k, v in scores.items())


def run_baseline(
    name: str,
    settings: Mapping[str, Any],
    *,
    task: str,
    seed: int,
    labels: list[str],
    windows: Mapping[str, str | Path],
    genome_paths: Mapping[str, str | Path],
    select_on: str,
    log: Logger | None = None,
) -> tuple[dict, pd.DataFrame]:
    """Fit one baseline on train, select on val, score test once: (metrics, predictions)."""
    log = log or getLogger("dnalm")
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    t0 = time.perf_counter()
    data = {}
    for split in ("train", "val", "test"):
        seqs, table = read_split(windows[split], genome_paths)
        data[split] = (seqs, table["label_id"].to_numpy(np.int64), table)
    if select_on == "auto":
        select_on = auto_selection(data["train"][1])
    log.info(
        f"{name} seed {seed} on {task}: "
        + " / ".join(f"{len(data[s][0])} {s}" for s in data)
        + f" sequences; selecting on val {select_on}"
    )
    train, val = data["train"][:2], data["val"][:2]
    if name == "kmer_lr":
        predict, val_scores, chosen, params = fit_kmer_lr(
            train,
            val,
            ks=range(settings["k"][0], settings["k"][1] + 1),
            c_grid=settings["C"],
            select_on=select_on,
            seed=seed,
            max_iter=settings["max_iter"],
            log=log,
        )
        selection = {"C": chosen}
    else:
        predict, val_scores, chosen, params = fit_cnn(
            train,
            val,
            n_labels=len(labels),
            epochs=settings["epochs"],
            batch_size=settings["batch_size"],
            lr=settings["lr"],
            select_on=select_on,
            seed=seed,
            log=log,
        )
        selection = {"best_epoch": chosen}
    seqs, y_test, table = data["test"]
    probs = as_written(predict(seqs))
    test = classification_metrics(y_test, probs)
    log.info(f"test (scored once, {selection}): {format_scores(test)}")
    metrics = {
        "task": task,
        "model": name,
        "arch": name,
        "size": "-",
        "params": params,
        "init": "baseline",
        "seed": seed,
        "test": test,
        "val": val_scores,
        "selected_on": select_on,
        "selection": selection,
        "settings": dict(settings),
        "seconds": time.perf_counter() - t0,
        "windows": {s: len(data[s][0]) for s in data},
    }
    if math.isnan(val_scores["loss"]):
        raise FloatingPointError(f"{name}: the validation loss is not a number")
    return metrics, prediction_table(table, labels, probs)
