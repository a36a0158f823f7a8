"""Does pretraining pay off? Every paired comparison of a run, on the test examples themselves.

Runs of one task score one shared test split, example by example, so two sets of runs are
compared on the same examples (paired) and, where both have them, on the same seeds. The
uncertainty of a difference has two sources, and its interval carries both:

- the test examples: resampled (whole groups when the split has enough of them) in a bootstrap
  shared by every run of the task, so each run's metric is recomputed on the same resamples;
- the seeds: a Student-t draw scaled by the sd of the seed-paired differences over sqrt(seeds).
  A percentile bootstrap over 3 seeds covers about 75%, not 95%; the t draw has the coverage
  of the t-interval when seeds dominate, and vanishes when the test set does.

Three tables come out: pretrain_effect (every pair of inits of each model), vs_baseline (each
model and init against the task's best baseline) and answer (per task the best of each kind,
and a sentence with the verdict).
"""

from __future__ import annotations

import itertools
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dnalm.metrics import METRICS, MODEL_COLUMNS
from dnalm.statistics import (
    LEVEL,
    Scorer,
    chunks,
    delong_contrast,
    holm,
    paired_interval,
    paired_t_test,
    permutation_test,
    resample_counts,
    spread,
    unit_strata,
)

# the order in which inits are compared: a - b with a earlier (published - pretrained, ...)
INIT_ORDER = ("published", "pretrained", "scratch")
BASELINE = "baseline"
ANSWER_METRIC = "auroc"
ALPHA = 0.05
KEY_COLUMNS = ["genome", "chrom", "start", "end", "label"]
# a run's metric recomputed from predictions.tsv (probabilities rounded to 6 digits) must match
# its metrics.json to this much, or the two files do not belong together
TOLERANCE = 1e-3


@dataclass(frozen=True)
class Settings:
    """How the comparisons resample; statistics.* in the config."""

    resamples: int = 2000
    permutations: int = 2000
    min_groups: int = 10
    seed: int = 0
    level: float = LEVEL
    metrics: tuple[str, ...] = METRICS


@dataclass
class SharedSplit:
    """A task's shared test split: labels, and the unit each example is resampled with."""

    task: str
    truth: np.ndarray
    classes: tuple[str, ...]
    present: np.ndarray
    units: np.ndarray
    n_units: int
    strata: np.ndarray
    unit: str
    note: str


@dataclass
class Predictions:
    probs: np.ndarray
    predicted: np.ndarray


def init_order(init: str) -> tuple[int, str]:
    return (INIT_ORDER.index(init) if init in INIT_ORDER else len(INIT_ORDER), init)


def read_test_split(
    task: str, run_dirs: list[str], min_groups: int
) -> tuple[SharedSplit, dict[str, Predictions]]:
    """The test split of `task` and every run's predictions on it, checked to be the same
    examples in the same order (else the runs cannot be paired and the error names them)."""
    first = None
    preds = {}
    for run_dir in run_dirs:
        path = Path(run_dir) / "predictions.tsv"
        table = pd.read_csv(path, sep="\t", dtype={"label": str, "predicted": str, "chrom": str})
        prob_cols = [c for c in table.columns if c.startswith("prob_")]
        classes = tuple(c.removeprefix("prob_") for c in prob_cols)
        if first is None:
            first = (path, table, classes)
        else:
            first_path, first_table, first_classes = first
            if classes != first_classes:
                raise ValueError(
                    f"{path}: classes {list(classes)} differ from {list(first_classes)} of "
                    f"{first_path}; runs of task {task} must share them"
                )
            same = len(table) == len(first_table) and all(
                (table[c].astype(str).to_numpy() == first_table[c].astype(str).to_numpy()).all()
                for c in KEY_COLUMNS
            )
            if not same:
                raise ValueError(
                    f"{path}: its test examples ({len(table)} rows) are not those of "
                    f"{first_path} ({len(first_table)} rows) in the same order; runs of task "
                    f"{task} must score one shared test split"
                )
        lookup = {name: i for i, name in enumerate(classes)}
        unknown = sorted(set(table["predicted"]) - set(lookup))
        if unknown:
            raise ValueError(f"{path}: predicted classes {unknown} have no prob_ column")
        preds[run_dir] = Predictions(
            probs=table[prob_cols].to_numpy(dtype=float),
            predicted=table["predicted"].map(lookup).to_numpy(dtype=int),
        )
    if first is None:
        raise ValueError(f"task {task}: no runs")
    path, table, classes = first
    lookup = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(table["label"]) - set(lookup))
    if unknown:
        raise ValueError(f"{path}: test labels {unknown} have no prob_ column")
    truth = table["label"].map(lookup).to_numpy(dtype=int)
    groups = table["group"].astype(str).to_numpy() if "group" in table.columns else None
    return shared_split(task, truth, classes, groups, min_groups), preds


