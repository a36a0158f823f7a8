"""Behaviour of the FASTA reader, normaliser and checksums, including every rejected input."""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import pickle
import random
import re
import tempfile
from pathlib import Path

import numpy as np
import pysam
import pytest
from Bio import bgzf
from conftest import require_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnalm.fasta import (
    ChecksumError,
    FastaFormatError,
    FastaStats,
    ambiguous_bed_path,
    ambiguous_runs,
    file_checksum,
    normalise_fasta,
    open_genome,
    read_fasta,
    record_lengths,
    sequence_format,
    verify_checksum,
)

SHARED = Path(__file__).parents[2] / "shared" / "data"
VIRAL = SHARED / "genomes" / "viral" / "viral_reference_genomes.fasta"
MANIFEST = SHARED / "genomes" / "viral" / "manifest.tsv"
MVOLTAE = SHARED / "genomes" / "nonviral" / "Mvoltae_A3_NC_014222.1.fna.gz"
HUMAN = SHARED / "genomes" / "nonviral" / "Hsapiens_hg38_chr2_1-2333275.fa.gz"
IUPAC = "ACGTUNRYKMSWBDHV"


def _write(path: Path, data: str | bytes, compress: str = "plain") -> Path:
    raw = data.encode() if isinstance(data, str) else data
    if compress == "gzip":
        raw = gzip.compress(raw)
    elif compress == "bgzip":
        with bgzf.BgzfWriter(str(path), "wb") as out:
            out.write(raw)
        return path
    path.write_bytes(raw)
    return path


def _fasta_text(records: list[tuple[str, str]], width: int = 60, newline: str = "\n") -> str:
    out = []
    for rid, seq in records:
        out.append(f">{rid} some description")
        out.extend(seq[i : i + width] for i in range(0, len(seq), width))
    return newline.join(out) + newline


def _error(path: Path) -> FastaFormatError:
    with pytest.raises(FastaFormatError) as info:
        list(read_fasta(path))
    return info.value


# --------------------------------------------------------------------------- reading


def test_reads_ids_and_sequences_keeping_case(tmp_path: Path) -> None:
    path = _write(tmp_path / "g.fa", ">chr1 first one\nACGTac\ngtNN\n>chr2\tdesc\nRYKM\n")
    assert list(read_fasta(path)) == [("chr1", "ACGTacgtNN"), ("chr2", "RYKM")]


def test_all_iupac_codes_upper_and_lower_are_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path / "g.fa", f">x\n{IUPAC}\n{IUPAC.lower()}\n")
    assert list(read_fasta(path)) == [("x", IUPAC + IUPAC.lower())]


def test_crlf_line_endings_are_tolerated(tmp_path: Path) -> None:
    path = _write(tmp_path / "g.fa", ">a x\r\nACGT\r\nAC\r\n>b\r\nGG\r\n")
    assert list(read_fasta(path)) == [("a", "ACGTAC"), ("b", "GG")]


def test_blank_lines_anywhere_are_tolerated(tmp_path: Path) -> None:
    path = _write(tmp_path / "g.fa", "\n\n>a\nAC\n\nGT\n\n\n>b\n\nTT\n\n")
    assert list(read_fasta(path)) == [("a", "ACGT"), ("b", "TT")]


def test_last_line_without_newline(tmp_path: Path) -> None:
    path = _write(tmp_path / "g.fa", ">a\nACGT")
    assert list(read_fasta(path)) == [("a", "ACGT")]


@pytest.mark.parametrize("compress", ["gzip", "bgzip"])
def test_compression_is_detected_by_content_not_name(tmp_path: Path, compress: str) -> None:
    path = _write(tmp_path / "looks_plain.fa", ">a\nACGT\n>b\nTTTT\n", compress)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert list(read_fasta(path)) == [("a", "ACGT"), ("b", "TTTT")]


def test_plain_file_named_gz_is_read_as_plain(tmp_path: Path) -> None:
    path = _write(tmp_path / "not_really.fa.gz", ">a\nACGT\n")
    assert list(read_fasta(path)) == [("a", "ACGT")]


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    err = _error(_write(tmp_path / "empty.fa", ""))
    assert str(err).startswith(f"{tmp_path / 'empty.fa'}: no FASTA records")
    assert (err.record, err.line, err.position) == (None, None, None)
    assert err.path == tmp_path / "empty.fa"


def test_file_with_only_blank_lines_is_rejected(tmp_path: Path) -> None:
    err = _error(_write(tmp_path / "blank.fa", "\n\r\n  \n"))
    assert "no FASTA records" in str(err)


def test_text_before_first_header_is_rejected(tmp_path: Path) -> None:
    err = _error(_write(tmp_path / "g.fa", "\nACGT\n>a\nACGT\n"))
    assert (err.record, err.line, err.position) == (None, 2, None)
    assert str(err).startswith(f"{tmp_path / 'g.fa'}, line 2: text before the first '>' header")


