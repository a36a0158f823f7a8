"""Inference on test scores whose uncertainty comes from the test set as much as from seeds.

A test metric is a statistic of the test examples, so its error bar must carry their sampling
variance, not only the spread over a handful of seeds. The tools here work on the shared test
split of a task (every run scores the same examples in the same order):

- metrics of resampled test examples as weighted metrics (a bootstrap resample is a vector of
  counts), vectorised over thousands of resamples;
- resampling weights over examples or whole groups (the unit the split kept on one side),
  stratified so that every resample keeps the classes;
- DeLong's test for paired AUROCs (Sun & Xu's O(n log n) algorithm), with a cluster-robust
  variance (Obuchowski) when examples come in groups;
- a paired permutation test that swaps the two predictors' scores per example or per group
  (accuracy, MCC, macro-F1 and AUROC);
- Holm's step-down correction, and the seed-level Student t-interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from dnalm.metrics import METRICS

LEVEL = 0.95
# cells of one chunk of resamples x examples; bounds memory whatever the test split's size
CHUNK_CELLS = 4_000_000


# ---------------------------------------------------------------------------------------------
# Seed level


def spread(x: np.ndarray) -> float:
    """Sample sd, 0 when it is only rounding noise (identical values computed two ways)."""
    sd = float(x.std(ddof=1))
    return sd if sd > 1e-12 * max(1.0, float(np.abs(x).max())) else 0.0


def paired_interval(diffs: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval of the mean paired difference over seeds.

    NaN with fewer than two pairs or no spread: identical differences (every run collapsed to
    one class, say) say nothing about how much a new seed would move the mean.
    """
    diffs = np.asarray(diffs, dtype=float)
    diffs = diffs[~np.isnan(diffs)]
    if len(diffs) < 2:
        return math.nan, math.nan
    sem = spread(diffs) / np.sqrt(len(diffs))
    if not sem > 0:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, df=len(diffs) - 1) * sem
    return float(diffs.mean() - half), float(diffs.mean() + half)


def paired_t_test(diffs: np.ndarray) -> float:
    """Two-sided p of a zero mean paired difference; NaN when it is undefined (see above)."""
    diffs = np.asarray(diffs, dtype=float)
    diffs = diffs[~np.isnan(diffs)]
    if len(diffs) < 2 or not spread(diffs) > 0:
        return math.nan
    t = diffs.mean() / (diffs.std(ddof=1) / math.sqrt(len(diffs)))
    return float(2 * stats.t.sf(abs(t), df=len(diffs) - 1))


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment over one family; NaN entries stay NaN and do not count.

    Controls the family-wise error at any dependence between the tests, which the comparisons
    of one run have (they share test examples and runs).
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


# ---------------------------------------------------------------------------------------------
# Weighted metrics: a bootstrap resample is a row of counts over the test examples


