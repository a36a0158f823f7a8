"""Fuzzing the FASTA reader and normaliser (hypothesis); the bugs it found are kept as @example.

Three properties: valid records survive any file dressing (compression, CRLF, BOM, blank lines,
line width) and normalisation; arbitrary bytes fail only with a located FastaFormatError and leave
nothing behind; a bad base is reported at its real record, line, column and position.

Fixed and kept: '>>a' crashed normalisation with a bare ValueError; an id with a NUL byte was
'a\x00b' in the stats but 'a' in the .fai; ids of invalid UTF-8 collapsed into a misleading
duplicate-id error; CR-only line endings were reported as an empty record.
"""

from __future__ import annotations

import gzip
import tempfile
import zlib
from pathlib import Path
from unittest import mock

import pytest
from Bio import bgzf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dnalm import fasta
from dnalm.fasta import FastaFormatError, normalise_fasta, open_genome, read_fasta

IUPAC = "ACGTUNRYKMSWBDHV"
FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

# Ids: printable text without whitespace, not starting with '>' (ASCII, and some UTF-8).
_id_chars = st.characters(
    codec="utf-8", categories=["L", "N", "P", "S"], exclude_characters=">"
) | st.sampled_from("_.|:-")
_ids = st.text(_id_chars, min_size=1, max_size=12)
_seqs = st.text(IUPAC + IUPAC.lower(), min_size=1, max_size=200)
_records = st.lists(st.tuples(_ids, _seqs), min_size=1, max_size=5, unique_by=lambda r: r[0])


def _encode(data: bytes, compress: str) -> bytes:
    if compress == "gzip":
        return gzip.compress(data, mtime=0)
    if compress == "bgzip":
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "x.gz"
            with bgzf.BgzfWriter(str(path), "wb") as out:
                out.write(data)
            return path.read_bytes()
    return data


def _fasta(records, width: int, newline: str, blank: bool, bom: bool) -> bytes:
    lines = []
    for rid, seq in records:
        lines.append(f">{rid} desc")
        if blank:
            lines.append("")
        lines.extend(seq[i : i + width] for i in range(0, len(seq), width))
    text = newline.join(lines) + newline
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


def _expected(seq: str, soft_mask: str, iupac: str) -> str:
    seq = seq.translate(str.maketrans("Uu", "Tt"))
    if soft_mask == "upper":
        seq = seq.upper()
    if iupac == "mask":
        codes = "RYKMSWBDHV"
        seq = seq.translate(str.maketrans(codes + codes.lower(), "N" * 10 + "n" * 10))
    return seq


# --------------------------------------------------------------------------- round trip


@FAST
@given(
    records=_records,
    width=st.integers(1, 90),
    newline=st.sampled_from(["\n", "\r\n"]),
    blank=st.booleans(),
    bom=st.booleans(),
    compress=st.sampled_from(["plain", "gzip", "bgzip"]),
    soft_mask=st.sampled_from(["keep", "upper"]),
    iupac=st.sampled_from(["keep", "mask"]),
)
@example(  # a UTF-8 id: samtools and pyfaidx must agree on it after normalisation
    records=[("contig_é", "ACGu")],
    width=60,
    newline="\r\n",
    blank=False,
    bom=True,
    compress="plain",
    soft_mask="keep",
    iupac="mask",
)
def test_valid_records_survive_reading_and_normalisation(
    records, width, newline, blank, bom, compress, soft_mask, iupac
) -> None:
    raw = _encode(_fasta(records, width, newline, blank, bom), compress)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.fa"
        src.write_bytes(raw)
        assert list(read_fasta(src)) == records
        dest = Path(tmp) / "out" / "g.fa.gz"
        stats = normalise_fasta(src, dest, soft_mask=soft_mask, iupac=iupac)
        expected = [(rid, _expected(seq, soft_mask, iupac)) for rid, seq in records]
        assert list(read_fasta(dest)) == expected
        genome = open_genome(dest)
        assert [(rid, genome[rid][:].seq) for rid, _ in records] == expected
        assert stats.lengths == {rid: len(seq) for rid, seq in records}


