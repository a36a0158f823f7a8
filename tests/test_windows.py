import gzip

import numpy as np
import pandas as pd
import pytest
from conftest import write_genome
from hypothesis import given, settings
from hypothesis import strategies as st

from dnalm.corpus import tokenize_windows
from dnalm.fasta import ambiguous_runs, record_lengths
from dnalm.shards import TokenShard
from dnalm.tokenization import char_tokenizer, encoder_for
from dnalm.windows import (
    WindowSpec,
    class_counts,
    hold_out_validation_genome,
    pretraining_corpus,
    pretraining_roles,
    record_split_table,
    runs_window_starts,
    split_groups,
    split_table,
    task_windows,
    task_windows_by_record,
    window_starts,
    windows_for_genome,
)

HG38_SLICE = "genomes/nonviral/Hsapiens_hg38_chr2_1-2333275.fa.gz"


def test_window_starts_stride_and_n_filter():
    seq = "A" * 10 + "N" * 10 + "C" * 20
    spec = WindowSpec(length=10, stride=5, max_n_fraction=0.0)
    assert window_starts(seq, spec).tolist() == [0, 20, 25, 30]
    relaxed = WindowSpec(length=10, stride=5, max_n_fraction=0.5)
    assert window_starts(seq, relaxed).tolist() == [0, 5, 15, 20, 25, 30]
    assert window_starts("ACGT", spec).tolist() == []


def test_ambiguity_codes_count_as_n():
    spec = WindowSpec(length=4, stride=4, max_n_fraction=0.25)
    assert window_starts("ACGRACRY", spec).tolist() == [0]


def test_bad_spec():
    with pytest.raises(ValueError, match="max_n_fraction"):
        WindowSpec(length=10, stride=1, max_n_fraction=2)


def _groups(n_per_label):
    rows = []
    for label, n in n_per_label.items():
        rows += [{"group": f"{label}{i}", "label": label} for i in range(n)]
    return pd.DataFrame(rows)


