"""task_windows: labelled windows of one task, split train/val/test by group."""

import pandas as pd

from dnalm.runtime import job_log
from dnalm.windows import SPLITS, WindowSpec, class_counts, task_windows

with job_log(snakemake.log[0]) as log:
    task = snakemake.params.task
    sheet = pd.DataFrame(snakemake.params.sheet).replace({"split": {"": None}})
    paths = {g: f"resources/genomes/{g}.fa.gz" for g in sheet["genome"]}
    splits = task_windows(
        sheet,
        paths,
        WindowSpec(**task["window"]),
        val_fraction=snakemake.params.split["val_fraction"],
        test_fraction=snakemake.params.split["test_fraction"],
        seed=snakemake.params.split["seed"],
        labels=task.get("labels"),
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
