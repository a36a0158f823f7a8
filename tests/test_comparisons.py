"""The comparison tables from run folders on disk: fine-tuning runs of three inits and
baselines, paired by seed and by test example; the verdict's logic and wording."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from dnalm.comparisons import (
    EFFECT_COLUMNS,
    VS_BASELINE_COLUMNS,
    Settings,
    Study,
    answer,
    best_by_validation,
    outcome,
    pair_runs,
    pretrain_effect,
    sentence,
    vs_baseline,
)
from dnalm.metrics import METRICS, classification_metrics
from dnalm.summary import collect_runs, metric_vs_size_figure

N = 240
GROUPS = 24  # 12 host and 12 virus groups of 10 windows
FAST = Settings(resamples=300, permutations=200)


def windows_table() -> pd.DataFrame:
    labels = np.repeat(["host", "virus"], N // 2)
    group = np.repeat([f"g{i}" for i in range(GROUPS)], N // GROUPS)
    return pd.DataFrame(
        {
            "genome": [f"{g}_genome" for g in group],
            "chrom": "c1",
            "start": np.arange(N) * 100,
            "end": np.arange(N) * 100 + 100,
            "label": labels,
            "group": group,
        }
    )


def write_run(root: Path, model: str, init: str, seed: int, p_virus: np.ndarray, val_auroc=None):
    """A run folder as the fine-tuning jobs and the baseline rules write it."""
    kind = "baselines" if init == "baseline" else "finetune"
    parts = [kind, "task", model] + ([] if init == "baseline" else [init]) + [f"seed{seed}"]
    run = root.joinpath(*parts)
    run.mkdir(parents=True)
    table = windows_table()
    table["prob_host"] = (1 - p_virus).round(6)
    table["prob_virus"] = p_virus.round(6)
    table["predicted"] = np.where(table["prob_virus"] > table["prob_host"], "virus", "host")
    table.to_csv(run / "predictions.tsv", sep="\t", index=False)
    truth = (table["label"] == "virus").to_numpy().astype(int)
    probs = table[["prob_host", "prob_virus"]].to_numpy()
    metrics = {
        "task": "task",
        "model": model,
        "arch": model if init == "baseline" else model.split("-")[0],
        "size": "-" if init == "baseline" else "micro",
        "params": 257 if init == "baseline" else (100_000 if "hyena" in model else 130_000),
        "init": init,
        "seed": seed,
        "test": classification_metrics(truth, probs),
        "val": {"loss": 0.5, "accuracy": 0.7, "auroc": val_auroc if val_auroc else 0.8},
        "selected_on": "loss",
        "best_step": 10,
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run / "metrics.json"


def scores(rng, separation: float, shared: np.ndarray) -> np.ndarray:
    truth = np.repeat([0, 1], N // 2)
    return 1 / (1 + np.exp(-(separation * truth + shared + rng.normal(0, 0.6, N))))


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Study:
    """hyena-micro: published > pretrained > scratch; gpt-micro: no effect; two baselines, the
    better one on validation (kmer_lr) weaker on test than cnn, cnn with one seed only."""
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 1, N)
    paths = []
    for seed in range(3):
        for model, seps, vals in (
            (
                "hyena-micro",
                {"published": 3.0, "pretrained": 2.2, "scratch": 1.0},
                (0.9, 0.85, 0.7),
            ),
            ("gpt-micro", {"published": 1.0, "pretrained": 1.0, "scratch": 1.0}, (0.6, 0.6, 0.6)),
        ):
            for (init, sep), val in zip(seps.items(), vals, strict=True):
                p = scores(rng, sep, shared)
                paths.append(write_run(root, model, init, seed, p, val + 0.001 * seed))
        paths.append(write_run(root, "kmer_lr", "baseline", seed, scores(rng, 1.6, shared), 0.95))
    paths.append(write_run(root, "cnn", "baseline", 0, scores(rng, 2.0, shared), 0.9))
    runs = collect_runs(paths)
    return Study.read(runs, FAST)


def test_collect_runs_reads_finetune_and_baseline_folders(study):
    runs = study.runs
    assert len(runs) == 2 * 3 * 3 + 3 + 1
    base = runs[runs["init"] == "baseline"]
    assert set(base["model"]) == {"kmer_lr", "cnn"} and set(base["size"]) == {"-"}
    assert all("/baselines/task/" in r for r in base["run_dir"])
    assert runs["val_auroc"].notna().all() and runs["seconds"].isna().all()


def test_collect_runs_refuses_a_run_listed_twice(tmp_path):
    path = write_run(tmp_path, "kmer_lr", "baseline", 0, np.full(N, 0.5))
    with pytest.raises(ValueError, match="the same run"):
        collect_runs([path, path])


def test_pretrain_effect_compares_every_pair_of_inits(study):
    effect = pretrain_effect(study)
    assert list(effect.columns) == EFFECT_COLUMNS
    pairs = set(zip(effect["a"], effect["b"], strict=True))
    assert pairs == {
        ("published", "pretrained"),
        ("published", "scratch"),
        ("pretrained", "scratch"),
    }
    assert len(effect) == 2 * 3 * len(METRICS)
    assert (effect["n_pairs"] == 3).all() and (effect["unit"] == "groups").all()
    assert (effect["n_units"] == GROUPS).all()
    # paired on every seed: the difference is a_mean - b_mean of metrics.tsv
    assert np.allclose(effect["difference"], effect["a_mean"] - effect["b_mean"], atol=1e-6)
    inside = (effect["ci95_low"] <= effect["difference"]) & (
        effect["difference"] <= effect["ci95_high"]
    )
    assert inside.all()
    auroc = effect[effect["metric"] == "auroc"].set_index(["model", "a", "b"])
    hyena = auroc.loc[("hyena-micro", "pretrained", "scratch")]
    assert hyena["difference"] > 0.1 and hyena["ci95_low"] > 0 and hyena["delong_p"] < 1e-3
    assert hyena["holm_of"] == "delong_p" and hyena["holm_p"] >= hyena["delong_p"]
    gpt = auroc.loc[("gpt-micro", "pretrained", "scratch")]
    assert gpt["ci95_low"] < 0 < gpt["ci95_high"]
    other = effect[effect["metric"] == "mcc"]
    assert (other["holm_of"] == "permutation_p").all() and other["delong_p"].isna().all()
    assert (other["holm_p"] >= other["permutation_p"]).all()
    # the interval over seeds and groups is at least as wide as the seed-only t-interval's
    # share of test-set variance allows: it never collapses to [min, max] of 3 seeds
    diffs = study.runs.pivot_table(index="seed", columns=["model", "init"], values="auroc")
    d = diffs[("hyena-micro", "pretrained")] - diffs[("hyena-micro", "scratch")]
    assert hyena["ci95_low"] < d.min() or hyena["ci95_high"] > d.max()


def test_holm_is_applied_per_metric_over_the_whole_table(study):
    from dnalm.statistics import holm

    effect = pretrain_effect(study)
    for _, grp in effect.groupby("metric"):
        p = np.where(grp["holm_of"] == "delong_p", grp["delong_p"], grp["permutation_p"])
        assert np.allclose(grp["holm_p"], holm(p), equal_nan=True)
    auprc = effect[effect["metric"] == "auprc"]
    # no permutation test for AUPRC (a sort per pattern): its interval answers for it
    assert auprc["permutation_p"].isna().all() and auprc["holm_p"].isna().all()
    assert (auprc["holm_of"] == "").all() and auprc["ci95_low"].notna().all()


def test_tables_are_reproducible(study):
    again = Study(study.runs, study.splits, study.preds, FAST)
    pd.testing.assert_frame_equal(pretrain_effect(again), pretrain_effect(study))


def test_best_baseline_is_chosen_on_validation(study):
    runs = study.runs
    base = runs[runs["init"] == "baseline"]
    assert best_by_validation(base) == "kmer_lr"
    assert base.groupby("model")["auroc"].mean().idxmax() == "cnn"  # test would pick cnn
    table = vs_baseline(study)
    assert list(table.columns) == VS_BASELINE_COLUMNS
    assert set(table["baseline"]) == {"kmer_lr"}
    assert len(table) == 2 * 3 * len(METRICS)
    row = table[
        (table["model"] == "hyena-micro")
        & (table["init"] == "published")
        & (table["metric"] == "auroc")
    ].iloc[0]
    assert row["difference"] > 0 and row["ci95_low"] > 0
    assert math.isclose(row["difference"], row["model_mean"] - row["baseline_mean"], abs_tol=1e-6)


def test_a_single_baseline_run_is_paired_with_every_seed(study):
    runs = study.runs
    cnn = runs[runs["model"] == "cnn"]
    hyena = runs[(runs["model"] == "hyena-micro") & (runs["init"] == "scratch")]
    rows = study.compare("task", hyena, cnn)
    assert all(r["n_pairs"] == 3 for r in rows)
    auroc = next(r for r in rows if r["metric"] == "auroc")
    assert math.isclose(
        auroc["difference"], hyena["auroc"].mean() - cnn["auroc"].iat[0], abs_tol=1e-6
    )


def test_pairs_are_matched_on_seed_not_on_order():
    a = pd.DataFrame({"seed": [2, 0, 1], "run_dir": ["a2", "a0", "a1"]})
    b = pd.DataFrame({"seed": [0, 1, 2, 3], "run_dir": ["b0", "b1", "b2", "b3"]})
    pairs, note = pair_runs(a, b)
    assert pairs == [("a2", "b2"), ("a0", "b0"), ("a1", "b1")]
    assert note == "paired on the 3 seeds both sides have"
    single = pd.DataFrame({"seed": [7], "run_dir": ["c"]})
    assert pair_runs(a, single) == ([("a2", "c"), ("a0", "c"), ("a1", "c")], "")
    other = pd.DataFrame({"seed": [10, 11], "run_dir": ["d10", "d11"]})
    with pytest.raises(ValueError, match=r"no seed in common: \[0, 1, 2\] \(a2, ...\)"):
        pair_runs(a, other)


def test_answer_table_gives_the_best_of_each_kind_and_the_verdict(study):
    table = answer(study)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["baseline_model"] == "kmer_lr"
    assert row["scratch_model"] == "hyena-micro"  # val AUROC 0.7 beats gpt's 0.6
    assert row["pretrained_model"] == "hyena-micro"
    assert row["published_model"] == "hyena-micro"
    runs = study.runs
    pre = runs[(runs["model"] == "hyena-micro") & (runs["init"] == "pretrained")]
    assert math.isclose(row["pretrained_auroc"], pre["auroc"].mean(), abs_tol=1e-6)
    assert row["pretrained_ci95_low"] < row["pretrained_auroc"] < row["pretrained_ci95_high"]
    assert row["pretrained_vs_scratch_outcome"] == "better"
    assert row["published_vs_pretrained_outcome"] == "better"
    verdict = row["verdict"]
    assert verdict.startswith("pretrained hyena-micro beats scratch hyena-micro by +")
    assert "published hyena-micro beats scratch hyena-micro by +" in verdict
    # each number of the sentence is in the table
    assert f"{row['pretrained_vs_scratch']:+.3f} AUROC" in verdict
    assert f"95% CI {row['pretrained_vs_scratch_ci95_low']:+.3f}" in verdict
    assert list(table.columns[:2]) == ["task", "verdict"]


def test_a_level_interval_stays_within_the_metric_range(tmp_path):
    """Near-perfect runs whose seeds differ: the seed-level t draw would cross 1 unclipped."""
    rng = np.random.default_rng(3)
    shared = rng.normal(0, 1, N)
    paths = [
        write_run(tmp_path, "hyena-micro", "scratch", seed, scores(rng, sep, shared))
        for seed, sep in enumerate((2.0, 9.0, 14.0))
    ]
    study = Study.read(collect_runs(paths), FAST)
    dirs = list(study.runs["run_dir"])
    points = [study.point[d]["auroc"] for d in dirs]
    assert max(points) > 0.99 and max(points) - min(points) > 0.03
    for metric, floor in (("auroc", 0.0), ("accuracy", 0.0), ("mcc", -1.0)):
        mean, lo, hi = study.level("task", dirs, metric)
        assert floor <= lo <= mean <= hi <= 1.0, (metric, lo, mean, hi)
    assert study.level("task", dirs, "auroc")[2] == 1.0  # clipped, not above


def test_outcome_rules():
    # the interval must exclude 0 and the Holm-adjusted p must be under 0.05
    assert outcome(0.012, 0.050, 0.004) == "better"
    assert outcome(-0.050, -0.010, 0.010) == "worse"
    assert outcome(-0.030, 0.006, 0.41) == "no detectable difference"
    assert outcome(0.010, 0.050, 0.20) == "no detectable difference"  # lost to multiplicity
    assert outcome(0.010, 0.050, float("nan")) == "better"  # no test: the interval decides
    assert outcome(float("nan"), float("nan"), 0.001) == "undetermined"


def test_verdict_sentence():
    beat = {"difference": 0.031, "ci95_low": 0.012, "ci95_high": 0.050, "holm_p": 0.004}
    tie = {"difference": -0.012, "ci95_low": -0.030, "ci95_high": 0.006, "holm_p": 0.41}
    below = {"difference": -0.04, "ci95_low": -0.06, "ci95_high": -0.02, "holm_p": 0.0004}
    text = sentence(
        "pretrained hyena-tiny", [("scratch gpt-tiny", beat), ("baseline kmer_lr", tie)]
    )
    assert text == (
        "pretrained hyena-tiny beats scratch gpt-tiny by +0.031 AUROC (95% CI +0.012 to +0.050, "
        "Holm p = 0.004) but does not differ detectably from baseline kmer_lr (-0.012 AUROC, "
        "95% CI -0.030 to +0.006, Holm p = 0.410)."
    )
    seeds = {"difference": 0.017, "ci95_low": -0.082, "ci95_high": 0.105, "holm_p": 0.005}
    assert sentence("pretrained h", [("scratch h", seeds)]) == (
        "pretrained h does not differ detectably from scratch h (+0.017 AUROC, 95% CI -0.082 to "
        "+0.105, Holm p = 0.005: these runs differ on the test set, but seeds vary more than that)."
    )
    many = {"difference": 0.03, "ci95_low": 0.01, "ci95_high": 0.05, "holm_p": 0.2}
    assert sentence("pretrained h", [("scratch h", many)]).endswith(
        "Holm p = 0.200: not after the correction for multiple comparisons)."
    )
    text = sentence(
        "published x", [("scratch y", beat), ("pretrained z", beat), ("baseline b", below)]
    )
    assert text.count(" and ") == 1 and " but is below baseline b by -0.040 AUROC" in text
    assert "Holm p < 0.001" in text


def collapsed_runs(tmp_path) -> pd.DataFrame:
    """Pretrained calls every window host in every seed; scratch separates them perfectly in
    every seed: three identical non-zero differences, and none moves under resampling."""
    perfect = np.where(np.repeat([0, 1], N // 2) == 1, 0.9, 0.1)
    paths = []
    for seed in range(3):
        paths.append(write_run(tmp_path, "hyena-micro", "pretrained", seed, np.full(N, 0.3)))
        paths.append(write_run(tmp_path, "hyena-micro", "scratch", seed, perfect))
    return collect_runs(paths)


def test_zero_variance_gives_nan_and_says_why(tmp_path):
    study = Study.read(collapsed_runs(tmp_path), FAST)
    effect = pretrain_effect(study).set_index("metric")
    assert effect.loc["accuracy", "difference"] == -0.5
    assert effect.loc["auroc", "difference"] == -0.5
    for metric in ("accuracy", "auroc"):
        row = effect.loc[metric]
        for col in ("ci95_low", "ci95_high", "t_ci95_low", "t_ci95_high", "t_test_p"):
            assert math.isnan(row[col]), (metric, col)  # not p = 0 and a zero-width interval
        assert "no spread" in row["note"] and "t-test undefined" in row["note"]
        assert "3 run(s) predict a single class" in row["note"]
        assert math.isnan(row["holm_p"]) or row["holm_p"] > 0
    assert math.isnan(effect.loc["auroc", "delong_p"])
    assert "DeLong undefined" in effect.loc["auroc", "note"]
    verdict = answer(study).iloc[0]["verdict"]
    assert verdict == (
        "pretrained hyena-micro cannot be compared with scratch hyena-micro (interval "
        "undefined: no spread under resampling of seeds and test units)."
    )
    assert answer(study).iloc[0]["note"] == "no baseline run for this task"


def test_runs_of_one_task_must_share_the_test_split(tmp_path):
    a = write_run(tmp_path, "hyena-micro", "pretrained", 0, np.full(N, 0.6))
    b = write_run(tmp_path, "hyena-micro", "scratch", 0, np.full(N, 0.6))
    table = pd.read_csv(b.parent / "predictions.tsv", sep="\t")
    table.loc[0, "start"] = 5
    table.to_csv(b.parent / "predictions.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"scratch/seed0/predictions.tsv: its test examples"):
        Study.read(collect_runs([a, b]), FAST)


def test_predictions_must_match_metrics_json(tmp_path):
    a = write_run(tmp_path, "hyena-micro", "pretrained", 0, np.linspace(0.1, 0.9, N))
    m = json.loads(a.read_text())
    m["test"]["auroc"] = 0.99
    a.write_text(json.dumps(m))
    with pytest.raises(ValueError, match=r"test auroc .* differs from 0.990000 in metrics.json"):
        Study.read(collect_runs([a]), FAST)


def test_few_test_groups_fall_back_to_examples_with_a_note(tmp_path):
    rng = np.random.default_rng(1)
    shared = rng.normal(0, 1, N)
    paths = [
        write_run(tmp_path, "hyena-micro", init, seed, scores(rng, 1.0, shared))
        for init in ("pretrained", "scratch")
        for seed in range(2)
    ]
    study = Study.read(
        collect_runs(paths), Settings(resamples=200, permutations=100, min_groups=30)
    )
    row = pretrain_effect(study).iloc[0]
    assert row["unit"] == "examples" and row["n_units"] == N
    assert "only 24 test groups" in row["note"]


def test_metric_vs_size_draws_baselines_as_labelled_lines(study):
    fig = metric_vs_size_figure(study.runs)
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    kmer = study.runs.loc[study.runs["model"] == "kmer_lr", "auroc"].mean()
    assert f"baseline kmer_lr: {kmer:.3f}" in legend
    assert any(t.startswith("baseline cnn: ") for t in legend)
    assert {"hyena, published", "hyena, pretrained", "hyena, scratch"} <= set(legend)
    lines = [line for line in ax.get_lines() if line.get_linestyle() in ("--", "-.")]
    assert sorted(round(line.get_ydata()[0], 6) for line in lines) == sorted(
        round(v, 6)
        for v in study.runs[study.runs["init"] == "baseline"].groupby("model")["auroc"].mean()
    )
    assert "kmer_lr" in [t.get_text() for t in ax.texts]
    plt.close(fig)


def test_answer_page_shows_each_verdict_and_best_model(study):
    from dnalm.summary import answer_html

    table = answer(study)
    table.loc[0, "note"] = "only 2 test groups <few>"
    page = answer_html(table)
    row = table.iloc[0]
    assert page.count("<tr>") == 1 + 2 * len(table)
    for kind in ("baseline", "scratch", "pretrained", "published"):
        assert f"<th>best {kind}</th>" in page
    assert f"AUROC {row['pretrained_auroc']:.3f}" in page
    assert f"95% CI {row['baseline_ci95_low']:.3f} to {row['baseline_ci95_high']:.3f}" in page
    assert row["verdict"].split(" (")[0] in page
    assert "only 2 test groups &lt;few&gt;" in page  # escaped