def confusion_metrics(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, MCC and macro-F1 from (R, k, k) confusion counts (true x predicted), as
    scikit-learn defines them (MCC 0 and a class's F1 0 where their denominators are 0)."""
    c = np.asarray(confusion, dtype=float)
    total = c.sum(axis=(1, 2))
    correct = np.trace(c, axis1=1, axis2=2)
    true = c.sum(axis=2)
    pred = c.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = correct / total
        cov_tp = correct * total - (true * pred).sum(axis=1)
        cov_pp = total**2 - (pred**2).sum(axis=1)
        cov_tt = total**2 - (true**2).sum(axis=1)
        denom = np.sqrt(cov_tt * cov_pp)
        mcc = np.where(denom > 0, cov_tp / np.where(denom > 0, denom, 1), 0.0)
        tp = np.diagonal(c, axis1=1, axis2=2)
        f1_denom = true + pred
        f1 = np.where(f1_denom > 0, 2 * tp / np.where(f1_denom > 0, f1_denom, 1), 0.0)
    return {"accuracy": accuracy, "mcc": mcc, "f1": f1.mean(axis=1)}


def _cumulative(values: np.ndarray) -> np.ndarray:
    """Cumulative sums down the rows with a leading row of 0: out[j] sums the first j rows."""
    out = np.zeros((values.shape[0] + 1, values.shape[1]), dtype=values.dtype)
    np.cumsum(values, axis=0, out=out[1:])
    return out


@dataclass(frozen=True)
class RankIndex:
    """One binary problem's scores, sorted once for every resample: positives and negatives in
    ascending score order and, for each positive, how many negatives (and positives) score
    lower. None marks what ties do not change (no negative at a positive's score; positives
    all distinct)."""

    pos_rows: np.ndarray
    neg_rows: np.ndarray
    neg_left: np.ndarray
    neg_right: np.ndarray | None
    pos_left: np.ndarray | None


def rank_index(positive: np.ndarray, score: np.ndarray) -> RankIndex:
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=float)
    order = np.argsort(score, kind="stable")
    pos_sorted = positive[order]
    pos_rows, neg_rows = order[pos_sorted], order[~pos_sorted]
    queries = score[pos_rows]
    neg_scores = score[neg_rows]
    neg_left = np.searchsorted(neg_scores, queries, side="left")
    neg_right = np.searchsorted(neg_scores, queries, side="right")
    pos_left = np.searchsorted(queries, queries, side="left")
    return RankIndex(
        pos_rows=pos_rows,
        neg_rows=neg_rows,
        neg_left=neg_left,
        neg_right=None if (neg_right == neg_left).all() else neg_right,
        pos_left=None if (pos_left == np.arange(len(pos_left))).all() else pos_left,
    )


def rank_metrics(index: RankIndex, weights_t: np.ndarray, with_ap: bool = True):
    """Weighted AUROC and average precision of one binary problem, one value per column of
    `weights_t` (n examples x R resamples).

    Equal to the metrics of the examples repeated `weights` times (ties count half in AUROC;
    average precision steps at each distinct score, as scikit-learn's). Cumulative weights
    along the score order give, for each positive, the weight of negatives below it and of
    examples above it. Examples are rows, so every step runs over contiguous memory.
    """
    wq = weights_t[index.pos_rows]
    cum_neg = _cumulative(weights_t[index.neg_rows])
    w_neg = cum_neg[-1]
    neg_lower = cum_neg[index.neg_left]
    # ties: a negative at a positive's score counts half
    below = neg_lower if index.neg_right is None else 0.5 * (neg_lower + cum_neg[index.neg_right])
    cum_pos = _cumulative(wq)
    w_pos = cum_pos[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.einsum("ij,ij->j", wq, below) / (w_pos * w_neg)
        if not with_ap:
            return auc, None
        above_pos = w_pos - (cum_pos[:-1] if index.pos_left is None else cum_pos[index.pos_left])
        above_all = above_pos + (w_neg - neg_lower)
        # a positive drawn 0 times may have nothing at or above it: 0 / tiny = 0, weighed 0
        tiny = np.finfo(above_all.dtype).tiny
        ap = np.einsum("ij,ij->j", wq, above_pos / np.maximum(above_all, tiny)) / w_pos
    return auc, ap


class Scorer:
    """One run's predictions on a test split, prepared once (sorts, cell order) so that each
    chunk of resamples costs only passes over the weights."""

    def __init__(
        self, truth: np.ndarray, probs: np.ndarray, predicted: np.ndarray, classes: np.ndarray
    ):
        truth = np.asarray(truth, dtype=int)
        probs = np.asarray(probs, dtype=float)
        self.k = probs.shape[1]
        cell = truth * self.k + np.asarray(predicted, dtype=int)
        self.cell_order = np.argsort(cell, kind="stable")
        self.cells, self.cell_starts = np.unique(cell[self.cell_order], return_index=True)
        self.ranked = len(classes) >= 2
        if self.k == 2:
            problems = [(truth == 1, probs[:, 1])]
        else:
            problems = [(truth == c, probs[:, c]) for c in classes]
        self.indexes = [rank_index(p, s) for p, s in problems] if self.ranked else []

    def __call__(self, weights_t: np.ndarray, metrics: tuple[str, ...] = METRICS):
        """Each of `metrics` per column of weights_t (n, R)."""
        k, r = self.k, weights_t.shape[1]
        # confusion counts: the weights summed per (true, predicted) cell; no BLAS call, whose
        # threads only contend on a busy machine
        confusion = np.zeros((k * k, r))
        confusion[self.cells] = np.add.reduceat(
            weights_t[self.cell_order], self.cell_starts, axis=0
        )
        out = confusion_metrics(confusion.T.reshape(r, k, k))
        with_ap = "auprc" in metrics
        if not {"auroc", "auprc"} & set(metrics):
            pass
        elif not self.ranked:
            out["auroc"] = out["auprc"] = np.full(r, np.nan)
        else:
            values = [rank_metrics(index, weights_t, with_ap) for index in self.indexes]
            out["auroc"] = np.mean([a for a, _ in values], axis=0)
            out["auprc"] = np.mean([p for _, p in values], axis=0) if with_ap else None
        return {m: out[m] for m in metrics}


def weighted_metrics_t(
    truth: np.ndarray,
    probs: np.ndarray,
    predicted: np.ndarray,
    weights_t: np.ndarray,
    classes: np.ndarray,
    metrics: tuple[str, ...] = METRICS,
) -> dict[str, np.ndarray]:
    """weighted_metrics with the weights as (n examples, R resamples)."""
    return Scorer(truth, probs, predicted, classes)(weights_t, metrics)


def weighted_metrics(
    truth: np.ndarray,
    probs: np.ndarray,
    predicted: np.ndarray,
    weights: np.ndarray,
    classes: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every metric of dnalm.metrics.classification_metrics on weighted examples, per row of
    `weights` (R, n): binary tasks score class 1, multi-class ones average one-vs-rest over
    `classes` (default: those in `truth`), as classification_metrics does."""
    truth = np.asarray(truth, dtype=int)
    weights_t = np.ascontiguousarray(np.atleast_2d(np.asarray(weights, dtype=float)).T)
    classes = np.unique(truth) if classes is None else np.asarray(classes)
    return weighted_metrics_t(
        truth, np.asarray(probs, dtype=float), np.asarray(predicted, dtype=int), weights_t, classes
    )


# ---------------------------------------------------------------------------------------------
# Resampling units


def unit_strata(truth: np.ndarray, units: np.ndarray, n_units: int) -> np.ndarray:
    """Stratum of each unit: its label when all its examples share one, else one mixed stratum.

    Resampling within strata keeps each class's number of units, so no resample loses a class
    when the units are label-pure (genome groups), and class proportions stay near the split's.
    """
    labels = np.full(n_units, -1)
    mixed = np.zeros(n_units, dtype=bool)
    for u, t in zip(units, truth, strict=True):
        if labels[u] == -1:
            labels[u] = t
        elif labels[u] != t:
            mixed[u] = True
    labels[mixed] = labels.max() + 1
    return labels


def resample_counts(strata: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    """(units, rows) counts of `rows` bootstrap resamples of the units, drawn within strata.

    float32: counts and their sums are exact in it up to 16 million, and every pass over the
    weights then moves half the bytes."""
    n_units = len(strata)
    counts = np.zeros((n_units, rows), dtype=np.float32)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        draws = members[rng.integers(0, len(members), size=(rows, len(members)))]
        flat = (draws * rows + np.arange(rows)[:, None]).ravel()
        counts += np.bincount(flat, minlength=n_units * rows).reshape(n_units, rows)
    return counts


def resample_weights(
    units: np.ndarray, strata: np.ndarray, rows: int, rng: np.random.Generator
) -> np.ndarray:
    """(rows, n) example weights of `rows` bootstrap resamples of whole units within strata:
    each example weighs as often as its unit was drawn."""
    return resample_counts(strata, rows, rng)[units].T


def chunks(total: int, n: int) -> list[slice]:
    """Row slices of at most CHUNK_CELLS / n rows each."""
    size = max(1, CHUNK_CELLS // max(n, 1))
    return [slice(i, min(i + size, total)) for i in range(0, total, size)]


# ---------------------------------------------------------------------------------------------
# DeLong's test for paired AUROCs


def _midranks(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, method="average", axis=-1)


def delong_placements(truth: np.ndarray, scores: np.ndarray):
    """AUROCs of each row of `scores` (k, n) and DeLong's structural components, by Sun & Xu's
    midrank algorithm (O(n log n)): for each positive the share of negatives it outranks
    (v10, (k, m)), for each negative the share of positives above it (v01, (k, n))."""
    truth = np.asarray(truth, dtype=bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    pos = scores[:, truth]
    neg = scores[:, ~truth]
    m, n = pos.shape[1], neg.shape[1]
    if m == 0 or n == 0:
        raise ValueError("DeLong needs positives and negatives")
    tx = _midranks(pos)
    ty = _midranks(neg)
    tz = _midranks(np.concatenate([pos, neg], axis=1))
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return aucs, v10, v01


def delong_covariance(truth: np.ndarray, scores: np.ndarray, clusters: np.ndarray | None = None):
    """AUROCs of the rows of `scores` and the covariance matrix of their estimates.

    Without clusters: DeLong's S10/m + S01/n. With clusters (a group id per example): the
    cluster-robust form of Obuchowski (1997), which sums each cluster's structural components,
    because examples of one group are not independent draws.
    """
    truth = np.asarray(truth, dtype=bool)
    aucs, v10, v01 = delong_placements(truth, scores)
    m, n = v10.shape[1], v01.shape[1]
    if clusters is None:
        s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((len(aucs), len(aucs)))
        s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((len(aucs), len(aucs)))
        return aucs, s10 / m + s01 / n
    clusters = np.asarray(clusters)
    ids, index = np.unique(clusters, return_inverse=True)
    k = len(ids)
    if k < 2:
        return aucs, np.full((len(aucs), len(aucs)), np.nan)
    # influence of each example on each AUROC, summed per cluster
    influence = np.zeros((len(aucs), len(truth)))
    influence[:, truth] = (v10 - aucs[:, None]) / m
    influence[:, ~truth] = (v01 - aucs[:, None]) / n
    per_cluster = np.zeros((len(aucs), k))
    for row in range(len(aucs)):
        per_cluster[row] = np.bincount(index, weights=influence[row], minlength=k)
    return aucs, k / (k - 1) * per_cluster @ per_cluster.T


def delong_contrast(
    truth: np.ndarray,
    scores: np.ndarray,
    coefficients: np.ndarray,
    clusters: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """Estimate, standard error and two-sided p of sum(c_i AUROC_i) = 0 on shared examples.

    With coefficients (1/S, ..., -1/S, ...) it tests the mean AUROC of S runs of one init
    against S runs of another on the same test split: the runs are fixed, the examples random.
    The p is NaN where the variance is zero (identical predictors, say).
    """
    aucs, cov = delong_covariance(truth, scores, clusters)
    c = np.asarray(coefficients, dtype=float)
    estimate = float(c @ aucs)
    var = float(c @ cov @ c)
    if not var > 1e-15:
        return estimate, math.nan, math.nan
    se = math.sqrt(var)
    return estimate, se, float(2 * stats.norm.sf(abs(estimate) / se))


def delong_test(
    truth: np.ndarray,
    score_a: np.ndarray,
    score_b: np.ndarray,
    clusters: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """DeLong's paired test of AUROC(a) - AUROC(b): difference, standard error, p."""
    return delong_contrast(truth, np.stack([score_a, score_b]), np.array([1.0, -1.0]), clusters)


# ---------------------------------------------------------------------------------------------
# Paired permutation test: swap the two predictors' scores per unit


def _auroc_coefficients(positive: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-example c with AUROC(a') - AUROC(b') = sum_i s_i c_i for every swap pattern s.

    a' takes b's score where s_i = -1 and b' takes a's. Expanding both AUROCs over
    positive-negative pairs, the pair terms that survive are linear in s_i and s_j, so each
    example's coefficient is a sum of placement counts, and every permutation is one dot
    product instead of two sorts.
    """
    positive = np.asarray(positive, dtype=bool)
    pa, pb = a[positive], b[positive]
    na, nb = a[~positive], b[~positive]
    m, n = len(pa), len(na)

    def below(values, pool):  # sum over pool of H(value - pool): ties count half
        pool = np.sort(pool)
        lo = np.searchsorted(pool, values, side="left")
        hi = np.searchsorted(pool, values, side="right")
        return lo + 0.5 * (hi - lo)

    def above(values, pool):  # sum over pool of H(pool - value)
        return len(pool) - below(values, pool)

    c = np.zeros(len(a))
    # positive i: sum_j [H(a_i - a_j) - H(b_i - b_j) + H(a_i - b_j) - H(b_i - a_j)]
    c[positive] = below(pa, na) - below(pb, nb) + below(pa, nb) - below(pb, na)
    # negative j: sum_i [H(a_i - a_j) - H(b_i - b_j) - H(a_i - b_j) + H(b_i - a_j)]
    c[~positive] = above(na, pa) - above(nb, pb) - above(nb, pa) + above(na, pb)
    return c / (2 * m * n)


# the metrics a swap pattern changes cheaply: AUROC by one dot product (it is linear in the
# swap signs), the others by an update of the confusion counts. AUPRC would need a sort per
# pattern and pair, several times the whole bootstrap; its interval answers for it.
PERMUTED = ("accuracy", "mcc", "f1", "auroc")


def permutation_test(
    truth: np.ndarray,
    pairs: list[tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]],
    units: np.ndarray,
    n_units: int,
    permutations: int,
    rng: np.random.Generator,
    classes: np.ndarray | None = None,
    metrics: tuple[str, ...] = PERMUTED,
) -> dict[str, float]:
    """Two-sided p per metric of "a and b are exchangeable on each unit" for paired runs
    (NaN for a metric outside PERMUTED).

    `pairs` holds ((probs_a, predicted_a), (probs_b, predicted_b)) per seed pair; the statistic
    is the mean over pairs of metric(a) - metric(b). One swap pattern over units (examples, or
    whole groups) applies to every pair. All 2^units patterns are enumerated when that is at
    most `permutations` (an exact test), else `permutations` random ones are drawn and
    p = (1 + hits) / (1 + permutations).
    """
    truth = np.asarray(truth, dtype=int)
    units = np.asarray(units)
    exact = n_units <= 30 and 2**n_units <= permutations
    if exact:
        grid = (np.arange(2**n_units)[:, None] >> np.arange(n_units)) & 1
        swap_units = grid.astype(bool)
    else:
        swap_units = rng.random((permutations, n_units)) < 0.5
    classes = np.unique(truth) if classes is None else np.asarray(classes)
    wanted = tuple(m for m in metrics if m in PERMUTED)
    k = pairs[0][0][0].shape[1]
    n = len(truth)
    observed = dict.fromkeys(wanted, 0.0)
    null = {m: np.zeros(len(swap_units)) for m in wanted}
    ranked = len(classes) >= 2 and "auroc" in wanted
    problems = [(truth == 1, 1)] if k == 2 else [(truth == c, c) for c in classes]
    ones = np.ones((n, 1))
    for (probs_a, pred_a), (probs_b, pred_b) in pairs:
        obs_a = Scorer(truth, probs_a, pred_a, classes)(ones, wanted)
        obs_b = Scorer(truth, probs_b, pred_b, classes)(ones, wanted)
        for metric in wanted:
            observed[metric] += (obs_a[metric][0] - obs_b[metric][0]) / len(pairs)
        # confusion counts of the swapped predictors: base counts plus what swapped units move
        cell_a = truth * k + np.asarray(pred_a)
        cell_b = truth * k + np.asarray(pred_b)
        moved = np.zeros((n_units, k * k))
        np.add.at(moved, (units, cell_b), 1.0)
        np.add.at(moved, (units, cell_a), -1.0)
        conf_a = np.bincount(cell_a, minlength=k * k).astype(float)
        conf_b = np.bincount(cell_b, minlength=k * k).astype(float)
        if ranked:  # one coefficient per unit
            coef = np.zeros(n)
            for positive, col in problems:
                coef += _auroc_coefficients(positive, probs_a[:, col], probs_b[:, col])
            per_unit = np.bincount(units, weights=coef / len(problems), minlength=n_units)
        for sl in chunks(len(swap_units), n_units):
            z = swap_units[sl].astype(float)
            moved_rows = z @ moved
            ca = confusion_metrics((conf_a + moved_rows).reshape(-1, k, k))
            cb = confusion_metrics((conf_b - moved_rows).reshape(-1, k, k))
            for metric in set(wanted) & {"accuracy", "mcc", "f1"}:
                null[metric][sl] += (ca[metric] - cb[metric]) / len(pairs)
            if "auroc" in wanted:
                null["auroc"][sl] += ((1 - 2 * z) @ per_unit) / len(pairs) if ranked else np.nan
    out = dict.fromkeys(metrics, math.nan)
    for metric in wanted:
        if np.isnan(observed[metric]) or np.isnan(null[metric]).any():
            continue
        tolerance = 1e-12 * max(1.0, abs(observed[metric]))
        hits = int((np.abs(null[metric]) >= abs(observed[metric]) - tolerance).sum())
        out[metric] = hits / len(swap_units) if exact else (1 + hits) / (1 + len(swap_units))
    return out
