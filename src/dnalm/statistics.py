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


def bootstrap_interval(
    diffs: np.ndarray, level: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean paired difference.

    Resamples seeds (the pairs), so it makes no normality assumption; with very few seeds it is
    narrower than the t-interval, which is why both are reported. Seeded: reruns give one answer.
    """
    diffs = np.asarray(diffs, dtype=float)
    diffs = diffs[~np.isnan(diffs)]
    if len(diffs) < 2:
        return float("nan"), float("nan")
    if np.all(diffs == diffs[0]):
        return float(diffs[0]), float(diffs[0])
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_test(diffs: np.ndarray) -> tuple[float, float]:
    """Two-sided p-values of "no effect": paired t-test and Wilcoxon signed-rank test."""
    diffs = np.asarray(diffs, dtype=float)
    diffs = diffs[~np.isnan(diffs)]
    if len(diffs) < 2:
        return float("nan"), float("nan")
    if np.all(diffs == 0):
        return 1.0, 1.0
    # identical non-zero differences: no spread, the t statistic is infinite
    t_p = 0.0 if np.all(diffs == diffs[0]) else stats.ttest_1samp(diffs, 0.0).pvalue
    w_p = stats.wilcoxon(diffs[diffs != 0]).pvalue
    return float(t_p), float(w_p)


def pretrain_effect(runs: pd.DataFrame, metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """One row per (task, model, metric): mean/sd per init and the paired difference.

    Pairs are matched on seed: the pretrained and scratch runs of one seed share data order and
    head initialisation, so their difference isolates the effect of pretraining. The interval is
    given twice (Student t and percentile bootstrap over seeds) with a paired t-test and a
    Wilcoxon signed-rank p-value; with 3 seeds the Wilcoxon test cannot go below p = 0.25.
    """
    rows = []
    for (task, model), grp in runs.groupby(["task", "model"], sort=True):
        wide = grp.pivot_table(index="seed", columns="init", values=list(metrics))
        for metric in metrics:
            pre = wide.get((metric, "pretrained"), pd.Series(dtype=float))
            scr = wide.get((metric, "scratch"), pd.Series(dtype=float))
            diff = (pre - scr).dropna()
            lo, hi = paired_interval(diff.to_numpy())
            boot_lo, boot_hi = bootstrap_interval(diff.to_numpy())
            t_p, w_p = paired_test(diff.to_numpy())
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
                    "bootstrap_ci95_low": boot_lo,
                    "bootstrap_ci95_high": boot_hi,
                    "t_test_p": t_p,
                    "wilcoxon_p": w_p,
                }
            )
    return pd.DataFrame(rows)
