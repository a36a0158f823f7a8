"""Aggregate every run into tidy tables and the figures of the report."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dnalm.files import atomic_path, write_text, write_tsv
from dnalm.metrics import METRICS, MODEL_COLUMNS  # noqa: E402

RUN_COLUMNS = [
    *MODEL_COLUMNS,
    "init",
    "seed",
    *METRICS,
    "val_loss",
    "val_auroc",
    "val_accuracy",
    "best_step",
    "seconds",
    "run_dir",
]
INIT_COLOR = {"pretrained": "tab:blue", "scratch": "tab:orange", "published": "tab:green"}
ARCH_MARKER = {"hyena": "o", "gpt": "s"}
# the inits of one model side by side on the log axis, so error bars never overlap
DODGE = {"pretrained": 0.96, "scratch": 1.04, "published": 1.08}
BASELINE = "baseline"
BASELINE_STYLES = ("--", "-.", ":")


def collect_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run from its metrics.json: fine-tuning runs (results/finetune/...) and
    baselines (results/baselines/..., init "baseline") alike. The list is the rule's input,
    never a glob, so a missing run fails the job instead of shrinking the table."""
    rows = []
    seen: dict[tuple, str] = {}
    for path in paths:
        m = json.loads(Path(path).read_text())
        key = tuple(m[k] for k in ("task", "model", "init", "seed"))
        if key in seen:
            raise ValueError(f"{path}: the same run (task, model, init, seed) {key} as {seen[key]}")
        seen[key] = str(path)
        val = m.get("val", {})
        rows.append(
            {
                **{k: m[k] for k in ("task", "model", "arch", "size", "params", "init", "seed")},
                **{k: m["test"][k] for k in METRICS},
                "val_loss": val.get("loss"),
                "val_auroc": val.get("auroc"),
                "val_accuracy": val.get("accuracy"),
                "best_step": m.get("best_step"),
                "seconds": m.get("seconds"),
                "run_dir": str(Path(path).parent),
            }
        )
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    for col in ("val_loss", "val_auroc", "val_accuracy", "seconds"):
        runs[col] = runs[col].astype(float)
    return runs.sort_values(["task", "params", "model", "init", "seed"]).reset_index(drop=True)


def _inits(runs: pd.DataFrame) -> list[str]:
    """The inits of fine-tuned models present, in a fixed order (the baselines are apart)."""
    present = [i for i in runs["init"].unique() if i != BASELINE]
    known = [i for i in INIT_COLOR if i in present]
    return known + sorted(set(present) - set(known))


def plot_metric_vs_size(runs: pd.DataFrame, path: str | Path, metrics=("auroc", "mcc")) -> None:
    """Write metric_vs_size_figure to `path`."""
    _save(metric_vs_size_figure(runs, metrics), path)


