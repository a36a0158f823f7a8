"""baseline: one simple model (kmer_lr, cnn) on a task's splits; selected on val, test once."""

from dnalm.runtime import job_log, limit_threads

limit_threads(snakemake.threads)  # before torch starts (the CNN)

from dnalm.baselines import run_baseline  # noqa: E402
from dnalm.files import write_json, write_tsv  # noqa: E402

with job_log(snakemake.log[0]) as log:
    metrics, predictions = run_baseline(
        snakemake.wildcards.baseline,
        snakemake.params.settings,
        task=snakemake.wildcards.task,
        seed=int(snakemake.wildcards.seed),
        labels=snakemake.params.labels,
        windows={s: snakemake.input[s] for s in ("train", "val", "test")},
        genome_paths=snakemake.params.genomes,
        select_on=snakemake.params.select_on,
        log=log,
    )
    write_tsv(snakemake.output.predictions, predictions)
    write_json(snakemake.output.metrics, metrics)