def test_split_groups_stratified_and_disjoint():
    groups = _groups({"virus": 10, "host": 5})
    a = split_groups(groups, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert set(a) == set(groups["group"])
    for label in ("virus", "host"):
        got = {a[g] for g in groups.loc[groups["label"] == label, "group"]}
        assert got == {"train", "val", "test"}
    assert a == split_groups(groups, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert a != split_groups(groups, val_fraction=0.2, test_fraction=0.2, seed=3)


def test_split_groups_needs_three_groups_per_label():
    with pytest.raises(ValueError, match="label 'host' has 2 group"):
        split_groups(_groups({"virus": 4, "host": 2}), val_fraction=0.2, test_fraction=0.2, seed=0)


def test_group_with_two_labels_is_an_error():
    groups = pd.DataFrame({"group": ["g1", "g1", "g2"], "label": ["virus", "host", "host"]})
    with pytest.raises(ValueError, match="'g1'"):
        split_groups(groups, val_fraction=0.2, test_fraction=0.2, seed=0)


def test_forced_split_is_kept():
    groups = _groups({"virus": 4, "host": 4})
    groups["split"] = None
    groups.loc[groups["group"] == "virus0", "split"] = "test"
    a = split_groups(groups, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert a["virus0"] == "test"
    assert sum(a[f"virus{i}"] == "test" for i in range(4)) == 1


@pytest.fixture
def tiny_genomes(tmp_path):
    rng = np.random.default_rng(0)
    sheet, paths = [], {}
    for label in ("virus", "host"):
        for g in range(3):
            for k in range(2):
                name = f"{label}{g}_{k}"
                seq = "".join(rng.choice(list("ACGT"), 2000 + 500 * k))
                paths[name] = write_genome(
                    tmp_path, name, [(f"{name}_chr1", seq), (f"{name}_chr2", seq[:700])]
                )
                sheet.append({"genome": name, "label": label, "group": f"{label}_group{g}"})
    return pd.DataFrame(sheet), paths


def _assignment(sheet):
    table = split_table(sheet, val_fraction=0.3, test_fraction=0.3, seed=0)
    assert table.groupby("group")["split"].nunique().max() == 1
    assert list(table["genome"]) == list(sheet["genome"])
    return dict(zip(table["group"], table["split"], strict=True))


def _group_windows(sheet, paths, spec, **options):
    """`task_windows` of the sheet's genomes, split by group (`_assignment`)."""
    return task_windows(sheet, paths, spec, assignment=_assignment(sheet), seed=0, **options)


def test_task_windows_split_by_group(tiny_genomes):
    sheet, paths = tiny_genomes
    splits = _group_windows(sheet, paths, WindowSpec(256, 128), labels=["host", "virus"])
    seen = {}
    for split, df in splits.items():
        assert set(df["label"]) == {"host", "virus"}
        assert (df["end"] - df["start"] == 256).all()
        for group in df["group"].unique():
            assert seen.setdefault(group, split) == split, f"group {group} in two splits"
        assert (df["label_id"] == (df["label"] == "virus").astype(int)).all()
    counts = class_counts(splits)
    assert counts["windows"].sum() == sum(len(df) for df in splits.values())


def test_downsample_and_cap(tiny_genomes):
    sheet, paths = tiny_genomes
    splits = _group_windows(
        sheet, paths, WindowSpec(100, 50), max_windows_per_genome=20, balance="downsample"
    )
    assert splits["train"].groupby("genome").size().max() <= 20
    train_counts = splits["train"]["label"].value_counts()
    assert train_counts["virus"] == train_counts["host"]


def test_window_longer_than_every_genome(tiny_genomes):
    sheet, paths = tiny_genomes
    with pytest.raises(ValueError, match="no window of length 100000 fits any genome"):
        _group_windows(sheet, paths, WindowSpec(100000, 100000))


def test_tokenized_windows_match_sequence(tmp_path):
    seq = "ACGTTGCAAC" * 30 + "acgtn" * 10
    path = write_genome(tmp_path, "g", [("r1", seq), ("r2", seq[::-1])])
    win = windows_for_genome(path, WindowSpec(50, 40, max_n_fraction=1.0))
    win = win.assign(genome="g", strand="+", label="x", label_id=0, group="g")
    win.loc[1, "strand"] = "-"
    tok = char_tokenizer()
    n = tokenize_windows(win, {"g": path}, encoder_for(tok), tmp_path / "s")
    shard = TokenShard(tmp_path / "s", "uint8")
    assert n == len(win) == len(shard)
    records = {"r1": seq, "r2": seq[::-1]}
    from dnalm.tokenization import reverse_complement

    for i, row in win.iterrows():
        expect = records[row["chrom"]][row["start"] : row["end"]]
        if row["strand"] == "-":
            expect = reverse_complement(expect)
        assert shard[i].tolist() == tok(expect, add_special_tokens=False)["input_ids"]


def test_pretraining_roles():
    task_a = pd.DataFrame({"genome": ["a", "b", "c"], "split": ["train", "val", "test"]})
    task_b = pd.DataFrame({"genome": ["a", "d"], "split": ["test", "train"]})
    roles = pretraining_roles(["a", "b", "c", "d", "e"], [task_a, task_b])
    assert dict(zip(roles["genome"], roles["role"], strict=True)) == {
        "a": "excluded",
        "b": "val",
        "c": "excluded",
        "d": "train",
        "e": "train",
    }
    kept = pretraining_roles(["a", "b", "c"], [task_a, task_b], exclude_test_genomes=False)
    assert dict(zip(kept["genome"], kept["role"], strict=True)) == {
        "a": "train",
        "b": "val",
        "c": "train",
    }


def _whole_record_windows(path, spec):
    """The windowing as it was before streaming: each record read whole, one cumulative count."""
    from dnalm.fasta import open_genome, record_lengths

    acgt = np.zeros(256, dtype=bool)
    acgt[np.frombuffer(b"ACGTacgt", dtype=np.uint8)] = True
    fasta = open_genome(path)
    frames = []
    for chrom, length in record_lengths(path).items():
        if length < spec.length:
            continue
        raw = fasta[chrom][:].seq.encode("ascii")
        csum = np.concatenate([[0], np.cumsum(~acgt[np.frombuffer(raw, np.uint8)], dtype=np.int64)])
        starts = np.arange(0, len(raw) - spec.length + 1, spec.stride, dtype=np.int64)
        n_frac = (csum[starts + spec.length] - csum[starts]) / spec.length
        starts = starts[n_frac <= spec.max_n_fraction]
        frames.append(pd.DataFrame({"chrom": chrom, "start": starts, "end": starts + spec.length}))
    return pd.concat(frames, ignore_index=True)


def _assert_same_windows(got, expected):
    assert got["chrom"].tolist() == expected["chrom"].tolist()
    assert got["start"].tolist() == expected["start"].tolist()
    assert got["end"].tolist() == expected["end"].tolist()


@pytest.mark.parametrize(
    "spec",
    [WindowSpec(1000, 300, 0.1), WindowSpec(4096, 4096, 0.0), WindowSpec(500, 777, 0.5)],
    ids=str,
)
def test_streamed_windows_equal_whole_record_on_hg38(shared_data, spec):
    """Real human sequence: a 10 kb N run, soft-masked repeats; any block size, same windows."""
    path = shared_data / HG38_SLICE
    expected = _whole_record_windows(path, spec)
    assert 0 < len(expected) < 2_333_275 // spec.stride  # the N run removes some
    for block_size in (1, 999, spec.stride * 3 + 1, 1_000_003, 10**9):
        _assert_same_windows(windows_for_genome(path, spec, block_size=block_size), expected)


ISOLATES = "genomes/viral/nextclade_isolates"


@pytest.mark.parametrize(
    "name",
    [
        "community__itps__orov__M__refseq.fasta",  # 54 isolates: N runs, one R, one Y
        "community__itps__zikav.fasta",  # 100 isolates, 1,350 runs: N, R, Y, K, W, M, S
    ],
)
def test_windows_equal_whole_record_on_isolates(shared_data, tmp_path, name):
    """Real isolates: mixed case, N runs and scattered IUPAC codes, many records per file; the
    windows from the ambiguous BED equal those read from the sequence, at any block size."""
    from dnalm.fasta import ambiguous_bed_path, normalise_fasta

    path = tmp_path / "isolates.fa.gz"
    normalise_fasta(shared_data / ISOLATES / name, path)
    assert ambiguous_bed_path(path).exists()
    for spec in (WindowSpec(100, 30, 0.0), WindowSpec(64, 7, 0.02), WindowSpec(500, 1, 0.01)):
        expected = _whole_record_windows(path, spec)
        assert expected["chrom"].nunique() > 20
        _assert_same_windows(windows_for_genome(path, spec), expected)
        for block_size in (61, 997, 10**9):
            streamed = windows_for_genome(path, spec, block_size=block_size, use_bed=False)
            _assert_same_windows(streamed, expected)


def test_windows_from_the_bed_on_hg38(shared_data, tmp_path):
    """The hg38 slice normalised: its BED holds the 10 kb N run, and windows from it equal
    those read, for strides below, at and above the window length."""
    from dnalm.fasta import ambiguous_bed_path, normalise_fasta

    path = tmp_path / "hg38.fa.gz"
    normalise_fasta(shared_data / HG38_SLICE, path)
    with gzip.open(ambiguous_bed_path(path), "rt") as fh:
        assert [line for line in fh if not line.startswith("#")] == ["chr2\t0\t10000\n"]
    for spec in (
        WindowSpec(1000, 300, 0.1),
        WindowSpec(4096, 4096, 0.0),
        WindowSpec(500, 777, 0.5),
        WindowSpec(100, 1, 0.0),
        WindowSpec(10_000, 10_000, 0.0),
        WindowSpec(20_000, 5_000, 0.5),  # a window half N passes, one more base of N fails
    ):
        got = windows_for_genome(path, spec)
        expected = windows_for_genome(path, spec, use_bed=False)
        _assert_same_windows(got, expected)
        assert got.dtypes.to_dict() == expected.dtypes.to_dict()
    assert windows_for_genome(path, WindowSpec(20_000, 5_000, 0.5))["start"].iloc[0] == 0


def test_n_threshold_windows_straddling_blocks(tmp_path):
    """N runs placed across block edges: every window is judged on all its bases."""
    rng = np.random.default_rng(1)
    seq = np.array(list("ACGTacgt"))[rng.integers(0, 8, 5000)]
    for at, width in ((0, 2), (95, 3), (190, 12), (1000, 1), (2047, 40), (4990, 10)):
        seq[at : at + width] = "N"
    seq[3000:3005] = list("RYKMS")
    seq = "".join(seq)
    path = write_genome(tmp_path, "g", [("r1", seq), ("r2", seq[:1500]), ("short", seq[:20])])
    for spec in (WindowSpec(50, 10, 0.0), WindowSpec(64, 32, 0.1), WindowSpec(33, 17, 0.05)):
        expected = _whole_record_windows(path, spec)
        assert expected["start"].tolist()[: len(window_starts(seq, spec))] == (
            window_starts(seq, spec).tolist()
        )
        _assert_same_windows(windows_for_genome(path, spec), expected)
        for block_size in (1, spec.stride, 97, 1000, 10**9):
            streamed = windows_for_genome(path, spec, block_size=block_size, use_bed=False)
            _assert_same_windows(streamed, expected)


_BASES = np.frombuffer(b"ACGTacgtNnRYKMSWBDHVU", dtype=np.uint8)


@st.composite
def _sequences(draw):
    """Random records made of stretches of clean bases and of non-ACGT runs, some at the ends."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    length = draw(st.integers(1, 3000))
    seq = _BASES[rng.integers(0, 8, length)]
    for _ in range(draw(st.integers(0, 12))):
        at, width = int(rng.integers(0, length)), int(rng.integers(1, 400))
        seq[at : at + width] = _BASES[rng.integers(8, len(_BASES), min(width, length - at))]
    return seq.tobytes()


@settings(max_examples=300, deadline=None)
@given(
    seq=_sequences(),
    length=st.integers(1, 600),
    stride=st.integers(1, 700),
    max_n_fraction=st.sampled_from([0.0, 0.01, 0.1, 0.25, 0.5, 0.999, 1.0]),
)
def test_windows_from_runs_equal_windows_from_bases(seq, length, stride, max_n_fraction):
    """Windows from a record's length and non-ACGT runs alone equal those from its bases."""
    spec = WindowSpec(length, stride, max_n_fraction)
    starts, ends = ambiguous_runs(seq, chunk=97)
    got = runs_window_starts(len(seq), starts, ends, spec)
    assert got.dtype == np.int64
    assert got.tolist() == window_starts(seq, spec).tolist()


def test_windows_without_the_bed_read_the_sequence(tmp_path):
    """A genome normalised without the BED, or whose BED was deleted, is read instead."""
    from dnalm.fasta import ambiguous_bed_path, normalise_fasta

    seq = "ACGT" * 100 + "N" * 50 + "acgt" * 100
    path = write_genome(tmp_path, "g", [("r1", seq)])
    spec = WindowSpec(64, 16, 0.1)
    expected = windows_for_genome(path, spec)
    ambiguous_bed_path(path).unlink()
    _assert_same_windows(windows_for_genome(path, spec), expected)
    raw = tmp_path / "raw.fa"
    raw.write_text(f">r1\n{seq}\n")
    other = tmp_path / "other.fa.gz"
    normalise_fasta(raw, other, ambiguous_bed=False)
    assert not ambiguous_bed_path(other).exists()
    _assert_same_windows(windows_for_genome(other, spec), expected)
    assert len(expected) == len(window_starts(seq, spec)) < (len(seq) - 64) // 16 + 1


def test_index_that_disagrees_with_the_fasta(tmp_path):
    path = write_genome(tmp_path, "g", [("r1", "ACGT" * 50)])
    fai = path.with_name(path.name + ".fai")
    fai.write_text(fai.read_text().replace("\t200\t", "\t260\t"))
    with pytest.raises(
        ValueError,
        match=r"g.ambiguous.bed.gz, line 1: written for 1 records and 200 bases, but the index "
        r"lists 1 records and 260 bases; .*normalise the genome again",
    ):
        windows_for_genome(path, WindowSpec(64, 64))
    path.with_name("g.ambiguous.bed.gz").unlink()
    with pytest.raises(
        ValueError, match=r"g.fa.gz: cannot read r1:0-256 .*normalise the genome again"
    ):
        windows_for_genome(path, WindowSpec(64, 64))
    fai.unlink()
    with pytest.raises(FileNotFoundError, match=r"g.fa.gz: index .*g.fa.gz.fai missing"):
        windows_for_genome(path, WindowSpec(64, 64))


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["r2\t0\t5"], r"line 2: record 'r2' is not in the genome's index"),
        (["r1\t5\t3"], r"line 2: run r1:5-3 is empty or outside the record \(length 200\)"),
        (["r1\t190\t201"], r"line 2: run r1:190-201 is empty or outside the record"),
        (["r1\t0\t10", "r1\t9\t12"], r"line 3: run r1:9-12 overlaps run r1:0-10 \(line 2\)"),
        (["r1\t20\t30", "r1\t0\t25"], r"line 2: run r1:20-30 overlaps run r1:0-25 \(line 3\)"),
        (["r1\tten\t12"], r"line 2: start and end must be integers, got \['ten', '12'\]"),
        (["r1 0 12"], r"line 2: expected 3 tab-separated columns"),
    ],
)
def test_bad_bed_is_named_by_file_and_line(tmp_path, lines, message):
    path = write_genome(tmp_path, "g", [("r1", "ACGT" * 50)])
    bed = path.with_name("g.ambiguous.bed.gz")
    with gzip.open(bed, "rt") as fh:
        header = fh.readline()
    with gzip.open(bed, "wt") as fh:
        fh.write(header + "".join(line + "\n" for line in lines))
    with pytest.raises(ValueError, match=rf"g\.ambiguous\.bed\.gz, {message}"):
        windows_for_genome(path, WindowSpec(64, 64))
    assert len(windows_for_genome(path, WindowSpec(64, 64), use_bed=False)) == 3