def metric_vs_size_figure(runs: pd.DataFrame, metrics=("auroc", "mcc")):
    """Test metric against parameter count per init, mean +- sd over seeds, with each
    baseline as a labelled horizontal line: the score a model has to beat to be worth it."""
    tasks = sorted(runs["task"].unique())
    fig, axes = plt.subplots(
        len(metrics), len(tasks), figsize=(6 * len(tasks), 3.8 * len(metrics)), squeeze=False
    )
    inits = _inits(runs)
    for col, task in enumerate(tasks):
        sub = runs[(runs["task"] == task) & (runs["init"] != BASELINE)]
        baselines = runs[(runs["task"] == task) & (runs["init"] == BASELINE)]
        for row, metric in enumerate(metrics):
            ax = axes[row][col]
            for init in inits:
                color = INIT_COLOR.get(init, "tab:gray")
                for arch in sorted(sub["arch"].unique()):
                    part = sub[(sub["init"] == init) & (sub["arch"] == arch)]
                    if part.empty:
                        continue
                    g = part.groupby(["params", "model"])[metric].agg(["mean", "std"])
                    g = g.reset_index()
                    x = g["params"] * DODGE.get(init, 1.0)
                    ax.errorbar(
                        x,
                        g["mean"],
                        yerr=g["std"].fillna(0),
                        color=color,
                        marker=ARCH_MARKER.get(arch, "^"),
                        markersize=7,
                        capsize=3,
                        label=f"{arch}, {init}",
                    )
                    if init == inits[0]:
                        for xi, r in zip(x, g.itertuples(), strict=True):
                            ax.annotate(
                                r.model,
                                (xi, r.mean),
                                fontsize=7,
                                xytext=(-7, 4),
                                textcoords="offset points",
                                ha="right",
                            )
            lo, hi = sub["params"].min() / 2, sub["params"].max() * 2
            ax.set_xscale("log")
            ax.set_xlim(lo, hi)
            means = baselines.groupby("model")[metric].mean().sort_values(ascending=False)
            for i, (name, value) in enumerate(means.items()):
                style = BASELINE_STYLES[i % len(BASELINE_STYLES)]
                ax.axhline(
                    value,
                    color="dimgray",
                    linestyle=style,
                    linewidth=1.2,
                    label=f"baseline {name}: {value:.3f}",
                )
                ax.annotate(
                    name,
                    (hi, value),
                    xytext=(-3, 3),
                    textcoords="offset points",
                    ha="right",
                    fontsize=7,
                    color="dimgray",
                )
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: _human(x)))
            ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("trainable parameters (log scale)")
            ax.set_ylabel(f"test {metric.upper()}")
            seeds = sub["seed"].nunique()
            ax.set_title(
                f"{task}: {metric.upper()} vs model size\n(mean \u00b1 1 sd over {seeds} seeds)"
            )
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    return fig


def _human(n: float) -> str:
    if abs(n) >= 1e6:
        return f"{n / 1e6:.3g}M"
    return f"{n / 1e3:.3g}k" if abs(n) >= 1e3 else f"{n:.3g}"


def plot_effect(
    effect: pd.DataFrame, path: str | Path, metrics=("auroc", "mcc", "accuracy")
) -> None:
    """Each paired difference of inits (a - b) with its 95% interval, per task and model."""
    sub = effect[effect["metric"].isin(metrics)].copy()
    sub["row"] = sub["task"] + " / " + sub["model"] + "  " + sub["a"] + " - " + sub["b"]
    rows = list(dict.fromkeys(sub["row"]))
    fig, ax = plt.subplots(figsize=(8.5, 1.2 + 0.45 * max(1, len(rows) * len(metrics))))
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
            color = INIT_COLOR.get(e["a"], "tab:gray")
            ax.errorbar(e["difference"], y, xerr=xerr, fmt="o", capsize=3, color=color)
            ticks.append(y)
            labels.append(f"{r}  {metric.upper()} (n={int(e['n_pairs'])})")
            y += 1
    ax.axvline(0, color="grey", linewidth=1)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(
        "a minus b on the test split (mean of seed-paired differences;\n"
        "95% interval over seeds and test examples or groups)"
    )
    ax.set_title("Does pretraining pay off?")
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def plot_pretrain_curves(curves: Mapping[str, str | Path], path: str | Path) -> None:
    """Pretraining loss in bits per base, one panel per model so that curves never hide each
    other: validation (held out) solid, training (running mean since the last evaluation)
    dashed, against the 2-bit line of a uniform guess."""
    names = sorted(curves)
    if not names:  # every init of the run starts from published weights or at random
        fig, ax = plt.subplots(figsize=(6, 1.6))
        ax.axis("off")
        ax.text(0.5, 0.5, "No model is pretrained by this run.", ha="center", va="center")
        _save(fig, path)
        return
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False, sharey=True
    )
    for ax, model in zip(axes.flat, names, strict=False):
        df = pd.read_csv(curves[model], sep="\t")
        # a k-mer or BPE token is several bases: the val columns give the ratio
        train = df["train_loss"] * df["val_bits_per_base"] / df["val_loss"]
        ax.plot(
            df["tokens"], df["val_bits_per_base"], marker="o", color="tab:blue", label="validation"
        )
        ax.plot(df["tokens"], train, linestyle="--", color="tab:green", label="training")
        ax.axhline(2.0, color="grey", linewidth=1, linestyle=":", label="uniform guess (2 bits)")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: _human(x)))
        ax.set_xlabel("training tokens")
        ax.set_ylabel("loss (bits per base)")
        ax.set_title(f"{model}: final val {df['val_bits_per_base'].iloc[-1]:.3f} bits/base")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    fig.suptitle("Pretraining: next-base prediction loss (lower is better)")
    _save(fig, path)


