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
from typing import BinaryIO, NamedTuple

import numpy as np
import pyfaidx
from isal import igzip, isal_zlib

from dnalm.bgzf import DEFAULT_COMPRESSOR, BgzfWriter, compression_level
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
_PART = 1 << 22  # most bases normalise_fasta works on at once (a piece is about one read)
_RNA_TO_DNA = str.maketrans("Uu", "Tt")
_MASK_AMBIGUITY = str.maketrans(
    AMBIGUITY_CODES + AMBIGUITY_CODES.lower(),
    "N" * len(AMBIGUITY_CODES) + "n" * len(AMBIGUITY_CODES),
)
_EMPTY_RECORDS = ("error", "skip")
_GZIP_ERRORS = (EOFError, zlib.error, isal_zlib.error, gzip.BadGzipFile)


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
        return igzip.open(path, "rb")  # ISA-L: inflates at ~2x zlib's speed, same API
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
    parts: list[bytes] = []
    for piece in _scan_records(path, empty_records, skipped):
        if piece.bases is None:
            yield piece.record, b"".join(parts).decode("ascii")
            parts = []
        else:
            parts.append(piece.bases)


class Piece(NamedTuple):
    """Checked bases of one record, as they are read; `bases` None: the record is complete.

    `other` holds the piece's bytes that are not ACGT, in order (None: not worked out). The
    scanner gets them from the one pass that checks the bases, and they are few in most
    genomes, so counting bases and finding runs of N need no further pass over the piece.
    """

    record: str
    bases: bytes | None
    other: bytes | None = None


def _scan_records(path: Path, empty_records: str, skipped: list[str]) -> Iterator[Piece]:
    """The checked sequence of every record as it is read: pieces of bases, then an end piece
    once the record is complete and valid; skipped records yield nothing."""
    if sequence_format(path) == "genbank":
        for record, seq in _read_genbank(path, empty_records, skipped):
            yield Piece(record, seq.encode("ascii"))
            yield Piece(record, None)
        return
    yield from _FastaScanner(path, empty_records, skipped).pieces()


_SEQUENCE_LINES = (IUPAC_NUCLEOTIDES + IUPAC_NUCLEOTIDES.lower() + "\n").encode()


def _reads(fh: BinaryIO) -> Iterator[bytes]:
    """The file a read at a time, less the UTF-8 byte-order mark that Windows editors put
    before the first '>', however the reads cut it."""
    head = b""
    while len(head) < len(_UTF8_BOM) and (chunk := fh.read(_READ_CHUNK)):
        head += chunk
    if head := head.removeprefix(_UTF8_BOM):
        yield head
    while chunk := fh.read(_READ_CHUNK):
        yield chunk