def test_unsorted_bed_without_header_is_read(tmp_path):
    """A hand-made BED (no header, records and runs in any order, extra columns) still works."""
    seq = "ACGT" * 50
    path = write_genome(tmp_path, "g", [("r1", seq), ("r2", seq)])
    with gzip.open(path.with_name("g.ambiguous.bed.gz"), "wt") as fh:
        fh.write("r2\t100\t150\tx\nr1\t60\t70\nr1\t0\t10\n")
    got = windows_for_genome(path, WindowSpec(50, 25, 0.0))
    assert got.groupby("chrom")["start"].apply(list).to_dict() == {
        "r1": [75, 100, 125, 150],
        "r2": [0, 25, 50, 150],
    }


# --------------------------------------------------------------------------- split by chromosome


def _record_table(sheet, paths, min_length):
    lengths = {g: record_lengths(p) for g, p in paths.items()}
    return record_split_table(
        sheet, lengths, val_fraction=0.3, test_fraction=0.3, seed=0, min_length=min_length
    )


def test_task_windows_split_by_chromosome(tiny_genomes):
    sheet, paths = tiny_genomes
    spec = WindowSpec(256, 128)
    table = _record_table(sheet, paths, spec.length)
    assert len(table) == 2 * len(sheet)  # both records of every genome are one window long
    splits = task_windows_by_record(table, paths, spec, seed=0, labels=["host", "virus"])
    sides = pd.concat([df.assign(split=s) for s, df in splits.items()])
    assert (sides.groupby(["genome", "chrom"])["split"].nunique() == 1).all()
    expected = table.set_index(["genome", "chrom"])["split"]
    assert (sides.set_index(["genome", "chrom"]).index.map(expected) == sides["split"]).all()
    assert set(sides["group"]) == set(table["group"])  # a window's group is its chromosome unit
    # the same windows as a group split, only placed by chromosome
    whole = _group_windows(sheet, paths, spec)
    key = ["genome", "chrom", "start"]
    assert sorted(map(tuple, sides[key].to_numpy())) == sorted(
        map(tuple, pd.concat(whole.values())[key].to_numpy())
    )
    for split, df in splits.items():
        assert set(df["label"]) == {"host", "virus"}, split
        assert (df["label_id"] == (df["label"] == "virus").astype(int)).all()

    capped = task_windows_by_record(
        table, paths, spec, seed=0, max_windows_per_genome=5, balance="downsample"
    )
    every = pd.concat(capped.values())
    assert every.groupby("genome").size().max() <= 5
    for split in ("train", "val"):
        counts = capped[split]["label"].value_counts()
        assert counts["host"] == counts["virus"]