def plot_finetune_curves(runs: pd.DataFrame, path: str | Path) -> None:
    """Validation loss during training for every fine-tuning run, per init, task and model
    (baselines have no training curve)."""
    frames = [
        pd.read_csv(Path(r.run_dir) / "curve.tsv", sep="\t").assign(
            task=r.task, model=r.model, init=r.init, seed=r.seed
        )
        for r in runs[runs["init"] != BASELINE].itertuples()
    ]
    data = pd.concat(frames)
    panels = sorted(data.groupby(["task", "model"]).groups)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (task, model) in zip(axes[0], panels, strict=True):
        sub = data[(data["task"] == task) & (data["model"] == model)]
        for (init, seed), run in sub.groupby(["init", "seed"]):
            color = INIT_COLOR.get(init, "tab:gray")
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


def best_models(runs: pd.DataFrame) -> dict[str, str]:
    """Per task, the model whose better init has the lowest mean validation loss over seeds.

    Chosen on validation only, never on test, so the curves shown are not a test-set pick.
    Baselines are not candidates."""
    runs = runs[runs["init"] != BASELINE]
    if runs["val_loss"].isna().any():
        bad = runs.loc[runs["val_loss"].isna(), "run_dir"].tolist()
        raise ValueError(f"runs without a validation loss, cannot pick a best model: {bad}")
    mean = runs.groupby(["task", "model", "init"])["val_loss"].mean().reset_index()
    best = mean.sort_values(["task", "val_loss", "model"]).groupby("task").first()
    return best["model"].to_dict()