class _FastaScanner:
    """FASTA checked a read (1 MiB) at a time, with the errors of a line-by-line parser.

    A run of sequence lines is checked with one `bytes.translate` that deletes A, C, G and T:
    what is left (line breaks, N, ambiguity codes, anything invalid) is small and checked at
    once. Only a run holding something unusual (trailing blanks, CR not before LF, an invalid
    byte) is split into lines, where `check_sequence_lines` finds the bad byte's line and
    column. A bad base is raised when its record ends, and a damaged gzip stream before it, as
    a line-by-line reader that checks each record at its end would.
    """

    def __init__(self, path: Path, empty_records: str, skipped: list[str]) -> None:
        self.path = path
        self.empty_records = empty_records
        self.skipped = skipped
        self.seen: dict[str, int] = {}
        self.record: str | None = None
        self.header_line = 0
        self.line_no = 0  # complete lines read so far
        self.bases = 0  # bases of the current record so far
        self.pending: FastaFormatError | None = None  # the current record's first bad base
        self.yielded = 0

    def pieces(self) -> Iterator[Piece]:
        path = self.path
        with _open_binary(path) as fh:
            try:
                partial: list[bytes] = []  # the start of a line longer than one read
                for chunk in _reads(fh):
                    cut = chunk.rfind(b"\n") + 1
                    if not cut:
                        partial.append(chunk)
                        continue
                    lines = b"".join([*partial, chunk[:cut]]) if partial else chunk[:cut]
                    partial = [chunk[cut:]] if cut < len(chunk) else []
                    yield from self._lines(lines)
                if partial:  # a last line without a line break
                    yield from self._lines(b"".join(partial) + b"\n")
            except _GZIP_ERRORS as exc:
                line = self.line_no + 1 if self.line_no else None
                raise gzip_error(path, exc, self.record, line) from exc
        if self.record is None:
            raise no_records_error(path)
        yield from self._finish()
        if not self.yielded:
            raise FastaFormatError(path, "every record is empty; there is no sequence to use")

    def _lines(self, data: bytes) -> Iterator[Piece]:
        """Complete lines (`data` ends with a line break): headers and runs of sequence lines."""
        pos, end = 0, len(data)
        while pos < end:
            if data[pos] == 62:  # '>': a header line
                stop = data.index(b"\n", pos)
                self.line_no += 1
                yield from self._header(data[pos:stop])
                pos = stop + 1
                continue
            stop = pos  # the next line that starts with '>' (memchr, then a look back)
            while (stop := data.find(b">", stop + 1)) >= 0 and data[stop - 1] != 10:
                pass
            stop = end if stop < 0 else stop
            piece = self._sequence(data[pos:stop])
            if piece is not None:
                yield piece
            pos = stop

    def _header(self, raw: bytes) -> Iterator[Piece]:
        if self.record is not None:
            yield from self._finish()
        record = _record_id(self.path, raw, self.line_no)
        if record in self.seen:
            raise FastaFormatError(
                self.path,
                f"duplicate record id {record!r} (first used on line {self.seen[record]}, "
                f"again on line {self.line_no}); rename one so that ids are unique",
                record=record,
                line=self.line_no,
            )
        self.seen[record] = self.line_no
        self.record, self.header_line = record, self.line_no
        self.bases, self.pending = 0, None

    def _sequence(self, run: bytes) -> Piece | None:
        """The bases of a run of complete sequence lines, checked; None when it has none, or
        once the record has a bad base (only its first one is reported)."""
        first_line = self.line_no + 1
        if self.record is None or self.pending is not None:
            self.line_no += run.count(b"\n")
            if self.pending is None:  # before the first header only blank lines may come
                for n, line in enumerate(run.split(b"\n"), start=first_line):
                    if line.strip():
                        raise preamble_error(self.path, n)
            return None
        body = run.replace(b"\r\n", b"\n") if b"\r" in run else run
        other = body.translate(None, ACGT_BYTES)  # line breaks and the few non-ACGT bases
        self.line_no += other.count(b"\n")
        if not other.translate(None, _SEQUENCE_LINES):  # only bases and line breaks
            seq, other = body.replace(b"\n", b""), other.replace(b"\n", b"")
        else:
            lines = [line.rstrip() for line in run.split(b"\n")[:-1]]
            try:
                seq = check_sequence_lines(self.path, self.record, lines, first_line, self.bases)
            except FastaFormatError as err:
                self.pending = err
                return None
            other = seq.translate(None, ACGT_BYTES)
        if not seq:
            return None
        self.bases += len(seq)
        return Piece(self.record, seq, other)

    def _finish(self) -> Iterator[Piece]:
        if self.pending is not None:
            raise self.pending
        if self.bases:
            self.yielded += 1
            yield Piece(self.record, None)
        else:
            _empty_record(
                self.path, self.record, self.header_line, self.empty_records, self.skipped
            )


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


class _Runs:
    """The runs of non-ACGT bytes of one record, fed a part at a time; a part of only ACGT,
    the usual case, is recognised by `bytes.translate` at memory speed."""

    def __init__(self) -> None:
        self.length = 0
        self.inside = 0  # whether the bases so far end inside a run
        self.starts: list[np.ndarray] = []
        self.ends: list[np.ndarray] = []

    def feed(self, part: bytes, other: bytes | None = None) -> None:
        """`other`: the part's non-ACGT bytes, when the caller has them already."""
        lo = self.length
        self.length += len(part)
        if not part:
            return
        if not (part.translate(None, ACGT_BYTES) if other is None else other):
            if self.inside:
                self.ends.append(np.array([lo], dtype=np.int64))
                self.inside = 0
            return
        flags = np.frombuffer(part.translate(AMBIGUOUS_FLAG), dtype=np.int8)
        step = np.diff(flags, prepend=np.int8(self.inside))  # +1 where a run starts, -1 ends
        at = np.flatnonzero(step != 0)
        kind = step[at]
        self.starts.append(lo + at[kind > 0])
        self.ends.append(lo + at[kind < 0])
        self.inside = int(flags[-1])

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        if self.inside:
            self.ends.append(np.array([self.length], dtype=np.int64))
            self.inside = 0
        empty = np.zeros(0, dtype=np.int64)
        return (
            np.concatenate(self.starts).astype(np.int64) if self.starts else empty,
            np.concatenate(self.ends).astype(np.int64) if self.ends else empty,
        )


