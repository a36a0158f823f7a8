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
  epoch's weights kept (`dnalm.baseline_cnn`, imported only by a `cnn` run: it alone needs
  torch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from logging import Logger, getLogger
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dnalm.corpus import window_sequences
from dnalm.metrics import (
    as_written,
    auto_selection,
    better,
    classification_metrics,
    format_scores,
    prediction_table,
    scores_of,
)

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
        scores = scores_of(val[1], model.predict_proba(x_val))
        log.info(f"kmer_lr C={c:g}: val {format_scores(scores)}")
        if best is None or better(scores, best[1], select_on):
            best = (model, scores, c)
    model, scores, c = best
    if len(c_grid) > 1 and c in (min(c_grid), max(c_grid)):
        log.warning(f"kmer_lr: the best C on val, {c:g}, is at the end of the grid; widen C")
    params = model[-1].coef_.size + model[-1].intercept_.size
    return (lambda seqs: model.predict_proba(kmer_frequencies(seqs, ks))), scores, c, int(params)


# --------------------------------------------------------------------------- one run


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
        # the CNN alone needs torch: a kmer_lr job does not import it (~2.8 s of CPU per job)
        from dnalm.baseline_cnn import fit_cnn

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
