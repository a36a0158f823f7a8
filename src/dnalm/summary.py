"""Aggregate every run into tidy tables and the figures of the report."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dnalm.metrics import METRICS  # noqa: E402

RUN_COLUMNS = [
    "task",
    "model",
    "arch",
    "size",
    "params",
    "init",
    "seed",
    *METRICS,
    "val_loss",
    "best_step",
    "seconds",
    "run_dir",
]
INIT_COLOR = {"pretrained": "tab:blue", "scratch": "tab:orange"}
ARCH_MARKER = {"hyena": "o", "gpt": "s"}


def collect_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per fine-tuning/scratch run from its metrics.json."""
    rows = []
    for path in paths:
        m = json.loads(Path(path).read_text())
        rows.append(
            {
                **{k: m[k] for k in ("task", "model", "arch", "size", "params", "init", "seed")},
                **{k: m["test"][k] for k in METRICS},
                "val_loss": m["val"].get("loss"),
                "best_step": m["best_step"],
                "seconds": m["seconds"],
                "run_dir": str(Path(path).parent),
            }
        )
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    return runs.sort_values(["task", "params", "model", "init", "seed"]).reset_index(drop=True)


def plot_metric_vs_size(runs: pd.DataFrame, path: str | Path, metrics=("auroc", "mcc")) -> None:
    """Test metric against parameter count, pretrained vs scratch, mean +- sd over seeds."""
    tasks = sorted(runs["task"].unique())
    fig, axes = plt.subplots(
        len(metrics), len(tasks), figsize=(6 * len(tasks), 3.8 * len(metrics)), squeeze=False
    )
    for col, task in enumerate(tasks):
        sub = runs[runs["task"] == task]
        for row, metric in enumerate(metrics):
            ax = axes[row][col]
            for init, color in INIT_COLOR.items():
                for arch in sorted(sub["arch"].unique()):
                    part = sub[(sub["init"] == init) & (sub["arch"] == arch)]
                    if part.empty:
                        continue
                    g = part.groupby(["params", "model"])[metric].agg(["mean", "std"])
                    g = g.reset_index()
                    ax.errorbar(
                        g["params"],
                        g["mean"],
                        yerr=g["std"].fillna(0),
                        color=color,
                        marker=ARCH_MARKER.get(arch, "^"),
                        markersize=7,
                        capsize=3,
                        label=f"{arch}, {init}",
                    )
                    if init == "pretrained":
                        for _, r in g.iterrows():
                            ax.annotate(
                                r["model"],
                                (r["params"], r["mean"]),
                                fontsize=7,
                                xytext=(6, 4),
                                textcoords="offset points",
                            )
            ax.set_xscale("log")
            ax.set_xlim(sub["params"].min() / 2, sub["params"].max() * 2)
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: _human(x)))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("trainable parameters (log scale)")
            ax.set_ylabel(f"test {metric.upper()}")
            ax.set_title(f"{task}: {metric.upper()} vs model size")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    _save(fig, path)


def _human(n: float) -> str:
    return f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n / 1e3:.3g}k"


def plot_effect(
    effect: pd.DataFrame, path: str | Path, metrics=("auroc", "mcc", "accuracy")
) -> None:
    """Paired pretrained-minus-scratch difference with its 95% interval, per task and model."""
    sub = effect[effect["metric"].isin(metrics)].copy()
    sub["row"] = sub["task"] + " / " + sub["model"]
    rows = list(dict.fromkeys(sub["row"]))
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(rows) * len(metrics)))
    y = 0
    ticks, labels = [], []
    for r in rows:
        for metric in metrics:
            e = sub[(sub["row"] == r) & (sub["metric"] == metric)]
            if e.empty:
                continue
            e = e.iloc[0]
            lo, hi = e["ci95_low"], e["ci95_high"]
            xerr = None if np.isnan(lo) else [[e["difference"] - lo], [hi - e["difference"]]]
            ax.errorbar(e["difference"], y, xerr=xerr, fmt="o", capsize=3, color="tab:blue")
            ticks.append(y)
            labels.append(f"{r}  {metric.upper()} (n={int(e['n_pairs'])})")
            y += 1
    ax.axvline(0, color="grey", linewidth=1)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(
        "pretrained minus scratch, test split\n(mean of seed-paired differences, 95% t-interval)"
    )
    ax.set_title("Does pretraining pay off?")
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def plot_pretrain_curves(curves: Mapping[str, str | Path], path: str | Path) -> None:
    """Validation bits per base during pretraining, one line per model."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for model, curve in sorted(curves.items()):
        df = pd.read_csv(curve, sep="\t")
        ax.plot(df["tokens"], df["val_bits_per_base"], marker="o", label=f"{model} (val)")
        ax.plot(
            df["tokens"],
            df["train_loss"] / np.log(2),
            linestyle="--",
            alpha=0.6,
            label=f"{model} (train)",
        )
    ax.axhline(2.0, color="grey", linewidth=1, linestyle=":", label="uniform over ACGT (2 bits)")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("bits per base")
    ax.set_title("Pretraining: next-base loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_finetune_curves(runs: pd.DataFrame, path: str | Path) -> None:
    """Validation loss during training for every run, pretrained vs scratch, per task/model."""
    frames = [
        pd.read_csv(Path(r.run_dir) / "curve.tsv", sep="\t").assign(
            task=r.task, model=r.model, init=r.init, seed=r.seed
        )
        for r in runs.itertuples()
    ]
    data = pd.concat(frames)
    panels = sorted(data.groupby(["task", "model"]).groups)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (task, model) in zip(axes[0], panels, strict=True):
        sub = data[(data["task"] == task) & (data["model"] == model)]
        for (init, seed), run in sub.groupby(["init", "seed"]):
            color = INIT_COLOR[init]
            ax.plot(
                run["step"],
                run["val_loss"],
                color=color,
                alpha=0.8,
                label=init if seed == sub["seed"].min() else None,
            )
        ax.set_title(f"{task}\n{model}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("validation loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def _save(fig, path: str | Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