def ambiguous_runs(seq: bytes, *, chunk: int = _SCAN_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the maximal runs of non-ACGT bytes (N, IUPAC codes, either case),
    0-based half-open, sorted; scanned `chunk` bases at a time, which bounds the memory."""
    runs = _Runs()
    for lo in range(0, len(seq), chunk):
        runs.feed(seq[lo : lo + chunk])
    return runs.finish()


class _LineWrapper:
    """Cuts one record's bases, arriving in parts, into lines of `width` bases: whole blocks
    of lines at once through a numpy view, so no Python loop runs per line."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.carry = b""  # the bases of the line not yet complete

    def wrap(self, bases: bytes) -> list:
        """The complete lines that `bases` finish, as buffers to write in order."""
        width = self.width
        out: list = []
        start = 0
        if self.carry:
            need = width - len(self.carry)
            if len(bases) < need:
                self.carry += bases
                return out
            out.append(self.carry + bases[:need] + b"\n")
            self.carry = b""
            start = need
        rows = (len(bases) - start) // width
        if rows:
            lines = np.empty((rows, width + 1), dtype=np.uint8)
            lines[:, :width] = np.frombuffer(
                bases, dtype=np.uint8, count=rows * width, offset=start
            ).reshape(rows, width)
            lines[:, width] = ord("\n")
            out.append(lines)
        self.carry = bases[start + rows * width :]
        return out

    def end(self) -> bytes:
        rest, self.carry = self.carry, b""
        return rest + b"\n" if rest else b""


def _translation(soft_mask: str, rna_to_dna: bool, iupac: str) -> bytes | None:
    """One `bytes.translate` table for all of the case, RNA and IUPAC options, applied in that
    order; None when the bases are written as read."""
    steps = []
    if soft_mask == "upper":
        steps.append(
            bytes.maketrans(IUPAC_NUCLEOTIDES.lower().encode(), IUPAC_NUCLEOTIDES.encode())
        )
    if rna_to_dna:
        steps.append(bytes.maketrans(b"Uu", b"Tt"))
    if iupac == "mask":
        codes = AMBIGUITY_CODES + AMBIGUITY_CODES.lower()
        steps.append(bytes.maketrans(codes.encode(), b"N" * 10 + b"n" * 10))
    table = bytes(range(256))
    for step in steps:
        table = table.translate(step)
    return table if steps else None


class _RecordSink:
    """Writes records, a piece at a time, to a BGZF writer, and keeps what the side files
    need: the .fai lines, the runs of non-ACGT bases, and the base counts of the stats."""

    def __init__(self, out: BgzfWriter, width: int, table: bytes | None, bed: bool) -> None:
        self.out = out
        self.width = width
        self.table = table
        # bytes the table changes: when none is among a piece's non-ACGT bytes, and the table
        # leaves A, C, G, T alone (no upper-casing), the piece is written as it is
        changes = bytes(b for b in range(256) if table is not None and table[b] != b)
        self.unchanged = bytes(sorted(set(range(256)) - set(changes)))
        self.translate_all = bool(set(changes) & set(ACGT_BYTES))
        self.bed = bed
        self.other_counts = np.zeros(256, dtype=np.int64)  # of every byte that is not ACGT
        self.acgt = 0
        self.gc = 0
        self.fai: list[str] = []
        self.runs: list[tuple[str, np.ndarray, np.ndarray]] = []
        self.record: str | None = None
        self.offset = 0  # uncompressed offset of the record's first base
        self.length = 0
        self.lines = _LineWrapper(width)
        self.record_runs = _Runs()

    def add(self, piece: Piece) -> None:
        if piece.record != self.record:
            self.record = piece.record
            self.out.write(f">{piece.record}\n".encode())
            self.offset, self.length = self.out.tell(), 0
            self.lines, self.record_runs = _LineWrapper(self.width), _Runs()
        if len(piece.bases) <= _PART:
            self._part(piece.bases, piece.other)
            return
        for lo in range(0, len(piece.bases), _PART):  # a very long line: bounds the work arrays
            self._part(piece.bases[lo : lo + _PART], None)

    def _part(self, part: bytes, other: bytes | None) -> None:
        if other is None:
            other = part.translate(None, ACGT_BYTES)
        if self.table is not None and (self.translate_all or other.translate(None, self.unchanged)):
            part = part.translate(self.table)
            other = other.translate(self.table).translate(None, ACGT_BYTES)
        view = np.frombuffer(other, dtype=np.uint8)
        self.other_counts += np.bincount(view, minlength=256)
        self.acgt += len(part) - len(other)
        # bit 1 (value 2) is set in C, G, c and g and clear in A, T, a and t
        self.gc += np.count_nonzero(np.frombuffer(part, dtype=np.uint8) & 2)
        self.gc -= np.count_nonzero(view & 2)
        if self.bed:
            self.record_runs.feed(part, other)
        for buffer in self.lines.wrap(part):
            self.out.write(buffer)
        self.length += len(part)

    def end(self, record: str) -> int:
        """Finishes the record (its last line, .fai line and runs); returns its length."""
        self.out.write(self.lines.end())
        length, width = self.length, min(self.width, self.length)
        self.fai.append(f"{record}\t{length}\t{self.offset}\t{width}\t{width + 1}\n")
        if self.bed:
            starts, ends = self.record_runs.finish()
            if len(starts):
                self.runs.append((record, starts, ends))
        self.record = None
        return length

    def fractions(self, bases: int) -> tuple[float, float, float]:
        """GC among ACGT, N, and ambiguity codes other than N: the stats' fractions."""

        def both(c: str) -> int:
            return int(self.other_counts[ord(c)] + self.other_counts[ord(c.lower())])

        ambiguous = sum(both(c) for c in AMBIGUITY_CODES)
        return (
            self.gc / self.acgt if self.acgt else 0.0,
            both("N") / bases if bases else 0.0,
            ambiguous / bases if bases else 0.0,
        )


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
    threads: int = 1,
    compressor: str = DEFAULT_COMPRESSOR,
    compress_level: int | None = None,
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

    The records stream through: memory does not grow with the genome. Deflating is the
    largest cost, so BGZF blocks are compressed on `threads` threads, by ISA-L (`compressor`
    'isal', level 0-3, default 1: ~300 MB/s per core) or zlib ('zlib', level 1-9, default 6:
    ~7 MB/s per core on DNA, and the files are byte for byte those of htslib's bgzip built
    with zlib). The sequence, .fai and BED are the same whatever the compression. The .fai and
    .gzi are written from what was written, as samtools faidx would index it.
    """
    if soft_mask not in ("keep", "upper"):
        raise ValueError(f"soft_mask must be 'keep' or 'upper', got {soft_mask!r}")
    if iupac not in ("keep", "mask"):
        raise ValueError(f"iupac must be 'keep' or 'mask', got {iupac!r}")
    if empty_records not in _EMPTY_RECORDS:
        raise ValueError(f"empty_records must be 'error' or 'skip', got {empty_records!r}")
    if not isinstance(line_width, int) or line_width < 1:
        raise ValueError(f"line_width must be a positive integer, got {line_width!r}")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    compress_level = compression_level(compressor, compress_level)
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
    table = _translation(soft_mask, rna_to_dna, iupac)
    pieces = _scan_records(Path(src), empty_records, stats.skipped_records)
    # the data file last: its existence means "complete"
    order = [s for s in (".gzi", ".fai", AMBIGUOUS_BED_SUFFIX, "") if s in final]
    with atomic_paths(*(final[s] for s in order)) as paths:
        temps = dict(zip(order, paths, strict=True))
        with (
            open(temps[""], "wb") as raw,
            BgzfWriter(raw, compressor=compressor, level=compress_level, threads=threads) as out,
        ):
            sink = _RecordSink(out, line_width, table, ambiguous_bed)
            for piece in pieces:
                if piece.bases is None:  # the record is complete and valid
                    stats.lengths[piece.record] = sink.end(piece.record)
                    stats.records += 1
                else:
                    sink.add(piece)
        out.write_gzi(temps[".gzi"])
        temps[".fai"].write_text("".join(sink.fai), encoding="utf-8")
        if ambiguous_bed:
            bases = sum(stats.lengths.values())
            _write_ambiguous_bed(temps[AMBIGUOUS_BED_SUFFIX], sink.runs, stats.records, bases)
    if not ambiguous_bed:
        _remove_quietly(bed)

    stats.bases = int(sum(stats.lengths.values()))
    stats.gc_fraction, stats.n_fraction, stats.ambiguous_fraction = sink.fractions(stats.bases)
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
