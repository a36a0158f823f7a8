"""Windows (coordinates) -> token shards, streamed block by block.

A human chromosome is up to 250 Mbp; holding it, and its tokens, whole is what made tokenizing
a genome need many GB. Instead the window table is read in row batches, each run of windows on
one record is cut into blocks (ascending starts spanning at most `block_size` bases), each
block's bases are read by region (as the file's bytes, `_RegionReader`), encoded, and appended
to the shard. Memory is about one block plus one row batch, whatever the size of the genome or
of a record.

For `char` and k-mer tokenizers a token depends only on the bases it reads, not on where the
window starts, so the windows of a block are views into token streams: each span of bases that
windows cover (per strand and, for k-mers read every `stride` bases, per phase) is encoded and
stored once, and overlapping windows share its ids (`_spans`). With windows of 1,024 bases at a
stride of 512 the shard holds each base once instead of twice. bpe windows, whose tokens depend
on where they start, are encoded and stored one by one through `encode_many`. Either way the
shard's index gives each window's (offset, length), so readers see no difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dnalm.bgzf import BgzfReader
from dnalm.fasta import is_gzip
from dnalm.shards import ShardWriter, vocabulary_fingerprint
from dnalm.tokenization import SequenceEncoder, reverse_complement
from dnalm.windows import DEFAULT_BLOCK_SIZE, fetch_region, open_indexed

BATCH_ROWS = 1 << 16
_COLUMNS_READ = ("genome", "chrom", "start", "end", "strand", "label_id", "sequence")
_OPEN_GENOMES = 8
# Skipping more than a BGZF block (64 KiB) between two windows saves decoding it.
_MAX_GAP = 1 << 16

WindowTable = pd.DataFrame | str | Path | Iterable[pd.DataFrame]


@dataclass(frozen=True)
class WindowBlock:
    """Windows whose bases all lie in `bases`, which starts at record position `origin`.

    A block read from a FASTA file keeps the file's bytes, in the pieces they were read in
    (`chunks`, with their line ends `line_ends`): the `char` encoder translates each piece and
    drops the line ends in one pass, and `bases` joins them and strips the line ends only when
    a window's bases are needed.
    """

    chunks: tuple[bytes, ...]
    origin: int
    starts: np.ndarray
    ends: np.ndarray
    minus: np.ndarray
    labels: np.ndarray
    line_ends: bytes = b""

    @cached_property
    def text(self) -> bytes:
        """The file's bytes as one buffer."""
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)

    @cached_property
    def bases(self) -> bytes:
        """The bases alone (line ends dropped once, when first asked for)."""
        if not self.line_ends:
            return self.text
        if self.line_ends == b"\n":
            return self.text.replace(b"\n", b"")
        return self.text.translate(None, self.line_ends)

    def pieces(self) -> Iterator[bytes]:
        """Each window's sequence, reverse-complemented on the minus strand."""
        for start, end, minus in zip(
            (self.starts - self.origin).tolist(),
            (self.ends - self.origin).tolist(),
            self.minus.tolist(),
            strict=True,
        ):
            piece = self.bases[start:end]
            yield reverse_complement(piece) if minus else piece

    def shard_rows(
        self, encoder: SequenceEncoder
    ) -> tuple[np.ndarray | list[np.ndarray], np.ndarray, np.ndarray]:
        """(ids to store, as one array or pieces stored one after the other, offset of each
        window's ids in them, ids per window).

        For `char` and k-mer tokenizers a token depends only on the bases it reads, so the
        windows' tokens are slices of one token stream per strand: each span that windows cover
        is encoded and stored once (`_spans`) and overlapping windows share it. bpe tokens
        depend on where a window starts: its windows are encoded and stored one by one.
        """
        if encoder.kind not in ("char", "kmer"):
            ids = encoder.encode_many(list(self.pieces()))
            lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            flat = np.concatenate(ids) if ids else np.zeros(0, encoder.dtype)
            return flat.astype(encoder.dtype, copy=False), np.cumsum(lengths) - lengths, lengths
        k, stride = (1, 1) if encoder.kind == "char" else (encoder.k, encoder.stride)
        size = int(self.ends.max() - self.origin)
        spans = _spans(
            self.starts - self.origin, self.ends - self.origin, self.minus, size, k, stride
        )
        if encoder.kind == "char" and not spans.minus.any() and self.line_ends:
            translation = getattr(encoder, "translation", None)
            if translation is not None:
                # one pass from the file's bytes to ids, piece by piece. One span (windows
                # that overlap or touch: the usual block) is cut from the pieces and stored
                # as they are, never joined in memory; several are joined, then cut.
                pieces = [
                    np.frombuffer(c.translate(translation, self.line_ends), np.uint8)
                    for c in self.chunks
                ]
                if len(spans.lo) == 1:
                    stream = _cut(pieces, int(spans.lo[0]), int(spans.hi[0]))
                    return stream, spans.offsets, spans.lengths
                ids = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
                parts = [ids[lo:hi] for lo, hi in zip(spans.lo, spans.hi, strict=True)]
                stream = parts[0] if len(parts) == 1 else _cat(parts, np.uint8)
                return stream, spans.offsets, spans.lengths
        pieces = [
            reverse_complement(self.bases[size - hi : size - lo]) if minus else self.bases[lo:hi]
            for lo, hi, minus in zip(
                spans.lo.tolist(), spans.hi.tolist(), spans.minus.tolist(), strict=True
            )
        ]
        if encoder.kind == "char":
            stream = encoder.encode(b"".join(pieces))  # one id per base: spans join seamlessly
        else:
            parts = encoder.encode_many(pieces) if pieces else []
            stream = np.concatenate(parts) if parts else np.zeros(0, encoder.dtype)
        return stream, spans.offsets, spans.lengths


