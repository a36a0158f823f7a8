"""aggregate: metrics.tsv, pretrain_effect.tsv and the figures of the report."""

from pathlib import Path

import pandas as pd

from dnalm.runtime import job_log
from dnalm.statistics import pretrain_effect
from dnalm.summary import (
    collect_runs,
    plot_effect,
    plot_finetune_curves,
    plot_metric_vs_size,
    plot_pretrain_curves,
    plot_roc_pr,
    write_table,
)

with job_log(snakemake.log[0]) as log:
    out = snakemake.output
    Path(out.size_figure).parent.mkdir(parents=True, exist_ok=True)
    runs = collect_runs(snakemake.input.runs)
    write_table(runs, out.metrics)
    effect = pretrain_effect(runs)
    write_table(effect, out.effect)
    plot_metric_vs_size(runs, out.size_figure)
    plot_effect(effect, out.effect_figure)
    plot_pretrain_curves(
        {Path(p).parent.name: p for p in snakemake.input.pretrain}, out.pretrain_figure
    )
    plot_finetune_curves(runs, out.finetune_figure)
    best = plot_roc_pr(runs, out.roc_pr_figure)
    log.info("ROC/PR curves of the best model per task (lowest mean val loss): %s", best)
    audit = pd.concat([pd.read_csv(p, sep="\t") for p in snakemake.input.audits])
    write_table(audit, out.audit)
    auroc = effect[effect["metric"] == "auroc"]
    log.info(
        "%d runs aggregated; AUROC pretrained - scratch:\n%s",
        len(runs),
        auroc[
            [
                "task",
                "model",
                "pretrained_mean",
                "scratch_mean",
                "difference",
                "ci95_low",
                "ci95_high",
            ]
        ].to_string(index=False),
    )
