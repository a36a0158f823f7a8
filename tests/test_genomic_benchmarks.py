"""GenomicBenchmarks: rebuilt from the official coordinates + a reference, or unpacked from an
archive, into <root>/<dataset>/{train,test}/<class>/<id>.txt."""

from __future__ import annotations

import gzip
import re
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import SHARED_DATA, write_genome

from dnalm.download import DownloadError
from dnalm.genomic_benchmarks import (
    DATASETS,
    CoordinateError,
    archive_url,
    dataset_layout,
    download_dataset,
    read_coordinates,
    rebuild_dataset,
    reverse_complement,
    unpack_archive,
)

COORDS = SHARED_DATA / "genomic_benchmarks/coordinates_official"
NONTATA = COORDS / "human_nontata_promoters"
HG38_SLICE = SHARED_DATA / "genomes/nonviral/Hsapiens_hg38_chr2_1-2333275.fa.gz"
SLICE_END = 2_333_275


def in_slice(table: pd.DataFrame) -> pd.Series:
    return (table["region"] == "chr2") & (table["end"] <= SLICE_END)


def test_all_nine_official_datasets_are_known(shared_data):
    assert sorted(p.name for p in COORDS.iterdir() if p.is_dir()) == sorted(DATASETS)


def test_rebuilt_entries_equal_the_published_test_split(shared_data, tmp_path):
    """The test CSV has no ids, so rebuilt sequences are matched by membership (and label)."""
    out = rebuild_dataset(NONTATA, HG38_SLICE, tmp_path, keep=in_slice)
    assert out == tmp_path / "human_nontata_promoters"
    files = sorted((out / "test").rglob("*.txt"))
    expected = read_coordinates(NONTATA / "test/positive.csv.gz")
    expected = expected[in_slice(expected)]
    assert sorted(f.stem for f in files) == sorted(expected["id"])
    assert set(expected["strand"]) == {"+", "-"}  # both orientations are exercised
    published = pd.read_csv(SHARED_DATA / "genomic_benchmarks/human_nontata_promoters/test.csv")
    label_of = dict(zip(published["seq"], published["label"], strict=True))
    for f in files:
        seq = f.read_text()
        assert len(seq) == 251 and label_of.get(seq) == 1, f.name
    assert not any((out / "test/negative").iterdir())  # no negative falls in the slice
    assert [p.name for p in tmp_path.iterdir()] == ["human_nontata_promoters"]  # no leftovers


def _coordinate_dataset(root: Path, rows: dict[tuple[str, str], list[tuple]]) -> Path:
    """A coordinate dataset written like the official ones (classes pos/neg)."""
    root.mkdir(parents=True)
    (root / "metadata.yaml").write_text(
        "classes:\n  neg: {type: fa.gz, url: x}\n  pos: {type: fa.gz, url: x}\nversion: 0\n"
    )
    for split in ("train", "test"):
        (root / split).mkdir()
        for cls in ("neg", "pos"):
            table = pd.DataFrame(rows.get((split, cls), []), columns=list("abcde"))
            table.columns = ["id", "region", "start", "end", "strand"]
            with gzip.open(root / split / f"{cls}.csv.gz", "wt") as fh:
                table.to_csv(fh, index=False)
    return root


def test_rebuild_reverse_complements_and_matches_ensembl_names(tmp_path):
    ref = write_genome(tmp_path, "ref", [("chr1", "AACCGGTTAC" * 3), ("chrM", "acgtNRYK")])
    coords = _coordinate_dataset(
        tmp_path / "toy",
        {
            ("train", "pos"): [("a", "1", 0, 6, "+"), ("b", "MT", 4, 8, "-")],
            ("train", "neg"): [("c", "chr1", 2, 5, "-")],
            ("test", "pos"): [("d", "chr1", 20, 30, "+")],
            ("test", "neg"): [("e", "1", 0, 2, "+")],
        },
    )
    out = rebuild_dataset(coords, ref, tmp_path / "gb")
    text = {str(p.relative_to(out)): p.read_text() for p in out.rglob("*.txt")}
    assert text == {
        "train/pos/a.txt": "AACCGG",
        "train/pos/b.txt": "MRYN",  # NRYK reverse-complemented, upper-cased
        "train/neg/c.txt": "CGG",
        "test/pos/d.txt": "AACCGGTTAC",
        "test/neg/e.txt": "AA",
    }
    assert dataset_layout(out)[("train", "pos")] == ["a", "b"]
    assert reverse_complement("acgTNrykmswbdhv") == "bdhvwskmryNAcgt"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("a", "chr2", 2_333_000, 2_333_400, "+"), "ends past the end of chr2 (2333275 bp)"),
        (("a", "chr7", 10, 20, "+"), "'chr7' is not a record of the reference"),
    ],
)
def test_coordinates_outside_the_reference_fail_with_file_row_and_region(
    shared_data, tmp_path, row, message
):
    ok = ("ok", "chr2", 20_000, 20_010, "+")
    coords = _coordinate_dataset(tmp_path / "bad", {("train", "pos"): [ok, row]})
    with pytest.raises(CoordinateError) as info:
        rebuild_dataset(coords, HG38_SLICE, tmp_path / "out")
    text = str(info.value)
    region = f"region {row[1]}:{row[2]}-{row[3]}"
    assert "train/pos.csv.gz, row 2" in text and region in text and message in text
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-written


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("a", "chr1", 5, 5, "+"), "row 1: region chr1:5-5 is empty"),
        (("a", "chr1", -1, 5, "+"), "row 1: start '-1' is not a non-negative integer"),
        (("a", "chr1", 0, 5, "x"), "row 1: strand 'x' is not '+' or '-'"),
        (("../a", "chr1", 0, 5, "+"), "row 1: id '../a' is not a file name"),
    ],
)
def test_bad_coordinate_rows(tmp_path, row, message):
    coords = _coordinate_dataset(tmp_path / "bad", {("test", "neg"): [row]})
    with pytest.raises(CoordinateError, match=re.escape("test/neg.csv.gz, " + message)):
        read_coordinates(coords / "test/neg.csv.gz")