def test_chromosome_split_with_a_label_left_without_windows(tiny_genomes):
    sheet, paths = tiny_genomes
    table = _record_table(sheet, paths, 1)
    host = table["label"] == "host"
    table.loc[host, "split"] = "train"
    table.loc[table["chrom"] == "host0_1_chr1", "split"] = "val"
    # host's only test chromosomes are 700 bp records: no 1,000 bp window fits them
    short = table["chrom"].str.endswith("_chr2") & table["genome"].str.endswith("_0")
    table.loc[host & short, "split"] = "test"
    with pytest.raises(ValueError, match=r"no test window is labelled 'host': .*host_group0:host0"):
        task_windows_by_record(table, paths, WindowSpec(1000, 500), seed=0)


def test_pretraining_roles_by_chromosome():
    group_task = pd.DataFrame({"genome": ["a", "b"], "split": ["test", "val"]})
    chrom_task = pd.DataFrame(
        {
            "genome": ["a", "c", "c", "c", "c", "d", "d"],
            "chrom": ["1", "1", "2", "3", "4", "1", "2"],
            "split": ["train", "test", "val", "train", "test", "val", "test"],
        }
    )
    roles = pretraining_roles(["a", "b", "c", "d", "e"], [group_task, chrom_task])
    got = roles.set_index("genome")[["role", "val_chroms", "excluded_chroms"]]
    assert got.to_dict("index") == {
        "a": {"role": "excluded", "val_chroms": "", "excluded_chroms": ""},  # tested whole
        "b": {"role": "val", "val_chroms": "", "excluded_chroms": ""},
        "c": {"role": "train", "val_chroms": "2", "excluded_chroms": "1 4"},
        "d": {"role": "train", "val_chroms": "1", "excluded_chroms": "2"},
        "e": {"role": "train", "val_chroms": "", "excluded_chroms": ""},
    }
    assert roles.set_index("genome").at["c", "reason"] == (
        "a task tests on chromosome(s) 1 4: left out; "
        "a task validates on chromosome(s) 2: pretraining val"
    )
    kept = pretraining_roles(["c"], [chrom_task], exclude_test_genomes=False)
    assert kept.loc[0, "excluded_chroms"] == "" and kept.loc[0, "val_chroms"] == "2"
    # val chromosomes are a validation set: no genome is drawn for it
    only_chroms = pretraining_roles(["c", "e", "f"], [chrom_task])
    assert hold_out_validation_genome(only_chroms, seed=0).equals(only_chroms)
    no_val = pretraining_roles(["c", "e", "f"], [chrom_task[chrom_task["split"] != "val"]])
    assert (hold_out_validation_genome(no_val, seed=0)["role"] == "val").sum() == 1