def shared_split(
    task: str,
    truth: np.ndarray,
    classes: tuple[str, ...],
    groups: np.ndarray | None,
    min_groups: int,
) -> SharedSplit:
    """The resampling unit of a test split: its groups when there are at least `min_groups`
    and 2 per stratum (fewer cannot stand for the groups a new split would draw), else its
    examples, with a note saying what the intervals then leave out."""
    truth = np.asarray(truth, dtype=int)
    n = len(truth)
    unit, note = "examples", ""
    units, n_units, strata = np.arange(n), n, truth.copy()
    if groups is None:
        note = "predictions.tsv has no group column: test examples resampled"
    else:
        codes = pd.factorize(np.asarray(groups))[0]
        n_groups = int(codes.max()) + 1
        group_strata = unit_strata(truth, codes, n_groups)
        if n_groups >= min_groups and np.bincount(group_strata).min() >= 2:
            unit, units, n_units, strata = "groups", codes, n_groups, group_strata
        elif n_groups < n:
            note = (
                f"only {n_groups} test groups (at least {min_groups}, 2 per class, needed): "
                "test examples resampled, so intervals say nothing about new groups"
            )
    return SharedSplit(
        task=task,
        truth=truth,
        classes=tuple(classes),
        present=np.unique(truth),
        units=units,
        n_units=n_units,
        strata=strata,
        unit=unit,
        note=note,
    )


def pair_runs(a: pd.DataFrame, b: pd.DataFrame) -> tuple[list[tuple[str, str]], str]:
    """(a run, b run) pairs: by seed, or, when one side is a single run (a deterministic
    baseline), that run against every run of the other side."""
    if len(a) == 1 or len(b) == 1:
        return [(x, y) for x in a["run_dir"] for y in b["run_dir"]], ""
    b_of_seed = dict(zip(b["seed"], b["run_dir"], strict=True))
    pairs = [
        (x, b_of_seed[s]) for s, x in zip(a["seed"], a["run_dir"], strict=True) if s in b_of_seed
    ]
    if not pairs:
        raise ValueError(
            f"no seed in common: {sorted(a['seed'])} ({a['run_dir'].iat[0]}, ...) and "
            f"{sorted(b['seed'])} ({b['run_dir'].iat[0]}, ...); runs to compare need the same "
            "seeds, or one side a single run"
        )
    note = ""
    if len(pairs) < max(len(a), len(b)):
        note = f"paired on the {len(pairs)} seeds both sides have"
    return pairs, note


def _key_seed(*parts: object) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


