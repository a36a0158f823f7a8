"""FASTA/GenBank reading, validation, normalisation and checksums.

Genomes arrive from many sources (plain, gzip, bgzip; FASTA or GenBank; CRLF; soft-masked; RNA;
ambiguity codes), and a bad base found deep inside training costs hours. So every genome is read
once through a strict parser that says exactly where a problem is (file, record, line, column,
base), then written as one canonical form (BGZF FASTA + samtools .fai/.gzi) that the rest of the
pipeline reads by coordinate.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import logging
import os
import re
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyfaidx
import pysam

from dnalm.files import atomic_paths

__all__ = [
    "ACGT_BYTES",
    "AMBIGUOUS_FLAG",
    "ChecksumError",
    "FastaFormatError",
    "FastaStats",
    "ambiguous_bed_path",
    "ambiguous_runs",
    "file_checksum",
    "normalise_fasta",
    "open_genome",
    "read_fasta",
    "record_lengths",
    "sequence_format",
    "verify_checksum",
]

log = logging.getLogger(__name__)

IUPAC_NUCLEOTIDES = "ACGTUNRYKMSWBDHV"
AMBIGUITY_CODES = "RYKMSWBDHV"  # IUPAC codes other than A, C, G, T, U and N
_ALLOWED_TEXT = f"IUPAC nucleotide codes {IUPAC_NUCLEOTIDES}, upper or lower case"

# One bool per byte value: a single fancy-index validates a whole record at C speed.
_VALID_BYTE = np.zeros(256, dtype=bool)
for _c in IUPAC_NUCLEOTIDES + IUPAC_NUCLEOTIDES.lower():
    _VALID_BYTE[ord(_c)] = True

# The only unambiguous bases: every other byte (N, IUPAC codes, U kept as RNA) counts against a
# window's max_n_fraction, and its runs are what normalise_fasta lists in the ambiguous BED.
ACGT_BYTES = b"ACGTacgt"
AMBIGUOUS_FLAG = bytes(0 if b in ACGT_BYTES else 1 for b in range(256))  # translate: 1 = non-ACGT
_SCAN_CHUNK = 1 << 24  # bases per pass when scanning a record: bounds the scan's own memory
AMBIGUOUS_BED_SUFFIX = ".ambiguous.bed.gz"
AMBIGUOUS_BED_HEADER = "#non-ACGT runs, 0-based half-open: chrom start end; records={} bases={}"

_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_MAGIC = {
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"PK\x03\x04": "zip",
}
_GENBANK_SUFFIXES = (".gb", ".gbk", ".genbank", ".gbff")
_READ_CHUNK = 1 << 20
_RNA_TO_DNA = str.maketrans("Uu", "Tt")
_MASK_AMBIGUITY = str.maketrans(
    AMBIGUITY_CODES + AMBIGUITY_CODES.lower(),
    "N" * len(AMBIGUITY_CODES) + "n" * len(AMBIGUITY_CODES),
)
_EMPTY_RECORDS = ("error", "skip")
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


class FastaFormatError(ValueError):
    """A sequence-file problem located precisely enough to fix it without opening a debugger.

    `line` and `column` are 1-based positions in the file (after decompression); `position` is
    the 1-based base position within the record's sequence.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        message: str,
        *,
        record: str | None = None,
        position: int | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.message = message
        self.record = record
        self.position = position
        self.line = line
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [str(self.path)]
        if self.record is not None:
            where.append(f"record {self.record!r}")
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column}")
        if self.position is not None:
            where.append(f"position {self.position}")
        return f"{', '.join(where)}: {self.message}"

    def __reduce__(self):  # keep the attributes when pickled across processes
        return (
            _rebuild_format_error,
            (str(self.path), self.message, self.record, self.position, self.line, self.column),
        )


def _rebuild_format_error(path, message, record, position, line, column=None) -> FastaFormatError:
    return FastaFormatError(
        path, message, record=record, position=position, line=line, column=column
    )


