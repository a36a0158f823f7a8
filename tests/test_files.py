"""Whole-or-nothing writers: a failure leaves neither a partial file nor a temporary one."""

from __future__ import annotations

import pandas as pd
import pytest

from dnalm.files import (
    atomic_directory,
    atomic_paths,
    atomic_write,
    write_json,
    write_parquet,
    write_tsv,
)


def test_atomic_write_appears_whole(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    with atomic_write(target) as handle:
        handle.write("hello")
        assert not target.exists()  # nothing under the final name while writing
        [tmp] = list(target.parent.iterdir())
        assert tmp.name.startswith(".a.txt.") and tmp.name.endswith(".tmp")
    assert target.read_text() == "hello"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as handle:
        handle.write("new, half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_write_refuses_append():
    with pytest.raises(ValueError, match="'a' is not a write mode"), atomic_write("x", "a"):
        pass


def test_atomic_paths_all_or_nothing(tmp_path):
    a, b = tmp_path / "a.idx", tmp_path / "a.bin"
    with pytest.raises(KeyError), atomic_paths(a, b) as (ta, tb):
        ta.write_text("index")
        tb.write_text("data")
        raise KeyError("late failure")
    assert list(tmp_path.iterdir()) == []
    with atomic_paths(a, b) as (ta, tb):
        ta.write_text("index")
        tb.write_text("data")
    assert (a.read_text(), b.read_text()) == ("index", "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.idx"]


def test_atomic_directory_moves_files_and_keeps_others(tmp_path):
    target = tmp_path / "tok"
    target.mkdir()
    (target / "keep.json").write_text("{}")
    with atomic_directory(target) as tmp:
        (tmp / "tokenizer.json").write_text("[]")
    assert sorted(p.name for p in target.iterdir()) == ["keep.json", "tokenizer.json"]
    with pytest.raises(OSError), atomic_directory(target) as tmp:
        (tmp / "half.json").write_text("[")
        raise OSError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]
    assert not (target / "half.json").exists()


def test_tables_and_json(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    write_tsv(tmp_path / "t.tsv", frame)
    write_parquet(tmp_path / "t.parquet", frame)
    write_json(tmp_path / "t.json", {"a": 1})
    assert pd.read_csv(tmp_path / "t.tsv", sep="\t").equals(frame)
    assert pd.read_parquet(tmp_path / "t.parquet").equals(frame)
    assert (tmp_path / "t.json").read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json", "t.parquet", "t.tsv"]
