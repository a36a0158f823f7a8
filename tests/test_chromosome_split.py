"""A real `snakemake` run of a task split by chromosome within genomes (split_by: chromosome).

Three real genomes (the first ~1% of every chromosome of A. thaliana, D. melanogaster and
C. elegans): one plant genome cannot be split by group, but its chromosomes can. The run must
keep every chromosome on one side, and the pretraining corpus must leave out exactly the test
chromosomes of those genomes, keeping their other chromosomes, and say so in corpus.tsv.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import SHARED_DATA, micro_model, require_data, run_snakemake

NONVIRAL = SHARED_DATA / "genomes" / "nonviral"
GENOMES = {  # genome -> (label, FASTA)
    "athaliana": ("plant", NONVIRAL / "Athaliana_1pct.fa.gz"),
    "drosophila": ("animal", NONVIRAL / "Dmelanogaster_1pct.fa.gz"),
    "celegans": ("animal", NONVIRAL / "Celegans_WS282_1pct.fa.gz"),
}
TASK = "plant_vs_animal"
TASK_WINDOW = 256
PRETRAIN_WINDOW = 512
TRAIN = {"steps": 2, "batch_size": 2, "lr": 1.0e-3}


def config(tasks: dict, max_seq_len: int = 1024) -> dict:
    return {
        "genomes": "genomes.tsv",
        "split": {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0},
        "tasks": tasks,
        "pretrain_corpus": {
            "window": {"length": PRETRAIN_WINDOW, "stride": 4 * PRETRAIN_WINDOW},
        },
        "tokenizers": {"char": {"kind": "char"}},
        "models": {"hyena-micro": micro_model(max_seq_len=max_seq_len)},
        "pretrain": TRAIN,
        "finetune": {"seeds": [0], **TRAIN},
        "resources": {
            stage: {"threads": 1, "mem_mb": 1000, "runtime": 10, "gpu": 0}
            for stage in ("pretrain", "finetune", "predict")
        },
    }


def records(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(frame[["genome", "chrom"]].itertuples(index=False, name=None))


def snakemake(workdir: Path, cfg: dict, *targets: str) -> subprocess.CompletedProcess:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return run_snakemake(workdir, *targets, configfile=path, cores=2)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_data(*(path for _, path in GENOMES.values()))
    workdir = tmp_path_factory.mktemp("chromosome_split")
    sheet = pd.DataFrame(
        [
            {"genome": g, "label": label, "group": g, "source": str(path), "pretrain": "true"}
            for g, (label, path) in GENOMES.items()
        ]
    )
    sheet.to_csv(workdir / "genomes.tsv", sep="\t", index=False)
    return workdir


def test_chromosome_split_and_pretraining_corpus(workdir: Path) -> None:
    tasks = {
        TASK: {
            "labels": ["animal", "plant"],
            "window": {"length": TASK_WINDOW, "stride": 8 * TASK_WINDOW},
            "split_by": "chromosome",
            "balance": "downsample",
        }
    }
    out = snakemake(
        workdir,
        config(tasks),
        f"results/windows/{TASK}/test.parquet",
        "results/windows/pretrain/train.parquet",
    )
    assert out.returncode == 0, out.stderr[-6000:]

    # one row per chromosome at least one task window long (C. elegans MtDNA, 137 bp, is not)
    table = pd.read_csv(workdir / f"results/splits/{TASK}.tsv", sep="\t", dtype=str)
    assert list(table.columns) == ["genome", "chrom", "label", "group", "split"]
    assert len(table) == 7 + 7 + 6 and "MtDNA" not in set(table["chrom"])
    assert (table["group"] == table["genome"] + ":" + table["chrom"]).all()
    assert "celegans: 1 record(s) shorter than one window (256 bp) left out: MtDNA" in (
        (workdir / f"logs/split_groups/{TASK}.log").read_text()
    )

    # no chromosome on two sides, every side has both labels, windows follow the table
    windows = pd.concat(
        pd.read_parquet(workdir / f"results/windows/{TASK}/{s}.parquet").assign(split=s)
        for s in ("train", "val", "test")
    )
    assert (windows.groupby(["genome", "chrom"])["split"].nunique() == 1).all()
    assert (windows.groupby("split")["label"].nunique() == 2).all()
    side = table.set_index(["genome", "chrom"])["split"]
    assert (windows.set_index(["genome", "chrom"]).index.map(side) == windows["split"]).all()
    assert (windows["group"] == windows["genome"] + ":" + windows["chrom"]).all()

    # pretraining: each genome's test chromosomes left out, its val chromosomes in val, the
    # rest in train (every record here but MtDNA holds a 512 bp window)
    corpus = {
        s: pd.read_parquet(workdir / f"results/windows/pretrain/{s}.parquet")
        for s in ("train", "val")
    }
    for split in ("train", "val"):
        assert records(corpus[split]) == records(table[table["split"] == split]), split
    tested = records(table[table["split"] == "test"])
    assert len(tested) >= 2
    every = pd.concat(corpus.values())
    assert not tested & records(every)
    assert set(every["genome"]) == set(GENOMES)  # no genome was dropped whole

    roles = pd.read_csv(
        workdir / "results/windows/pretrain/corpus.tsv", sep="\t", keep_default_na=False
    ).set_index("genome")
    for genome in GENOMES:
        chroms = table[table["genome"] == genome]
        assert roles.at[genome, "role"] == "train"
        for column, split in (("excluded_chroms", "test"), ("val_chroms", "val")):
            listed = roles.at[genome, column].split()
            assert sorted(listed) == sorted(chroms.loc[chroms["split"] == split, "chrom"])
        expected_tester = TASK if (chroms["split"] == "test").any() else ""
        assert roles.at[genome, "tested_by"] == expected_tester
    log = (workdir / "logs/pretrain_windows/pretrain.log").read_text()
    some = table.loc[table["split"] == "test"].iloc[0]
    assert f"{some['genome']}: test chromosome(s) " in log and "excluded from pretraining" in log


def test_too_few_chromosomes_fail_the_split_job_naming_the_task(workdir: Path) -> None:
    """Only two A. thaliana records are 240 kbp long: too few for three splits. The group
    check at parse time is skipped for such a task, so the job must say what to change."""
    tasks = {
        "long_windows": {
            "genomes": ["athaliana", "drosophila"],
            "window": {"length": 240_000, "stride": 240_000},
            "split_by": "chromosome",
        }
    }
    out = snakemake(workdir, config(tasks, max_seq_len=262_144), "results/splits/long_windows.tsv")
    assert out.returncode != 0
    log = (workdir / "logs/split_groups/long_windows.log").read_text()
    for text in (
        "task 'long_windows' (split_by: chromosome)",
        "label 'plant' has 2 group(s) (athaliana:Chr1, athaliana:Chr5)",
        "shorten the task's window, or set split_by: group",
    ):
        assert text in log
        assert text in out.stderr
    assert not (workdir / "results/splits/long_windows.tsv").exists()


def test_split_by_chromosome_is_for_genome_tasks_only(workdir: Path) -> None:
    """...and split_by: similarity for labelled tasks only."""
    labelled = {
        "source": {"format": "csv", "path": "seqs.csv"},
        "labels": ["0", "1"],
        "split_by": "chromosome",
    }
    genome = {"window": {"length": 256, "stride": 256}, "split_by": "similarity"}
    for name, task in (("labelled", labelled), ("genome", genome)):
        out = snakemake(workdir, config({name: task}), "-n")
        assert out.returncode != 0
        assert f"On instance['tasks']['{name}']" in out.stdout + out.stderr
        assert f"'split_by': '{task['split_by']}'" in out.stdout + out.stderr
