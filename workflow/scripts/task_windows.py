"""task_windows: labelled windows of one task, on the train/val/test split of its groups."""

from pathlib import Path

import pandas as pd

from dnalm.runtime import job_log
from dnalm.windows import SPLITS, WindowSpec, class_counts, task_windows

with job_log(snakemake.log[0]) as log:
    task = snakemake.params.task
    table = pd.read_csv(snakemake.input.splits, sep="\t", dtype=str)
    paths = {
        Path(p).name.removesuffix(".fa.gz"): p
        for p in snakemake.input.genomes
        if p.endswith(".fa.gz")
    }
    splits = task_windows(
        table,
        paths,
        WindowSpec(**task["window"]),
        assignment=dict(zip(table["group"], table["split"], strict=True)),
        seed=snakemake.params.seed,
        labels=snakemake.params.labels,
        max_windows_per_genome=task.get("max_windows_per_genome"),
        balance=task.get("balance", "none"),
    )
    for split in SPLITS:
        splits[split].to_parquet(snakemake.output[split], index=False)
        groups = sorted(splits[split]["group"].unique())
        log.info("%s: %d windows from groups %s", split, len(splits[split]), ", ".join(groups))
    counts = class_counts(splits)
    counts.to_csv(snakemake.output.counts, sep="\t", index=False)
    log.info("class counts:\n%s", counts.to_string(index=False))
