"""pretrain_windows: the pretraining corpus, leaving out every genome a task validates or tests on."""

from pathlib import Path

import pandas as pd

from dnalm.runtime import job_log
from dnalm.windows import WindowSpec, corpus_windows

with job_log(snakemake.log[0]) as log:
    corpus = snakemake.params.corpus
    held_out: dict[str, set] = {"val": set(), "test": set()}
    for path in snakemake.input.splits:
        table = pd.read_csv(path, sep="\t", dtype=str)
        for split in held_out:
            held_out[split] |= set(table.loc[table["split"] == split, "genome"])
    rows = []
    for genome in snakemake.params.genomes:
        if genome in held_out["test"] and corpus["exclude_test_genomes"]:
            role, why = "excluded", "a task tests on it"
        elif genome in held_out["test"] or genome in held_out["val"]:
            role, why = "val", "held out by a task (validation or test)"
        else:
            role, why = "train", ""
        rows.append({"genome": genome, "role": role, "reason": why})
    roles = pd.DataFrame(rows, columns=["genome", "role", "reason"])
    paths = {Path(p).name.removesuffix(".fa.gz"): p for p in snakemake.input.genomes}
    spec = WindowSpec(**corpus["window"])
    for split in ("train", "val"):
        genomes = roles.loc[roles["role"] == split, "genome"].tolist()
        win = corpus_windows(genomes, paths, spec, split)
        if win.empty:
            raise ValueError(
                f"the pretraining corpus has no {split} windows (genomes: {genomes or 'none'}); "
                "mark more genomes pretrain=true in the sheet or shorten pretrain_corpus.window.length"
            )
        win.drop(columns="split").to_parquet(snakemake.output[split], index=False)
        log.info("pretraining %s: %d windows from %d genomes", split, len(win), len(genomes))
    excluded = roles.loc[roles["role"] == "excluded", "genome"].tolist()
    log.info("excluded from pretraining (tested on by a task): %s", ", ".join(excluded) or "none")
    roles.to_csv(snakemake.output.corpus, sep="\t", index=False)
