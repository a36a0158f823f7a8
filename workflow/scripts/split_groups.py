"""split_groups: assign every group of a task to train, val or test (stratified by label), or,
with `split_by: chromosome`, every chromosome (record) of the task's genomes.

A step of its own so that changing windows or tokens never reruns pretraining, whose corpus
depends only on which genomes (or chromosomes) are held out; a chromosome split also depends on
the window length, since it leaves out records shorter than one window. A group split writes
genome, label, group, split; a chromosome split adds chrom, and its group is the chromosome
unit '<sheet group>:<record>'.
"""

import pandas as pd

from dnalm.fasta import record_lengths
from dnalm.files import write_tsv
from dnalm.runtime import job_log
from dnalm.windows import record_split_table, split_table

with job_log(snakemake.log[0]) as log:
    task = snakemake.wildcards.task
    sheet = pd.DataFrame(snakemake.params.sheet).replace({"split": {"": None}})
    cfg = snakemake.params.split
    fractions = {k: cfg[k] for k in ("val_fraction", "test_fraction", "seed")}
    if snakemake.params.split_by == "chromosome":
        min_length = snakemake.params.min_length
        # from each genome's .fai (the inputs): record_lengths takes the genome path beside it
        records = {g: record_lengths(p) for g, p in snakemake.params.genomes.items()}
        try:
            table = record_split_table(sheet, records, min_length=min_length, **fractions)
        except ValueError as err:
            raise ValueError(
                f"task {task!r} (split_by: chromosome): {err}. Splitting by chromosome makes "
                f"every record of at least {min_length:,} bp (the task's window length) a unit, "
                "so each label needs at least 3 such records over its genomes: add genomes, "
                "shorten the task's window, or set split_by: group"
            ) from None
        for genome, sub in table.groupby("genome"):
            short = sorted(set(records[genome]) - set(sub["chrom"]))
            if short:
                log.info(
                    "%s: %d record(s) shorter than one window (%d bp) left out: %s",
                    genome,
                    len(short),
                    min_length,
                    " ".join(short),
                )
        table = table[["genome", "chrom", "label", "group", "split"]]
    else:
        try:
            table = split_table(sheet, **fractions)
        except ValueError as err:
            raise ValueError(f"task {task!r}: {err}") from None
    write_tsv(snakemake.output[0], table)
    for split, part in table.groupby("split"):
        log.info("%s: %s", split, ", ".join(sorted(part["group"].unique())))
