"""Leakage-safe splits on real data: isolates of one species never straddle train and test.

The nextclade isolates are near-copies of each other and of their species' reference genome. A
split by species keeps each species on one side, and the near-duplicate audit finds (almost) no
test window copied in training; splitting by isolate (group = genome) or by window puts the same
species on both sides, and the audit shows half the test windows nearly copied. That contrast is
why the pipeline splits by group. Then two genomes are split by chromosome instead, and the
real nontata promoters, whose rows overlap in the genome, by similarity cluster.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA, require_data, write_genome

from dnalm.audit import AuditSettings, audit_task
from dnalm.fasta import normalise_fasta, read_fasta, record_lengths
from dnalm.labelled import labelled_windows, read_table, similarity_groups
from dnalm.windows import (
    SPLITS,
    WindowSpec,
    apply_record_splits,
    record_split_table,
    split_groups,
    split_table,
    task_windows,
)

VIRAL = SHARED_DATA / "genomes" / "viral"
ISOLATES = VIRAL / "nextclade_isolates"
NONVIRAL = SHARED_DATA / "genomes" / "nonviral"
NONTATA = SHARED_DATA / "genomic_benchmarks" / "human_nontata_promoters" / "test.csv"

# Isolate file -> species (the split unit); segment files of one virus are one species. The
# reference of each file is found through manifest.tsv (source_path = the file's name with
# '__' as '/'), and its Baltimore class ('+' or '-' strand RNA) is the label.
SPECIES = {
    "community__itps__zikav": "Zika virus",
    "community__v-gen-lab__dengue__denv1": "Dengue virus 1",
    "community__v-gen-lab__chikV__genotypes": "Chikungunya virus",
    "nextstrain__wnv__all-lineages": "West Nile virus",
    "nextstrain__rubella__genome": "Rubella virus",
    "enpen__enterovirus__ev-d68": "Enterovirus D68",
    "community__genspectrum__marburg__HK1980__all-lineages": "Marburg virus",
    "nextstrain__orthoebolavirus__sudv": "Sudan ebolavirus",
    "nextstrain__hmpv__all-clades__NC_039199": "Human metapneumovirus",
    "nextstrain__mumps__genome": "Mumps virus",
    "nextstrain__orthohantavirus__andv__l": "Andes virus",
    "nextstrain__orthohantavirus__andv__m": "Andes virus",
    "nextstrain__orthohantavirus__andv__s": "Andes virus",
    "community__itps__orov__L__refseq": "Oropouche virus",
    "community__itps__orov__M__refseq": "Oropouche virus",
    "community__itps__orov__S__refseq": "Oropouche virus",
}
ISOLATES_PER_FILE = 6
SPEC = WindowSpec(length=256, stride=256, max_n_fraction=0.1)
FRACTIONS = {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0}


@pytest.fixture(scope="module")
def isolates(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, dict[str, Path]]:
    """A sheet of real genomes: every isolate is a genome, plus each species' reference."""
    require_data(ISOLATES)
    tmp = tmp_path_factory.mktemp("isolates")
    manifest = pd.read_csv(VIRAL / "manifest.tsv", sep="\t")
    manifest = manifest[manifest["file"] == "viral_reference_genomes.fasta"]
    folder = manifest["source_path"].str.removeprefix("data/").str.rsplit("/", n=1).str[0]
    references = dict(read_fasta(VIRAL / "viral_reference_genomes.fasta"))
    rows, paths = [], {}
    reference_records: dict[str, list[tuple[str, str]]] = {}
    labels: dict[str, str] = {}
    for stem, species in SPECIES.items():
        refs = manifest[folder == stem.replace("__", "/")]
        assert len(refs) == 1, f"no single reference for {stem}"
        ref_id = refs["record_header"].iat[0].split()[0]
        reference_records.setdefault(species, []).append((ref_id, references[ref_id]))
        labels[species] = "+" if refs["group"].iat[0].startswith("ssRNA(+)") else "-"
        for i, (rid, seq) in enumerate(read_fasta(ISOLATES / f"{stem}.fasta")):
            if i == ISOLATES_PER_FILE:
                break
            genome = f"{stem}.{i}"
            paths[genome] = write_genome(tmp, genome, [(rid, seq)])
            rows.append((genome, labels[species], species))
    for species, records in reference_records.items():
        genome = "ref." + species.replace(" ", "_")
        paths[genome] = write_genome(tmp, genome, records)
        rows.append((genome, labels[species], species))
    return pd.DataFrame(rows, columns=["genome", "label", "group"]), paths


