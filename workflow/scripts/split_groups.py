"""split_groups: assign every group of a task to train, val or test (stratified by label).

A step of its own so that changing windows or tokens never reruns pretraining, whose corpus
depends only on which genomes are held out.
"""

import pandas as pd

from dnalm.runtime import job_log
from dnalm.windows import split_table

with job_log(snakemake.log[0]) as log:
    sheet = pd.DataFrame(snakemake.params.sheet).replace({"split": {"": None}})
    cfg = snakemake.params.split
    table = split_table(
        sheet,
        val_fraction=cfg["val_fraction"],
        test_fraction=cfg["test_fraction"],
        seed=cfg["seed"],
    )
    table.to_csv(snakemake.output[0], sep="\t", index=False)
    for split, part in table.groupby("split"):
        log.info("%s: %s", split, ", ".join(sorted(part["group"].unique())))
