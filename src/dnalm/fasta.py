"""FASTA reading, validation, normalisation and checksums.

Genomes arrive from many sources (plain, gzip, bgzip; CRLF; soft-masked; RNA), and a bad base
found deep inside training costs hours. So every genome is read once through a strict parser that
says exactly where a problem is, then written as one canonical form (BGZF + samtools .fai/.gzi)
that the rest of the pipeline reads by coordinate.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyfaidx
import pysam

__all__ = [
    "ChecksumError",
    "FastaFormatError",
    "FastaStats",
    "file_checksum",
    "normalise_fasta",
    "open_genome",
    "read_fasta",
    "record_lengths",
    "verify_checksum",
]

IUPAC_NUCLEOTIDES = "ACGTUNRYKMSWBDHV"
_ALLOWED_TEXT = f"IUPAC nucleotide codes {IUPAC_NUCLEOTIDES}, upper or lower case"

# One bool per byte value: a single fancy-index validates a whole record at C speed.
_VALID_BYTE = np.zeros(256, dtype=bool)
for _c in IUPAC_NUCLEOTIDES + IUPAC_NUCLEOTIDES.lower():
    _VALID_BYTE[ord(_c)] = True

_GZIP_MAGIC = b"\x1f\x8b"
_OTHER_MAGIC = {
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"PK\x03\x04": "zip",
}
_READ_CHUNK = 1 << 20
_RNA_TO_DNA = str.maketrans("Uu", "Tt")


class FastaFormatError(ValueError):
    """A FASTA problem located precisely enough to fix it without opening a debugger."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        message: str,
        *,
        record: str | None = None,
        position: int | None = None,
        line: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.message = message
        self.record = record
        self.position = position
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [str(self.path)]
        if self.record is not None:
            where.append(f"record {self.record!r}")
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.position is not None:
            where.append(f"position {self.position}")
        return f"{', '.join(where)}: {self.message}"

    def __reduce__(self):  # keep the attributes when pickled across processes
        return (
            _rebuild_format_error,
            (str(self.path), self.message, self.record, self.position, self.line),
        )


def _rebuild_format_error(path, message, record, position, line) -> FastaFormatError:
    return FastaFormatError(path, message, record=record, position=position, line=line)


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
                f"{name}-compressed file; only plain, gzip or bgzip FASTA is supported: "
                f"decompress it, or recompress with gzip or bgzip",
            )
    return open(path, "rb")


def _iter_lines(fh: BinaryIO) -> Iterator[bytes]:
    """Lines without their newline; reads big chunks because per-line I/O dominates otherwise."""
    rest = b""
    while True:
        chunk = fh.read(_READ_CHUNK)
        if not chunk:
            break
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def _check_record(path: Path, record: str, header_line: int, lines: list[bytes]) -> str:
    seq = b"".join(lines)
    if not seq:
        raise FastaFormatError(
            path,
            "record has a header but no sequence; add its sequence or remove the header",
            record=record,
            line=header_line,
        )
    arr = np.frombuffer(seq, dtype=np.uint8)
    bad = ~_VALID_BYTE[arr]
    if bad.any():
        index = int(np.argmax(bad))
        ends = np.cumsum([len(part) for part in lines])
        line_index = int(np.searchsorted(ends, index, side="right"))
        char = seq[index : index + 1].decode("latin-1")
        raise FastaFormatError(
            path,
            f"invalid character {char!r} (allowed: {_ALLOWED_TEXT}); "
            "fix the file or replace unknown bases with N",
            record=record,
            position=index + 1,
            line=header_line + 1 + line_index,
        )
    return seq.decode("ascii")


def read_fasta(path: str | os.PathLike[str]) -> Iterator[tuple[str, str]]:
    """Yield (record_id, sequence), rejecting anything that is not clean nucleotide FASTA.

    Hand-written rather than Bio.SeqIO because errors must carry the line and base position,
    and SeqIO silently accepts empty files, duplicate ids and arbitrary letters.
    """
    path = Path(path)
    seen: dict[str, int] = {}
    record: str | None = None
    header_line = 0
    lines: list[bytes] = []
    line_no = 0
    with _open_binary(path) as fh:
        try:
            for line_no, raw in enumerate(_iter_lines(fh), start=1):
                if raw[:1] == b">":
                    if record is not None:
                        yield record, _check_record(path, record, header_line, lines)
                    words = raw[1:].decode("utf-8", errors="replace").split()
                    if not words:
                        raise FastaFormatError(
                            path,
                            "'>' header line has no record id; put a name right after '>' "
                            "(e.g. '>chr1')",
                            line=line_no,
                        )
                    record = words[0]
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
                        raise FastaFormatError(
                            path,
                            "text before the first '>' header; a FASTA file must start with a "
                            "'>record_id' line (is this really FASTA?)",
                            line=line_no,
                        )
                    continue
                lines.append(line)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise FastaFormatError(
                path,
                f"truncated or corrupt gzip data ({exc}); download or compress the file again",
                record=record,
                line=line_no + 1 if line_no else None,
            ) from exc
    if record is None:
        raise FastaFormatError(
            path,
            "no FASTA records (the file is empty or has no '>' header); "
            "check the path and that the download completed",
        )
    yield record, _check_record(path, record, header_line, lines)


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


