import math

import numpy as np
from sklearn import metrics as skm

from dnalm.metrics import classification_metrics


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


def test_test_metrics_are_those_of_the_written_probabilities():
    """The statistics rescore `predictions.tsv`: rounding to its 6 decimals makes ties, and ties
    move AUPRC, so the test metrics are scored on the written values."""
    import pandas as pd

    from dnalm.metrics import as_written, prediction_table

    rng = np.random.default_rng(0)
    n = 400
    labels = rng.integers(0, 2, n)
    # scores crowded within 1e-6 of each other: many become equal at 6 decimals
    pos = 0.5 + rng.integers(0, 40, n) * 1e-7 + labels * 2e-6
    probs = np.stack([1 - pos, pos], axis=1)
    windows = pd.DataFrame(
        {
            "genome": "g",
            "chrom": "c",
            "start": np.arange(n),
            "end": np.arange(n) + 1,
            "label": labels,
            "group": "g",
        }
    )
    table = prediction_table(windows, ["neg", "pos"], probs)
    reread = table[["prob_neg", "prob_pos"]].to_numpy()
    assert classification_metrics(labels, reread) == classification_metrics(
        labels, as_written(probs)
    )
    # the raw scores would not have matched: the rounding changed the ranking's ties
    assert (
        classification_metrics(labels, probs)["auprc"]
        != classification_metrics(labels, reread)["auprc"]
    )
    assert list(table["predicted"]) == ["neg" if a >= b else "pos" for a, b in reread]
