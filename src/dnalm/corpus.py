"""Windows (coordinates) -> token shards, reading each record once and slicing it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from dnalm.fasta import open_genome
from dnalm.shards import write_shard
from dnalm.tokenization import encode_bytes, reverse_complement


def _runs(windows: pd.DataFrame) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """Consecutive rows that share (genome, chrom), in table order."""
    key = windows["genome"].astype(str) + "\t" + windows["chrom"].astype(str)
    boundaries = np.flatnonzero(key.to_numpy()[1:] != key.to_numpy()[:-1]) + 1
    for lo, hi in zip(np.r_[0, boundaries], np.r_[boundaries, len(windows)], strict=True):
        part = windows.iloc[lo:hi]
        yield part["genome"].iat[0], part["chrom"].iat[0], part


def window_token_ids(
    windows: pd.DataFrame, genome_paths: Mapping[str, str | Path], table: np.ndarray, dtype
) -> Iterator[tuple[np.ndarray, int]]:
    """(token ids, label id) of every window in table order; one record in memory at a time."""
    if windows.empty:
        return
    genomes: dict[str, object] = {}
    for genome, chrom, part in _runs(windows):
        if genome not in genomes:
            genomes[genome] = open_genome(genome_paths[genome])
        record = genomes[genome][chrom][:].seq
        forward = encode_bytes(record, table, dtype)
        for start, end, strand, label in zip(
            part["start"], part["end"], part["strand"], part["label_id"], strict=True
        ):
            if strand == "-":
                ids = encode_bytes(reverse_complement(record[start:end]), table, dtype)
            else:
                ids = forward[start:end]
            yield ids, int(label)


def tokenize_windows(
    windows: pd.DataFrame,
    genome_paths: Mapping[str, str | Path],
    table: np.ndarray,
    dtype: np.dtype,
    prefix: str | Path,
) -> int:
    """Write the token ids of `windows` (in row order) to the shard `prefix`."""
    return write_shard(prefix, window_token_ids(windows, genome_paths, table, dtype), dtype)