class ChecksumError(ValueError):
    """A downloaded or cached file is not the one the config pinned."""

    def __init__(self, path: str | os.PathLike[str], expected: str, actual: str) -> None:
        self.path = Path(path)
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{self.path}: checksum mismatch (expected {expected}, got {actual}); "
            "the file is corrupt, incomplete or a different version: delete it and fetch it again, "
            "or update the pinned checksum if the change is intended"
        )

    def __reduce__(self):
        return (ChecksumError, (str(self.path), self.expected, self.actual))


@dataclass
class FastaStats:
    """Summary written next to every normalised genome, so odd inputs show up in reports."""

    records: int = 0
    bases: int = 0
    gc_fraction: float = 0.0
    n_fraction: float = 0.0
    lengths: dict[str, int] = field(default_factory=dict)
    ambiguous_fraction: float = 0.0  # IUPAC codes other than ACGTN (after `iupac` masking)
    skipped_records: list[str] = field(default_factory=list)  # empty records left out

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- reading


def _open_binary(path: Path) -> BinaryIO:
    """Open by content, not by name: '.fa' files are often gzipped and '.gz' files sometimes not."""
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic.startswith(_GZIP_MAGIC):  # gzip and bgzip alike (bgzip is multi-member gzip)
        return gzip.open(path, "rb")
    for prefix, name in _OTHER_MAGIC.items():
        if magic.startswith(prefix):
            raise FastaFormatError(
                path,
                f"{name}-compressed file; only plain, gzip or bgzip FASTA/GenBank is supported: "
                f"decompress it, or recompress with gzip or bgzip",
            )
    return open(path, "rb")


def sequence_format(path: str | os.PathLike[str]) -> str:
    """'genbank' or 'fasta', by content first ('LOCUS' / '>'), else by the file name.

    Content wins because downloads are often misnamed; the name only decides for files whose
    start is neither (which then fail in that format's parser with a located message).
    """
    path = Path(path)
    first = b""
    with contextlib.suppress(OSError, *_GZIP_ERRORS), _open_binary(path) as fh:
        head = fh.read(1 << 16)
        if head.startswith(_UTF8_BOM):
            head = head[len(_UTF8_BOM) :]
        first = head.lstrip(b"\r\n")  # blank lines only: " LOCUS" is not a GenBank start
    if first.startswith(b">"):
        return "fasta"
    if first.startswith(b"LOCUS"):
        return "genbank"
    name = path.name.lower().removesuffix(".gz")
    return "genbank" if name.endswith(_GENBANK_SUFFIXES) else "fasta"


def preamble_error(path: str | Path, line_no: int) -> FastaFormatError:
    """Text before the first header: shared by every FASTA reader here."""
    return FastaFormatError(
        path,
        "text before the first '>' header; a FASTA file must start with a "
        "'>record_id' line (is this really FASTA?)",
        line=line_no,
    )


def gzip_error(
    path: str | Path, exc: Exception, record: str | None, line: int | None
) -> FastaFormatError:
    """A truncated or corrupt gzip stream, located at the record and line it stopped in."""
    return FastaFormatError(
        path,
        f"truncated or corrupt gzip data ({exc}); download or compress the file again",
        record=record,
        line=line,
    )


def no_records_error(path: str | Path) -> FastaFormatError:
    return FastaFormatError(
        path,
        "no FASTA records (the file is empty or has no '>' header); "
        "check the path and that the download completed",
    )