def test_duplicate_ids_and_missing_references(tmp_path):
    coords = _coordinate_dataset(
        tmp_path / "dup", {("train", "neg"): [("a", "c", 0, 2, "+"), ("a", "c", 2, 4, "+")]}
    )
    with pytest.raises(CoordinateError, match="row 2: duplicate id 'a'"):
        read_coordinates(coords / "train/neg.csv.gz")
    with pytest.raises(ValueError, match="no reference FASTA given for class.*pos"):
        rebuild_dataset(coords, {"neg": "x.fa.gz"}, tmp_path / "out")


def test_archive_urls():
    assert archive_url("human_nontata_promoters").endswith("id=1VdUg0Zu8yfLS6QesBXwGz1PIQrTW3Ze4")
    assert archive_url("demo_human_or_worm", "http://m/{dataset}.v{version}.zip") == (
        "http://m/demo_human_or_worm.v0.zip"
    )
    with pytest.raises(ValueError, match="rebuild it from the official coordinates"):
        archive_url("human_ocr_ensembl")
    with pytest.raises(ValueError, match="unknown field"):
        archive_url("x", "http://m/{name}.zip")


def _zip_dir(folder: Path, archive: Path, prefix: str) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*.txt")):
            zf.write(path, f"{prefix}{path.relative_to(folder)}")
    return archive


def test_archive_is_unpacked_and_checked_against_the_coordinates(shared_data, tmp_path):
    built = rebuild_dataset(NONTATA, HG38_SLICE, tmp_path / "built", keep=in_slice)
    # a coordinate folder holding exactly the rebuilt rows: the archive must match it
    subset = tmp_path / "coords" / "human_nontata_promoters"
    shutil.copytree(NONTATA, subset)
    for csv in subset.rglob("*.csv.gz"):
        table = read_coordinates(csv)
        with gzip.open(csv, "wt") as fh:
            table[in_slice(table)].to_csv(fh, index=False)
    shutil.rmtree(built / "test/negative")
    shutil.rmtree(built / "train/negative")
    (built / "test/negative").mkdir()
    archive = _zip_dir(built, tmp_path / "a.zip", "human_nontata_promoters/")
    # the subset has no negatives, so give each negative class one file in both places
    with zipfile.ZipFile(archive, "a") as zf:
        for split in ("train", "test"):
            zf.writestr(f"human_nontata_promoters/{split}/negative/n1.txt", "ACGT")
    for split in ("train", "test"):
        with gzip.open(subset / split / "negative.csv.gz", "wt") as fh:
            fh.write("id,region,start,end,strand\nn1,chr2,0,4,+\n")
    out = unpack_archive(
        archive, "human_nontata_promoters", tmp_path / "gb", coordinates_dir=subset
    )
    layout = dataset_layout(out)
    assert layout[("test", "positive")] == sorted(
        p.stem for p in (built / "test/positive").glob("*")
    )
    # against the full official coordinates the same archive is a different version
    with pytest.raises(DownloadError, match="train/negative holds 1 sequence.*12355"):
        unpack_archive(
            archive, "human_nontata_promoters", tmp_path / "gb2", coordinates_dir=NONTATA
        )
    assert list((tmp_path / "gb2").iterdir()) == []


def test_bad_archives_leave_nothing(tmp_path):
    html = tmp_path / "page.zip"
    html.write_text("<html>Google Drive can't scan this file for viruses</html>")
    with pytest.raises(DownloadError, match="not a zip archive.*Google Drive"):
        unpack_archive(html, "toy", tmp_path / "out")
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escape.txt", "x")
    with pytest.raises(DownloadError, match="unsafe path"):
        unpack_archive(evil, "toy", tmp_path / "out")
    flat = tmp_path / "flat.zip"
    with zipfile.ZipFile(flat, "w") as zf:
        zf.writestr("toy/train/a.txt", "ACGT")
    with pytest.raises(DownloadError, match="no train/ and test/ folders"):
        unpack_archive(flat, "toy", tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_download_dataset_through_the_loopback(tmp_path):
    from test_download import Loopback, serve

    toy = tmp_path / "toy"
    for split, cls, name in [
        ("train", "a", "1"),
        ("train", "b", "2"),
        ("test", "a", "3"),
        ("test", "b", "4"),
    ]:
        (toy / split / cls).mkdir(parents=True, exist_ok=True)
        (toy / split / cls / f"{name}.txt").write_text("ACGT")
    archive = _zip_dir(toy, tmp_path / "toy.zip", "")  # flat: train/ and test/ at the top
    server = Loopback()
    try:
        server.routes["/gb/toy.zip"] = serve(archive.read_bytes())
        out = download_dataset(
            "toy",
            tmp_path / "gb",
            cache_dir=tmp_path / "cache",
            url_template=server.url("/gb/{dataset}.zip"),
            backoff=0.01,
        )
    finally:
        server.close()
    assert dataset_layout(out) == {
        ("train", "a"): ["1"],
        ("train", "b"): ["2"],
        ("test", "a"): ["3"],
        ("test", "b"): ["4"],
    }
