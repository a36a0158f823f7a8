"""Labelled-sequence tasks: readers on the real files, located errors, splits, and the workflow."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, SHARED_DATA, require_data, run_snakemake
from hypothesis import given, settings
from hypothesis import strategies as st

from dnalm.labelled import (
    LABELLED_COLUMNS,
    LabelledInputError,
    assign_splits,
    cross_split_duplicates,
    labelled_downloads,
    labelled_windows,
    read_genomic_benchmarks,
    read_labelled_fasta,
    read_source,
    read_table,
    read_viraminer,
    similarity_groups,
    source_downloads,
    source_paths,
)
from dnalm.windows import SPLITS, hold_out_validation_genome

NONTATA = SHARED_DATA / "genomic_benchmarks" / "human_nontata_promoters" / "test.csv"
VIRAMINER = sorted((SHARED_DATA / "viraminer").glob("exp*.csv"))
LABELS = ["0", "1"]
FRACTIONS = {"labels": LABELS, "val_fraction": 0.2, "test_fraction": 0.2}


@pytest.fixture(scope="module")
def nontata() -> pd.DataFrame:
    require_data(NONTATA)
    return read_table(NONTATA)


@pytest.fixture(scope="module")
def viraminer() -> pd.DataFrame:
    require_data(SHARED_DATA / "viraminer")
    assert VIRAMINER, f"no ViraMiner files in {SHARED_DATA / 'viraminer'}"
    return read_viraminer(VIRAMINER)


def real_rows(n: int) -> pd.DataFrame:
    """The first n rows of each class of the real nontata CSV (raw: seq, label)."""
    require_data(NONTATA)
    raw = pd.read_csv(NONTATA, dtype=str)
    return pd.concat([raw[raw["label"] == x].head(n) for x in LABELS], ignore_index=True)


def write_gb_layout(root, rows: pd.DataFrame, classes=("negative", "positive")):
    """A GenomicBenchmarks dataset directory: {train,test}/<class>/<id>.txt."""
    for i, (seq, label) in enumerate(zip(rows["seq"], rows["label"], strict=True)):
        split = "test" if i % 4 == 0 else "train"
        d = root / split / classes[int(label)]
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i}.txt").write_text(seq + "\n")
    return root


# --------------------------------------------------------------------------- readers


def test_csv_reader_on_the_real_promoter_file(nontata):
    assert len(nontata) == 9034
    assert set(nontata["label"]) == set(LABELS)
    assert (nontata["sequence"].str.len() == 251).all()
    assert nontata["id"].is_unique and "group" not in nontata and "split" not in nontata
    assert nontata["line"].iloc[0] == 2 and nontata["id"].iloc[0] == "test:2"
    raw = pd.read_csv(NONTATA, dtype=str)
    assert nontata["sequence"].tolist() == raw["seq"].tolist()


def test_viraminer_reader_groups_by_experiment(viraminer):
    assert len(viraminer) == 23549
    assert set(viraminer["group"]) == {p.stem for p in VIRAMINER}
    assert set(viraminer["label"]) == set(LABELS)
    assert viraminer["id"].is_unique
    first = viraminer.iloc[0]
    assert first["line"] == 1
    assert first["id"] == VIRAMINER[0].read_text().split(",", 1)[0]


def test_genomic_benchmarks_layout(tmp_path):
    rows = real_rows(6)
    root = write_gb_layout(tmp_path / "cache" / "human_nontata_promoters", rows)
    table = read_genomic_benchmarks(root)
    assert len(table) == len(rows)
    assert set(table["label"]) == {"negative", "positive"}
    assert set(table["split"]) == {"train", "test"}
    assert table.loc[table["id"] == "test/negative/0", "sequence"].item() == rows["seq"][0]
    # the cache root with one dataset, or the root and the dataset's name, read the same
    for other in (
        read_genomic_benchmarks(tmp_path / "cache"),
        read_genomic_benchmarks(tmp_path / "cache", "human_nontata_promoters"),
    ):
        pd.testing.assert_frame_equal(other, table)


def test_genomic_benchmarks_natural_file_order(tmp_path):
    rows = real_rows(12)
    table = read_genomic_benchmarks(write_gb_layout(tmp_path / "ds", rows))
    ids = table.loc[table["id"].str.startswith("train/negative/"), "id"].tolist()
    numbers = [int(i.rsplit("/", 1)[1]) for i in ids]
    assert numbers == sorted(numbers) and len(numbers) > 2


def test_labelled_fasta_default_header_forms(tmp_path):
    rows = real_rows(2)
    path = tmp_path / "x.fa.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(f">a1 label={rows['label'][0]} sample\n{rows['seq'][0][:100]}\n")
        fh.write(f"{rows['seq'][0][100:]}\n")
        fh.write(f">a2|x|{rows['label'][2]}\n{rows['seq'][2]}\n")
    table = read_labelled_fasta(path)
    assert table["id"].tolist() == ["a1", "a2|x|1"]
    assert table["label"].tolist() == ["0", "1"]
    assert table["sequence"].tolist() == [rows["seq"][0], rows["seq"][2]]
    assert table["line"].tolist() == [1, 4] and "group" not in table


def test_labelled_fasta_custom_pattern_and_groups(tmp_path):
    path = tmp_path / "y.fa"
    path.write_text(">r1 class:virus group=g1\nACGU\n>r2 class:host group=g2\nacgtn\n")
    table = read_labelled_fasta(path, label_pattern=r"class:(\w+)")
    assert table["label"].tolist() == ["virus", "host"]
    assert table["group"].tolist() == ["g1", "g2"]
    assert table["sequence"].tolist() == ["ACGT", "acgtn"]  # RNA U written as T


def test_read_source_dispatches_every_format(tmp_path):
    csv = tmp_path / "t.txt"  # no telling extension: the format says tab
    csv.write_text("name\tsequence\tclass\tsample\nq1\tACGT\tA\ts1\nq2\tGGCC\tB\ts2\n")
    with pytest.raises(LabelledInputError, match="cannot tell the delimiter"):
        read_table(csv)
    table = read_source(
        {
            "format": "tsv",
            "path": str(csv),
            "sequence_column": "sequence",
            "label_column": "class",
            "id_column": "name",
            "group_column": "sample",
        }
    )
    assert table[["id", "label", "group"]].values.tolist() == [
        ["q1", "A", "s1"],
        ["q2", "B", "s2"],
    ]
    with pytest.raises(ValueError, match="unknown source format 'xlsx'"):
        read_source({"format": "xlsx", "path": str(csv)})


# --------------------------------------------------------------------------- files by URL

BASE = "https://raw.githubusercontent.com/NeuroCSUT/ViraMiner/941ee13/data/DNA_data"


def test_files_named_by_url_are_read_where_the_download_rule_puts_them():
    source = {
        "format": "viraminer",
        "urls": [f"{BASE}/exp1_2011_N19.csv", f"{BASE}/exp4_2014_B.csv"],
        "sha256": ["AB" * 32, f"sha256:{'cd' * 32}"],
    }
    paths = [
        f"resources/downloads/labelled/{'ab' * 8}/exp1_2011_N19.csv",
        f"resources/downloads/labelled/{'cd' * 8}/exp4_2014_B.csv",  # the stem is the group
    ]
    assert source_paths(source) == paths
    assert [d[:2] for d in source_downloads(source)] == [
        (f"{BASE}/exp1_2011_N19.csv", "ab" * 32),
        (f"{BASE}/exp4_2014_B.csv", "cd" * 32),
    ]
    one = {"format": "csv", "url": "https://example.org/t%20x.csv", "sha256": "0" * 64}
    assert source_paths(one) == [f"resources/downloads/labelled/{'0' * 16}/t x.csv"]
    tasks = {"v": {"source": source}, "t": {"source": one}, "g": {"genomes": "all"}}
    assert sorted(labelled_downloads(tasks)) == sorted([*paths, *source_paths(one)])
    assert source_paths({"format": "csv", "path": "a.csv"}) == ["a.csv"]  # as before


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            {"format": "csv", "urls": ["https://x/a.csv", "https://x/b.csv"], "sha256": ["0" * 64]},
            "source with url https://x/a.csv: 2 url(s) but 1 sha256",
        ),
        ({"format": "csv", "url": "https://x/a.csv", "sha256": "0" * 63}, "not 64 hex digits"),
        ({"format": "csv", "url": "s3://x/a.csv", "sha256": "0" * 64}, "not an http(s)/ftp URL"),
        ({"format": "csv", "url": "https://x/", "sha256": "0" * 64}, "not an http(s)/ftp URL"),
        ({"format": "csv", "path": "a.csv", "sha256": "0" * 64}, "pins files named by url"),
        (
            {"format": "genomic_benchmarks", "url": "https://x/d.zip", "sha256": "0" * 64},
            "is a directory",
        ),
    ],
)
def test_bad_url_sources_are_named(source, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        source_paths(source)
    with pytest.raises(ValueError, match="task 'bad'"):
        labelled_downloads({"bad": {"source": source}})


# --------------------------------------------------------------------------- located errors

BAD_TABLES = {
    "non-IUPAC base": (
        "seq,label\nACGT,0\nACXGT,1\n",
        "line 3, record 'bad:3', column 'seq': invalid character 'X' at position 3",
    ),
    "empty sequence": ("seq,label\nACGT,0\n,1\n", "line 3, record 'bad:3', column 'seq': empty"),
    "missing label": ("seq,label\nACGT,0\nACGT,\n", "line 3, record 'bad:3', column 'label'"),
    "missing column": ("sequence,label\nACGT,0\n", "no column 'seq' (the file has: sequence"),
    "header only": ("seq,label\n", "no rows after the header"),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_bad_table_names_file_line_and_column(tmp_path, case):
    text, message = BAD_TABLES[case]
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(LabelledInputError) as err:
        read_table(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_duplicate_ids_are_named(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("r1,ACGT,0\nr2,ACGT,1\n")
    b.write_text("r3,ACGT,0\nr1,GGGG,1\n")
    with pytest.raises(LabelledInputError, match=r"b.csv, line 2, record 'r1': duplicate id"):
        read_source({"format": "viraminer", "paths": [str(a), str(b)]})


def test_viraminer_errors(tmp_path):
    header = tmp_path / "h.csv"
    header.write_text("seq_id,sequence,label\nr1,ACGT,0\n")
    with pytest.raises(LabelledInputError, match="line 1: the first line looks like a header"):
        read_viraminer([header])
    extra = tmp_path / "e.csv"
    extra.write_text("r1,ACGT,0\nr2,ACGT,1,extra\n")
    with pytest.raises(LabelledInputError, match="e.csv: expected 3 comma-separated fields"):
        read_viraminer([extra])
    short = tmp_path / "s.csv"
    short.write_text("r1,ACGT,0\nr2,ACGT\n")
    with pytest.raises(LabelledInputError, match="s.csv, line 2, record 'r2', column 'label"):
        read_viraminer([short])


def test_fasta_errors(tmp_path):
    path = tmp_path / "n.fa"
    path.write_text(">ok label=a\nACGT\n>nolabel\nACGT\n")
    with pytest.raises(
        LabelledInputError, match="line 3, record 'nolabel': no label in the header"
    ):
        read_labelled_fasta(path)
    with pytest.raises(ValueError, match="needs a capture group"):
        read_labelled_fasta(path, label_pattern="label=")
    with pytest.raises(ValueError, match="not a valid regex"):
        read_labelled_fasta(path, label_pattern="(")
    bad = tmp_path / "b.fa"
    bad.write_text(">r1 label=a\nACGT\n>r2 label=b\nAC*T\n")
    with pytest.raises(ValueError, match=r"record 'r2'.*invalid character '\*'"):
        read_labelled_fasta(bad)
    mixed = tmp_path / "m.fa"
    mixed.write_text(">r1 label=a group=g\nACGT\n>r2 label=b\nACGT\n")
    with pytest.raises(LabelledInputError, match="line 3, record 'r2': no group"):
        read_labelled_fasta(mixed)


def test_genomic_benchmarks_errors(tmp_path):
    (tmp_path / "notadataset").mkdir()
    with pytest.raises(LabelledInputError, match="not a GenomicBenchmarks dataset directory"):
        read_genomic_benchmarks(tmp_path / "notadataset")
    (tmp_path / "ds" / "train" / "positive").mkdir(parents=True)
    with pytest.raises(LabelledInputError, match="positive: class directory holds no .txt"):
        read_genomic_benchmarks(tmp_path / "ds")
    (tmp_path / "ds" / "train" / "positive" / "0.txt").write_text("\n")
    with pytest.raises(LabelledInputError, match=r"0.txt, line 1, record 'train/positive/0'"):
        read_genomic_benchmarks(tmp_path / "ds")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_genomic_benchmarks(tmp_path / "missing")


# --------------------------------------------------------------------------- splitting


def fractions(series: pd.Series) -> pd.Series:
    return series.value_counts(normalize=True).sort_index()


def test_row_split_is_stratified_and_seeded(nontata):
    split = assign_splits(nontata, **FRACTIONS, seed=0)
    overall = fractions(nontata["label"])
    for name, share in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        part = nontata[split == name]
        assert abs(len(part) / len(nontata) - share) < 0.01
        assert (fractions(part["label"]) - overall).abs().max() < 0.01
    again = assign_splits(nontata, **FRACTIONS, seed=0)
    other = assign_splits(nontata, **FRACTIONS, seed=1)
    assert again.equals(split) and not other.equals(split)


def test_viraminer_leave_one_experiment_out(viraminer):
    split = assign_splits(
        viraminer,
        **FRACTIONS,
        seed=0,
        test_groups=["exp13_2014_N1"],
    )
    groups = {s: set(viraminer.loc[split == s, "group"]) for s in SPLITS}
    assert groups["test"] == {"exp13_2014_N1"}
    assert not groups["train"] & groups["val"] and groups["val"]
    assert groups["train"] | groups["val"] | groups["test"] == set(viraminer["group"])
    for s in SPLITS:
        assert set(viraminer.loc[split == s, "label"]) == set(LABELS)
    # the experiment without viral contigs cannot be the test set on its own
    with pytest.raises(ValueError, match="the test split has no sequence labelled '1'"):
        assign_splits(
            viraminer,
            **FRACTIONS,
            seed=0,
            test_groups=["exp5_2014_D3"],
        )
    with pytest.raises(ValueError, match=r"test_groups \['exp99'\] are not groups"):
        assign_splits(
            viraminer, **FRACTIONS, seed=0,
            test_groups=["exp99"],
        )  # fmt: skip


def test_drawn_group_split_keeps_groups_whole(viraminer):
    split = assign_splits(viraminer, **FRACTIONS, seed=3)
    assert (split.groupby(viraminer["group"]).nunique() == 1).all()
    assert set(split) == set(SPLITS)


def test_source_split_keeps_test_and_carves_val_from_train(tmp_path):
    table = read_genomic_benchmarks(write_gb_layout(tmp_path / "ds", real_rows(40)))
    split = assign_splits(
        table, labels=["negative", "positive"], val_fraction=0.25, test_fraction=0.5, seed=0
    )
    assert (split[table["split"] == "test"] == "test").all()
    assert (split[table["split"] == "train"] != "test").all()
    train = table[table["split"] == "train"]["label"].value_counts()
    val = table[split == "val"]["label"].value_counts()
    assert val.to_dict() == {k: round(0.25 * n) for k, n in train.items()}  # of train, per label


def test_test_only_source_is_re_split(tmp_path):
    rows = real_rows(10)
    for i, (seq, label) in enumerate(zip(rows["seq"], rows["label"], strict=True)):
        d = tmp_path / "ds" / "test" / f"c{label}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i}.txt").write_text(seq)
    table = read_genomic_benchmarks(tmp_path / "ds")
    split = assign_splits(table, labels=["c0", "c1"], val_fraction=0.2, test_fraction=0.2, seed=0)
    assert set(split) == set(SPLITS)


def test_too_few_sequences_of_a_label(tmp_path):
    path = tmp_path / "few.csv"
    path.write_text("seq,label\n" + "ACGT,0\n" * 10 + "ACGT,1\nACGA,1\n")
    with pytest.raises(ValueError, match="has no sequence labelled '1'"):
        assign_splits(read_table(path), **FRACTIONS, seed=0)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=3, max_size=12),
    seed=st.integers(0, 2**16),
)
def test_group_split_property(sizes, seed):
    """Whatever the groups: no group on two sides, and every split holds every label, or a
    clear error."""
    rows = [
        (f"g{i}", label)
        for i, (a, b) in enumerate(sizes)
        for label, n in (("0", a), ("1", b))
        for _ in range(n)
    ]
    if not rows:
        return
    table = pd.DataFrame(rows, columns=["group", "label"])
    table["id"] = [f"r{i}" for i in range(len(table))]
    table["file"], table["line"] = "mem", np.arange(len(table)) + 1
    # groups holding each label: under 3, no split can give every split that label
    holding = {label: table.loc[table["label"] == label, "group"].nunique() for label in LABELS}
    try:
        split = assign_splits(table, **FRACTIONS, seed=seed)
    except ValueError as err:
        assert "every split needs every label" in str(err)
        # the error is only for splits that are impossible or nearly so, never a plain failure
        assert min(holding.values()) < 6, (holding, str(err))
        return
    assert min(holding.values()) >= 3, holding  # an impossible split must raise
    assert (split.groupby(table["group"]).nunique() == 1).all()
    for s in SPLITS:
        assert set(table.loc[split == s, "label"]) == set(LABELS)


MEASURE = {"k": 21, "min_shared": 0.5, "max_kmer_windows": 256}


def test_similarity_groups_name_clusters_and_merge_source_groups(tmp_path):
    """Rows 1-2 are tiles of one region (linked), rows 3-4 share only a source group, and
    max_length decides whether rows 5-6 (same first 60 bases, different tails) are linked."""
    rng = np.random.default_rng(0)

    def bases(n: int) -> str:
        return "".join(rng.choice(list("ACGT"), n))

    region, head = bases(300), bases(60)
    rows = [
        (region[:200], "0", "a"),
        (region[50:250], "0", "b"),
        (bases(200), "1", "c"),
        (bases(200), "0", "c"),
        (head + bases(140), "1", "d"),
        (head + bases(140), "1", "e"),
    ]
    path = tmp_path / "s.csv"
    path.write_text("seq,label,grp\n" + "".join(f"{s},{y},{g}\n" for s, y, g in rows))
    table = read_table(path, group_column="grp")
    grouped, clusters = similarity_groups(table, **MEASURE)
    assert grouped["group"].tolist() == ["s:2", "s:2", "s:4", "s:4", "s:6", "s:7"]
    assert clusters.count == 4 and clusters.sizes.tolist() == [2, 2, 1, 1]
    assert clusters.largest_share == pytest.approx(2 / 6)
    cut, _ = similarity_groups(table, **MEASURE, max_length=60)
    assert cut["group"].tolist()[4:] == ["s:6", "s:6"]
    assert grouped.drop(columns="group").equals(table.drop(columns="group"))


def test_similarity_groups_refuse_what_pins_the_split(tmp_path, viraminer):
    with pytest.raises(ValueError, match=r"source.test_groups and source.val_groups cannot pin"):
        similarity_groups(viraminer, **MEASURE, test_groups=["a"], val_groups=["b"])
    path = tmp_path / "fixed.csv"
    path.write_text("seq,label,part\nACGTACGT,0,train\nACGTTTTT,1,test\n")
    with pytest.raises(ValueError, match=r"fixed.csv: the source has its own train/test split"):
        similarity_groups(read_table(path, split_column="part"), **MEASURE)


# --------------------------------------------------------------------------- windows


def test_labelled_windows_schema(nontata):
    out = labelled_windows(nontata, task="nt", **FRACTIONS, seed=0)
    assert sum(len(t) for t in out.values()) == len(nontata)
    for table in out.values():
        assert list(table.columns) == LABELLED_COLUMNS
        assert (table["genome"] == "nt").all() and (table["start"] == 0).all()
        assert (table["end"] == table["sequence"].str.len()).all()
        assert (table["label_id"] == table["label"].astype(int)).all()
        assert table["start"].dtype == np.int64 and table["end"].dtype == np.int64
    assert cross_split_duplicates(out) == {"val": 0, "test": 0}


def test_balance_cap_and_max_length(viraminer):
    out = labelled_windows(
        viraminer,
        task="vm",
        **FRACTIONS,
        seed=0,
        test_groups=["exp13_2014_N1"],
        balance="downsample",
        max_sequences_per_split=100,
        max_length=50,
    )
    for name in ("train", "val"):
        counts = out[name]["label"].value_counts()
        assert counts["0"] == counts["1"] and len(out[name]) <= 100
    test = out["test"]
    assert len(test) == 100 and (test["label"] == "1").sum() >= 1  # proportions kept, >= 1 each
    assert (test["genome"] == test["group"]).all()  # several files: genome = file stem
    assert all(t["end"].max() == 50 and t["sequence"].str.len().max() == 50 for t in out.values())


def test_unknown_or_absent_labels(nontata):
    with pytest.raises(LabelledInputError, match=r"line 2, record 'test:2', column 'label'"):
        labelled_windows(
            nontata, task="nt", labels=["1", "2"], val_fraction=0.2, test_fraction=0.2, seed=0
        )
    with pytest.raises(ValueError, match="no sequence is labelled '2'"):
        labelled_windows(
            nontata, task="nt", labels=["0", "1", "2"], val_fraction=0.2, test_fraction=0.2, seed=0
        )


def test_hold_out_validation_genome():
    roles = pd.DataFrame(
        {"genome": ["a", "b", "c"], "role": ["train", "train", "excluded"], "reason": ""}
    )
    held = hold_out_validation_genome(roles, seed=0)
    assert (held["role"] == "val").sum() == 1 and held.loc[2, "role"] == "excluded"
    assert hold_out_validation_genome(held, seed=0).equals(held)  # one val is enough


# --------------------------------------------------------------------------- workflow


def snakemake(tmp_path, config: dict, *targets: str, dry: bool = True):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    args = [*targets, "-n"] if dry else list(targets)
    return run_snakemake(
        tmp_path, *args, configfile=tmp_path / "config.yaml", timeout=300, cwd=tmp_path
    )


def mixed_config(tmp_path) -> dict:
    require_data(NONTATA, SHARED_DATA / "viraminer")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["genomes"] = str(ROOT / "config" / "genomes.tsv")
    config.pop("predict")
    config["tasks"]["nontata"] = {
        "source": {"format": "csv", "path": str(NONTATA)},
        "labels": LABELS,
        "max_sequences_per_split": 60,
    }
    config["tasks"]["viraminer"] = {
        "source": {
            "format": "viraminer",
            "paths": [str(p) for p in VIRAMINER],
            "test_groups": ["exp13_2014_N1"],
        },
        "balance": "downsample",
    }
    return config


def job_counts(stdout: str) -> dict[str, int]:
    table = stdout.split("Job stats:", 1)[1].split("total", 1)[0]
    return {
        line.split()[0]: int(line.split()[1])
        for line in table.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }


def test_dry_run_with_genome_csv_and_viraminer_tasks(tmp_path):
    out = snakemake(tmp_path, mixed_config(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    counts = job_counts(out.stdout)
    assert counts["labelled_windows"] == 2
    assert counts["split_groups"] == 1 and counts["task_windows"] == 1
    assert counts["tokenize"] == 2 + 3 * 3  # pretraining train/val + 3 tasks x 3 splits
    # a labelled task's tokenize job reads no genome
    blocks = [b for b in out.stdout.split("\n\n") if "rule tokenize:" in b and "/nontata/" in b]
    assert len(blocks) == 3 and not any("resources/genomes" in b for b in blocks)


def test_labelled_windows_and_tokenize_run(tmp_path):
    from dnalm.shards import TokenShard

    config = mixed_config(tmp_path)
    # every split's table, one split's tokens: each job starts a Python process (slow on 1 core)
    out = snakemake(tmp_path, config, "results/tokens/char/nontata/test.bin", dry=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not (tmp_path / "resources").exists()  # no genome was acquired for it
    counts = pd.read_csv(tmp_path / "results/windows/nontata/class_counts.tsv", sep="\t")
    assert set(counts["split"]) == set(SPLITS) and set(counts["label"].astype(str)) == set(LABELS)
    tables = {s: pd.read_parquet(tmp_path / f"results/windows/nontata/{s}.parquet") for s in SPLITS}
    assert all(len(t) == 60 for t in tables.values())
    assert not set(tables["test"]["chrom"]) & set(tables["train"]["chrom"])
    shard = TokenShard.open(tmp_path / "results/tokens/char/nontata/test")
    assert shard.labels.tolist() == tables["test"]["label_id"].tolist()
    char_ids = {"A": 7, "C": 8, "G": 9, "T": 10, "N": 11}
    for i in (0, len(shard) - 1):
        seq = tables["test"]["sequence"][i].upper()
        assert shard[i].tolist() == [char_ids[c] for c in seq]
    log = (tmp_path / "logs/labelled_windows/nontata.log").read_text()
    assert "excludes nothing for it" in log and "class counts" in log


def test_labelled_windows_split_by_similarity_run(tmp_path):
    """The step itself: clusters logged, each window's group its cluster, class_counts with the
    largest group; the audit's measure comes from the config."""
    config = mixed_config(tmp_path)
    config["tasks"] = {
        "nontata": {
            "source": {"format": "csv", "path": str(NONTATA)},
            "labels": LABELS,
            "split_by": "similarity",
        }
    }
    config["audit"] = {"k": 21, "min_shared": 0.5, "max_kmer_windows": 256}
    out = snakemake(tmp_path, config, "results/windows/nontata/class_counts.tsv", dry=False)
    assert out.returncode == 0, out.stderr[-3000:]
    log = (tmp_path / "logs/labelled_windows/nontata.log").read_text()
    assert "split by similarity (21-mers, linked at 50% shared" in log
    assert "the largest holds" in log and "label 0:" in log
    tables = {s: pd.read_parquet(tmp_path / f"results/windows/nontata/{s}.parquet") for s in SPLITS}
    whole = pd.concat([t.assign(split=s) for s, t in tables.items()], ignore_index=True)
    assert len(whole) == 9034 and whole["group"].nunique() < 0.9 * len(whole)
    assert (whole.groupby("group")["split"].nunique() == 1).all()
    counts = pd.read_csv(tmp_path / "results/windows/nontata/class_counts.tsv", sep="\t")
    assert (counts["largest_group"] > 1).any() and (
        counts["largest_group"] <= counts["windows"]
    ).all()
    groups = whole.groupby(["split", "label"])["group"].nunique()
    assert counts.set_index(["split", "label"])["groups"].to_dict() == {
        (s, int(y)): n for (s, y), n in groups.items()
    }

    config["tasks"]["nontata"]["source"].update(group_column="label", test_groups=["1"])
    out = snakemake(tmp_path, config, "results/windows/nontata/class_counts.tsv", dry=False)
    assert out.returncode != 0
    assert "task 'nontata': split_by: similarity draws every split" in out.stderr