def _positive_scores(predictions: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Binary truth and score for the positive class (the task's second label, as in
    metrics.py); a multi-class task is shown as its last class against the rest."""
    table = pd.read_csv(predictions, sep="\t", dtype={"label": str})
    prob_cols = [c for c in table.columns if c.startswith("prob_")]
    if len(prob_cols) < 2:
        raise ValueError(f"{predictions}: needs two or more prob_<label> columns, has {prob_cols}")
    positive = prob_cols[-1].removeprefix("prob_")
    return (table["label"] == positive).to_numpy(), table[prob_cols[-1]].to_numpy(), positive


def plot_roc_pr(runs: pd.DataFrame, path: str | Path) -> dict[str, str]:
    """Write roc_pr_figure to `path`; returns the model chosen per task."""
    fig, chosen = roc_pr_figure(runs)
    _save(fig, path)
    return chosen


def roc_pr_figure(runs: pd.DataFrame):
    """Test-split ROC and precision-recall curves of each task's best model (best_models),
    pretrained vs scratch, one thin line per seed; the figure and the model chosen per task."""
    from sklearn import metrics as skm

    chosen = best_models(runs)
    tasks = sorted(chosen)
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 4.6 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        model = chosen[task]
        sub = runs[(runs["task"] == task) & (runs["model"] == model)]
        roc_ax, pr_ax = axes[row]
        prevalence = []
        for init in _inits(sub):
            color = INIT_COLOR.get(init, "tab:gray")
            part = sub[sub["init"] == init].sort_values("seed")
            for i, r in enumerate(part.itertuples()):
                truth, score, positive = _positive_scores(Path(r.run_dir) / "predictions.tsv")
                if truth.all() or not truth.any():
                    raise ValueError(
                        f"{r.run_dir}/predictions.tsv: test labels hold one class only; "
                        "no ROC or PR curve"
                    )
                prevalence.append(truth.mean())
                fpr, tpr, _ = skm.roc_curve(truth, score)
                precision, recall, _ = skm.precision_recall_curve(truth, score)
                first = i == 0
                roc_label = (
                    f"{init}: AUROC {part['auroc'].mean():.3f} \u00b1 "
                    f"{part['auroc'].std(ddof=1) if len(part) > 1 else 0:.3f}"
                )
                pr_label = (
                    f"{init}: AUPRC {part['auprc'].mean():.3f} \u00b1 "
                    f"{part['auprc'].std(ddof=1) if len(part) > 1 else 0:.3f}"
                )
                style = {"color": color, "alpha": 0.75, "linewidth": 1.3}
                roc_ax.plot(fpr, tpr, label=roc_label if first else None, **style)
                pr_ax.step(
                    recall, precision, where="post", label=pr_label if first else None, **style
                )
        seeds = sub["seed"].nunique()
        roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
        roc_ax.set_xlabel("false positive rate")
        roc_ax.set_ylabel("true positive rate")
        roc_ax.set_title(f"{task}: ROC of {model}\n(positive class {positive!r}, {seeds} seeds)")
        pr_ax.axhline(
            float(np.mean(prevalence)), color="grey", linestyle=":", label="chance (prevalence)"
        )
        pr_ax.set_xlabel(f"recall (of {positive!r})")
        pr_ax.set_ylabel("precision")
        pr_ax.set_title(f"{task}: precision-recall of {model}\n(test split, {seeds} seeds)")
        for ax in (roc_ax, pr_ax):
            ax.set_xlim(-0.01, 1.01)
            ax.set_ylim(-0.01, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="lower right" if ax is roc_ax else "lower left")
    fig.suptitle("Test-split curves of the best model per task (lowest mean validation loss)")
    return fig, chosen


def collect_benchmarks(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Per rule: jobs, total/mean/max wall seconds, CPU seconds and peak RSS from the
    benchmark TSVs Snakemake writes; the rule is the folder just under a `benchmarks` folder."""
    rows = []
    for path in paths:
        path = Path(path)
        folders = path.parts[:-1]
        at = [i for i, name in enumerate(folders[:-1]) if name == "benchmarks"]
        if not at:
            raise ValueError(f"{path}: a benchmark file must lie in benchmarks/<rule>/")
        rule = folders[at[-1] + 1]
        bench = pd.read_csv(path, sep="\t", na_values=["-", "NA"])
        missing = {"s", "max_rss"} - set(bench.columns)
        if bench.empty or missing:
            raise ValueError(f"{path}: not a Snakemake benchmark file (no rows or no {missing})")
        row = bench.iloc[-1]  # one row per repeat; the last one
        rows.append(
            {
                "rule": rule,
                "s": float(row["s"]),
                "cpu_s": float(row.get("cpu_time", np.nan)),
                "max_rss_mb": float(row["max_rss"]),
            }
        )
    jobs = pd.DataFrame(rows, columns=["rule", "s", "cpu_s", "max_rss_mb"])
    table = jobs.groupby("rule").agg(
        jobs=("s", "size"),
        total_s=("s", "sum"),
        mean_s=("s", "mean"),
        max_s=("s", "max"),
        total_cpu_s=("cpu_s", "sum"),
        max_rss_mb=("max_rss_mb", "max"),
    )
    return table.sort_values("total_s", ascending=False).reset_index()


def plot_benchmarks(table: pd.DataFrame, path: str | Path) -> None:
    """Write benchmarks_figure to `path`."""
    _save(benchmarks_figure(table), path)


def benchmarks_figure(table: pd.DataFrame):
    """Wall time per rule (all its jobs summed) beside the peak memory of its largest job."""
    table = table.sort_values("total_s")
    height = 1.4 + 0.38 * len(table)
    fig, (time_ax, mem_ax) = plt.subplots(1, 2, figsize=(11, height), sharey=True)
    y = np.arange(len(table))
    labels = [f"{r.rule} ({r.jobs} job{'s' if r.jobs != 1 else ''})" for r in table.itertuples()]
    time_ax.barh(y, table["total_s"], color="tab:blue")
    time_ax.set_yticks(y, labels, fontsize=9)
    time_ax.set_xlabel("wall time, all jobs summed (s)")
    time_ax.set_title("Run time per rule")
    mem_ax.barh(y, table["max_rss_mb"].fillna(0), color="tab:purple")
    mem_ax.set_xlabel("peak resident memory of one job (MB)")
    mem_ax.set_title("Memory per rule")
    for ax, col, fmt in ((time_ax, "total_s", "{:.1f} s"), (mem_ax, "max_rss_mb", "{:.0f} MB")):
        for yi, value in zip(y, table[col], strict=True):
            if not np.isnan(value):
                ax.annotate(
                    fmt.format(value),
                    (value, yi),
                    xytext=(3, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=8,
                )
        ax.margins(x=0.18)
        ax.grid(axis="x", alpha=0.3)
    return fig


SOFTWARE = (
    "snakemake",
    "torch",
    "transformers",
    "tokenizers",
    "numpy",
    "pandas",
    "pysam",
    "isal",  # writes and reads the normalised genomes
    "scikit-learn",
    "matplotlib",
    "safetensors",
)


def software_versions() -> pd.DataFrame:
    """The versions a result was computed with, so a report can be matched to its software."""
    import platform
    from importlib import metadata

    import torch

    rows = [("python", platform.python_version()), ("platform", platform.platform())]
    for name in SOFTWARE:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    cuda = torch.cuda.is_available()
    rows.append(("cuda_available", str(cuda)))
    rows.append(("cuda_version", str(torch.version.cuda)))
    rows.append(("gpu", torch.cuda.get_device_name(0) if cuda else "none"))
    return pd.DataFrame(rows, columns=["software", "version"])


def _save(fig, path: str | Path) -> None:
    """Through a temporary file, so that a failed plot never leaves a partial PNG."""
    path = Path(path)
    try:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """A TSV through a temporary file, so that a failure leaves no partial table."""
    write_tsv(path, table, float_format="%.6g")


ANSWER_ROLES = ("baseline", "scratch", "pretrained", "published")


def answer_html(answer: pd.DataFrame) -> str:
    """answer.tsv as a page the report shows inline (it only offers a TSV for download): per
    task the verdict, then the best model of each kind with its test AUROC and interval."""
    roles = [r for r in ANSWER_ROLES if f"{r}_model" in answer.columns]
    head = "".join(f"<th>best {r}</th>" for r in roles)
    body = []
    for row in answer.to_dict("records"):
        cells = []
        for r in roles:
            model = row[f"{r}_model"]
            if not isinstance(model, str) or not model:
                cells.append("<td>-</td>")
                continue
            value, lo, hi = row[f"{r}_auroc"], row[f"{r}_ci95_low"], row[f"{r}_ci95_high"]
            ci = "" if np.isnan(lo) else f"<br><small>95% CI {lo:.3f} to {hi:.3f}</small>"
            cells.append(f"<td>{html.escape(model)}<br>AUROC {value:.3f}{ci}</td>")
        note = row.get("note")
        note = f"<p class=note>{html.escape(note)}</p>" if isinstance(note, str) and note else ""
        body.append(
            f"<tr><th>{html.escape(row['task'])}</th>{''.join(cells)}</tr>"
            f"<tr><td colspan={len(roles) + 1}><b>{html.escape(row['verdict'])}</b>{note}</td></tr>"
        )
    style = (
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:6px 10px;text-align:left;vertical-align:top}"
        ".note{color:#666;font-size:90%;margin:4px 0 0}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset=utf-8><style>{style}</style></head><body>"
        f"<h2>Does pretraining pay off?</h2><table><tr><th>task</th>{head}</tr>"
        f"{''.join(body)}</table></body></html>\n"
    )


def write_answer_html(answer: pd.DataFrame, path: str | Path) -> None:
    write_text(path, answer_html(answer))