def _iter_lines(fh: BinaryIO) -> Iterator[bytes]:
    """Lines without their newline; reads big chunks because per-line I/O dominates otherwise."""
    rest = b""
    first = True
    while True:
        chunk = fh.read(_READ_CHUNK)
        if not chunk:
            break
        if first:  # Windows editors put a byte-order mark before the first '>'
            chunk = chunk.removeprefix(_UTF8_BOM)
            first = False
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def _invalid_character(char: str) -> str:
    hint = "fix the file or replace unknown bases with N"
    if char == "\r":
        hint = (
            "a carriage return inside a line means old Mac (CR-only) line endings: "
            "convert them to LF (e.g. tr '\\r' '\\n')"
        )
    return f"invalid character {char!r} (allowed: {_ALLOWED_TEXT}); {hint}"


def _first_invalid(seq: bytes) -> int | None:
    """0-based index of the first byte that is not an IUPAC nucleotide code, if any."""
    bad = ~_VALID_BYTE[np.frombuffer(seq, dtype=np.uint8)]
    return int(np.argmax(bad)) if bad.any() else None


def check_sequence_lines(
    path: Path, record: str, lines: list[bytes], first_line: int, position: int = 0
) -> bytes:
    """Join and validate a run of sequence lines; `position` = the record's bases before them.

    The one check of the readers here and of `dnalm.predict`'s chunked reader, so an invalid
    base is reported alike: record, 1-based position, line and column.
    """
    seq = b"".join(lines)
    index = _first_invalid(seq)
    if index is not None:
        ends = np.cumsum([len(part) for part in lines])
        line_index = int(np.searchsorted(ends, index, side="right"))
        line_start = int(ends[line_index - 1]) if line_index else 0
        raise FastaFormatError(
            path,
            _invalid_character(seq[index : index + 1].decode("latin-1")),
            record=record,
            position=position + index + 1,
            line=first_line + line_index,
            column=index - line_start + 1,
        )
    return seq


def _check_record(path: Path, record: str, header_line: int, lines: list[bytes]) -> str:
    return check_sequence_lines(path, record, lines, header_line + 1).decode("ascii")


def _record_id(path: Path, raw: bytes, line_no: int) -> str:
    """The first word of a '>' line, checked to be something samtools and file names survive."""
    if b"\r" in raw.rstrip():
        raise FastaFormatError(
            path,
            "carriage return inside a header line: the file seems to use old Mac (CR-only) "
            "line endings; convert them to LF (e.g. tr '\\r' '\\n')",
            line=line_no,
        )
    words = raw[1:].split()  # ASCII whitespace only, as samtools splits names
    if not words:
        raise FastaFormatError(
            path,
            "'>' header line has no record id; put a name right after '>' (e.g. '>chr1')",
            line=line_no,
        )
    word = words[0]
    column = raw.index(word, 1) + 1
    try:
        record = word.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FastaFormatError(
            path,
            f"record id {word!r} is not UTF-8 text; rename the record (ASCII is safest)",
            line=line_no,
            column=column + exc.start,
        ) from None
    for index, char in enumerate(record):
        if not char.isprintable():  # control and non-ASCII blank characters
            raise FastaFormatError(
                path,
                f"record id contains the unprintable character {char!r}; "
                "use printable characters only",
                line=line_no,
                column=column + len(record[:index].encode("utf-8")),
            )
    if record.startswith(">"):
        raise FastaFormatError(
            path,
            "record id starts with '>' (a doubled '>'?); remove it",
            line=line_no,
            column=column,
        )
    return record


def _empty_record(
    path: Path, record: str, line: int | None, empty_records: str, skipped: list[str]
) -> None:
    """Raise for an empty record, or log that it is skipped when the caller asked for that."""
    if empty_records == "skip":
        log.warning("%s, record %r, line %s: empty record skipped", path, record, line)
        skipped.append(record)
        return
    raise FastaFormatError(
        path,
        "record has a header but no sequence; add its sequence or remove the header "
        "(or leave empty records out: acquire.empty_records: skip)",
        record=record,
        line=line,
    )


