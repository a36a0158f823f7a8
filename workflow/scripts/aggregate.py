"""aggregate: metrics.tsv, the comparison tables (answer, pretrain_effect, vs_baseline) and the
figures of the report."""

import time
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from dnalm.comparisons import Settings, Study, answer, pretrain_effect, vs_baseline
from dnalm.runtime import job_log
from dnalm.summary import (
    collect_runs,
    plot_effect,
    plot_finetune_curves,
    plot_metric_vs_size,
    plot_pretrain_curves,
    plot_roc_pr,
    write_answer_html,
    write_table,
)

with job_log(snakemake.log[0]) as log:
    out = snakemake.output
    Path(out.size_figure).parent.mkdir(parents=True, exist_ok=True)
    # fine-tuning runs and baselines; a path listed in both inputs counts once
    paths = list(dict.fromkeys([*snakemake.input.runs, *getattr(snakemake.input, "baselines", [])]))
    runs = collect_runs(paths)
    write_table(runs, out.metrics)
    settings = Settings(**snakemake.params.statistics)
    start = time.perf_counter()
    # the job's threads only: idle BLAS threads spinning on a shared machine cost more than
    # they give to these small products
    with threadpool_limits(limits=snakemake.threads):
        study = Study.read(runs, settings)
        effect = pretrain_effect(study)
        versus = vs_baseline(study)
        verdicts = answer(study)
    log.info(
        "%d runs (%d baseline runs) compared in %.1f s: %d resamples, %d permutations",
        len(runs),
        int((runs["init"] == "baseline").sum()),
        time.perf_counter() - start,
        settings.resamples,
        settings.permutations,
    )
    write_table(verdicts, out.answer)
    write_answer_html(verdicts, out.answer_page)
    write_table(effect, out.effect)
    write_table(versus, out.vs_baseline)
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
    for row in verdicts.itertuples():
        log.info("%s: %s", row.task, row.verdict)
