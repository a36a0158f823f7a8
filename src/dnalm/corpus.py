"""Windows (coordinates) -> token shards, reading each record once and slicing it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from dnalm.fasta import open_genome
from dnalm.shards import write_shard
from dnalm.tokenization import SequenceEncoder, reverse_complement


def _runs(windows: pd.DataFrame) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """Consecutive rows that share (genome, chrom), in table order."""
    key = windows["genome"].astype(str) + "\t" + windows["chrom"].astype(str)
    boundaries = np.flatnonzero(key.to_numpy()[1:] != key.to_numpy()[:-1]) + 1
    for lo, hi in zip(np.r_[0, boundaries], np.r_[boundaries, len(windows)], strict=True):
        part = windows.iloc[lo:hi]
        yield part["genome"].iat[0], part["chrom"].iat[0], part


def window_sequences(
    windows: pd.DataFrame, genome_paths: Mapping[str, str | Path]
) -> Iterator[bytes]:
    """Sequence of every window in table order (reverse-complemented on the minus strand).

    A table with a `sequence` column (labelled-sequence tasks) carries its sequences inline;
    otherwise they are sliced from the genomes, one record in memory at a time.
    """
    if windows.empty:
        return
    if "sequence" in windows:
        for seq in windows["sequence"]:
            yield seq.encode("ascii") if isinstance(seq, str) else bytes(seq)
        return
    genomes: dict[str, object] = {}
    for genome, chrom, part in _runs(windows):
        if genome not in genomes:
            genomes[genome] = open_genome(genome_paths[genome])
        record = genomes[genome][chrom][:].seq.encode("ascii")
        for start, end, strand in zip(part["start"], part["end"], part["strand"], strict=True):
            piece = record[start:end]
            yield reverse_complement(piece) if strand == "-" else piece


def window_token_ids(
    windows: pd.DataFrame, genome_paths: Mapping[str, str | Path], encoder: SequenceEncoder
) -> Iterator[tuple[np.ndarray, int]]:
    """(token ids, label id) of every window in table order."""
    labels = windows["label_id"] if "label_id" in windows else np.zeros(len(windows), int)
    for seq, label in zip(window_sequences(windows, genome_paths), labels, strict=True):
        yield encoder.encode(seq), int(label)


def tokenize_windows(
    windows: pd.DataFrame,
    genome_paths: Mapping[str, str | Path],
    encoder: SequenceEncoder,
    prefix: str | Path,
) -> int:
    """Write the token ids of `windows` (in row order) to the shard `prefix`."""
    return write_shard(prefix, window_token_ids(windows, genome_paths, encoder), encoder.dtype)
