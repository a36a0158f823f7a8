"""Classification metrics, computed by scikit-learn; NaN where a metric is undefined."""

from __future__ import annotations

import math

import numpy as np
from sklearn import metrics as skm

METRICS = ("accuracy", "mcc", "f1", "auroc", "auprc")
# the columns that name a trained model in the run and comparison tables
MODEL_COLUMNS = ["task", "model", "arch", "size", "params"]


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy, MCC, macro-F1, AUROC and AUPRC from true labels and class probabilities.

    Binary tasks score the class with id 1 as positive. AUROC/AUPRC are NaN when the labels hold
    a single class (e.g. a tiny test split), rather than a misleading number.
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = probs.shape[1]
    pred = probs.argmax(axis=1)
    out = {
        "accuracy": float(skm.accuracy_score(labels, pred)),
        "mcc": float(skm.matthews_corrcoef(labels, pred)),
        "f1": float(
            skm.f1_score(
                labels, pred, average="macro", labels=np.arange(n_classes), zero_division=0
            )
        ),
    }
    present = np.unique(labels)
    if len(present) < 2:
        out["auroc"] = out["auprc"] = math.nan
    elif n_classes == 2:
        out["auroc"] = float(skm.roc_auc_score(labels, probs[:, 1]))
        out["auprc"] = float(skm.average_precision_score(labels, probs[:, 1]))
    else:
        onehot = np.eye(n_classes)[labels]
        cols = present
        out["auroc"] = float(skm.roc_auc_score(onehot[:, cols], probs[:, cols], average="macro"))
        out["auprc"] = float(
            skm.average_precision_score(onehot[:, cols], probs[:, cols], average="macro")
        )
    return out


def auto_selection(labels: np.ndarray) -> str:
    """`select_on: auto`: AUPRC when the rarest class is under 20% of train, else the loss.

    On an imbalanced validation split the lowest loss often belongs to the model that calls
    everything the majority class; AUPRC rewards ranking the rare class first.
    """
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    return "auprc" if len(counts) == 2 and counts.min() / counts.sum() < 0.2 else "loss"


def as_written(probs: np.ndarray) -> np.ndarray:
    """Test probabilities as `predictions.tsv` holds them (6 decimals). The test metrics are
    scored on these, so that the statistics, which read the file, recompute them exactly:
    rounding makes ties, and ties move AUPRC."""
    return np.asarray(probs, dtype=np.float64).round(6)


def prediction_table(windows, labels: list[str], probs: np.ndarray):
    """`predictions.tsv` of a run: each test window (genome, chrom, start, end, label and its
    group, the unit the statistics resample), its class probabilities and the predicted label."""
    probs = as_written(probs)
    table = windows[["genome", "chrom", "start", "end", "label", "group"]].copy()
    for i, name in enumerate(labels):
        table[f"prob_{name}"] = probs[:, i]
    table["predicted"] = [labels[i] for i in probs.argmax(axis=1)]
    return table


def scores_of(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
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