def _windows(sheet: pd.DataFrame, paths: dict[str, Path]) -> tuple[pd.DataFrame, dict]:
    table = split_table(sheet, **FRACTIONS)
    assignment = dict(zip(table["group"], table["split"], strict=True))
    return table, task_windows(table, paths, SPEC, assignment=assignment, seed=0)


def _sides_per_species(windows: dict[str, pd.DataFrame], species: pd.Series) -> pd.Series:
    parts = [w.assign(split=s) for s, w in windows.items()]
    tagged = pd.concat(parts, ignore_index=True)
    tagged["species"] = tagged["genome"].map(species)
    return tagged.groupby("species")["split"].nunique()


def test_species_split_keeps_isolates_and_reference_on_one_side(isolates) -> None:
    sheet, paths = isolates
    assert sheet["group"].nunique() == 12 and len(sheet) == 16 * ISOLATES_PER_FILE + 12
    table, windows = _windows(sheet, paths)
    species = sheet.set_index("genome")["group"]

    assert (table.groupby("group")["split"].nunique() == 1).all()
    assert (_sides_per_species(windows, species) == 1).all()
    for split in SPLITS:  # every side sees both classes
        assert set(windows[split]["label"]) == {"+", "-"}, split

    summary, per_window = audit_task(windows["train"], windows["test"], paths, AuditSettings(), "t")
    overall = summary.set_index("label").loc["all"]
    assert overall["audited"] > 200
    assert overall["near_duplicate_fraction"] < 0.01
    assert per_window["max_shared"].max() < 0.5


def test_isolate_or_window_split_leaks_and_the_audit_shows_it(isolates) -> None:
    sheet, paths = isolates
    species = sheet.set_index("genome")["group"]

    # The common mistake: every isolate its own group.
    naive = sheet.assign(group=sheet["genome"])
    _, windows = _windows(naive, paths)
    sides = _sides_per_species(windows, species)
    assert (sides > 1).sum() >= 8  # most species straddle the split
    summary, _ = audit_task(windows["train"], windows["test"], paths, AuditSettings(), "isolate")
    assert summary.set_index("label").loc["all", "near_duplicate_fraction"] > 0.3

    # Worse: windows drawn at random, whatever their genome.
    everything = pd.concat(windows.values(), ignore_index=True)
    draw = np.random.default_rng(0).random(len(everything))
    train, test = everything[draw < 0.6], everything[draw >= 0.8]
    summary, _ = audit_task(train, test, paths, AuditSettings(), "window")
    assert summary.set_index("label").loc["all", "near_duplicate_fraction"] > 0.3


