"""Does pretraining pay off? Paired pretrained-minus-scratch differences per (task, model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from dnalm.metrics import METRICS


def paired_interval(diffs: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean paired difference (NaN with fewer than two pairs)."""
    diffs = np.asarray(diffs, dtype=float)
    diffs = diffs[~np.isnan(diffs)]
    if len(diffs) < 2:
        return float("nan"), float("nan")
    mean = diffs.mean()
    sem = diffs.std(ddof=1) / np.sqrt(len(diffs))
    if sem == 0:
        return float(mean), float(mean)
    half = stats.t.ppf(0.5 + level / 2, df=len(diffs) - 1) * sem
    return float(mean - half), float(mean + half)


def pretrain_effect(runs: pd.DataFrame, metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """One row per (task, model, metric): mean/sd per init and the paired difference.

    Pairs are matched on seed: the pretrained and scratch runs of one seed share data order and
    head initialisation, so their difference isolates the effect of pretraining.
    """
    rows = []
    for (task, model), grp in runs.groupby(["task", "model"], sort=True):
        wide = grp.pivot_table(index="seed", columns="init", values=list(metrics))
        for metric in metrics:
            pre = wide.get((metric, "pretrained"), pd.Series(dtype=float))
            scr = wide.get((metric, "scratch"), pd.Series(dtype=float))
            diff = (pre - scr).dropna()
            lo, hi = paired_interval(diff.to_numpy())
            rows.append(
                {
                    "task": task,
                    "model": model,
                    "arch": grp["arch"].iat[0],
                    "size": grp["size"].iat[0],
                    "params": int(grp["params"].iat[0]),
                    "metric": metric,
                    "n_pairs": len(diff),
                    "pretrained_mean": pre.mean(),
                    "pretrained_sd": pre.std(ddof=1) if len(pre) > 1 else np.nan,
                    "scratch_mean": scr.mean(),
                    "scratch_sd": scr.std(ddof=1) if len(scr) > 1 else np.nan,
                    "difference": diff.mean() if len(diff) else np.nan,
                    "ci95_low": lo,
                    "ci95_high": hi,
                }
            )
    return pd.DataFrame(rows)