def read_fasta(
    path: str | os.PathLike[str], *, empty_records: str = "error"
) -> Iterator[tuple[str, str]]:
    """Yield (record_id, sequence) of a FASTA or GenBank file, rejecting anything unclean.

    FASTA is parsed by hand rather than with Bio.SeqIO because errors must carry the line,
    column and base position, and SeqIO silently accepts empty files, duplicate ids and
    arbitrary letters. GenBank (detected by content or name) goes through Bio.SeqIO and is then
    held to the same checks. An empty record (a header without sequence) is an error unless
    `empty_records='skip'`, which logs a warning and leaves it out.
    """
    if empty_records not in _EMPTY_RECORDS:
        raise ValueError(f"empty_records must be 'error' or 'skip', got {empty_records!r}")
    return _read_records(Path(path), empty_records, [])


def _read_records(path: Path, empty_records: str, skipped: list[str]) -> Iterator[tuple[str, str]]:
    """read_fasta's body; appends the ids of skipped empty records to `skipped`."""
    if sequence_format(path) == "genbank":
        yield from _read_genbank(path, empty_records, skipped)
        return
    seen: dict[str, int] = {}
    record: str | None = None
    header_line = 0
    lines: list[bytes] = []
    line_no = 0
    yielded = 0

    def finish() -> Iterator[tuple[str, str]]:
        nonlocal yielded
        if any(lines):
            yielded += 1
            yield record, _check_record(path, record, header_line, lines)
        else:
            _empty_record(path, record, header_line, empty_records, skipped)

    with _open_binary(path) as fh:
        try:
            for line_no, raw in enumerate(_iter_lines(fh), start=1):
                if raw[:1] == b">":
                    if record is not None:
                        yield from finish()
                    record = _record_id(path, raw, line_no)
                    if record in seen:
                        raise FastaFormatError(
                            path,
                            f"duplicate record id {record!r} (first used on line {seen[record]}, "
                            f"again on line {line_no}); rename one so that ids are unique",
                            record=record,
                            line=line_no,
                        )
                    seen[record] = line_no
                    header_line = line_no
                    lines = []
                    continue
                line = raw.rstrip()  # CRLF and trailing blanks
                if record is None:
                    if line.strip():
                        raise preamble_error(path, line_no)
                    continue
                lines.append(line)
        except _GZIP_ERRORS as exc:
            raise gzip_error(path, exc, record, line_no + 1 if line_no else None) from exc
    if record is None:
        raise no_records_error(path)
    yield from finish()
    if not yielded:
        raise FastaFormatError(path, "every record is empty; there is no sequence to use")


# --------------------------------------------------------------------------- GenBank


def _open_text(path: Path) -> io.TextIOWrapper:
    """GenBank as text; universal newlines so that CRLF and CR files read like LF ones."""
    return io.TextIOWrapper(_open_binary(path), encoding="utf-8", errors="replace", newline=None)


def _genbank_locus_lines(path: Path) -> list[int]:
    """Line numbers of the LOCUS lines, so that errors can point at a record's first line."""
    with _open_text(path) as fh:
        return [n for n, line in enumerate(fh, start=1) if line.startswith("LOCUS")]


def _genbank_base_location(
    path: Path, record_index: int, position: int
) -> tuple[int | None, int | None]:
    """(line, column) of base `position` (1-based) of the `record_index`-th GenBank record.

    Only called on the error path, so a second pass over the file costs nothing in normal use.
    """
    locus = -1
    in_origin = False
    count = 0
    with _open_text(path) as fh:
        for n, line in enumerate(fh, start=1):
            if line.startswith("LOCUS"):
                locus += 1
                in_origin = False
                continue
            if locus != record_index:
                continue
            if line.startswith("ORIGIN"):
                in_origin = True
                continue
            if not in_origin or line.startswith("//"):
                in_origin = False
                continue
            text = line.rstrip("\r\n")
            stripped = text.lstrip()
            number = len(stripped) - len(stripped.lstrip("0123456789"))
            offset = len(text) - len(stripped) + number  # past the leading base number
            for column, char in enumerate(text[offset:], start=offset + 1):
                if char.isspace():
                    continue
                count += 1
                if count == position:
                    return n, column
    return None, None  # the layout is too odd to map back; the base position still says where


