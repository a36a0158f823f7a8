"""pretrain_windows: the pretraining corpus, leaving out every genome a task tests on, or only
the test chromosomes of a genome that a task splits by chromosome (as HyenaDNA holds
chromosomes out); a chromosome split's val chromosomes validate pretraining."""

import pandas as pd

from dnalm.files import write_parquet, write_tsv
from dnalm.runtime import job_log
from dnalm.windows import (
    WindowSpec,
    hold_out_validation_genome,
    pretraining_corpus,
    pretraining_roles,
)

with job_log(snakemake.log[0]) as log:
    corpus = snakemake.params.corpus
    paths = dict(snakemake.params.genomes)
    tables = {
        task: pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False)
        for task, p in snakemake.params.splits.items()
    }
    roles = pretraining_roles(
        list(paths),
        list(tables.values()),
        exclude_test_genomes=corpus["exclude_test_genomes"],
    )
    roles = hold_out_validation_genome(roles, snakemake.params.seed)
    testers = {}  # genome -> the tasks that test on it (whole or some of its chromosomes)
    for task, table in tables.items():
        for genome in table.loc[table["split"] == "test", "genome"].unique():
            testers.setdefault(genome, []).append(task)
    roles["tested_by"] = [",".join(testers.get(g, [])) for g in roles["genome"]]
    windows = pretraining_corpus(roles, paths, WindowSpec(**corpus["window"]))
    for split, win in windows.items():
        if win.empty:
            raise ValueError(
                f"the pretraining corpus has no {split} windows (roles: "
                f"{dict(zip(roles['genome'], roles['role'], strict=True))}); mark more genomes "
                "pretrain=true in the sheet or shorten pretrain_corpus.window.length"
            )
    for split, win in windows.items():
        write_parquet(snakemake.output[split], win)
        log.info(
            "pretraining %s: %d windows from %d genomes", split, len(win), win["genome"].nunique()
        )
    excluded = roles.loc[roles["role"] == "excluded"]
    log.info(
        "genomes excluded from pretraining whole (a task tests on them): %s",
        ", ".join(f"{g} ({t})" for g, t in excluded[["genome", "tested_by"]].to_numpy()) or "none",
    )
    by_chrom = (roles["excluded_chroms"] != "") | (roles["val_chroms"] != "")
    for row in roles[by_chrom].itertuples(index=False):
        log.info(
            "%s: test chromosome(s) %s excluded from pretraining (tested on by %s); "
            "val chromosome(s) %s in pretraining val; the rest in pretraining %s",
            row.genome,
            row.excluded_chroms or "none",
            row.tested_by or "none",
            row.val_chroms or "none",
            row.role,
        )
    write_tsv(snakemake.output.corpus, roles)