def test_pretraining_corpus_leaves_out_test_chromosomes(tiny_genomes):
    _, paths = tiny_genomes
    chrom_task = pd.DataFrame(
        {
            "genome": ["host0_0", "host0_0", "virus0_0", "virus0_0"],
            "chrom": ["host0_0_chr1", "host0_0_chr2", "virus0_0_chr1", "virus0_0_chr2"],
            "split": ["test", "val", "train", "train"],
        }
    )
    group_task = pd.DataFrame({"genome": ["host1_0", "virus1_0"], "split": ["test", "val"]})
    names = ["host0_0", "virus0_0", "host1_0", "virus1_0", "host2_0"]
    roles = pretraining_roles(names, [chrom_task, group_task])
    corpus = pretraining_corpus(roles, paths, WindowSpec(200, 200))
    records = {s: set(zip(df["genome"], df["chrom"], strict=True)) for s, df in corpus.items()}
    assert records["train"] == {
        ("virus0_0", "virus0_0_chr1"),
        ("virus0_0", "virus0_0_chr2"),
        ("host2_0", "host2_0_chr1"),
        ("host2_0", "host2_0_chr2"),
    }
    assert records["val"] == {
        ("host0_0", "host0_0_chr2"),  # a val chromosome of the chromosome split
        ("virus1_0", "virus1_0_chr1"),  # a val genome of the group split
        ("virus1_0", "virus1_0_chr2"),
    }
    assert list(corpus["train"].columns) == list(corpus["val"].columns)
    assert corpus["train"]["start"].dtype == np.int64
    # read back from corpus.tsv, the empty lists are NaN
    reread = roles.replace("", np.nan)
    again = pretraining_corpus(reread, paths, WindowSpec(200, 200))
    assert all(again[s].equals(corpus[s]) for s in corpus)


def test_a_split_left_without_a_label_fails(tiny_genomes):
    """Only the 2,500-bp genome of each group holds a 2,200-bp window: without it, the test
    split's virus groups give none, and the task would silently have a one-class test split."""
    sheet, paths = tiny_genomes
    assignment = _assignment(sheet)
    test_virus = sorted(g for g, s in assignment.items() if s == "test" and g.startswith("virus"))
    sheet = sheet[~(sheet["group"].isin(test_virus) & sheet["genome"].str.endswith("_1"))]
    spec = WindowSpec(2200, 2200)
    with pytest.raises(ValueError) as err:
        task_windows(sheet, paths, spec, assignment=assignment, seed=0, labels=["host", "virus"])
    assert str(err.value) == (
        f"no test window is labelled 'virus': its test group(s) ({', '.join(test_virus)}) give "
        f"no window of length 2200 with max_n_fraction {spec.max_n_fraction}; pin other groups "
        "to test with the sheet's split column, change split.seed, or shorten the window"
    )