class Study:
    """Every run's test metrics on the same bootstrap resamples, per task, and the comparisons
    built on them."""

    def __init__(
        self,
        runs: pd.DataFrame,
        splits: dict[str, SharedSplit],
        preds: dict[str, Predictions],
        settings: Settings | None = None,
    ):
        self.runs = runs
        self.settings = settings or Settings()
        self.splits = splits
        self.preds = preds
        self.boot: dict[str, dict[str, np.ndarray]] = {}
        self.point: dict[str, dict[str, float]] = {}
        self._cache: dict[tuple, list[dict]] = {}
        for task, grp in runs.groupby("task", sort=True):
            self._bootstrap(splits[task], list(grp["run_dir"]))

    @classmethod
    def read(cls, runs: pd.DataFrame, settings: Settings | None = None) -> Study:
        """From every run's predictions.tsv, checked against its metrics.json."""
        settings = settings or Settings()
        splits, preds = {}, {}
        for task, grp in runs.groupby("task", sort=True):
            splits[task], found = read_test_split(task, list(grp["run_dir"]), settings.min_groups)
            preds.update(found)
        study = cls(runs, splits, preds, settings)
        study._check_against_metrics()
        return study

    def _bootstrap(self, split: SharedSplit, run_dirs: list[str]) -> None:
        rows = self.settings.resamples
        metrics = self.settings.metrics
        n = len(split.truth)
        scorers = {}
        for run_dir in run_dirs:
            p = self.preds[run_dir]
            scorers[run_dir] = Scorer(split.truth, p.probs, p.predicted, split.present)
            self.boot[run_dir] = {m: np.empty(rows) for m in metrics}
            full = scorers[run_dir](np.ones((n, 1)), metrics)
            self.point[run_dir] = {m: float(v[0]) for m, v in full.items()}
        for i, sl in enumerate(chunks(rows, n)):
            rng = np.random.default_rng([self.settings.seed, _key_seed(split.task), i])
            counts = resample_counts(split.strata, sl.stop - sl.start, rng)
            weights_t = counts[split.units]
            for run_dir in run_dirs:
                values = scorers[run_dir](weights_t, metrics)
                for metric in metrics:
                    self.boot[run_dir][metric][sl] = values[metric]

    def _check_against_metrics(self) -> None:
        for r in self.runs.itertuples():
            for metric in self.settings.metrics:
                listed = getattr(r, metric)
                found = self.point[r.run_dir][metric]
                if (np.isnan(listed) != np.isnan(found)) or abs(listed - found) > TOLERANCE:
                    raise ValueError(
                        f"{r.run_dir}: test {metric} {found:.6f} from predictions.tsv differs "
                        f"from {listed:.6f} in metrics.json"
                    )

    def _seed_draws(self, seeds: int, *key: object) -> np.ndarray:
        rng = np.random.default_rng([self.settings.seed, _key_seed(*key)])
        return rng.standard_t(seeds - 1, size=self.settings.resamples)

    def _interval(self, values: np.ndarray) -> tuple[float, float, str]:
        """Percentile interval of a bootstrap distribution; NaN with a reason when it has no
        spread or too many resamples lost a class."""
        alpha = (1 - self.settings.level) / 2
        finite = values[~np.isnan(values)]
        if len(finite) < 0.99 * len(values):
            lost = 1 - len(finite) / len(values)
            return math.nan, math.nan, f"{lost:.0%} of resamples lost a class"
        if finite.max() - finite.min() <= 1e-12:
            return math.nan, math.nan, "no spread under resampling of seeds and test units"
        lo, hi = np.quantile(finite, [alpha, 1 - alpha])
        return float(lo), float(hi), ""

    def level(self, task: str, run_dirs: list[str], metric: str) -> tuple[float, float, float]:
        """Mean metric of some runs with its two-level interval."""
        point = np.array([self.point[r][metric] for r in run_dirs])
        boot = np.mean([self.boot[r][metric] for r in run_dirs], axis=0)
        if len(run_dirs) > 1 and spread(point) > 0:
            scale = spread(point) / math.sqrt(len(run_dirs))
            boot = boot + scale * self._seed_draws(len(run_dirs), task, metric, *run_dirs)
        lo, hi, _ = self._interval(boot)
        # the seed-level t draw is unbounded; a metric is not (AUROC of 1.0015 means 1)
        floor = -1.0 if metric == "mcc" else 0.0
        return float(point.mean()), *(min(max(v, floor), 1.0) for v in (lo, hi))

    def compare(self, task: str, a: pd.DataFrame, b: pd.DataFrame) -> list[dict]:
        """One row per metric: a - b on the task's test split, paired by seed and example."""
        key = (task, tuple(sorted(a["run_dir"])), tuple(sorted(b["run_dir"])))
        if key in self._cache:
            return self._cache[key]
        split = self.splits[task]
        pairs, pair_note = pair_runs(a, b)
        s = len(pairs)
        perm_rng = np.random.default_rng([self.settings.seed, _key_seed(*key), 1])
        perm = permutation_test(
            split.truth,
            [
                (
                    (self.preds[x].probs, self.preds[x].predicted),
                    (self.preds[y].probs, self.preds[y].predicted),
                )
                for x, y in pairs
            ],
            split.units,
            split.n_units,
            self.settings.permutations,
            perm_rng,
            split.present,
            self.settings.metrics,
        )
        collapsed = sum(
            len(np.unique(self.preds[r].predicted)) == 1 for r in {*a["run_dir"], *b["run_dir"]}
        )
        rows = []
        for metric in self.settings.metrics:
            notes = [n for n in (split.note, pair_note) if n]
            diffs = np.array([self.point[x][metric] - self.point[y][metric] for x, y in pairs])
            boot = np.mean([self.boot[x][metric] - self.boot[y][metric] for x, y in pairs], axis=0)
            if s > 1 and spread(diffs) > 0:
                scale = spread(diffs) / math.sqrt(s)
                boot = boot + scale * self._seed_draws(s, *key, metric)
            elif s == 1:
                notes.append("one seed pair: the interval leaves out seed variance")
            lo, hi, why = self._interval(boot)
            t_lo, t_hi = paired_interval(diffs, self.settings.level)
            t_p = paired_t_test(diffs)
            if s > 1 and np.isnan(t_p):
                notes.append("t-interval and t-test undefined: the seed differences do not vary")
            if why:
                notes.append(f"interval undefined: {why}")
            delong_p = math.nan
            if metric == "auroc":
                delong_p = self._delong(split, pairs)
                if np.isnan(delong_p) and len(split.classes) == 2:
                    notes.append("DeLong undefined: no variance (identical rankings?)")
            if collapsed:
                notes.append(f"{collapsed} run(s) predict a single class")
            rows.append(
                {
                    "metric": metric,
                    "n_pairs": s,
                    "difference": float(diffs.mean()),
                    "ci95_low": lo,
                    "ci95_high": hi,
                    "t_ci95_low": t_lo,
                    "t_ci95_high": t_hi,
                    "t_test_p": t_p,
                    "delong_p": delong_p,
                    "permutation_p": perm[metric],
                    "unit": split.unit,
                    "n_units": split.n_units,
                    "note": "; ".join(notes),
                }
            )
        self._cache[key] = rows
        return rows

    def _delong(self, split: SharedSplit, pairs: list[tuple[str, str]]) -> float:
        """DeLong p of the mean AUROC of the a runs minus that of the b runs (binary tasks)."""
        if len(split.classes) != 2 or len(split.present) < 2:
            return math.nan
        coefficients: dict[str, float] = {}
        for x, y in pairs:
            coefficients[x] = coefficients.get(x, 0.0) + 1 / len(pairs)
            coefficients[y] = coefficients.get(y, 0.0) - 1 / len(pairs)
        names = list(coefficients)
        scores = np.stack([self.preds[r].probs[:, 1] for r in names])
        clusters = split.units if split.unit == "groups" else None
        _, _, p = delong_contrast(
            split.truth == 1, scores, np.array([coefficients[r] for r in names]), clusters
        )
        return p