def normalise_fasta(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    soft_mask: str = "keep",
    rna_to_dna: bool = True,
    line_width: int = 60,
) -> FastaStats:
    """Rewrite ``src`` as BGZF FASTA + .fai + .gzi, all or nothing.

    All-or-nothing matters because Snakemake trusts any output that exists; a half-written
    genome would silently poison every downstream rule.
    """
    if soft_mask not in ("keep", "upper"):
        raise ValueError(f"soft_mask must be 'keep' or 'upper', got {soft_mask!r}")
    if not isinstance(line_width, int) or line_width < 1:
        raise ValueError(f"line_width must be a positive integer, got {line_width!r}")
    dest = Path(dest)
    if not dest.name.endswith(".fa.gz"):
        raise ValueError(f"{dest}: destination must end in '.fa.gz' (BGZF-compressed FASTA)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    final = {
        "": dest,
        ".fai": dest.with_name(dest.name + ".fai"),
        ".gzi": dest.with_name(dest.name + ".gzi"),
    }

    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp.fa.gz", dir=dest.parent)
    os.close(fd)
    temps = {suffix: tmp_name + suffix for suffix in final}
    renamed: list[Path] = []
    stats = FastaStats()
    counts = np.zeros(256, dtype=np.int64)
    try:
        with pysam.BGZFile(tmp_name, "wb") as out:
            for record_id, seq in read_fasta(src):
                if soft_mask == "upper":
                    seq = seq.upper()
                if rna_to_dna:
                    seq = seq.translate(_RNA_TO_DNA)
                data = _format_record(record_id, seq, line_width)
                out.write(data)
                counts += np.bincount(np.frombuffer(seq.encode("ascii"), np.uint8), minlength=256)
                stats.records += 1
                stats.lengths[record_id] = len(seq)
        pysam.faidx(tmp_name)  # writes tmp.fai and tmp.gzi exactly as samtools would
        for suffix in (".gzi", ".fai", ""):  # data file last: its existence means "complete"
            os.replace(temps[suffix], final[suffix])
            renamed.append(final[suffix])
    except BaseException:
        _remove_quietly(*temps.values(), *renamed)
        raise

    def both(c: str) -> int:
        return int(counts[ord(c)] + counts[ord(c.lower())])

    stats.bases = int(sum(stats.lengths.values()))
    acgt = sum(both(c) for c in "ACGT")
    stats.gc_fraction = (both("G") + both("C")) / acgt if acgt else 0.0
    stats.n_fraction = both("N") / stats.bases if stats.bases else 0.0
    return stats


# --------------------------------------------------------------------------- indexed access


def _index_paths(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + ".fai"), path.with_name(path.name + ".gzi")


def open_genome(path: str | os.PathLike[str]) -> pyfaidx.Fasta:
    """Open a normalised genome for random access, using (never rebuilding) its samtools index.

    Case is kept because lowercase carries the repeat mask.
    """
    path = Path(path)
    fai, gzi = _index_paths(path)
    with open(path, "rb") as fh:
        compressed = fh.read(2) == _GZIP_MAGIC
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


def _parse_expected(expected: str) -> tuple[str, str]:
    text = expected.strip()
    if ":" in text:
        algorithm, _, digest = text.partition(":")
        algorithm = algorithm.strip().lower()
        if algorithm not in hashlib.algorithms_available:
            raise ValueError(f"unknown checksum algorithm {algorithm!r} in {expected!r}")
    else:
        digest = text
        algorithm = _HEX_LENGTH_TO_ALGORITHM.get(len(digest), "")
        if not algorithm:
            raise ValueError(
                f"cannot tell the checksum algorithm of {expected!r}: give 'sha256:<hex>', "
                "'md5:<hex>', or a bare 64-character (sha256) or 32-character (md5) hex digest"
            )
    digest = digest.strip().lower()
    try:
        bytes.fromhex(digest)
    except ValueError as exc:
        raise ValueError(f"checksum {expected!r} is not a hex digest") from exc
    return algorithm, digest


def verify_checksum(path: str | os.PathLike[str], expected: str) -> None:
    """Raise ChecksumError unless the file matches the pinned checksum."""
    algorithm, digest = _parse_expected(expected)
    actual = file_checksum(path, algorithm)
    if actual != digest:
        raise ChecksumError(path, f"{algorithm}:{digest}", f"{algorithm}:{actual}")
