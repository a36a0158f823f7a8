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
)

with job_log(snakemake.log[0]) as log:
    out = snakemake.output
    Path(out.size_figure).parent.mkdir(parents=True, exist_ok=True)
    runs = collect_runs(snakemake.input.runs)
    runs.to_csv(out.metrics, sep="\t", index=False, float_format="%.6g")
    effect = pretrain_effect(runs)
    effect.to_csv(out.effect, sep="\t", index=False, float_format="%.6g")
    plot_metric_vs_size(runs, out.size_figure)
    plot_effect(effect, out.effect_figure)
    plot_pretrain_curves(
        {Path(p).parent.name: p for p in snakemake.input.pretrain}, out.pretrain_figure
    )
    plot_finetune_curves(runs, out.finetune_figure)
    audit = pd.concat([pd.read_csv(p, sep="\t") for p in snakemake.input.audits])
    audit.to_csv(out.audit, sep="\t", index=False, float_format="%.6g")
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