# --------------------------------------------------------------------------- arbitrary bytes

# Bytes that make FASTA structure more often than uniform noise would.
_pieces = st.sampled_from(
    [b">", b"\n", b"\r\n", b"\r", b" ", b"\t", b"ACGT", b"acgtn", b"RY", b">a", b">a b\n", b"U"]
    + [b"LOCUS       X 4 bp DNA\n", b"ORIGIN\n", b"        1 acgt\n", b"//\n", b"VERSION X.1\n"]
)
_noise = st.binary(min_size=1, max_size=4)
_blobs = st.lists(_pieces | _noise, max_size=40).map(b"".join)

# Problems of the whole file, where no record or line exists to point at.
_WHOLE_FILE = (
    "no FASTA records",
    "every record is empty",
    "-compressed file",
    "truncated or corrupt gzip",
)


def _check_located(err: FastaFormatError, path: Path) -> None:
    text = str(err)
    assert text.startswith(f"{path}")
    if err.line is None and err.record is None:
        assert any(part in text for part in _WHOLE_FILE), text
    if err.column is not None:
        assert err.line is not None and err.column >= 1
    if err.position is not None:
        assert err.record is not None and err.position >= 1


@FAST
@given(
    blob=_blobs,
    compress=st.sampled_from(["plain", "plain", "gzip", "bgzip"]),
    cut=st.integers(0, 40),
    empty_records=st.sampled_from(["error", "skip"]),
)
@example(blob=b">\xc2\xa0a\nACGT\n", compress="plain", cut=0, empty_records="error")  # NBSP id
@example(blob=b">>a\nACGT\n", compress="plain", cut=0, empty_records="error")  # doubled '>'
@example(blob=b">a\rACGT\rAC\r", compress="plain", cut=0, empty_records="skip")  # CR only
@example(blob=b">a\x1cb\nAC\n", compress="plain", cut=0, empty_records="error")  # \x1c in id
@example(blob=b">a\x00b\nAC\n", compress="plain", cut=0, empty_records="error")  # .fai said 'a'
@example(blob=b">\xff\xfeq\nAC\n>\xff\xfdq\nAC\n", compress="plain", cut=0, empty_records="error")
@example(blob=b">a\nAC\n", compress="gzip", cut=5, empty_records="error")  # cut gzip
@example(blob=b" LOCUS       X 4 bp DNA\n", compress="plain", cut=0, empty_records="error")
def test_arbitrary_bytes_fail_only_with_a_located_error(blob, compress, cut, empty_records):
    raw = _encode(blob, compress)
    if cut and compress != "plain":
        raw = raw[: max(0, len(raw) - cut)]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.fa"
        src.write_bytes(raw)
        out = Path(tmp) / "out"
        try:
            records = list(read_fasta(src, empty_records=empty_records))
        except FastaFormatError as err:
            _check_located(err, src)
            records = None
        try:
            normalise_fasta(src, out / "g.fa.gz", empty_records=empty_records)
        except FastaFormatError as err:
            _check_located(err, src)
            assert records is None, "read_fasta accepted what normalise_fasta rejected"
            assert list(out.iterdir()) == []  # nothing half-written
            return
        assert records is not None, "normalise_fasta accepted what read_fasta rejected"
        assert [rid for rid, _ in read_fasta(out / "g.fa.gz")] == [rid for rid, _ in records]


# --------------------------------------------------------------------------- reads of any size

_more_pieces = _pieces | st.sampled_from([b"\xef\xbb\xbf", b"  \n", b"ACGT\r\r\n", b">b\n"])
_longer_blobs = st.lists(_more_pieces | _noise, max_size=60).map(b"".join)


