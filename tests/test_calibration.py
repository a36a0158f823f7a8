"""Coverage and power of the comparison intervals, by simulation (fixed seeds, ~100 draws each).

Each draw is a fresh test split and fresh runs: scores = separation x label + a difficulty
shared by every run of the draw (so predictors are correlated, as real ones are) + per-run
noise. Seeds move a run's separation (seed variance); groups can shift one init's scores on
their positives (examples correlated within groups).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dnalm.comparisons import Predictions, Settings, Study, shared_split

# separations giving population AUROCs 0.80 and 0.75 with difficulty sd 1 and noise sd 0.5:
# AUROC = Phi(separation / sqrt(2 * 1.25))
SEP_080 = 0.8416 * np.sqrt(2.5)
SEP_075 = 0.6745 * np.sqrt(2.5)
FAST = Settings(resamples=200, permutations=20, metrics=("auroc",))


def draw(rng, n, seeds, sep_a, sep_b, seed_sd=0.0, groups=0, group_sd=0.0):
    """One simulated task: the test split (groups label-pure) and seeds x 2 inits of runs."""
    truth = np.tile([0, 1], n // 2)
    group = None
    if groups:
        group = rng.integers(0, groups, n) * 2 + truth
    difficulty = rng.normal(0, 1, n)
    rows, preds = [], {}
    for init, sep in (("a", sep_a), ("b", sep_b)):
        shift = 0.0
        if groups:
            shift = rng.normal(0, group_sd, 2 * groups)[group] * truth
        for seed in range(seeds):
            s = sep + seed_sd * rng.normal()
            score = s * truth + difficulty + shift + rng.normal(0, 0.5, n)
            p = 1 / (1 + np.exp(-score))
            probs = np.column_stack([1 - p, p])
            run = f"{init}{seed}"
            preds[run] = Predictions(probs=probs, predicted=probs.argmax(axis=1))
            rows.append({"task": "t", "model": "m", "init": init, "seed": seed, "run_dir": run})
    return truth, group, pd.DataFrame(rows), preds


def auroc_row(truth, group, runs, preds, min_groups=10**9, settings=FAST):
    split = shared_split("t", truth, ("0", "1"), group, min_groups)
    study = Study(runs, {"t": split}, preds, settings)
    rows = study.compare("t", runs[runs["init"] == "a"], runs[runs["init"] == "b"])
    return next(r for r in rows if r["metric"] == "auroc"), study


def covers(row, value=0.0):
    return row["ci95_low"] <= value <= row["ci95_high"]


def same_distribution() -> int:
    """Both inits from one distribution, 3 seeds with real seed variance, 500 examples: how
    often the interval covers 0."""
    rng = np.random.default_rng(20)
    return sum(
        covers(auroc_row(*draw(rng, 500, 3, SEP_080, SEP_080, seed_sd=0.15))[0]) for _ in range(100)
    )


def seed_dominated() -> tuple[int, int]:
    """Seed variance far above the test set's: coverage of 0 by our interval and by a
    percentile bootstrap over the 3 seed differences (the interval this one replaced)."""
    rng = np.random.default_rng(21)
    ours = old = 0
    for _ in range(100):
        row, study = auroc_row(*draw(rng, 500, 3, SEP_080, SEP_080, seed_sd=0.8))
        ours += covers(row)
        point = study.point
        diffs = np.array([point[f"a{s}"]["auroc"] - point[f"b{s}"]["auroc"] for s in range(3)])
        means = diffs[rng.integers(0, 3, (2000, 3))].mean(axis=1)
        lo, hi = np.quantile(means, [0.025, 0.975])
        old += lo <= 0 <= hi
    return ours, old


def true_effect() -> tuple[int, int, int]:
    """AUROC 0.80 vs 0.75 on 2,000 test examples, 3 seeds (seed sd of AUROC about 0.005): how
    often the interval excludes 0, DeLong's p < 0.05, and the interval covers 0.05."""
    rng = np.random.default_rng(22)
    excluded = delong = covered = 0
    for _ in range(100):
        row, _ = auroc_row(*draw(rng, 2000, 3, SEP_080, SEP_075, seed_sd=0.03))
        excluded += row["ci95_low"] > 0
        delong += row["delong_p"] < 0.05
        covered += covers(row, 0.05)
    return excluded, delong, covered


def grouped() -> tuple[int, int]:
    """30 groups per class whose positives one init ranks better or worse than the other (no
    effect on average): coverage of 0 resampling examples, and resampling groups."""
    rng = np.random.default_rng(23)
    by_example = by_group = 0
    for _ in range(100):
        data = draw(rng, 1000, 1, SEP_080, SEP_080, groups=30, group_sd=0.8)
        by_example += covers(auroc_row(*data)[0])
        by_group += covers(auroc_row(*data, min_groups=10)[0])
    return by_example, by_group


def test_same_distribution_interval_covers_zero():
    assert same_distribution() >= 90  # 97 when written


def test_seed_dominated_null_keeps_coverage_where_a_three_seed_bootstrap_does_not():
    """The t draw at the seed level keeps the interval honest; the old one did not."""
    ours, old = seed_dominated()
    assert ours >= 90, ours  # 97 when written
    assert old <= 85, old  # 81


def test_true_effect_of_005_auroc_is_detected():
    excluded, delong, covered = true_effect()
    assert excluded >= 80, excluded  # 100 when written
    assert delong >= 80, delong  # 100
    assert covered >= 90, covered  # 97


def test_groups_must_be_resampled_when_examples_are_correlated_within_them():
    """Resampling 1,000 examples treats correlated examples as independent and under-covers;
    resampling the 60 groups does not."""
    by_example, by_group = grouped()
    assert by_group >= 90, by_group  # 94 when written
    assert by_example <= 80, by_example  # 42
