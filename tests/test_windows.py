import numpy as np
import pandas as pd
import pytest
from conftest import write_genome

from dnalm.corpus import tokenize_windows
from dnalm.shards import TokenShard
from dnalm.tokenization import char_tokenizer, encoder_for
from dnalm.windows import (
    WindowSpec,
    class_counts,
    pretraining_roles,
    split_groups,
    split_table,
    task_windows,
    window_starts,
    windows_for_genome,
)


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


def test_task_windows_split_by_group(tiny_genomes):
    sheet, paths = tiny_genomes
    splits = task_windows(
        sheet,
        paths,
        WindowSpec(256, 128),
        assignment=_assignment(sheet),
        seed=0,
        labels=["host", "virus"],
    )
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
    splits = task_windows(
        sheet,
        paths,
        WindowSpec(100, 50),
        assignment=_assignment(sheet),
        seed=0,
        max_windows_per_genome=20,
        balance="downsample",
    )
    assert splits["train"].groupby("genome").size().max() <= 20
    train_counts = splits["train"]["label"].value_counts()
    assert train_counts["virus"] == train_counts["host"]


def test_window_longer_than_every_genome(tiny_genomes):
    sheet, paths = tiny_genomes
    with pytest.raises(ValueError, match="no window of length 100000 fits any genome"):
        task_windows(
            sheet, paths, WindowSpec(100000, 100000), assignment=_assignment(sheet), seed=0
        )


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