def _outcome(path: Path, empty_records: str) -> tuple:
    """The records, or the error with every field, of reading (and normalising) `path`."""
    try:
        records = list(read_fasta(path, empty_records=empty_records))
    except FastaFormatError as err:
        return ("error", str(err), err.record, err.line, err.column, err.position)
    dest = path.with_name("out") / f"{len(records)}.fa.gz"
    stats = normalise_fasta(path, dest, empty_records=empty_records, threads=2)
    index = dest.with_name(dest.name + ".fai").read_text()
    return ("ok", records, stats.to_dict(), gzip.decompress(dest.read_bytes()), index)


@FAST
@given(
    blob=_longer_blobs,
    compress=st.sampled_from(["plain", "gzip", "bgzip"]),
    empty_records=st.sampled_from(["error", "skip"]),
    read_size=st.sampled_from([1, 2, 3, 5, 8, 64]),
)
@example(  # CRLF cut between CR and LF
    blob=b">a\nAC\r\nGT\r\n>b\nNN\n", compress="plain", empty_records="error", read_size=5
)
@example(blob=b">a\nACXT\n>a\n", compress="plain", empty_records="error", read_size=2)
def test_reads_of_any_size_give_the_same_records_and_errors(
    blob, compress, empty_records, read_size
):
    """The reader takes the file a read at a time and checks whole runs of lines at once: where
    the reads end (inside a header, a line, a CRLF, a gzip member) must change nothing, not
    even which error is reported first or where. (A truncated gzip file is left out: how much
    of it decompresses before the error depends on the read size, for any reader.)"""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.fa"
        src.write_bytes(_encode(blob, compress))
        whole = _outcome(src, empty_records)
        with mock.patch.object(fasta, "_READ_CHUNK", read_size):
            assert _outcome(src, empty_records) == whole


# --------------------------------------------------------------------------- error positions

_bad_bytes = st.integers(0, 255).filter(
    lambda b: chr(b) not in IUPAC + IUPAC.lower() and b not in b" \t\n\r\x0b\x0c>"
)


@FAST
@given(
    records=_records,
    width=st.integers(1, 70),
    crlf=st.booleans(),
    which=st.integers(0, 4),
    where=st.integers(0, 10_000),
    bad=_bad_bytes,
    compress=st.sampled_from(["plain", "gzip"]),
)
@example(  # a byte that is invalid UTF-8 on its own still counts as one column
    records=[("a", "ACGT"), ("b", "ACGTACGT")],
    width=3,
    crlf=True,
    which=1,
    where=4,
    bad=0xFF,
    compress="plain",
)
def test_bad_base_is_reported_where_it_is(records, width, crlf, which, where, bad, compress):
    which %= len(records)
    rid, seq = records[which]
    pos = where % len(seq)  # 0-based index of the replaced base
    bad_seq = seq.encode()[:pos] + bytes([bad]) + seq.encode()[pos + 1 :]
    newline = b"\r\n" if crlf else b"\n"
    lines: list[bytes] = []
    expected_line = expected_col = None
    for i, (r, s) in enumerate(records):
        body = bad_seq if i == which else s.encode()
        lines.append(f">{r} x".encode())
        for start in range(0, len(body), width):
            if i == which and start <= pos < start + width:
                expected_line, expected_col = len(lines) + 1, pos - start + 1
            lines.append(body[start : start + width])
    raw = _encode(newline.join(lines) + newline, compress)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.fa"
        src.write_bytes(raw)
        with pytest.raises(FastaFormatError) as info:
            list(read_fasta(src))
    err = info.value
    assert (err.record, err.position, err.line, err.column) == (
        rid,
        pos + 1,
        expected_line,
        expected_col,
    )
    assert f"invalid character {chr(bad)!r}" in str(err)


def test_zlib_error_types_are_covered() -> None:
    """The reader maps these to FastaFormatError; a new Python must not rename them silently."""
    assert issubclass(gzip.BadGzipFile, OSError) and issubclass(zlib.error, Exception)