def test_header_without_id_is_rejected(tmp_path: Path) -> None:
    err = _error(_write(tmp_path / "g.fa", ">a\nACGT\n>   \nACGT\n"))
    assert (err.record, err.line) == (None, 3)
    assert str(err).startswith(f"{tmp_path / 'g.fa'}, line 3: '>' header line has no record id")


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    err = _error(_write(tmp_path / "g.fa", ">chr1 a\nACGT\n>chr2\nGG\n>chr1 b\nTT\n"))
    assert (err.record, err.line) == ("chr1", 5)
    assert str(err).startswith(
        f"{tmp_path / 'g.fa'}, record 'chr1', line 5: duplicate record id 'chr1' "
        "(first used on line 1, again on line 5)"
    )


@pytest.mark.parametrize(
    ("text", "record", "line"),
    [(">a\n>b\nACGT\n", "a", 1), (">a\nACGT\n>b\n\n", "b", 3), (">a\r\n\r\n>b\nAC\n", "a", 1)],
)
def test_empty_record_is_rejected(tmp_path: Path, text: str, record: str, line: int) -> None:
    err = _error(_write(tmp_path / "g.fa", text))
    assert (err.record, err.line, err.position) == (record, line, None)
    assert f"record {record!r}, line {line}: record has a header but no sequence" in str(err)


def test_invalid_character_reports_record_line_and_position(tmp_path: Path) -> None:
    seq = ["ACGT" * 15] * 12 + ["ACGTACGTAC" + "X" + "A" * 49, "ACGT", "ZZZ"]
    path = _write(tmp_path / "genome.fa", ">chr2 second\n" + "\n".join(seq) + "\n")
    err = _error(path)
    assert (err.record, err.line, err.column, err.position) == ("chr2", 14, 11, 731)
    assert str(err).startswith(
        f"{path}, record 'chr2', line 14, column 11, position 731: invalid character 'X' "
        "(allowed: IUPAC nucleotide codes ACGTUNRYKMSWBDHV, upper or lower case)"
    )


def test_invalid_character_position_counts_past_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "g.fa", ">ok\r\nAC\r\n>bad x\r\nACGT\r\n\r\nAC-GT\r\n")
    err = _error(path)
    assert (err.record, err.line, err.column, err.position) == ("bad", 6, 3, 7)
    assert "invalid character '-'" in str(err)


@pytest.mark.parametrize(
    ("char", "shown"), [(" ", "' '"), ("1", "'1'"), ("x", "'x'"), ("*", "'*'")]
)
def test_each_non_iupac_character_is_rejected(tmp_path: Path, char: str, shown: str) -> None:
    err = _error(_write(tmp_path / "g.fa", f">a\nAC{char}GT\n"))
    assert (err.record, err.line, err.column, err.position) == ("a", 2, 3, 3)
    assert f"invalid character {shown}" in str(err)


def test_non_ascii_byte_is_reported(tmp_path: Path) -> None:
    err = _error(_write(tmp_path / "g.fa", b">a\nACG\xffT\n"))
    assert (err.line, err.column, err.position) == (2, 4, 4)
    assert "invalid character '\xff'" in str(err)


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_damaged_gzip_is_reported(tmp_path: Path, damage: str) -> None:
    rng = random.Random(1)
    text = _fasta_text([("a", "".join(rng.choice("ACGT") for _ in range(200_000)))])
    blob = gzip.compress(text.encode())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:
        blob = blob[:20] + bytes(b ^ 0x5A for b in blob[20:200]) + blob[200:]
    path = _write(tmp_path / "g.fa.gz", blob)
    err = _error(path)
    assert str(err).startswith(str(path))
    assert "truncated or corrupt gzip" in str(err)


def test_unsupported_compression_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "g.fa.bz2", bz2.compress(b">a\nACGT\n"))
    assert "bzip2-compressed" in str(_error(path))


def test_error_is_a_value_error_and_survives_pickling(tmp_path: Path) -> None:
    err = FastaFormatError(tmp_path / "g.fa", "boom", record="r", position=3, line=4, column=2)
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.record, copy.position, copy.line, copy.column) == (
        tmp_path / "g.fa",
        "r",
        3,
        4,
        2,
    )
    assert (
        str(copy)
        == str(err)
        == f"{tmp_path / 'g.fa'}, record 'r', line 4, column 2, position 3: boom"
    )


# --------------------------------------------------------------------------- property test

