"""The statistical primitives against independent computations: scikit-learn on repeated
examples, DeLong's O(n^2) definition, brute-force permutations, Holm by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from dnalm.metrics import METRICS, classification_metrics
from dnalm.statistics import (
    PERMUTED,
    _auroc_coefficients,
    delong_contrast,
    delong_covariance,
    delong_placements,
    delong_test,
    holm,
    paired_interval,
    paired_t_test,
    permutation_test,
    resample_weights,
    unit_strata,
    weighted_metrics,
)


def binary_case(rng, n=300, signal=1.0, ties=False):
    truth = rng.integers(0, 2, n)
    score = 1 / (1 + np.exp(-(signal * (truth - 0.5) * 2 + rng.normal(0, 1, n))))
    if ties:
        score = np.round(score, 1)
    probs = np.column_stack([1 - score, score])
    return truth, probs, probs.argmax(axis=1)


def _assert_metrics_of_repeats(got, truth, probs, weights):
    """Each row of weighted metrics equals the metrics of the examples repeated by weight."""
    for row in range(len(weights)):
        reps = weights[row].astype(int)
        want = classification_metrics(np.repeat(truth, reps), np.repeat(probs, reps, axis=0))
        for metric in METRICS:
            assert math.isclose(got[metric][row], want[metric], abs_tol=1e-12), (metric, row)


@pytest.mark.parametrize("ties", [False, True])
def test_weighted_metrics_equal_metrics_of_repeated_examples(ties):
    rng = np.random.default_rng(3)
    truth, probs, pred = binary_case(rng, ties=ties)
    weights = rng.integers(0, 4, size=(5, len(truth))).astype(float)
    got = weighted_metrics(truth, probs, pred, weights)
    _assert_metrics_of_repeats(got, truth, probs, weights)


def test_weighted_metrics_multiclass_match_classification_metrics():
    rng = np.random.default_rng(4)
    n, k = 240, 4
    truth = rng.integers(0, 3, n)  # class 3 never occurs: macro F1 still averages over 4
    logits = rng.normal(0, 1, (n, k)) + 1.5 * np.eye(k)[truth]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    weights = rng.integers(0, 3, size=(3, n)).astype(float)
    weights[:, :3] = 1  # keep the three classes present in every row
    truth[:3] = [0, 1, 2]
    got = weighted_metrics(truth, probs, probs.argmax(axis=1), weights)
    _assert_metrics_of_repeats(got, truth, probs, weights)


def test_resample_weights_draw_whole_units_within_strata():
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 0, 1, 1, 1], 4)  # 5 groups of 4 examples, 2 host and 3 virus groups
    units = np.repeat(np.arange(5), 4)
    strata = unit_strata(truth, units, 5)
    assert strata.tolist() == [0, 0, 1, 1, 1]
    w = resample_weights(units, strata, 2000, rng)
    assert w.shape == (2000, 20)
    # examples of one group always weigh the same; each stratum keeps its number of groups
    assert (w.reshape(2000, 5, 4).std(axis=2) == 0).all()
    assert (w[:, truth == 0].sum(axis=1) == 8).all() and (w[:, truth == 1].sum(axis=1) == 12).all()
    # a group is drawn on average once
    assert np.allclose(w.mean(axis=0), 1, atol=0.06)
    mixed = unit_strata(np.array([0, 1, 1, 0]), np.array([0, 0, 1, 2]), 3)
    assert mixed.tolist() == [2, 1, 0]  # a group of both labels gets a stratum of its own


def delong_direct(truth, scores):
    """DeLong et al. (1988) from the definition: O(m n) kernel sums."""
    truth = np.asarray(truth, dtype=bool)
    aucs, v10s, v01s = [], [], []
    for s in scores:
        x, y = s[truth], s[~truth]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        aucs.append(psi.mean())
        v10s.append(psi.mean(axis=1))
        v01s.append(psi.mean(axis=0))
    v10, v01 = np.array(v10s), np.array(v01s)
    m, n = v10.shape[1], v01.shape[1]
    cov = np.cov(v10) / m + np.cov(v01) / n
    return np.array(aucs), v10, v01, cov


@pytest.mark.parametrize("ties", [False, True])
def test_fast_delong_equals_the_direct_formula(ties):
    rng = np.random.default_rng(5)
    truth, probs, _ = binary_case(rng, n=400, ties=ties)
    other = np.clip(probs[:, 1] + rng.normal(0, 0.2, 400), 0, 1)
    if ties:
        other = np.round(other, 1)
    scores = np.stack([probs[:, 1], other, rng.random(400)])
    aucs, v10, v01, cov = delong_direct(truth, scores)
    fast_aucs, fast_v10, fast_v01 = delong_placements(truth == 1, scores)
    assert np.allclose(fast_aucs, aucs) and np.allclose(fast_v10, v10)
    assert np.allclose(fast_v01, v01)
    got_aucs, got_cov = delong_covariance(truth == 1, scores)
    assert np.allclose(got_cov, cov, rtol=1e-10, atol=1e-15)
    assert np.allclose(got_aucs, [skm.roc_auc_score(truth, s) for s in scores])
    diff, se, p = delong_test(truth == 1, scores[0], scores[1])
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    assert math.isclose(diff, aucs[0] - aucs[1]) and math.isclose(se, math.sqrt(var))
    z = diff / se
    assert math.isclose(p, math.erfc(abs(z) / math.sqrt(2)), rel_tol=1e-9)


def test_delong_standard_error_matches_the_bootstrap():
    rng = np.random.default_rng(6)
    n = 1500
    truth = rng.integers(0, 2, n)
    shared = rng.normal(0, 1, n)
    a = truth * 1.2 + shared + rng.normal(0, 0.7, n)
    b = truth * 1.0 + shared + rng.normal(0, 0.7, n)
    _, se, _ = delong_test(truth == 1, a, b)
    w = resample_weights(np.arange(n), truth.copy(), 3000, rng)
    pa = np.column_stack([-a, a])
    pb = np.column_stack([-b, b])
    boot = (
        weighted_metrics(truth, pa, pa.argmax(1), w)["auroc"]
        - weighted_metrics(truth, pb, pb.argmax(1), w)["auroc"]
    )
    assert abs(boot.std() / se - 1) < 0.1


def test_clustered_delong_reduces_to_delong_for_single_examples_and_widens_for_groups():
    rng = np.random.default_rng(7)
    n = 600
    truth = rng.integers(0, 2, n) == 1
    scores = np.stack([truth + rng.normal(0, 1, n), truth + rng.normal(0, 1.2, n)])
    _, plain = delong_covariance(truth, scores)
    _, singletons = delong_covariance(truth, scores, clusters=np.arange(n))
    assert np.allclose(singletons, plain, rtol=0.02)
    # 30 groups whose members share an offset between the two predictors: correlated examples
    groups = rng.integers(0, 30, n)
    offset = rng.normal(0, 0.8, 30)[groups]
    scores[0] += offset * truth
    _, plain = delong_covariance(truth, scores)
    _, grouped = delong_covariance(truth, scores, clusters=groups)
    c = np.array([1.0, -1.0])
    assert c @ grouped @ c > 2 * (c @ plain @ c)
    est, se, p = delong_contrast(truth, scores, c, clusters=groups)
    assert math.isclose(se, math.sqrt(c @ grouped @ c))
    # identical predictors: no variance, no p
    assert math.isnan(delong_test(truth, scores[0], scores[0])[2])


def test_holm_by_hand():
    # sorted: 0.01 x4 = 0.04, 0.02 x3 = 0.06, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> monotone 0.06
    got = holm(np.array([0.03, 0.01, np.nan, 0.04, 0.02]))
    assert np.allclose(got[[0, 1, 3, 4]], [0.06, 0.04, 0.06, 0.06])
    assert math.isnan(got[2])
    assert np.allclose(holm(np.array([0.5, 0.9])), [1.0, 1.0])
    assert np.allclose(holm(np.array([0.001])), [0.001])


def test_t_interval_and_test_refuse_zero_variance():
    lo, hi = paired_interval(np.array([0.1, 0.2, 0.3]))
    assert math.isclose(lo, 0.2 - 4.302653 * 0.1 / math.sqrt(3), rel_tol=1e-6)
    assert math.isclose(hi, 0.2 + 4.302653 * 0.1 / math.sqrt(3), rel_tol=1e-6)
    assert all(math.isnan(x) for x in paired_interval(np.array([0.5])))
    # identical non-zero differences (every run collapsed to one class): no p = 0, NaN
    assert all(math.isnan(x) for x in paired_interval(np.array([0.2, 0.2, 0.2])))
    assert math.isnan(paired_t_test(np.array([0.2, 0.2, 0.2])))
    assert math.isclose(paired_t_test(np.array([0.1, 0.2, 0.3])), 0.07417990, rel_tol=1e-5)


def test_auroc_swap_coefficients_equal_brute_force():
    rng = np.random.default_rng(8)
    truth, probs, _ = binary_case(rng, n=60, ties=True)
    a = probs[:, 1]
    b = np.round(rng.random(60), 1)
    c = _auroc_coefficients(truth == 1, a, b)
    for _ in range(20):
        z = rng.random(60) < 0.5
        a2, b2 = np.where(z, b, a), np.where(z, a, b)
        want = skm.roc_auc_score(truth, a2) - skm.roc_auc_score(truth, b2)
        assert math.isclose(np.where(z, -1, 1) @ c, want, abs_tol=1e-12)


def test_permutation_test_exact_enumeration_by_brute_force():
    """Five groups: all 32 swap patterns, each scored from scratch with scikit-learn."""
    rng = np.random.default_rng(10)
    n = 40
    groups = np.repeat(np.arange(5), 8)
    truth = np.tile([0, 1], 20)
    pa = np.clip(truth * 0.3 + rng.random(n) * 0.7, 0, 1)
    pb = rng.random(n)
    probs_a = np.column_stack([1 - pa, pa])
    probs_b = np.column_stack([1 - pb, pb])
    pairs = [((probs_a, probs_a.argmax(1)), (probs_b, probs_b.argmax(1)))]
    got = permutation_test(truth, pairs, groups, 5, 32, rng, metrics=METRICS)
    assert math.isnan(got["auprc"])  # not permuted: a sort per pattern
    observed = classification_metrics(truth, probs_a)
    base = classification_metrics(truth, probs_b)
    hits = dict.fromkeys(METRICS, 0)
    for pattern in range(32):
        swap = ((pattern >> np.arange(5)) & 1).astype(bool)[groups]
        ma = classification_metrics(truth, np.where(swap[:, None], probs_b, probs_a))
        mb = classification_metrics(truth, np.where(swap[:, None], probs_a, probs_b))
        for metric in METRICS:
            obs = abs(observed[metric] - base[metric])
            hits[metric] += abs(ma[metric] - mb[metric]) >= obs - 1e-12
    for metric in PERMUTED:
        assert math.isclose(got[metric], hits[metric] / 32), metric
    assert 0 < got["auroc"] < 1
    # the same predictor twice: every pattern is as extreme, p = 1
    same = permutation_test(truth, [pairs[0][:1] * 2], groups, 5, 32, rng)
    assert all(v == 1.0 for v in same.values())


def test_permutation_p_is_uniform_under_the_null_and_small_under_an_effect():
    rng = np.random.default_rng(11)
    n = 200
    small = []
    for _ in range(60):
        truth = rng.integers(0, 2, n)
        pa = 1 / (1 + np.exp(-(truth * 1.0 + rng.normal(0, 1, n))))
        pb = 1 / (1 + np.exp(-(truth * 1.0 + rng.normal(0, 1, n))))
        probs_a, probs_b = np.column_stack([1 - pa, pa]), np.column_stack([1 - pb, pb])
        pairs = [((probs_a, probs_a.argmax(1)), (probs_b, probs_b.argmax(1)))]
        p = permutation_test(truth, pairs, np.arange(n), n, 400, rng)
        small.append(p["auroc"] < 0.05)
    assert sum(small) <= 7  # 3 expected
    truth = rng.integers(0, 2, 1000)
    pa = truth * 1.5 + rng.normal(0, 1, 1000)
    pb = truth * 0.5 + rng.normal(0, 1, 1000)
    probs_a = np.column_stack([-pa, pa])
    probs_b = np.column_stack([-pb, pb])
    pairs = [((probs_a, probs_a.argmax(1)), (probs_b, probs_b.argmax(1)))]
    p = permutation_test(truth, pairs, np.arange(1000), 1000, 400, rng)
    assert p["auroc"] == 1 / 401 and p["accuracy"] == 1 / 401
