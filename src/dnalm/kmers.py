"""Canonical k-mers packed two bits a base into one uint64: the shared measure of the
near-duplicate audit and the similarity split, which must agree on what "shared" means.

Everything is vectorised with numpy (k-mers are built by doubling, sorted once, deduplicated by
sorting packed keys), so 100k sequences of a few hundred bases take seconds, not minutes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["KmerProfile", "kmer_profile", "sort_by_kmer", "unique_counts"]

_CODE = np.full(256, 4, dtype=np.uint8)
for _i, _bases in enumerate(("Aa", "Cc", "Gg", "TtUu")):
    for _b in _bases:
        _CODE[ord(_b)] = _i
_BATCH_BASES = 1 << 21  # bases encoded at once: bounds the temporaries to ~200 MB


def unique_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and their counts; np.unique is ~100x slower here (numpy 2.4)."""
    values = np.sort(values)
    if not len(values):
        return values, np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    return values[starts], np.diff(np.r_[starts, len(values)])


def _batches(sequences: Iterable[bytes]) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    size = 0
    for seq in sequences:
        batch.append(seq)
        size += len(seq)
        if size >= _BATCH_BASES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _canonical_kmers(batch: list[bytes], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(canonical k-mer, index within batch) of every k-mer of ACGT only, not deduplicated."""
    lengths = np.fromiter((len(s) for s in batch), dtype=np.int64, count=len(batch))
    codes = _CODE[np.frombuffer(b"".join(batch), dtype=np.uint8)]
    m = len(codes) - k + 1
    if m <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    invalid = np.concatenate([[0], np.cumsum(codes > 3, dtype=np.int64)])
    ok = invalid[k:] == invalid[:-k]  # no N or ambiguity code inside the k-mer
    window = np.repeat(np.arange(len(batch), dtype=np.int64), lengths)[:m]
    offset = np.arange(m, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)[:m]
    ok &= offset <= lengths[window] - k  # the k-mer lies inside one window
    c = np.where(codes > 3, 0, codes).astype(np.uint64)
    fwd = _packed_kmers(c, k, m, big_endian=True)
    rev = _packed_kmers(np.uint64(3) - c, k, m, big_endian=False)  # complement, read backwards
    return np.minimum(fwd, rev)[ok], window[ok]


def _packed_kmers(c: np.ndarray, k: int, m: int, *, big_endian: bool) -> np.ndarray:
    """The first `m` k-mers of 2-bit codes `c`, 2 bits per base, built by doubling (1, 2, 4, ...
    bases) so that k = 21 costs 7 array passes instead of 21. Big-endian: the first base in the
    high bits (the k-mer); little-endian: in the low bits (its reverse, for the complement)."""
    levels = {1: c}
    size = 1
    while size * 2 <= k:
        prev = levels[size]
        head, tail = prev[: len(prev) - size], prev[size:]
        if big_endian:
            levels[size * 2] = (head << np.uint64(2 * size)) | tail
        else:
            levels[size * 2] = head | (tail << np.uint64(2 * size))
        size *= 2
    out = np.zeros(m, np.uint64)
    offset = 0
    for length in sorted(levels, reverse=True):
        if not k & length:
            continue
        part = levels[length][offset : offset + m]
        if big_endian:
            out = (out << np.uint64(2 * length)) | part
        else:
            out |= part << np.uint64(2 * offset)
        offset += length
    return out


def sort_by_kmer(kmers: np.ndarray, payload: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k-mers sorted, with their payload (non-negative ints); packs both into one uint64 when
    they fit, because a plain sort is ~10x faster than argsort + gather."""
    bits = 2 * k
    if not len(kmers):
        return kmers, payload
    if int(payload.max()) < (1 << (64 - bits)):
        packed = np.sort((kmers << np.uint64(64 - bits)) | payload.astype(np.uint64))
        low = np.uint64((1 << (64 - bits)) - 1)
        return packed >> np.uint64(64 - bits), (packed & low).astype(np.int64)
    order = np.argsort(kmers, kind="stable")
    return kmers[order], payload[order]


def _distinct(kmers: np.ndarray, windows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (window, k-mer) pairs sorted by window, then k-mer."""
    bits = 2 * k
    if len(windows) == 0:
        return kmers, windows
    if int(windows.max()) < (1 << (64 - bits)):  # pack both in one uint64: one fast sort
        packed, _ = unique_counts((windows.astype(np.uint64) << np.uint64(bits)) | kmers)
        mask = np.uint64((1 << bits) - 1)
        return packed & mask, (packed >> np.uint64(bits)).astype(np.int64)
    order = np.lexsort((kmers, windows))
    kmers, windows = kmers[order], windows[order]
    keep = np.ones(len(kmers), dtype=bool)
    keep[1:] = (kmers[1:] != kmers[:-1]) | (windows[1:] != windows[:-1])
    return kmers[keep], windows[keep]


@dataclass(frozen=True)
class KmerProfile:
    """Distinct canonical k-mers of `count` sequences: parallel arrays sorted by sequence index
    (`windows`), then k-mer."""

    kmers: np.ndarray
    windows: np.ndarray
    count: int
    k: int


def kmer_profile(sequences: Iterable[bytes], k: int) -> KmerProfile:
    """Distinct canonical k-mers of every sequence. k-mers with N or ambiguity codes are left
    out; lower case (soft-masking) counts as upper case; U as T."""
    kmer_parts, window_parts = [], []
    n = 0
    for batch in _batches(sequences):
        kmers, windows = _canonical_kmers(batch, k)
        kmers, windows = _distinct(kmers, windows, k)
        kmer_parts.append(kmers)
        window_parts.append(windows + n)
        n += len(batch)
    if not kmer_parts:
        return KmerProfile(np.zeros(0, np.uint64), np.zeros(0, np.int64), 0, k)
    return KmerProfile(np.concatenate(kmer_parts), np.concatenate(window_parts), n, k)