_ids = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.|:-", min_size=1)
_seqs = st.text(IUPAC + IUPAC.lower(), min_size=1, max_size=300)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(st.tuples(_ids, _seqs), min_size=1, max_size=6, unique_by=lambda r: r[0]),
    width=st.integers(1, 80),
    crlf=st.booleans(),
    compress=st.sampled_from(["plain", "gzip", "bgzip"]),
)
def test_written_records_read_back_exactly(
    records: list[tuple[str, str]], width: int, crlf: bool, compress: str
) -> None:
    text = _fasta_text(records, width, "\r\n" if crlf else "\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "g.fa", text, compress)
        assert list(read_fasta(path)) == records


# --------------------------------------------------------------------------- normalise


def _records_for_roundtrip() -> list[tuple[str, str]]:
    rng = random.Random(7)
    return [
        ("chrA", "".join(rng.choice("ACGTacgtNRY") for _ in range(5_003))),
        ("chrB", "".join(rng.choice("ACGTN") for _ in range(70_001))),
        ("tiny", "G"),
    ]


@pytest.mark.parametrize("compress", ["plain", "gzip", "bgzip"])
def test_normalise_round_trip_with_coordinate_reads(tmp_path: Path, compress: str) -> None:
    records = _records_for_roundtrip()
    src = _write(tmp_path / "in.fa", _fasta_text(records, width=73), compress)
    dest = tmp_path / "out" / "genome.fa.gz"
    stats = normalise_fasta(src, dest)

    assert sorted(p.name for p in dest.parent.iterdir()) == [
        "genome.ambiguous.bed.gz",
        "genome.fa.gz",
        "genome.fa.gz.fai",
        "genome.fa.gz.gzi",
    ]
    assert _bed_runs(dest) == _non_acgt_runs(records)
    assert dest.read_bytes()[:4] == b"\x1f\x8b\x08\x04"  # gzip with the BGZF extra field
    assert list(read_fasta(dest)) == records
    assert record_lengths(dest) == {rid: len(seq) for rid, seq in records}
    assert list(record_lengths(dest)) == ["chrA", "chrB", "tiny"]

    genome = open_genome(dest)
    rng = random.Random(3)
    for rid, seq in records:
        assert str(genome[rid][:]) == seq
        for _ in range(20):
            start = rng.randrange(len(seq))
            end = rng.randrange(start, len(seq)) + 1
            assert genome[rid][start:end].seq == seq[start:end]
    with pysam.FastaFile(str(dest)) as fa:  # samtools-compatible: htslib reads it as is
        assert fa.fetch("chrB", 60_000, 60_100) == records[1][1][60_000:60_100]

    joined = "".join(seq for _, seq in records).upper()
    acgt = sum(joined.count(c) for c in "ACGT")
    assert stats == FastaStats(
        records=3,
        bases=len(joined),
        gc_fraction=(joined.count("G") + joined.count("C")) / acgt,
        n_fraction=joined.count("N") / len(joined),
        lengths={rid: len(seq) for rid, seq in records},
        ambiguous_fraction=(joined.count("R") + joined.count("Y")) / len(joined),
    )
    assert stats.to_dict()["lengths"] == {"chrA": 5_003, "chrB": 70_001, "tiny": 1}


def _bed_runs(fasta: Path) -> list[tuple[str, int, int]]:
    """The (record, start, end) lines of the ambiguous BED beside a normalised genome."""
    bed = ambiguous_bed_path(fasta)
    assert bed is not None
    with gzip.open(bed, "rt") as fh:
        rows = [line.rstrip("\n").split("\t") for line in fh if not line.startswith("#")]
    return [(rid, int(start), int(end)) for rid, start, end in rows]


def _non_acgt_runs(records: list[tuple[str, str]]) -> list[tuple[str, int, int]]:
    """The maximal runs of anything but ACGT/acgt, found by a regular expression."""
    return [
        (rid, m.start(), m.end()) for rid, seq in records for m in re.finditer("[^ACGTacgt]+", seq)
    ]


def test_ambiguous_bed_lists_the_runs_of_real_isolates(tmp_path: Path) -> None:
    """100 Zika isolates with N runs and scattered R, Y, K, W, M, S codes: the BED lists exactly
    their non-ACGT runs, whatever the case and IUPAC options (masking keeps them non-ACGT)."""
    src = SHARED / "genomes" / "viral" / "nextclade_isolates" / "community__itps__zikav.fasta"
    require_data(src)
    records = list(read_fasta(src))
    expected = _non_acgt_runs(records)
    assert len(expected) > 1000 and len({rid for rid, _, _ in expected}) > 50
    codes = {seq[s:e] for rid, seq in records for _, s, e in _non_acgt_runs([(rid, seq)])}
    assert set("RYKWMS") <= set("".join(codes).upper())
    for options in ({}, {"iupac": "mask", "soft_mask": "upper"}):
        dest = tmp_path / f"zika{len(options)}.fa.gz"
        normalise_fasta(src, dest, **options)
        assert _bed_runs(dest) == expected
    with gzip.open(ambiguous_bed_path(dest), "rt") as fh:
        header = fh.readline()
    bases = sum(len(seq) for _, seq in records)
    assert header.startswith("#") and f"records={len(records)} bases={bases}" in header


def test_ambiguous_bed_of_rna_empty_and_clean_genomes(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.fa", ">a\nACGUuT\n>b\nACGT\n>c\nnnACGTRy\n")
    normalise_fasta(src, tmp_path / "rna.fa.gz", rna_to_dna=False)
    assert _bed_runs(tmp_path / "rna.fa.gz") == [("a", 3, 5), ("c", 0, 2), ("c", 6, 8)]
    normalise_fasta(src, tmp_path / "dna.fa.gz")  # U -> T: an unambiguous base
    assert _bed_runs(tmp_path / "dna.fa.gz") == [("c", 0, 2), ("c", 6, 8)]
    normalise_fasta(_write(tmp_path / "clean.fa", ">a\nACGTacgt\n"), tmp_path / "clean.fa.gz")
    with gzip.open(tmp_path / "clean.ambiguous.bed.gz", "rt") as fh:
        assert fh.read() == (
            "#non-ACGT runs, 0-based half-open: chrom start end; records=1 bases=8\n"
        )


def test_ambiguous_bed_is_reproducible_and_can_be_left_out(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.fa", ">a\nACNNGT\n")
    dest = tmp_path / "g.fa.gz"
    normalise_fasta(src, dest)
    bed = ambiguous_bed_path(dest)
    first = bed.read_bytes()
    normalise_fasta(src, dest)
    assert bed.read_bytes() == first  # no timestamp in the gzip header
    normalise_fasta(src, dest, ambiguous_bed=False)  # a stale BED must not outlive its FASTA
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "g.fa.gz",
        "g.fa.gz.fai",
        "g.fa.gz.gzi",
        "in.fa",
    ]
    assert ambiguous_bed_path(tmp_path / "g.fasta") is None


@settings(max_examples=200, deadline=None)
@given(
    seq=st.text(alphabet="ACGTacgtNnRYu", max_size=300),
    chunk=st.integers(1, 40),
)
def test_ambiguous_runs_do_not_depend_on_the_chunk(seq: str, chunk: int) -> None:
    starts, ends = ambiguous_runs(seq.encode(), chunk=chunk)
    assert starts.dtype == ends.dtype == np.int64
    got = list(zip(starts.tolist(), ends.tolist(), strict=True))
    assert got == [(s, e) for _, s, e in _non_acgt_runs([("x", seq)])]


def test_normalise_line_width_is_used_in_the_index(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.fa", ">a\n" + "ACGT" * 100 + "\n")
    normalise_fasta(src, tmp_path / "g.fa.gz", line_width=50)
    fields = (tmp_path / "g.fa.gz.fai").read_text().split("\t")
    assert fields[:2] == ["a", "400"] and fields[3:5] == ["50", "51\n"]


@pytest.mark.parametrize(("soft_mask", "expected"), [("keep", "ACgtNn"), ("upper", "ACGTNN")])
def test_soft_mask_keep_or_upper(tmp_path: Path, soft_mask: str, expected: str) -> None:
    src = _write(tmp_path / "in.fa", ">a\nACgtNn\n")
    normalise_fasta(src, tmp_path / "g.fa.gz", soft_mask=soft_mask)
    assert open_genome(tmp_path / "g.fa.gz")["a"][:].seq == expected


@pytest.mark.parametrize(("rna_to_dna", "expected"), [(True, "ACGTtT"), (False, "ACGUuT")])
def test_rna_to_dna(tmp_path: Path, rna_to_dna: bool, expected: str) -> None:
    src = _write(tmp_path / "in.fa", ">a\nACGUuT\n")
    stats = normalise_fasta(src, tmp_path / "g.fa.gz", rna_to_dna=rna_to_dna)
    assert open_genome(tmp_path / "g.fa.gz")["a"][:].seq == expected
    assert stats.gc_fraction == pytest.approx(2 / 6 if rna_to_dna else 2 / 4)


def test_normalise_crlf_input(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.fa", ">a x\r\nACGT\r\nGG\r\n>b\r\nTT\r\n")
    normalise_fasta(src, tmp_path / "g.fa.gz")
    genome = open_genome(tmp_path / "g.fa.gz")
    assert (genome["a"][:].seq, genome["b"][:].seq) == ("ACGTGG", "TT")


def test_failed_normalise_leaves_nothing_behind(tmp_path: Path) -> None:
    good = "".join(random.Random(2).choice("ACGT") for _ in range(300_000))
    src = _write(tmp_path / "in.fa", _fasta_text([("ok", good), ("bad", "ACGTXACGT")]))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FastaFormatError, match=r"record 'bad', line 5003, column 5, position 5"):
        normalise_fasta(src, out / "g.fa.gz")
    assert list(out.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.fa", "out"]


def test_failed_normalise_keeps_previous_output_intact(tmp_path: Path) -> None:
    normalise_fasta(_write(tmp_path / "v1.fa", ">a\nACGT\n"), tmp_path / "g.fa.gz")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(FastaFormatError):
        normalise_fasta(_write(tmp_path / "v2.fa", ">a\nAC\n>a\nGG\n"), tmp_path / "g.fa.gz")
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "v2.fa"}
    assert after == before


def test_normalise_rejects_bad_arguments_before_writing(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.fa", ">a\nACGT\n")
    with pytest.raises(ValueError, match=r"must end in '\.fa\.gz'"):
        normalise_fasta(src, tmp_path / "g.fasta.gz")
    with pytest.raises(ValueError, match="soft_mask must be 'keep' or 'upper'"):
        normalise_fasta(src, tmp_path / "g.fa.gz", soft_mask="lower")
    with pytest.raises(ValueError, match="line_width"):
        normalise_fasta(src, tmp_path / "g.fa.gz", line_width=0)
    with pytest.raises(ValueError, match="iupac must be 'keep' or 'mask'"):
        normalise_fasta(src, tmp_path / "g.fa.gz", iupac="drop")
    with pytest.raises(ValueError, match="empty_records must be 'error' or 'skip'"):
        normalise_fasta(src, tmp_path / "g.fa.gz", empty_records="ignore")
    with pytest.raises(ValueError, match="empty_records must be 'error' or 'skip'"):
        read_fasta(src, empty_records="warn")
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        normalise_fasta(src, tmp_path / "g.fa.gz", threads=0)
    with pytest.raises(ValueError, match="compress_level for zlib must be an integer 1-9"):
        normalise_fasta(src, tmp_path / "g.fa.gz", compressor="zlib", compress_level=0)
    with pytest.raises(ValueError, match="compress_level for isal must be an integer 0-3"):
        normalise_fasta(src, tmp_path / "g.fa.gz", compress_level=6)
    with pytest.raises(ValueError, match=r"compressor must be one of \['isal', 'zlib'\]"):
        normalise_fasta(src, tmp_path / "g.fa.gz", compressor="gzip")
    assert [p.name for p in tmp_path.iterdir()] == ["in.fa"]


@pytest.mark.parametrize(
    ("iupac", "expected", "ambiguous"),
    [("keep", "ACRYnrykmswbdhvGT", 12 / 17), ("mask", "ACNNnnnnnnnnnnnGT", 0.0)],
)
def test_iupac_keep_or_mask(tmp_path: Path, iupac: str, expected: str, ambiguous: float) -> None:
    src = _write(tmp_path / "in.fa", ">a\nACRYnrykmswbdhvGT\n")
    stats = normalise_fasta(src, tmp_path / "g.fa.gz", iupac=iupac)
    assert open_genome(tmp_path / "g.fa.gz")["a"][:].seq == expected
    assert stats.ambiguous_fraction == pytest.approx(ambiguous)
    assert stats.n_fraction == pytest.approx(expected.upper().count("N") / 17)


def test_iupac_mask_with_upper_and_rna(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.fa", ">a\nacguRy\n")
    normalise_fasta(src, tmp_path / "g.fa.gz", iupac="mask", soft_mask="upper")
    assert open_genome(tmp_path / "g.fa.gz")["a"][:].seq == "ACGTNN"


def test_empty_records_can_be_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = _write(tmp_path / "in.fa", ">a\n>b desc\nACGT\n>c\n\r\n>d\nGG\n>e\n")
    with caplog.at_level("WARNING", logger="dnalm.fasta"):
        assert list(read_fasta(src, empty_records="skip")) == [("b", "ACGT"), ("d", "GG")]
    assert [m for m in caplog.messages if "empty record skipped" in m] == [
        f"{src}, record 'a', line 1: empty record skipped",
        f"{src}, record 'c', line 4: empty record skipped",
        f"{src}, record 'e', line 8: empty record skipped",
    ]
    stats = normalise_fasta(src, tmp_path / "g.fa.gz", empty_records="skip")
    assert (stats.records, stats.skipped_records) == (2, ["a", "c", "e"])
    assert record_lengths(tmp_path / "g.fa.gz") == {"b": 4, "d": 2}


def test_skipping_still_rejects_duplicates_and_all_empty_files(tmp_path: Path) -> None:
    dup = _write(tmp_path / "dup.fa", ">a\n>b\nAC\n>a\nGG\n")
    with pytest.raises(FastaFormatError, match=r"line 4: duplicate record id 'a'"):
        list(read_fasta(dup, empty_records="skip"))
    empty = _write(tmp_path / "empty.fa", ">a\n>b\n\n")
    with pytest.raises(FastaFormatError, match="every record is empty"):
        list(read_fasta(empty, empty_records="skip"))


def test_utf8_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = _write(tmp_path / "g.fa", b"\xef\xbb\xbf>a\r\nACGT\r\n")
    assert list(read_fasta(path)) == [("a", "ACGT")]


def test_old_mac_line_endings_are_named(tmp_path: Path) -> None:
    err = _error(_write(tmp_path / "g.fa", ">a x\rACGT\rACGT\r"))
    assert (err.line, err.record) == (1, None)
    assert "old Mac (CR-only) line endings" in str(err)
    err = _error(_write(tmp_path / "g2.fa", ">a\nAC\rGT\n"))
    assert (err.record, err.line, err.column, err.position) == ("a", 2, 3, 3)
    assert "invalid character '\\r'" in str(err) and "CR-only" in str(err)


@pytest.mark.parametrize(
    ("header", "column", "text"),
    [(b">ab\x00c\n", 4, "unprintable character"), (b"> x\xffy z\n", 4, "not UTF-8")],
)
def test_unusable_record_ids_are_rejected(
    tmp_path: Path, header: bytes, column: int, text: str
) -> None:
    err = _error(_write(tmp_path / "g.fa", header + b"ACGT\n"))
    assert (err.line, err.column) == (1, column)
    assert text in str(err)


def test_utf8_record_ids_survive_normalisation(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.fa", ">contig_\u00e9t\u00e9 x\nACGT\n")
    normalise_fasta(src, tmp_path / "g.fa.gz")
    assert open_genome(tmp_path / "g.fa.gz")["contig_\u00e9t\u00e9"][:].seq == "ACGT"


# --------------------------------------------------------------------------- GenBank


def _genbank(path: Path, records: list[tuple[str, str]], compress: str = "plain") -> Path:
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqRecord import SeqRecord

    handle = io.StringIO()
    recs = [
        SeqRecord(Seq(seq), id=rid, name=rid.split(".")[0][:16], description=f"{rid} test")
        for rid, seq in records
    ]
    for rec in recs:
        rec.annotations["molecule_type"] = "DNA"
    SeqIO.write(recs, handle, "genbank")
    return _write(path, handle.getvalue(), compress)


def _real_records(n: int) -> list[tuple[str, str]]:
    """The first `n` real viral reference genomes (or random sequence without the data)."""
    if VIRAL.exists():
        out = []
        for rid, seq in read_fasta(VIRAL):
            out.append((rid, seq))
            if len(out) == n:
                return out
    rng = random.Random(5)
    return [(f"R{i}.1", "".join(rng.choice("ACGT") for _ in range(3000))) for i in range(n)]


@pytest.mark.parametrize(
    ("name", "compress"),
    [("g.gb", "plain"), ("g.gbk.gz", "gzip"), ("looks_like.fa", "plain"), ("x.fa.gz", "bgzip")],
)
def test_genbank_is_read_by_content_or_name(tmp_path: Path, name: str, compress: str) -> None:
    records = _real_records(2)
    path = _genbank(tmp_path / name, records, compress)
    assert sequence_format(path) == "genbank"
    assert list(read_fasta(path)) == [(rid, seq.upper()) for rid, seq in records]


def test_genbank_with_windows_line_endings(tmp_path: Path) -> None:
    records = _real_records(2)
    text = _genbank(tmp_path / "g.gb", records).read_text()
    path = _write(tmp_path / "crlf.gbk", text.replace("\n", "\r\n"))
    assert list(read_fasta(path)) == [(rid, seq.upper()) for rid, seq in records]


def test_genbank_lower_case_is_not_a_soft_mask(tmp_path: Path) -> None:
    path = _genbank(tmp_path / "g.gb", [("X1.1", "acgtnacgun")])
    assert "acgtnacgun" in path.read_text()  # GenBank writes lower case
    normalise_fasta(path, tmp_path / "g.fa.gz")
    assert open_genome(tmp_path / "g.fa.gz")["X1.1"][:].seq == "ACGTNACGTN"


def test_genbank_invalid_base_names_line_and_column(tmp_path: Path) -> None:
    seq = "ACGT" * 40
    path = _genbank(tmp_path / "g.gb", [("A1.1", "ACGT" * 10), ("B2.1", seq)])
    text = path.read_text()
    origin = text.index("ORIGIN", text.index("B2.1"))
    lines = text[origin:].splitlines()
    assert lines[3].startswith("      121 ")  # 60 bases per line, numbered
    bad_line = lines[3][:19] + "j" + lines[3][20:]  # column 20: base 121 + 9
    text = text[:origin] + "\n".join([*lines[:3], bad_line, *lines[4:]]) + "\n"
    path.write_text(text)
    err = _error(path)
    line_no = text[:origin].count("\n") + 1 + 3
    assert (err.record, err.position, err.line, err.column) == ("B2.1", 130, line_no, 20)
    assert "invalid character 'J'" in str(err)


def test_genbank_duplicate_ids_name_both_locus_lines(tmp_path: Path) -> None:
    path = _genbank(tmp_path / "g.gb", [("A1.1", "ACGT"), ("B1.1", "GG"), ("A1.1", "TT")])
    locus = [n for n, x in enumerate(path.read_text().splitlines(), 1) if x.startswith("LOCUS")]
    err = _error(path)
    assert (err.record, err.line) == ("A1.1", locus[2])
    assert f"first used on line {locus[0]}, again on line {locus[2]}" in str(err)


def test_genbank_record_without_sequence(tmp_path: Path) -> None:
    path = _genbank(tmp_path / "g.gb", [("A1.1", "ACGT"), ("B1.1", "GGCC")])
    text = path.read_text()
    second = text.index("LOCUS", 1)
    origin = text.index("ORIGIN", second)
    path.write_text(text[:origin] + "CONTIG      join(A1.1:1..4)\n//\n")  # a CONTIG record
    err = _error(path)
    assert (err.record, err.line) == ("B1.1", text[:second].count("\n") + 1)
    assert "no sequence" in str(err)
    assert list(read_fasta(path, empty_records="skip")) == [("A1.1", "ACGT")]


def test_truncated_genbank_is_rejected(tmp_path: Path) -> None:
    path = _genbank(tmp_path / "g.gb", _real_records(1))
    text = path.read_text()
    path.write_text(text[: len(text) - 500])
    err = _error(path)
    assert err.line == 1 and "truncated" in str(err)


def test_genbank_named_file_without_records(tmp_path: Path) -> None:
    err = _error(_write(tmp_path / "g.gbk", "just some text\n"))
    assert "no GenBank records" in str(err)


def test_open_genome_requires_the_index(tmp_path: Path) -> None:
    path = _write(tmp_path / "g.fa.gz", ">a\nACGT\n", "bgzip")
    with pytest.raises(FileNotFoundError, match="index missing"):
        open_genome(path)
    assert [p.name for p in tmp_path.iterdir()] == ["g.fa.gz"]  # and it did not build one


# --------------------------------------------------------------------------- checksums


def test_checksums_match(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.bin", b"hello genome\n")
    sha = hashlib.sha256(b"hello genome\n").hexdigest()
    md5 = hashlib.md5(b"hello genome\n").hexdigest()
    assert file_checksum(path) == sha
    assert file_checksum(path, "md5") == md5
    for expected in (f"sha256:{sha}", f"md5:{md5}", sha, md5, sha.upper(), f"SHA256:{sha}"):
        verify_checksum(path, expected)


def test_checksum_mismatch_names_file_expected_and_actual(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.bin", b"hello genome\n")
    actual = hashlib.sha256(b"hello genome\n").hexdigest()
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        verify_checksum(path, wrong)
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.expected, err.actual) == (f"sha256:{wrong}", f"sha256:{actual}")
    for part in (str(path), wrong, actual):
        assert part in str(err)
    with pytest.raises(ChecksumError, match="md5:"):
        verify_checksum(path, "md5:" + "f" * 32)


@pytest.mark.parametrize("expected", ["abc123", "sha999:00", "sha256:not-hex"])
def test_malformed_expected_checksum(tmp_path: Path, expected: str) -> None:
    path = _write(tmp_path / "f.bin", b"x")
    with pytest.raises(ValueError) as info:
        verify_checksum(path, expected)
    assert not isinstance(info.value, ChecksumError)


# --------------------------------------------------------------------------- real data, in place


def _need(path: Path) -> None:
    require_data(path)


def test_real_viral_references_match_manifest() -> None:
    _need(VIRAL)
    _need(MANIFEST)
    with open(MANIFEST, newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["file"] == VIRAL.name]
    expected = {r["record_header"].split()[0]: int(r["length_nt"]) for r in rows}
    got = {rid: len(seq) for rid, seq in read_fasta(VIRAL)}
    assert len(got) == 79
    assert got == expected
    assert 1_600_000 < sum(got.values()) < 1_700_000


def test_real_gzip_archaeon_genome() -> None:
    _need(MVOLTAE)
    sums = SHARED / "SHA256SUMS"
    if sums.exists():
        line = next(x for x in sums.read_text().splitlines() if x.endswith(MVOLTAE.name))
        verify_checksum(MVOLTAE, line.split()[0])
    records = list(read_fasta(MVOLTAE))
    assert [(rid, len(seq)) for rid, seq in records] == [("NC_014222.1", 1_936_387)]


def test_real_bgzip_genome_and_its_samtools_index() -> None:
    _need(HUMAN)
    records = list(read_fasta(HUMAN))
    assert {rid: len(seq) for rid, seq in records} == record_lengths(HUMAN)
    ((rid, seq),) = records
    assert seq[:10_000] == "N" * 10_000
    assert any(c.islower() for c in seq[10_000:20_000])  # UCSC soft-masking kept
    genome = open_genome(HUMAN)  # read-only directory: must not try to write an index
    for start in (0, 10_000, 1_000_003, len(seq) - 77):
        assert genome[rid][start : start + 77].seq == seq[start : start + 77]


# --------------------------------------------------------------------------- the htslib writer

ECOLI = SHARED / "genomes" / "nonviral" / "Ecoli_K12_MG1655_NC_000913.3.fna.gz"
ATHALIANA = SHARED / "genomes" / "nonviral" / "Athaliana_1pct.fa.gz"
ZIKA = SHARED / "genomes" / "viral" / "nextclade_isolates" / "community__itps__zikav.fasta"
_MASK = str.maketrans("RYKMSWBDHVrykmswbdhv", "N" * 10 + "n" * 10)


def _reference_normalise(
    src: Path,
    dest: Path,
    *,
    soft_mask: str = "keep",
    rna_to_dna: bool = True,
    iupac: str = "keep",
    line_width: int = 60,
    empty_records: str = "error",
) -> None:
    """What normalise_fasta wrote before it streamed and compressed on threads, spelled out
    for valid input: every line at once, pysam.BGZFile, samtools faidx (which writes the .fai
    and .gzi), and a regular expression for the runs of the BED."""
    raw = src.read_bytes()
    text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    records: list[tuple[str, list[str]]] = []
    for line in text.decode("utf-8").removeprefix("\ufeff").split("\n"):
        if line.startswith(">"):
            records.append((line[1:].split()[0], []))
        elif line.strip():
            records[-1][1].append(line.rstrip())
    assert empty_records == "skip" or all(lines for _, lines in records)
    out = []
    for rid, lines in records:
        seq = "".join(lines)
        seq = seq.upper() if soft_mask == "upper" else seq
        seq = seq.translate(str.maketrans("Uu", "Tt")) if rna_to_dna else seq
        seq = seq.translate(_MASK) if iupac == "mask" else seq
        if seq:
            out.append((rid, seq))
    body = "".join(
        f">{rid}\n"
        + "".join(seq[i : i + line_width] + "\n" for i in range(0, len(seq), line_width))
        for rid, seq in out
    )
    with pysam.BGZFile(str(dest), "wb") as fh:
        fh.write(body.encode())
    pysam.faidx(str(dest))
    bases = sum(len(seq) for _, seq in out)
    with (
        open(ambiguous_bed_path(dest), "wb") as fh,
        gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as bed,
    ):
        bed.write(
            "#non-ACGT runs, 0-based half-open: chrom start end; "
            f"records={len(out)} bases={bases}\n".encode()
        )
        for rid, seq in out:
            runs = [(m.start(), m.end()) for m in re.finditer("[^ACGTacgt]+", seq)]
            if runs:
                bed.write("".join(f"{rid}\t{s}\t{e}\n" for s, e in runs).encode())


def _four_files(dest: Path) -> dict[str, str]:
    paths = {
        "fa.gz": dest,
        "fai": dest.with_name(dest.name + ".fai"),
        "gzi": dest.with_name(dest.name + ".gzi"),
        "bed": ambiguous_bed_path(dest),
    }
    return {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in paths.items()}


_SYNTHETIC = {
    # soft-masked, IUPAC codes of both cases, RNA, CRLF, trailing blanks, a blank line, a BOM
    "mixed": "\ufeff>chr1 desc\r\nACGTacgtNNnnRYkm\r\n\r\nuuUUacgu  \r\n>chr2\r\nBDHVbdhvSWsw\r\n",
    # a record shorter than a line, one exactly a line, one a line and a base, empty records
    "widths": ">a\nACG\n>e1\n>b\n" + "T" * 60 + "\n>c\n" + "G" * 61 + "\n>e2\n\n",
    # records spanning BGZF blocks (65,280 bytes) and 1 MiB reads, with N runs at the edges
    "blocks": ">big\n"
    + "\n".join(["NNNN" + "ACGTRYacgt" * 7 + "u"] * 20_000)
    + "\n>next\n"
    + "N" * 70_000
    + "\n",
}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"soft_mask": "upper", "iupac": "mask"},
        {"rna_to_dna": False, "line_width": 70},
    ],
    ids=["default", "upper-mask", "rna-width70"],
)
@pytest.mark.parametrize("name", sorted(_SYNTHETIC))
def test_normalise_writes_the_files_of_the_htslib_writer_synthetic(
    tmp_path: Path, name: str, options: dict
) -> None:
    """Byte for byte, the .fa.gz, .fai, .gzi and BED of the reference writer, on 1 and 3
    threads, for lowercase, IUPAC, RNA, CRLF, empty (skipped) records and block edges."""
    options = {**options, "empty_records": "skip"}
    src = _write(tmp_path / f"{name}.fa", _SYNTHETIC[name], "gzip")
    reference = tmp_path / "reference" / "g.fa.gz"
    reference.parent.mkdir()
    _reference_normalise(src, reference, **options)
    for threads in (1, 3):
        dest = tmp_path / f"threads{threads}" / "g.fa.gz"
        normalise_fasta(src, dest, threads=threads, compressor="zlib", **options)
        assert _four_files(dest) == _four_files(reference)


@pytest.mark.parametrize(
    ("src", "options"),
    [
        (ECOLI, {}),  # 4.6 Mbp on one line of records: 72 BGZF blocks
        (HUMAN, {"soft_mask": "upper", "iupac": "mask"}),  # soft-masked, 10 kb of N, BGZF input
        (HUMAN, {}),
        (ATHALIANA, {"line_width": 80}),
        (VIRAL, {}),  # 79 records
        (ZIKA, {"iupac": "mask"}),  # isolates with N runs and scattered IUPAC codes
    ],
    ids=["ecoli", "hg38-upper-mask", "hg38", "athaliana-80", "viral", "zika-mask"],
)
def test_normalise_writes_the_files_of_the_htslib_writer_real(
    tmp_path: Path, src: Path, options: dict
) -> None:
    require_data(src)
    reference = tmp_path / "reference" / "g.fa.gz"
    reference.parent.mkdir()
    _reference_normalise(src, reference, **options)
    dest = tmp_path / "new" / "g.fa.gz"
    normalise_fasta(src, dest, threads=2, compressor="zlib", **options)
    assert _four_files(dest) == _four_files(reference)


@pytest.mark.parametrize("src", [None, ECOLI], ids=["synthetic", "ecoli"])
def test_every_compression_keeps_the_content(tmp_path: Path, src: Path | None) -> None:
    """ISA-L (the default) and zlib at levels 1 and 6 write other .fa.gz/.gzi bytes, but the
    same sequence, .fai and BED, and each .gzi points at its own file's blocks."""
    if src is None:
        src = _write(tmp_path / "in.fa", _SYNTHETIC["blocks"])
    else:
        require_data(src)
    dests = {}
    for name, options in {
        "isal": {},
        "isal0": {"compress_level": 0},
        "zlib6": {"compressor": "zlib"},
        "zlib1": {"compressor": "zlib", "compress_level": 1},
    }.items():
        dests[name] = tmp_path / name / "g.fa.gz"
        normalise_fasta(src, dests[name], threads=2, **options)
    files = {name: _four_files(dest) for name, dest in dests.items()}
    assert len({f["fa.gz"] for f in files.values()}) == 4
    assert len({(f["fai"], f["bed"]) for f in files.values()}) == 1
    sizes = {name: dest.stat().st_size for name, dest in dests.items()}
    assert sizes["zlib6"] < sizes["zlib1"] and sizes["zlib6"] < sizes["isal0"]
    first = list(read_fasta(dests["zlib6"]))
    for name, dest in dests.items():
        assert list(read_fasta(dest)) == first, name
        faidx = open_genome(dest)  # pyfaidx and htslib (pysam) both read through the .gzi
        with pysam.FastaFile(str(dest)) as fa:
            for record, seq in first:
                for start in (0, len(seq) // 2, max(0, len(seq) - 70_000)):
                    assert fa.fetch(record, start, start + 10) == seq[start : start + 10], name
                    assert faidx[record][start : start + 10].seq == seq[start : start + 10]
        faidx.close()