def _read_genbank(path: Path, empty_records: str, skipped: list[str]) -> Iterator[tuple[str, str]]:
    """GenBank records as (id, upper-case sequence): GenBank writes every base in lower case,
    which is not a repeat mask, so keeping it would mark whole genomes as soft-masked."""
    from Bio import BiopythonParserWarning, SeqIO
    from Bio.Seq import UndefinedSequenceError

    try:
        locus_lines = _genbank_locus_lines(path)
    except _GZIP_ERRORS as exc:
        raise FastaFormatError(
            path, f"truncated or corrupt gzip data ({exc}); download or compress the file again"
        ) from exc
    seen: dict[str, int] = {}
    yielded = 0
    index = -1
    with _open_text(path) as handle:
        records = SeqIO.parse(handle, "genbank")
        while True:
            line = locus_lines[index + 1] if index + 1 < len(locus_lines) else None
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", BiopythonParserWarning)
                try:
                    rec = next(records)
                except StopIteration:
                    break
                except _GZIP_ERRORS as exc:
                    raise FastaFormatError(
                        path,
                        f"truncated or corrupt gzip data ({exc}); download or compress the "
                        "file again",
                        line=line,
                    ) from exc
                except Exception as exc:  # Biopython raises assorted types on malformed text
                    raise FastaFormatError(
                        path, f"malformed GenBank record ({type(exc).__name__}: {exc})", line=line
                    ) from exc
            index += 1
            record = rec.id if rec.id and rec.id != "<unknown id>" else rec.name
            for w in caught:
                text = str(w.message)
                if "Expected sequence length" in text or "Premature end of file" in text:
                    raise FastaFormatError(
                        path,
                        f"GenBank record is truncated or inconsistent ({text}); "
                        "download the file again",
                        record=record,
                        line=line,
                    )
            if not record or not record.isprintable() or " " in record or record[0] == ">":
                raise FastaFormatError(
                    path, f"GenBank record has no usable id ({record!r})", line=line
                )
            if record in seen:
                raise FastaFormatError(
                    path,
                    f"duplicate record id {record!r} (first used on line {seen[record]}, "
                    f"again on line {line}); rename one so that ids are unique",
                    record=record,
                    line=line,
                )
            seen[record] = line
            try:
                seq = str(rec.seq)
            except UndefinedSequenceError:
                seq = ""  # CONTIG / WGS master records: only a pointer to other records
            if not seq:
                _empty_record(path, record, line, empty_records, skipped)
                continue
            raw = seq.encode("utf-8")
            bad = _first_invalid(raw)
            if bad is not None:
                position = len(raw[:bad].decode("utf-8", errors="replace")) + 1
                bad_line, column = _genbank_base_location(path, index, position)
                raise FastaFormatError(
                    path,
                    _invalid_character(seq[position - 1]),
                    record=record,
                    position=position,
                    line=bad_line,
                    column=column,
                )
            yielded += 1
            yield record, seq.upper()
    if index < 0:
        raise FastaFormatError(
            path,
            "no GenBank records (no 'LOCUS' line); check the path and that the download completed",
        )
    if not yielded:
        raise FastaFormatError(path, "every record is empty; there is no sequence to use")


# --------------------------------------------------------------------------- writing


def _format_record(record_id: str, sequence: str, line_width: int, description: str = "") -> bytes:
    """One FASTA record with fixed-width lines (samtools faidx requires equal line lengths)."""
    if line_width < 1:
        raise ValueError(f"line_width must be a positive integer, got {line_width!r}")
    if not record_id or any(c.isspace() for c in record_id) or record_id.startswith(">"):
        raise ValueError(f"invalid record id {record_id!r}: must be non-empty without whitespace")
    header = f">{record_id} {description}" if description else f">{record_id}"
    body = "\n".join(sequence[i : i + line_width] for i in range(0, len(sequence), line_width))
    return f"{header}\n{body}\n".encode()