@dataclass(frozen=True)
class _Spans:
    """Bases [lo, hi) of the block to encode, per span (`minus`: on the reverse complement,
    counted from the block's end), and each window's ids as (offset, length) in their
    concatenated encodings."""

    lo: np.ndarray
    hi: np.ndarray
    minus: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray


def _spans(
    starts: np.ndarray, ends: np.ndarray, minus: np.ndarray, size: int, k: int, stride: int
) -> _Spans:
    """The token streams that hold the windows [starts, ends) of a block of `size` bases as
    slices, for tokens of k bases read every `stride` bases from a sequence's first base.

    A window starting at a reads the tokens at a, a + stride, ... up to its last full one: the
    same as a stream does that starts at s <= a with s = a (mod stride). So windows are grouped
    by strand and phase (a mod stride; minus-strand windows start on the reverse complement,
    counted from the block's end), and, in order of a, joined while their tokens overlap or
    follow on. Each span then holds exactly its windows' tokens, once.
    """
    lengths = ends - starts
    counts = np.where(lengths >= k, (lengths - k) // stride + 1, 0)
    first = np.where(minus, size - ends, starts)  # first base on the window's own strand
    last = first + (counts - 1) * stride  # start of its last token
    live = counts > 0
    if stride == 1 and not minus.any():  # the usual block: one group, already in order
        groups = [(0, np.arange(len(starts)) if live.all() else np.flatnonzero(live))]
    else:
        key = minus.astype(np.int64) * stride + first % stride
        groups = [(g, np.flatnonzero(live & (key == g))) for g in np.unique(key[live]).tolist()]
    offsets = np.zeros(len(starts), dtype=np.int64)
    lo, hi, strand = [], [], []
    stored = 0
    for group, rows in groups:
        if (first[rows[1:]] < first[rows[:-1]]).any():
            rows = rows[np.argsort(first[rows], kind="stable")]
        reach = np.maximum.accumulate(last[rows])
        new = np.ones(len(rows), dtype=bool)
        new[1:] = first[rows[1:]] > reach[:-1] + stride
        heads = np.flatnonzero(new)
        span_lo = first[rows[heads]]
        span_last = np.maximum.reduceat(last[rows], heads)
        span_tokens = (span_last - span_lo) // stride + 1
        span_at = stored + np.cumsum(span_tokens) - span_tokens
        span = np.cumsum(new) - 1
        offsets[rows] = span_at[span] + (first[rows] - span_lo[span]) // stride
        stored += int(span_tokens.sum())
        lo.append(span_lo)
        hi.append(span_last + k)
        strand.append(np.full(len(heads), group >= stride))
    return _Spans(_cat(lo, np.int64), _cat(hi, np.int64), _cat(strand, bool), offsets, counts)


def _cut(pieces: list[np.ndarray], lo: int, hi: int) -> list[np.ndarray]:
    """Views of [lo, hi) of the pieces read one after the other."""
    out = []
    at = 0
    for piece in pieces:
        a, b = max(lo - at, 0), min(hi - at, len(piece))
        if a < b:
            out.append(piece[a:b])
        at += len(piece)
        if at >= hi:
            break
    return out


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def read_window_batches(
    path: str | Path, batch_rows: int = BATCH_ROWS, columns: list[str] | None = None
) -> Iterator[pd.DataFrame]:
    """A window table (parquet) in row batches, so that its size never sets the memory."""
    batches = _arrow_batches(pq.ParquetFile(path, pre_buffer=False), batch_rows, columns)
    return (batch.to_pandas(use_threads=False) for batch in batches)


def _arrow_batches(
    table: pq.ParquetFile, batch_rows: int, columns: list[str] | None
) -> Iterator[pa.RecordBatch]:
    # One thread: arrow's thread pool and read-ahead cost more CPU than they save on batches of
    # 64k rows (about 1.5 ms of the ~10 ms that tokenizing a one-window table costs, measured).
    return table.iter_batches(batch_size=batch_rows, columns=columns, use_threads=False)


def _batches(windows: WindowTable) -> tuple[Iterable[pd.DataFrame | pa.RecordBatch], str]:
    if isinstance(windows, pd.DataFrame):
        return [windows], "window table"
    if isinstance(windows, str | Path):
        table = pq.ParquetFile(windows, pre_buffer=False)
        names = table.schema_arrow.names
        columns = [c for c in _COLUMNS_READ if c in names]  # not label/group: less to decode
        # arrow batches, not DataFrames: converting a batch to pandas costs more than the
        # columns' own reading (1.6 ms against 2.8 for a 4,500-window table, measured)
        return _arrow_batches(table, BATCH_ROWS, columns), str(windows)
    return windows, "window table"


def _codes(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list]:
    """(code of each row, -1 where null; the distinct values in order of first appearance)."""
    encoded = column.dictionary_encode()
    return encoded.indices.fill_null(-1).to_numpy(), encoded.dictionary.to_pylist()


def _numbers(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if column.null_count:
        raise ValueError("cannot convert NA to integer")  # as pandas says it
    return column.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _blocks_of_run(
    starts: np.ndarray, ends: np.ndarray, block_size: int
) -> Iterator[tuple[int, int]]:
    """[lo, hi) row ranges read together: ascending starts within `block_size` of the first,
    no gap of more than `_MAX_GAP` bases between neighbours.

    Sorted tables (every table the pipeline writes) give few large blocks; sparse samples of
    windows (a capped task, a BPE training sample) are read window by window instead of
    decoding the bases between them; a shuffled table still works, at one read per window.
    """
    n = len(starts)
    cut = (starts[1:] < starts[:-1]) | (starts[1:] - ends[:-1] > _MAX_GAP)
    lo = 0
    for stop in [*(np.flatnonzero(cut) + 1).tolist(), n]:
        while lo < stop:
            hi = lo + int(np.searchsorted(starts[lo:stop], starts[lo] + block_size, side="left"))
            hi = max(hi, lo + 1)
            yield lo, hi
            lo = hi


class _RegionReader:
    """Bases of regions of an indexed genome (BGZF or plain FASTA), as bytes.

    `pysam.FastaFile.fetch` returns str: htslib copies the bases out of their lines, pysam
    decodes them to str, and `fetch_region` encodes them back. This reader seeks to the region's
    first byte by the .fai's line layout (and the .gzi's block offsets) and reads its bytes in
    one call; the `char` encoder then translates them and drops the line ends in one pass.
    Measured on E. coli and the hg38 slice, tokenizing takes about 12% less CPU so. Inflating
    is then most of the cost, so BGZF blocks are inflated by ISA-L (`BgzfReader`), about twice
    zlib's speed. A region whose bytes do not fit that layout (a damaged or hand-edited file)
    is read by `fetch_region` instead, which reads it through htslib or names the problem.
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        self.fasta = open_indexed(path)  # checks that the indexes exist; the fallback reader
        self.lengths = dict(zip(self.fasta.references, self.fasta.lengths, strict=True))
        self.layout: dict[str, tuple[int, int, int]] = {}  # offset, bases and bytes per line
        with open(path.with_name(path.name + ".fai"), encoding="utf-8") as fai:
            for line in fai:
                fields = line.rstrip("\n").split("\t")
                if len(fields) >= 5:
                    self.layout[fields[0]] = (int(fields[2]), int(fields[3]), int(fields[4]))
        self.bgzf = BgzfReader(path) if is_gzip(path) else None
        self.file = open(path, "rb") if self.bgzf is None else None  # noqa: SIM115 - see close()

    def read(self, chrom: str, start: int, end: int) -> tuple[tuple[bytes, ...], bytes]:
        """The file's bytes that hold bases [start, end) of `chrom` (coordinates checked by the
        caller), in pieces (one per BGZF block) to be read in order, and the line end they
        contain (b"" when they are the bases alone)."""
        layout = self.layout.get(chrom)
        if layout is None or layout[1] <= 0 or layout[2] - layout[1] not in (1, 2):
            return (fetch_region(self.fasta, chrom, start, end),), b""
        offset, width, stride = layout
        first = offset + start // width * stride + start % width
        last = offset + (end - 1) // width * stride + (end - 1) % width + 1
        if self.bgzf is not None:
            chunks = self.bgzf.read(first, last)
            if chunks is None:
                return (fetch_region(self.fasta, chrom, start, end),), b""
        else:
            self.file.seek(first)
            chunks = [self.file.read(last - first)]
        if stride - width == 1:
            # numpy counts the line ends ~10x faster than bytes.count (measured)
            newlines = sum(int(np.count_nonzero(np.frombuffer(c, np.uint8) == 10)) for c in chunks)
            if sum(map(len, chunks)) - newlines == end - start:
                return tuple(chunks), b"\n"
        else:
            bases = b"".join(chunks).translate(None, b"\r\n")
            if len(bases) == end - start:
                return (bases,), b""
        return (fetch_region(self.fasta, chrom, start, end),), b""

    def fetch(self, chrom: str, start: int, end: int) -> bytes:
        """Bases [start, end) of `chrom`, as `fetch_region` gives them."""
        chunks, line_ends = self.read(chrom, start, end)
        text = b"".join(chunks)
        return text.replace(line_ends, b"") if line_ends else text

    def close(self) -> None:
        (self.file if self.bgzf is None else self.bgzf).close()
        self.fasta.close()


class _Genomes:
    """Open region readers, a few at a time (a corpus can hold thousands of genomes)."""

    def __init__(self, paths: Mapping[str, str | Path]) -> None:
        self.paths = paths
        self.open: dict[str, _RegionReader] = {}

    def get(self, genome: str, source: str, row: int) -> _RegionReader:
        if genome not in self.open:
            if genome not in self.paths:
                known = sorted(self.paths)
                shown = ", ".join(known[:5]) + (
                    f" and {len(known) - 5} more" if len(known) > 5 else ""
                )
                raise ValueError(
                    f"{source}, row {row}: genome {genome!r} has no FASTA among the inputs "
                    f"({shown or 'none'})"
                )
            if len(self.open) >= _OPEN_GENOMES:
                oldest = next(iter(self.open))
                self.open.pop(oldest).close()
            self.open[genome] = _RegionReader(self.paths[genome])
        return self.open[genome]

    def close(self) -> None:
        for reader in self.open.values():
            reader.close()
        self.open.clear()


def _inline_blocks(
    batch: pd.DataFrame, labels: np.ndarray, block_size: int, source: str, row0: int
) -> Iterator[WindowBlock]:
    """Blocks of a table that carries its sequences (labelled-sequence tasks), joined per block."""
    seqs = batch["sequence"].to_numpy()
    lo = 0
    while lo < len(seqs):
        pieces, size, hi = [], 0, lo
        while hi < len(seqs) and (hi == lo or size < block_size):
            seq = seqs[hi]
            try:
                piece = seq.encode("ascii") if isinstance(seq, str) else bytes(seq)
            except (UnicodeEncodeError, TypeError) as exc:
                raise ValueError(
                    f"{source}, row {row0 + hi}: sequence is not ASCII nucleotide text ({exc})"
                ) from exc
            pieces.append(piece)
            size += len(piece)
            hi += 1
        lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        ends = np.cumsum(lengths)
        yield WindowBlock(
            (b"".join(pieces),),
            0,
            ends - lengths,
            ends,
            np.zeros(len(pieces), dtype=bool),
            labels[lo:hi],
        )
        lo = hi


def window_blocks(
    windows: WindowTable,
    genome_paths: Mapping[str, str | Path],
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Iterator[WindowBlock]:
    """The windows of a table, in table order, grouped into blocks read by region.

    `windows` is a DataFrame, a parquet path (read in row batches), or an iterable of
    DataFrames. A table with a `sequence` column carries its sequences inline.
    """
    batches, source = _batches(windows)
    genomes = _Genomes(genome_paths)
    row0 = 0
    try:
        for batch in batches:
            n = len(batch)
            if n == 0:
                continue
            if isinstance(batch, pd.DataFrame):  # one path, arrow's, for tables and parquet
                batch = pa.RecordBatch.from_pandas(batch, preserve_index=False)
            names = batch.schema.names
            labels = _numbers(batch["label_id"]) if "label_id" in names else np.zeros(n, int)
            if "sequence" in names:
                yield from _inline_blocks(batch.to_pandas(), labels, block_size, source, row0)
                row0 += n
                continue
            missing = [c for c in ("genome", "chrom", "start", "end") if c not in names]
            if missing:
                raise ValueError(f"{source}: column(s) {', '.join(missing)} missing")
            starts, ends = _numbers(batch["start"]), _numbers(batch["end"])
            minus = np.zeros(n, bool)
            if "strand" in names:
                minus = pc.fill_null(pc.equal(batch["strand"], "-"), False)
                minus = minus.to_numpy(zero_copy_only=False)
            genome_codes, genome_names = _codes(batch["genome"])
            chrom_codes, chrom_names = _codes(batch["chrom"])
            change = (genome_codes[1:] != genome_codes[:-1]) | (chrom_codes[1:] != chrom_codes[:-1])
            bounds = [0, *(np.flatnonzero(change) + 1).tolist(), n]
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
                if genome_codes[lo] < 0 or chrom_codes[lo] < 0:
                    raise ValueError(f"{source}, row {row0 + lo}: genome or chrom is missing")
                genome = str(genome_names[genome_codes[lo]])
                chrom = str(chrom_names[chrom_codes[lo]])
                reader = genomes.get(genome, source, row0 + lo)
                run_starts, run_ends = starts[lo:hi], ends[lo:hi]
                _check_coordinates(
                    run_starts, run_ends, reader.lengths, genome, chrom, source, row0 + lo
                )
                for a, b in _blocks_of_run(run_starts, run_ends, block_size):
                    origin = int(run_starts[a])
                    end = int(run_ends[a:b].max())
                    chunks, line_ends = reader.read(chrom, origin, end)
                    yield WindowBlock(
                        chunks,
                        origin,
                        run_starts[a:b],
                        run_ends[a:b],
                        minus[lo + a : lo + b],
                        labels[lo + a : lo + b],
                        line_ends,
                    )
            row0 += n
    finally:
        genomes.close()


def _check_coordinates(
    starts: np.ndarray,
    ends: np.ndarray,
    lengths: Mapping[str, int],
    genome: str,
    chrom: str,
    source: str,
    row0: int,
) -> None:
    if chrom not in lengths:
        raise ValueError(f"{source}, row {row0}: genome {genome!r} has no record {chrom!r}")
    bad = (starts < 0) | (ends <= starts) | (ends > lengths[chrom])
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"{source}, row {row0 + i}: window {genome} {chrom}:{starts[i]}-{ends[i]} is empty "
            f"or outside the record (length {lengths[chrom]:,})"
        )


def window_sequences(
    windows: WindowTable,
    genome_paths: Mapping[str, str | Path],
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Iterator[bytes]:
    """Sequence of every window in table order (reverse-complemented on the minus strand)."""
    for block in window_blocks(windows, genome_paths, block_size=block_size):
        yield from block.pieces()


def tokenize_windows(
    windows: WindowTable,
    genome_paths: Mapping[str, str | Path],
    encoder: SequenceEncoder,
    prefix: str | Path,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    meta: Mapping | None = None,
) -> int:
    """Write the token ids of `windows` (in row order) to the shard `prefix`; returns the count.

    `{prefix}.meta.json` holds `meta` plus what the writer records (sizes, checksums: see
    `dnalm.shards`), what only the pass over the windows knows (`window_length`: the longest
    window, in bases; `bases`: in every window) and the tokenizer the ids belong to (`vocab_size`, `tokenizer_spec`,
    `vocab_fingerprint`), which training checks against the tokenizer it loads.
    """
    longest = bases = 0
    info = dict(meta or {})
    tokenizer = getattr(encoder, "tokenizer", None)
    if tokenizer is not None:
        info.update(
            vocab_size=len(tokenizer),
            tokenizer_spec=dict(encoder.spec),
            vocab_fingerprint=vocabulary_fingerprint(tokenizer),
        )
    with ShardWriter(prefix, encoder.dtype, meta=info) as writer:
        for block in window_blocks(windows, genome_paths, block_size=block_size):
            ids, offsets, lengths = block.shard_rows(encoder)
            writer.add_views(ids, offsets, lengths, block.labels)
            longest = max(longest, int((block.ends - block.starts).max()))
            bases += int((block.ends - block.starts).sum())
        writer.meta.update(window_length=longest, bases=bases)
    return writer.count
