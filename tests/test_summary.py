"""The report's figures and provenance tables, from small runs written to disk."""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from dnalm.metrics import classification_metrics
from dnalm.summary import (
    benchmarks_figure,
    best_models,
    collect_benchmarks,
    collect_runs,
    plot_benchmarks,
    plot_pretrain_curves,
    plot_roc_pr,
    roc_pr_figure,
    software_versions,
)

PNG = b"\x89PNG\r\n\x1a\n"


def write_run(root: Path, model: str, init: str, seed: int, signal: float, val_loss: float):
    """One run folder: predictions of a binary task and the metrics.json train.py writes."""
    rng = np.random.default_rng(seed + 10 * len(model) + (init == "scratch"))
    labels = np.repeat([0, 1], 60)
    p_virus = 1 / (1 + np.exp(-(signal * (labels - 0.5) * 4 + rng.normal(0, 1, labels.size))))
    run = root / "virus_vs_host" / model / init / f"seed{seed}"
    run.mkdir(parents=True)
    pd.DataFrame(
        {
            "genome": "g",
            "chrom": "c",
            "start": np.arange(labels.size) * 100,
            "end": np.arange(labels.size) * 100 + 100,
            "label": np.array(["host", "virus"])[labels],
            "prob_host": 1 - p_virus,
            "prob_virus": p_virus,
        }
    ).to_csv(run / "predictions.tsv", sep="\t", index=False)
    test = classification_metrics(labels, np.column_stack([1 - p_virus, p_virus]))
    metrics = {
        "task": "virus_vs_host",
        "model": model,
        "arch": model.split("-")[0],
        "size": "micro",
        "params": 100_000 if model.startswith("hyena") else 400_000,
        "init": init,
        "seed": seed,
        "test": test,
        "val": {"loss": val_loss + 0.01 * seed},
        "best_step": 10,
        "seconds": 1.0,
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run / "metrics.json"


@pytest.fixture
def runs(tmp_path) -> pd.DataFrame:
    # gpt separates better on test, but hyena has the lower validation loss: hyena is "best"
    paths = [
        write_run(tmp_path, model, init, seed, signal, val)
        for model, signal, val in (("hyena-micro", 0.6, 0.40), ("gpt-micro", 1.5, 0.55))
        for init in ("pretrained", "scratch")
        for seed in (0, 1, 2)
    ]
    return collect_runs(paths)


def test_best_model_is_chosen_on_validation_not_test(runs):
    assert best_models(runs) == {"virus_vs_host": "hyena-micro"}
    mean_auroc = runs.groupby("model")["auroc"].mean()
    assert mean_auroc["gpt-micro"] > mean_auroc["hyena-micro"]  # test would pick the other


def test_roc_pr_figure_has_labelled_curves(runs, tmp_path):
    fig, chosen = roc_pr_figure(runs)
    roc_ax, pr_ax = fig.axes[:2]
    assert roc_ax.get_xlabel() == "false positive rate"
    assert roc_ax.get_ylabel() == "true positive rate"
    assert pr_ax.get_ylabel() == "precision" and "recall" in pr_ax.get_xlabel()
    assert "hyena-micro" in roc_ax.get_title() and "'virus'" in roc_ax.get_title()
    # 3 seeds x 2 inits plus the chance line; one legend entry per init plus chance
    assert len(roc_ax.get_lines()) == 7
    legend = [t.get_text() for t in roc_ax.get_legend().get_texts()]
    assert legend[0].startswith("pretrained: AUROC ") and legend[1].startswith("scratch: AUROC ")
    hyena = runs[(runs["model"] == "hyena-micro") & (runs["init"] == "pretrained")]
    assert f"{hyena['auroc'].mean():.3f}" in legend[0]
    plt.close(fig)

    out = tmp_path / "roc_pr.png"
    assert plot_roc_pr(runs, out) == chosen
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 20_000
    assert not list(tmp_path.glob(".*.tmp"))


def test_roc_pr_refuses_a_single_class_test_split(runs, tmp_path):
    run = Path(runs.loc[runs["model"] == "hyena-micro", "run_dir"].iloc[0])
    table = pd.read_csv(run / "predictions.tsv", sep="\t")
    table["label"] = "host"
    table.to_csv(run / "predictions.tsv", sep="\t", index=False)
    out = tmp_path / "roc_pr.png"
    with pytest.raises(ValueError, match=r"seed0/predictions.tsv: test labels hold one class"):
        plot_roc_pr(runs, out)
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_missing_validation_loss_is_named(runs):
    runs.loc[3, "val_loss"] = np.nan
    with pytest.raises(ValueError, match=runs.loc[3, "run_dir"]):
        best_models(runs)


def test_pretrain_curves_one_panel_per_model(tmp_path):
    curves = {}
    for i, model in enumerate(("gpt-micro", "hyena-micro", "hyena-small")):
        df = pd.DataFrame(
            {
                "step": [50, 100],
                "tokens": [409_600, 819_200],
                "train_loss": [1.40 - i / 50, 1.37],
                "val_loss": [1.39, 1.36],
                "val_bits_per_base": [2.0, 1.96 - i / 100],
            }
        )
        curves[model] = tmp_path / f"{model}.tsv"
        df.to_csv(curves[model], sep="\t", index=False)
    out = tmp_path / "pretrain_loss.png"
    plot_pretrain_curves(curves, out)
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 20_000
    # a study whose every init is published or scratch still gets its figure, saying so
    plot_pretrain_curves({}, tmp_path / "empty.png")
    empty = tmp_path / "empty.png"
    assert empty.read_bytes()[:8] == PNG
    assert 1_000 < empty.stat().st_size < out.stat().st_size / 4


def real_benchmark(path: Path, megabytes: int) -> None:
    """A benchmark file written by Snakemake's own benchmark code, around a real allocation."""
    from snakemake.benchmark import benchmarked, write_benchmark_records

    path.parent.mkdir(parents=True, exist_ok=True)
    with benchmarked() as record:
        block = bytearray(megabytes * 1_000_000)
        time.sleep(0.05)
        del block
    write_benchmark_records([record], str(path), False)


def test_rule_benchmarks_table_and_figure(tmp_path):
    root = tmp_path / "results" / "benchmarks"
    paths = [root / "pretrain" / f"m{i}.tsv" for i in range(2)]
    paths += [root / "finetune" / "task" / "m0" / f"seed{s}.tsv" for s in range(3)]
    for path in paths:
        real_benchmark(path, 20)
    table = collect_benchmarks(paths)
    assert list(table.columns) == [
        "rule",
        "jobs",
        "total_s",
        "mean_s",
        "max_s",
        "total_cpu_s",
        "max_rss_mb",
    ]
    jobs = dict(zip(table["rule"], table["jobs"], strict=True))
    assert jobs == {"pretrain": 2, "finetune": 3}
    assert (table["total_s"] >= 0.05 * table["jobs"]).all()
    assert np.allclose(table["mean_s"] * table["jobs"], table["total_s"])

    fig = benchmarks_figure(table)
    time_ax, mem_ax = fig.axes
    assert time_ax.get_xlabel() == "wall time, all jobs summed (s)"
    assert "MB" in mem_ax.get_xlabel()
    labels = [t.get_text() for t in time_ax.get_yticklabels()]
    assert "finetune (3 jobs)" in labels and "pretrain (2 jobs)" in labels
    plt.close(fig)
    out = tmp_path / "rule_benchmarks.png"
    plot_benchmarks(table, out)
    assert out.read_bytes()[:8] == PNG


def test_bad_benchmark_file_is_named(tmp_path):
    stray = tmp_path / "elsewhere.tsv"
    stray.write_text("s\tmax_rss\n1\t2\n")
    with pytest.raises(ValueError, match="elsewhere.tsv: a benchmark file must lie in"):
        collect_benchmarks([stray])
    broken = tmp_path / "benchmarks" / "pretrain" / "m.tsv"
    broken.parent.mkdir(parents=True)
    broken.write_text("wall\n1\n")
    with pytest.raises(ValueError, match=r"m.tsv: not a Snakemake benchmark file"):
        collect_benchmarks([broken])


def test_software_versions_match_the_running_software():
    table = software_versions().set_index("software")["version"]
    assert table["torch"] == torch.__version__
    assert table["cuda_available"] == str(torch.cuda.is_available())
    for name in (
        "python",
        "snakemake",
        "transformers",
        "tokenizers",
        "numpy",
        "pandas",
        "pysam",
        "isal",
    ):
        assert table[name] and table[name] != "not installed", name