def _remove_quietly(*paths: str | os.PathLike[str]) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


def ambiguous_bed_path(fasta: str | os.PathLike[str]) -> Path | None:
    """Where normalise_fasta puts the runs of non-ACGT bases of `{genome}.fa.gz`:
    `{genome}.ambiguous.bed.gz` beside it; None for a FASTA not named like a normalised one."""
    fasta = Path(fasta)
    if not fasta.name.endswith(".fa.gz"):
        return None
    return fasta.with_name(fasta.name.removesuffix(".fa.gz") + AMBIGUOUS_BED_SUFFIX)


def ambiguous_runs(seq: bytes, *, chunk: int = _SCAN_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the maximal runs of non-ACGT bytes (N, IUPAC codes, either case),
    0-based half-open, sorted.

    Scanned `chunk` bases at a time so that a chromosome costs a few chunks of memory; a chunk
    of only ACGT, the usual case, is recognised by `bytes.translate` at memory speed.
    """
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    inside = 0  # whether the bases before this chunk end inside a run
    for lo in range(0, len(seq), chunk):
        part = seq[lo : lo + chunk]
        if not part.translate(None, ACGT_BYTES):
            if inside:
                ends.append(np.array([lo], dtype=np.int64))
                inside = 0
            continue
        flags = np.frombuffer(part.translate(AMBIGUOUS_FLAG), dtype=np.int8)
        step = np.diff(flags, prepend=np.int8(inside))  # +1 where a run starts, -1 where it ends
        at = np.flatnonzero(step != 0)
        kind = step[at]
        starts.append(lo + at[kind > 0])
        ends.append(lo + at[kind < 0])
        inside = int(flags[-1])
    if inside:
        ends.append(np.array([len(seq)], dtype=np.int64))
    empty = np.zeros(0, dtype=np.int64)
    return (
        np.concatenate(starts).astype(np.int64) if starts else empty,
        np.concatenate(ends).astype(np.int64) if ends else empty,
    )


def _base_counts(seq: bytes, *, chunk: int = _SCAN_CHUNK) -> np.ndarray:
    """Count of every byte value; by chunks because bincount widens its input to 8 bytes."""
    counts = np.zeros(256, dtype=np.int64)
    for lo in range(0, len(seq), chunk):
        counts += np.bincount(np.frombuffer(seq[lo : lo + chunk], np.uint8), minlength=256)
    return counts


def _write_ambiguous_bed(
    path: str, runs: list[tuple[str, np.ndarray, np.ndarray]], records: int, bases: int
) -> None:
    """The runs as gzip BED, with a header that lets a reader tell a stale file; gzip's
    timestamp is left out so that the same genome gives the same bytes."""
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out,
    ):
        out.write((AMBIGUOUS_BED_HEADER.format(records, bases) + "\n").encode())
        for record_id, starts, ends in runs:
            for lo in range(0, len(starts), 100_000):  # bounded text per write
                hi = lo + 100_000
                pairs = zip(starts[lo:hi].tolist(), ends[lo:hi].tolist(), strict=True)
                out.write("".join(f"{record_id}\t{s}\t{e}\n" for s, e in pairs).encode())


def normalise_fasta(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    soft_mask: str = "keep",
    rna_to_dna: bool = True,
    line_width: int = 60,
    iupac: str = "keep",
    empty_records: str = "error",
    ambiguous_bed: bool = True,
) -> FastaStats:
    """Rewrite ``src`` (FASTA or GenBank) as BGZF FASTA + .fai + .gzi, all or nothing.

    All-or-nothing matters because Snakemake trusts any output that exists; a half-written
    genome would silently poison every downstream rule. `soft_mask`: keep lowercase (repeats)
    or 'upper'; `rna_to_dna`: U -> T; `iupac`: keep ambiguity codes (R, Y, ...) or 'mask'
    them to N (case kept), so that windowing's N threshold sees them; `empty_records`: 'error'
    or 'skip' (logged, listed in the stats).

    `ambiguous_bed` also writes the runs of non-ACGT bases as `{genome}.ambiguous.bed.gz`
    (ambiguous_bed_path): this pass reads every base anyway, and with that small table the
    windows step needs only record lengths and runs, never the sequence. Without it, a BED
    left from an earlier normalisation is removed, so that no stale one outlives its FASTA.
    """
    if soft_mask not in ("keep", "upper"):
        raise ValueError(f"soft_mask must be 'keep' or 'upper', got {soft_mask!r}")
    if iupac not in ("keep", "mask"):
        raise ValueError(f"iupac must be 'keep' or 'mask', got {iupac!r}")
    if empty_records not in _EMPTY_RECORDS:
        raise ValueError(f"empty_records must be 'error' or 'skip', got {empty_records!r}")
    if not isinstance(line_width, int) or line_width < 1:
        raise ValueError(f"line_width must be a positive integer, got {line_width!r}")
    dest = Path(dest)
    if not dest.name.endswith(".fa.gz"):
        raise ValueError(f"{dest}: destination must end in '.fa.gz' (BGZF-compressed FASTA)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    bed = ambiguous_bed_path(dest)
    final = {
        "": dest,
        ".fai": dest.with_name(dest.name + ".fai"),
        ".gzi": dest.with_name(dest.name + ".gzi"),
        AMBIGUOUS_BED_SUFFIX: bed,
    }

    if not ambiguous_bed:
        del final[AMBIGUOUS_BED_SUFFIX]
    stats = FastaStats()
    counts = np.zeros(256, dtype=np.int64)
    runs: list[tuple[str, np.ndarray, np.ndarray]] = []
    # the data file last: its existence means "complete"
    order = [s for s in (".gzi", ".fai", AMBIGUOUS_BED_SUFFIX, "") if s in final]
    with atomic_paths(*(final[s] for s in order)) as paths:
        temps = dict(zip(order, paths, strict=True))
        with pysam.BGZFile(str(temps[""]), "wb") as out:
            for record_id, seq in _read_records(Path(src), empty_records, stats.skipped_records):
                if soft_mask == "upper":
                    seq = seq.upper()
                if rna_to_dna:
                    seq = seq.translate(_RNA_TO_DNA)
                if iupac == "mask":
                    seq = seq.translate(_MASK_AMBIGUITY)
                out.write(_format_record(record_id, seq, line_width))
                raw = seq.encode("ascii")
                counts += _base_counts(raw)
                if ambiguous_bed:
                    starts, ends = ambiguous_runs(raw)
                    if len(starts):
                        runs.append((record_id, starts, ends))
                stats.records += 1
                stats.lengths[record_id] = len(seq)
        indexes = {suffix: f"{temps['']}{suffix}" for suffix in (".fai", ".gzi")}
        try:
            pysam.faidx(str(temps[""]))  # writes <tmp>.fai and <tmp>.gzi exactly as samtools
            for suffix, written in indexes.items():
                os.replace(written, temps[suffix])
        finally:
            _remove_quietly(*indexes.values())
        if ambiguous_bed:
            bases = sum(stats.lengths.values())
            _write_ambiguous_bed(temps[AMBIGUOUS_BED_SUFFIX], runs, stats.records, bases)
    if not ambiguous_bed:
        _remove_quietly(bed)

    def both(c: str) -> int:
        return int(counts[ord(c)] + counts[ord(c.lower())])

    stats.bases = int(sum(stats.lengths.values()))
    acgt = sum(both(c) for c in "ACGT")
    stats.gc_fraction = (both("G") + both("C")) / acgt if acgt else 0.0
    stats.n_fraction = both("N") / stats.bases if stats.bases else 0.0
    ambiguous = sum(both(c) for c in AMBIGUITY_CODES)
    stats.ambiguous_fraction = ambiguous / stats.bases if stats.bases else 0.0
    return stats


# --------------------------------------------------------------------------- indexed access


def _index_paths(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + ".fai"), path.with_name(path.name + ".gzi")


def is_gzip(path: str | os.PathLike[str]) -> bool:
    """Gzip or bgzip, by the magic bytes (a name's suffix can lie)."""
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def open_genome(path: str | os.PathLike[str]) -> pyfaidx.Fasta:
    """Open a normalised genome for random access, using (never rebuilding) its samtools index.

    Case is kept because lowercase carries the repeat mask.
    """
    path = Path(path)
    fai, gzi = _index_paths(path)
    compressed = is_gzip(path)
    missing = [p for p in ([fai, gzi] if compressed else [fai]) if not p.exists()]
    if missing:
        names = ", ".join(str(p) for p in missing)
        raise FileNotFoundError(f"{path}: index missing ({names}); create it with normalise_fasta")
    return pyfaidx.Fasta(
        str(path),
        sequence_always_upper=False,
        build_index=False,
        rebuild=False,
        gzi_indexname=str(gzi) if compressed else None,
    )


def record_lengths(path: str | os.PathLike[str]) -> dict[str, int]:
    """Record lengths in file order, from the .fai alone (no need to decompress the genome)."""
    path = Path(path)
    fai, _ = _index_paths(path)
    if not fai.exists():
        raise FileNotFoundError(f"{path}: index {fai} missing; create it with normalise_fasta")
    lengths: dict[str, int] = {}
    with open(fai, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            try:
                lengths[fields[0]] = int(fields[1])
            except (IndexError, ValueError) as exc:
                raise ValueError(f"{fai}, line {n}: not a samtools .fai line: {line!r}") from exc
    return lengths


# --------------------------------------------------------------------------- checksums

_HEX_LENGTH_TO_ALGORITHM = {64: "sha256", 32: "md5"}


def file_checksum(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file, streamed so that multi-GB genomes don't need to fit in memory."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


def parse_checksum(expected: str) -> tuple[str, str]:
    """`sha256:<hex>`, `md5:<hex>` or bare hex (the algorithm told by its length) -> (alg, hex)."""
    text = str(expected).strip()
    if ":" in text:
        algorithm, _, digest = text.partition(":")
        algorithm = algorithm.strip().lower()
        if algorithm not in ("sha256", "md5", "sha1", "sha512"):
            raise ValueError(
                f"unknown checksum algorithm {algorithm!r} in {expected!r}; use sha256 or md5"
            )
    else:
        digest = text
        algorithm = _HEX_LENGTH_TO_ALGORITHM.get(len(digest), "")
        if not algorithm:
            raise ValueError(
                f"cannot tell the checksum algorithm of {expected!r}: give 'sha256:<hex>', "
                "'md5:<hex>', or a bare 64-character (sha256) or 32-character (md5) hex digest"
            )
    digest = digest.strip().lower()
    if not digest or not re.fullmatch(r"[0-9a-f]+", digest):
        raise ValueError(f"checksum {expected!r} is not a hex digest")
    if len(digest) != hashlib.new(algorithm).digest_size * 2:
        raise ValueError(f"checksum {expected!r}: wrong length for {algorithm}")
    return algorithm, digest


def verify_checksum(path: str | os.PathLike[str], expected: str) -> None:
    """Raise ChecksumError unless the file matches the pinned checksum."""
    algorithm, digest = parse_checksum(expected)
    actual = file_checksum(path, algorithm)
    if actual != digest:
        raise ChecksumError(path, f"{algorithm}:{digest}", f"{algorithm}:{actual}")
