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