def test_two_genomes_split_by_chromosome(tmp_path: Path) -> None:
    """One genome per class: a group split is impossible, a chromosome split is not."""
    sources = {
        "arabidopsis": NONVIRAL / "Athaliana_1pct.fa.gz",
        "drosophila": NONVIRAL / "Dmelanogaster_1pct.fa.gz",
    }
    require_data(*sources.values())
    paths = {name: tmp_path / f"{name}.fa.gz" for name in sources}
    for name, src in sources.items():
        normalise_fasta(src, paths[name])
    sheet = pd.DataFrame(
        {"genome": ["arabidopsis", "drosophila"], "label": ["plant", "fly"], "group": ["At", "Dm"]}
    )
    with pytest.raises(ValueError, match="needs at least 3"):
        split_groups(sheet[["group", "label"]], **FRACTIONS)

    lengths = {g: record_lengths(p) for g, p in paths.items()}
    table = record_split_table(sheet, lengths, min_length=SPEC.length, **FRACTIONS)
    assert len(table) == 14 and table["group"].is_unique  # ChrM/ChrC/4/Y are long enough
    assert table.loc[0, "group"] == "At:Chr1"
    per_split = table.groupby("split")["label"].nunique()
    assert per_split.to_dict() == {"test": 2, "train": 2, "val": 2}

    everything = task_windows(  # a pool split afterwards: val and test are empty on purpose
        sheet, paths, SPEC, assignment={"At": "train", "Dm": "train"}, seed=0, every_label=False
    )["train"]
    windows = apply_record_splits(everything, table)
    assert sum(len(w) for w in windows.values()) == len(everything)
    chrom_sides = pd.concat([w.assign(split=s) for s, w in windows.items()]).groupby(
        ["genome", "chrom"]
    )["split"]
    assert (chrom_sides.nunique() == 1).all()
    assert set(windows["test"]["group"]) <= set(table.loc[table["split"] == "test", "group"])

    summary, _ = audit_task(windows["train"], windows["test"], paths, AuditSettings(), "chrom")
    assert summary.set_index("label").loc["all", "near_duplicate_fraction"] < 0.05

    pinned = sheet.assign(split=["test", None])  # a sheet pin binds every record of the genome
    with pytest.raises(ValueError, match="'plant' has 7 group.*train, val get one"):
        record_split_table(pinned, lengths, min_length=SPEC.length, **FRACTIONS)
    # Two assemblies of one species (one group): each chromosome of both lands on one side.
    two = pd.concat([sheet, sheet.iloc[:1].assign(genome="arabidopsis2")], ignore_index=True)
    both = {**lengths, "arabidopsis2": lengths["arabidopsis"]}
    table2 = record_split_table(two, both, min_length=SPEC.length, **FRACTIONS)
    assert (table2.groupby("group")["split"].nunique() == 1).all()
    assert table2.groupby("group").size().loc["At:Chr1"] == 2
    with pytest.raises(ValueError, match="'At:Chr1' is pinned to several splits"):
        record_split_table(two.assign(split=["test", None, "train"]), both, **FRACTIONS)
    with pytest.raises(ValueError, match="no record is at least"):
        record_split_table(sheet, lengths, min_length=10**7, **FRACTIONS)
    with pytest.raises(ValueError, match="lie on records without a split"):
        apply_record_splits(everything, table[table["chrom"] != "Chr1"])


def _near_duplicates(splits: dict[str, pd.DataFrame], settings: AuditSettings) -> pd.Series:
    """The audit's near-duplicate fraction of test (against train), overall and per label."""
    summary, _ = audit_task(splits["train"], splits["test"], {}, settings, "nontata")
    return summary.set_index("label")["near_duplicate_fraction"]


def test_nontata_promoters_split_by_similarity_do_not_leak() -> None:
    """config/real_cpu.yaml's task: the row split leaks most negative test sequences (tiles of
    one region), the similarity split leaves the audit (almost) nothing, at the same sizes."""
    require_data(NONTATA)
    table = read_table(NONTATA)
    settings = AuditSettings()  # k 21, min_shared 0.5, max_kmer_windows 256: real_cpu.yaml's
    split = {"labels": ["0", "1"], "val_fraction": 0.15, "test_fraction": 0.2, "seed": 0}
    by_row = labelled_windows(table, task="nontata", **split)
    before = _near_duplicates(by_row, settings)
    assert before["0"] > 0.5 and before["all"] > 0.2

    grouped, clusters = similarity_groups(
        table,
        k=settings.k,
        min_shared=settings.min_shared,
        max_kmer_windows=settings.max_kmer_windows,
    )
    assert clusters.count < 0.9 * len(table) and clusters.largest_share < 0.02
    splits = labelled_windows(grouped, task="nontata", **split)
    after = _near_duplicates(splits, settings)
    assert (after < 0.05).all(), after.to_dict()
    val = _near_duplicates({"train": splits["train"], "test": splits["val"]}, settings)
    assert (val < 0.05).all(), val.to_dict()
    # the draw still meets each label's share: whole clusters, yet the sizes of the row split
    for name in SPLITS:
        got = splits[name]["label"].value_counts()
        want = by_row[name]["label"].value_counts()
        assert ((got - want).abs() <= 0.02 * want).all(), (name, got.to_dict(), want.to_dict())
