"""task_windows: labelled windows of one task, on the train/val/test split of its groups, or of
its chromosomes when the splits table has a chrom column (split_by: chromosome)."""

import pandas as pd

from dnalm.files import write_parquet, write_tsv
from dnalm.runtime import job_log
from dnalm.windows import SPLITS, WindowSpec, class_counts, task_windows, task_windows_by_record

with job_log(snakemake.log[0]) as log:
    task = snakemake.params.task
    table = pd.read_csv(snakemake.input.splits, sep="\t", dtype=str, keep_default_na=False)
    paths = dict(snakemake.params.genomes)
    options = {
        "seed": snakemake.params.seed,
        "labels": snakemake.params.labels,
        "max_windows_per_genome": task.get("max_windows_per_genome"),
        "balance": task["balance"],
    }
    spec = WindowSpec(**task["window"])
    try:
        if "chrom" in table:
            log.info("split by chromosome: %d chromosome units", table["group"].nunique())
            splits = task_windows_by_record(table, paths, spec, **options)
        else:
            assignment = dict(zip(table["group"], table["split"], strict=True))
            splits = task_windows(table, paths, spec, assignment=assignment, **options)
    except ValueError as err:
        raise ValueError(f"task {snakemake.wildcards.task!r}: {err}") from None
    for split in SPLITS:
        write_parquet(snakemake.output[split], splits[split])
        groups = sorted(splits[split]["group"].unique())
        log.info("%s: %d windows from groups %s", split, len(splits[split]), ", ".join(groups))
    counts = class_counts(splits)
    write_tsv(snakemake.output.counts, counts)
    log.info("class counts:\n%s", counts.to_string(index=False))
