"""Windows (coordinates) -> token shards, streamed block by block.

A human chromosome is up to 250 Mbp; holding it, and its tokens, whole is what made tokenizing
a genome need many GB. Instead the window table is read in row batches, each run of windows on
one record is cut into blocks (ascending starts spanning at most `block_size` bases), each
block's bases are read by region, encoded, and appended to the shard. Memory is about one block
plus one row batch, whatever the size of the genome or of a record.

For the `char` tokenizer (one id per base) a block is encoded once and windows are slices of it
(the minus strand from one encoding of the block's reverse complement); other kinds encode
window by window through `encode_many`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pysam

from dnalm.shards import ShardWriter, write_meta
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
    """Windows whose bases all lie in `bases`, which starts at record position `origin`."""

    bases: bytes
    origin: int
    starts: np.ndarray
    ends: np.ndarray
    minus: np.ndarray
    labels: np.ndarray

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

    def token_ids(self, encoder: SequenceEncoder) -> tuple[np.ndarray, np.ndarray]:
        """(ids of every window back to back, ids per window)."""
        if encoder.kind != "char":
            ids = encoder.encode_many(list(self.pieces()))
            lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            flat = np.concatenate(ids) if ids else np.zeros(0, encoder.dtype)
            return flat.astype(encoder.dtype, copy=False), lengths
        lengths = self.ends - self.starts
        plus = ~self.minus
        forward = encoder.encode(self.bases) if plus.any() else None
        reverse = encoder.encode(reverse_complement(self.bases)) if self.minus.any() else None
        # Offsets of each window in its strand's encoding.
        fwd_at = self.starts - self.origin
        rev_at = self.origin + len(self.bases) - self.ends
        if len(lengths) and (lengths == lengths[0]).all():
            width = int(lengths[0])
            if reverse is None:
                out = _rows(forward, width, fwd_at)
            elif forward is None:
                out = _rows(reverse, width, rev_at)
            else:
                out = np.empty((len(lengths), width), dtype=encoder.dtype)
                out[plus] = _rows(forward, width, fwd_at[plus])
                out[self.minus] = _rows(reverse, width, rev_at[self.minus])
            return out.reshape(-1), lengths
        if plus.all() and (self.starts[1:] == self.ends[:-1]).all():
            # Back to back (inline sequences joined into one block): the ids are one slice.
            return forward[fwd_at[0] : fwd_at[0] + int(lengths.sum())], lengths
        parts = [
            reverse[r : r + n] if m else forward[f : f + n]
            for f, r, n, m in zip(
                fwd_at.tolist(), rev_at.tolist(), lengths.tolist(), self.minus.tolist(), strict=True
            )
        ]
        flat = np.concatenate(parts) if parts else np.zeros(0, encoder.dtype)
        return flat, lengths


def _rows(ids: np.ndarray, width: int, offsets: np.ndarray) -> np.ndarray:
    """ids[o : o + width] for every offset, as one (n, width) copy."""
    return np.lib.stride_tricks.sliding_window_view(ids, width)[offsets]


def read_window_batches(
    path: str | Path, batch_rows: int = BATCH_ROWS, columns: list[str] | None = None
) -> Iterator[pd.DataFrame]:
    """A window table (parquet) in row batches, so that its size never sets the memory."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns):
        yield batch.to_pandas()


def _batches(windows: WindowTable) -> tuple[Iterable[pd.DataFrame], str]:
    if isinstance(windows, pd.DataFrame):
        return [windows], "window table"
    if isinstance(windows, str | Path):
        names = pq.ParquetFile(windows).schema_arrow.names
        columns = [c for c in _COLUMNS_READ if c in names]  # not label/group: less to decode
        return read_window_batches(windows, columns=columns), str(windows)
    return windows, "window table"


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


class _Genomes:
    """Open region readers, a few at a time (a corpus can hold thousands of genomes)."""

    def __init__(self, paths: Mapping[str, str | Path]) -> None:
        self.paths = paths
        self.open: dict[str, tuple[pysam.FastaFile, dict[str, int]]] = {}

    def get(self, genome: str, source: str, row: int) -> tuple[pysam.FastaFile, dict[str, int]]:
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
                self.open.pop(oldest)[0].close()
            reader = open_indexed(self.paths[genome])
            self.open[genome] = (reader, dict(zip(reader.references, reader.lengths, strict=True)))
        return self.open[genome]

    def close(self) -> None:
        for reader, _ in self.open.values():
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
            b"".join(pieces),
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
            labels = (
                batch["label_id"].to_numpy(np.int64) if "label_id" in batch else np.zeros(n, int)
            )
            if "sequence" in batch:
                yield from _inline_blocks(batch, labels, block_size, source, row0)
                row0 += n
                continue
            missing = [c for c in ("genome", "chrom", "start", "end") if c not in batch]
            if missing:
                raise ValueError(f"{source}: column(s) {', '.join(missing)} missing")
            starts = batch["start"].to_numpy(np.int64)
            ends = batch["end"].to_numpy(np.int64)
            minus = (
                batch["strand"].eq("-").to_numpy(bool, na_value=False)
                if "strand" in batch
                else np.zeros(n, bool)
            )
            genome_codes, genome_names = pd.factorize(batch["genome"])
            chrom_codes, chrom_names = pd.factorize(batch["chrom"])
            change = (genome_codes[1:] != genome_codes[:-1]) | (chrom_codes[1:] != chrom_codes[:-1])
            bounds = [0, *(np.flatnonzero(change) + 1).tolist(), n]
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
                genome = str(genome_names[genome_codes[lo]])
                chrom = str(chrom_names[chrom_codes[lo]])
                reader, lengths = genomes.get(genome, source, row0 + lo)
                run_starts, run_ends = starts[lo:hi], ends[lo:hi]
                _check_coordinates(run_starts, run_ends, lengths, genome, chrom, source, row0 + lo)
                for a, b in _blocks_of_run(run_starts, run_ends, block_size):
                    origin = int(run_starts[a])
                    end = int(run_ends[a:b].max())
                    yield WindowBlock(
                        fetch_region(reader, chrom, origin, end),
                        origin,
                        run_starts[a:b],
                        run_ends[a:b],
                        minus[lo + a : lo + b],
                        labels[lo + a : lo + b],
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

    With `meta`, `{prefix}.meta.json` is written too, with what only the pass over the windows
    knows added: `sequences`, `tokens` (ids written), `bases` (in every window), `window_length`
    (longest window, in bases) and `dtype`.
    """
    longest = bases = 0
    with ShardWriter(prefix, encoder.dtype) as writer:
        for block in window_blocks(windows, genome_paths, block_size=block_size):
            ids, lengths = block.token_ids(encoder)
            writer.add_many(ids, lengths, block.labels)
            longest = max(longest, int((block.ends - block.starts).max()))
            bases += int((block.ends - block.starts).sum())
    if meta is not None:
        info = dict(meta)
        info.update(
            sequences=writer.count,
            tokens=writer.tokens,
            bases=bases,
            window_length=longest,
            dtype=np.dtype(encoder.dtype).name,
        )
        write_meta(prefix, info)
    return writer.count