def _with_holm(table: pd.DataFrame) -> pd.DataFrame:
    """holm_p per metric over every row of the table: DeLong's p for AUROC where it exists
    (it can go below 1 / permutations, which many comparisons need), else the permutation p
    (none for AUPRC, whose permutations would need a sort each)."""
    if table.empty:
        return table.assign(holm_of=pd.Series(dtype=str), holm_p=pd.Series(dtype=float))
    use_delong = (table["metric"] == "auroc") & table["delong_p"].notna()
    p = np.where(use_delong, table["delong_p"], table["permutation_p"])
    table["holm_of"] = np.where(use_delong, "delong_p", np.where(np.isnan(p), "", "permutation_p"))
    table["holm_p"] = np.nan
    for _, index in table.groupby("metric").groups.items():
        table.loc[index, "holm_p"] = holm(p[table.index.get_indexer(index)])
    return table


def _described(task: str, model: str, runs: pd.DataFrame, metric: str, /, **sides) -> dict:
    """The columns naming a compared model, and the mean and SD over seeds of each side."""
    row = {"task": task, "model": model, "arch": runs["arch"].iat[0], "size": runs["size"].iat[0]}
    row["params"] = int(runs["params"].iat[0])
    for side, of in sides.items():
        values = of[metric].to_numpy(dtype=float)
        row[f"{side}_mean"] = float(values.mean())
        row[f"{side}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    return row


# the statistics of one comparison (`Study.compare`), after its sides' columns
STATISTICS_COLUMNS = [
    "difference",
    "ci95_low",
    "ci95_high",
    "t_ci95_low",
    "t_ci95_high",
    "t_test_p",
    "delong_p",
    "permutation_p",
    "holm_of",
    "holm_p",
    "unit",
    "n_units",
    "note",
]


EFFECT_COLUMNS = [
    *MODEL_COLUMNS,
    "metric",
    "a",
    "b",
    "n_pairs",
    "a_mean",
    "a_sd",
    "b_mean",
    "b_sd",
    *STATISTICS_COLUMNS,
]


def pretrain_effect(study: Study) -> pd.DataFrame:
    """Per task, model and metric, every pair of inits present: a - b (a earlier in
    INIT_ORDER: published - pretrained - scratch), paired by seed and test example."""
    rows = []
    models = study.runs[study.runs["init"] != BASELINE]
    for (task, model), grp in models.groupby(["task", "model"], sort=True):
        inits = sorted(grp["init"].unique(), key=init_order)
        for a, b in itertools.combinations(inits, 2):
            ra, rb = grp[grp["init"] == a], grp[grp["init"] == b]
            for row in study.compare(task, ra, rb):
                sides = _described(task, model, grp, row["metric"], a=ra, b=rb)
                rows.append(sides | {"a": a, "b": b} | row)
    table = _with_holm(pd.DataFrame(rows, columns=[c for c in EFFECT_COLUMNS if c != "holm_p"]))
    return table[EFFECT_COLUMNS]


def best_by_validation(runs: pd.DataFrame) -> str | None:
    """The model of `runs` (one task, one init or the baselines) with the highest mean
    validation AUROC over seeds; ties and missing AUROCs fall to validation accuracy, then the
    lower validation loss, then fewer parameters, then the name. Never looks at test."""
    if runs.empty:
        return None
    means = runs.groupby("model").agg(
        val_auroc=("val_auroc", "mean"),
        val_accuracy=("val_accuracy", "mean"),
        val_loss=("val_loss", "mean"),
        params=("params", "first"),
    )
    means = means.reset_index()
    means["neg_auroc"] = -means["val_auroc"]
    means["neg_accuracy"] = -means["val_accuracy"]
    ranked = means.sort_values(
        ["neg_auroc", "neg_accuracy", "val_loss", "params", "model"], na_position="last"
    )
    return str(ranked["model"].iat[0])


VS_BASELINE_COLUMNS = [
    *MODEL_COLUMNS,
    "init",
    "baseline",
    "metric",
    "n_pairs",
    "model_mean",
    "model_sd",
    "baseline_mean",
    "baseline_sd",
    *STATISTICS_COLUMNS,
]


def vs_baseline(study: Study) -> pd.DataFrame:
    """Per task, every model x init minus the task's best baseline (best_by_validation)."""
    rows = []
    for task, grp in study.runs.groupby("task", sort=True):
        baselines = grp[grp["init"] == BASELINE]
        best = best_by_validation(baselines)
        if best is None:
            continue
        base = baselines[baselines["model"] == best]
        models = grp[grp["init"] != BASELINE]
        for (model, init), part in models.groupby(["model", "init"], sort=True):
            for row in study.compare(task, part, base):
                sides = _described(task, model, part, row["metric"], model=part, baseline=base)
                rows.append(sides | {"init": init, "baseline": best} | row)
    columns = [c for c in VS_BASELINE_COLUMNS if c != "holm_p"]
    table = _with_holm(pd.DataFrame(rows, columns=columns))
    return table[VS_BASELINE_COLUMNS]


# ---------------------------------------------------------------------------------------------
# The answer at a glance

# role -> the roles it is compared with in the verdict, in the order of the sentence
VERDICT_COMPARISONS = {
    "pretrained": ("scratch", "baseline"),
    "published": ("scratch", "pretrained", "baseline"),
}


def outcome(low: float, high: float, holm_p: float, alpha: float = ALPHA) -> str:
    """better / worse when the interval excludes 0 on that side and the Holm-adjusted p is
    below alpha (a missing p leaves the interval alone to decide); "no detectable difference"
    otherwise; "undetermined" without an interval."""
    if np.isnan(low) or np.isnan(high):
        return "undetermined"
    significant = np.isnan(holm_p) or holm_p < alpha
    if low > 0 and significant:
        return "better"
    if high < 0 and significant:
        return "worse"
    return "no detectable difference"


def _p_text(p: float) -> str:
    if np.isnan(p):
        return "Holm p n/a"
    return "Holm p < 0.001" if p < 0.001 else f"Holm p = {p:.3f}"


def clause(
    other: str, difference: float, low: float, high: float, holm_p: float, note: str = ""
) -> str:
    """One comparison in words, its numbers in brackets."""
    result = outcome(low, high, holm_p)
    if result == "undetermined":
        why = next((n for n in note.split("; ") if n.startswith("interval undefined")), "")
        return f"cannot be compared with {other} ({why or 'interval undefined'})"
    numbers = f"95% CI {low:+.3f} to {high:+.3f}, {_p_text(holm_p)}"
    if result == "better":
        return f"beats {other} by {difference:+.3f} AUROC ({numbers})"
    if result == "worse":
        return f"is below {other} by {difference:+.3f} AUROC ({numbers})"
    # the two criteria disagree: say which one fell short
    if low > 0 or high < 0:
        numbers += ": not after the correction for multiple comparisons"
    elif holm_p < ALPHA:
        numbers += ": these runs differ on the test set, but seeds vary more than that"
    return f"does not differ detectably from {other} ({difference:+.3f} AUROC, {numbers})"


def sentence(subject: str, parts: list[tuple[str, dict]]) -> str:
    """`subject` and its clauses; "but" where an outcome differs from the one before it."""
    text = subject + " "
    previous = None
    for other, c in parts:
        result = outcome(c["ci95_low"], c["ci95_high"], c["holm_p"])
        if previous is not None:
            text += " and " if result == previous else " but "
        text += clause(
            other, c["difference"], c["ci95_low"], c["ci95_high"], c["holm_p"], c.get("note", "")
        )
        previous = result
    return text + "."


def answer(study: Study) -> pd.DataFrame:
    """Per task: the best baseline, scratch, pretrained (and published) model, each chosen on
    validation, with its test AUROC and interval; the comparisons the verdict rests on (Holm
    over all of them in the table); and the verdict as a sentence."""
    runs = study.runs
    present = set(runs["init"])
    roles = [r for r in ("baseline", "scratch", "pretrained", "published") if r in present]
    rows, comparisons = [], []
    for task, grp in runs.groupby("task", sort=True):
        row: dict = {"task": task}
        chosen = {}
        for role in roles:
            best = best_by_validation(grp[grp["init"] == role])
            if best is None:
                row.update({f"{role}_model": "", f"{role}_auroc": math.nan})
                row.update({f"{role}_ci95_low": math.nan, f"{role}_ci95_high": math.nan})
                continue
            chosen[role] = grp[(grp["init"] == role) & (grp["model"] == best)]
            mean, lo, hi = study.level(task, list(chosen[role]["run_dir"]), ANSWER_METRIC)
            row.update({f"{role}_model": best, f"{role}_auroc": mean})
            row.update({f"{role}_ci95_low": lo, f"{role}_ci95_high": hi})
        for subject, others in VERDICT_COMPARISONS.items():
            for other in others:
                if subject in roles and other in roles:
                    name = f"{subject}_vs_{other}"
                    if subject in chosen and other in chosen:
                        c = next(
                            r
                            for r in study.compare(task, chosen[subject], chosen[other])
                            if r["metric"] == ANSWER_METRIC
                        )
                        comparisons.append((len(rows), name, c))
                    else:
                        row[f"{name}_outcome"] = "undetermined"
        notes = [study.splits[task].note] if study.splits[task].note else []
        if "baseline" not in chosen:
            notes.append("no baseline run for this task")
        row["note"] = "; ".join(notes)
        row["_chosen"] = chosen
        rows.append(row)
    if comparisons:
        frame = pd.DataFrame([c for _, _, c in comparisons])
        frame = _with_holm(frame)
        for (i, name, c), holm_p in zip(comparisons, frame["holm_p"], strict=True):
            c = {**c, "holm_p": float(holm_p)}
            rows[i][name] = c["difference"]
            rows[i][f"{name}_ci95_low"] = c["ci95_low"]
            rows[i][f"{name}_ci95_high"] = c["ci95_high"]
            rows[i][f"{name}_holm_p"] = c["holm_p"]
            rows[i][f"{name}_outcome"] = outcome(c["ci95_low"], c["ci95_high"], c["holm_p"])
            rows[i].setdefault("_parts", {})[name] = c
    for row in rows:
        row["verdict"] = verdict(row.pop("_chosen"), row.pop("_parts", {}))
    columns = ["task", "verdict"]
    for role in roles:
        columns += [f"{role}_model", f"{role}_auroc", f"{role}_ci95_low", f"{role}_ci95_high"]
    for subject, others in VERDICT_COMPARISONS.items():
        for other in others:
            if subject in roles and other in roles:
                name = f"{subject}_vs_{other}"
                columns += [name, f"{name}_ci95_low", f"{name}_ci95_high", f"{name}_holm_p"]
                columns += [f"{name}_outcome"]
    columns += ["note"]
    return pd.DataFrame(rows).reindex(columns=columns)


def verdict(chosen: dict[str, pd.DataFrame], parts: dict[str, dict]) -> str:
    """The sentences of one task: for pretrained, then published, its comparisons with the
    best of the other kinds (VERDICT_COMPARISONS)."""
    sentences = []
    for subject, others in VERDICT_COMPARISONS.items():
        if subject not in chosen:
            continue
        model = chosen[subject]["model"].iat[0]
        clauses = [
            (f"{other} {chosen[other]['model'].iat[0]}", parts[f"{subject}_vs_{other}"])
            for other in others
            if f"{subject}_vs_{other}" in parts
        ]
        if clauses:
            sentences.append(sentence(f"{subject} {model}", clauses))
        else:
            sentences.append(f"{subject} {model}: nothing to compare it with in this run.")
    if not sentences:
        return "no pretrained or published model in this run."
    return " ".join(sentences)
