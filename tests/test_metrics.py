import math

import numpy as np
from sklearn import metrics as skm

from dnalm.metrics import classification_metrics
from dnalm.statistics import paired_interval, pretrain_effect


def test_binary_metrics_match_scikit_learn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    p1 = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1)
    probs = np.stack([1 - p1, p1], axis=1)
    m = classification_metrics(y, probs)
    pred = (p1 > 0.5).astype(int)
    assert m["accuracy"] == skm.accuracy_score(y, pred)
    assert math.isclose(m["mcc"], skm.matthews_corrcoef(y, pred))
    assert math.isclose(m["f1"], skm.f1_score(y, pred, average="macro"))
    assert math.isclose(m["auroc"], skm.roc_auc_score(y, p1))
    assert math.isclose(m["auprc"], skm.average_precision_score(y, p1))
    assert all(0 <= m[k] <= 1 for k in ("accuracy", "f1", "auroc", "auprc"))


def test_single_class_gives_nan_auc():
    m = classification_metrics(np.array([1, 1, 1]), np.array([[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]]))
    assert math.isnan(m["auroc"]) and math.isnan(m["auprc"])
    assert math.isclose(m["accuracy"], 2 / 3)


def test_multiclass():
    y = np.array([0, 1, 2, 2, 1, 0])
    probs = np.eye(3)[y] * 0.7 + 0.1
    m = classification_metrics(y, probs)
    assert m["accuracy"] == 1.0 and m["auroc"] == 1.0


def test_paired_interval():
    lo, hi = paired_interval(np.array([0.1, 0.2, 0.3]))
    # mean 0.2, sd 0.1, se 0.0577, t(0.975, 2) = 4.303
    assert math.isclose(lo, 0.2 - 4.3027 * 0.1 / math.sqrt(3), rel_tol=1e-3)
    assert math.isclose(hi, 0.2 + 4.3027 * 0.1 / math.sqrt(3), rel_tol=1e-3)
    assert all(math.isnan(x) for x in paired_interval(np.array([0.5])))


def test_pretrain_effect_pairs_by_seed():
    import pandas as pd

    rows = []
    for seed, (pre, scr) in enumerate([(0.9, 0.7), (0.8, 0.7), (0.85, 0.6)]):
        for init, value in (("pretrained", pre), ("scratch", scr)):
            rows.append(
                {
                    "task": "t",
                    "model": "m",
                    "arch": "hyena",
                    "size": "micro",
                    "params": 10,
                    "init": init,
                    "seed": seed,
                    "accuracy": value,
                    "mcc": value,
                    "f1": value,
                    "auroc": value,
                    "auprc": value,
                }
            )
    effect = pretrain_effect(pd.DataFrame(rows))
    row = effect[effect["metric"] == "auroc"].iloc[0]
    assert row["n_pairs"] == 3
    assert math.isclose(row["difference"], (0.2 + 0.1 + 0.25) / 3)
    assert row["ci95_low"] < row["difference"] < row["ci95_high"]
    assert row["bootstrap_ci95_low"] < row["difference"] < row["bootstrap_ci95_high"]
    assert 0 < row["t_test_p"] < 0.1 and math.isclose(row["wilcoxon_p"], 0.25)
    assert math.isclose(row["pretrained_mean"], 0.85) and math.isclose(row["scratch_mean"], 2 / 3)


def test_bootstrap_interval_and_paired_test():
    from dnalm.statistics import bootstrap_interval, paired_test

    diffs = np.array([0.2, 0.1, 0.25, 0.15, 0.3])
    lo, hi = bootstrap_interval(diffs)
    assert lo < diffs.mean() < hi
    assert diffs.min() <= lo and hi <= diffs.max()  # a mean of resampled seeds stays in range
    assert bootstrap_interval(diffs) == (lo, hi)  # seeded
    t_lo, t_hi = paired_interval(diffs)
    assert t_lo < lo and hi < t_hi  # the t-interval is wider with 5 pairs
    t_p, w_p = paired_test(diffs)
    assert t_p < 0.01
    assert math.isclose(w_p, 2 / 2**5)  # exact signed-rank test: all 5 positive
    t_p, w_p = paired_test(np.array([0.1, -0.1, 0.05, -0.05]))
    assert t_p > 0.9 and w_p > 0.9
    assert paired_test(np.zeros(3)) == (1.0, 1.0)
    assert all(math.isnan(x) for x in paired_test(np.array([0.3])))
    assert all(math.isnan(x) for x in bootstrap_interval(np.array([0.3])))
