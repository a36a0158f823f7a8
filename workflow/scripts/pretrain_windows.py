"""pretrain_windows: the pretraining corpus, leaving out every genome a task tests on."""

from pathlib import Path

import pandas as pd

from dnalm.runtime import job_log
from dnalm.windows import WindowSpec, corpus_windows, pretraining_roles

with job_log(snakemake.log[0]) as log:
    corpus = snakemake.params.corpus
    roles = pretraining_roles(
        snakemake.params.genomes,
        [pd.read_csv(p, sep="\t", dtype=str) for p in snakemake.input.splits],
        exclude_test_genomes=corpus["exclude_test_genomes"],
    )
    paths = {Path(p).name.removesuffix(".fa.gz"): p for p in snakemake.input.genomes}
    spec = WindowSpec(**corpus["window"])
    for split in ("train", "val"):
        genomes = roles.loc[roles["role"] == split, "genome"].tolist()
        win = corpus_windows(genomes, paths, spec)
        if win.empty:
            raise ValueError(
                f"the pretraining corpus has no {split} windows (genomes: {genomes or 'none'}); "
                "mark more genomes pretrain=true in the sheet or shorten pretrain_corpus.window.length"
            )
        win.to_parquet(snakemake.output[split], index=False)
        log.info("pretraining %s: %d windows from %d genomes", split, len(win), len(genomes))
    excluded = roles.loc[roles["role"] == "excluded", "genome"].tolist()
    log.info("excluded from pretraining (tested on by a task): %s", ", ".join(excluded) or "none")
    roles.to_csv(snakemake.output.corpus, sep="\t", index=False)
