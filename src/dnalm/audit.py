"""Near-duplicate audit: how many test windows are (nearly) copies of some training window?

A group split keeps a species on one side, but only if the sheet's groups are right: isolates of
one species filed under two groups, or a genome that contains another (a prophage in its host),
still leak. This audit measures the leak directly, without trusting the groups: for every test
window, the largest fraction of its canonical k-mers found in any SINGLE training window
(containment). A window above `min_shared` is a near-duplicate; the fraction of such windows is
the number to watch, and `max_fraction` turns it into a hard failure.

Exact, with numpy: every k-mer is packed into one uint64 with its window id, sorted once, and test
windows are matched by binary search; (test, train) pair counts are aggregated in bounded chunks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dnalm.corpus import window_sequences

__all__ = [
    "AuditSettings",
    "KmerProfile",
    "NearDuplicateError",
    "audit_task",
    "audit_windows",
    "check_audit",
    "kmer_profile",
    "max_shared_fraction",
    "summarise_audit",
]

_CODE = np.full(256, 4, dtype=np.uint8)
for _i, _bases in enumerate(("Aa", "Cc", "Gg", "TtUu")):
    for _b in _bases:
        _CODE[ord(_b)] = _i
_BATCH_BASES = 1 << 21  # bases encoded at once: bounds the temporaries to ~200 MB
_CHUNK_PAIRS = 1 << 23  # (test, train) pairs aggregated at once


@dataclass(frozen=True)
class AuditSettings:
    """`k`: k-mer length; `min_shared`: containment from which a test window is a near-duplicate;
    `max_fraction`: fail when a larger fraction of test windows are near-duplicates (None: never);
    `max_kmer_windows`: k-mers in more training windows than this (repeats, low complexity) count
    as shared without naming a window, which bounds the work and makes the score an upper bound
    for repeat-rich windows."""

    k: int = 21
    min_shared: float = 0.5
    max_fraction: float | None = None
    max_kmer_windows: int = 256

    def __post_init__(self) -> None:
        if not 8 <= self.k <= 31:
            raise ValueError(
                f"audit k must be between 8 and 31 (one uint64 per k-mer), got {self.k}"
            )
        if not 0.0 < self.min_shared <= 1.0:
            raise ValueError(f"audit min_shared must be in (0, 1], got {self.min_shared}")
        if self.max_fraction is not None and not 0.0 <= self.max_fraction <= 1.0:
            raise ValueError(
                f"audit max_fraction must be in [0, 1] or null, got {self.max_fraction}"
            )
        if self.max_kmer_windows < 1:
            raise ValueError(
                f"audit max_kmer_windows must be positive, got {self.max_kmer_windows}"
            )


class NearDuplicateError(ValueError):
    """Too many test windows are near-copies of training windows: the split leaks."""


# --------------------------------------------------------------------------- k-mers


def _unique_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _sort_by_kmer(kmers: np.ndarray, payload: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
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
        packed, _ = _unique_counts((windows.astype(np.uint64) << np.uint64(bits)) | kmers)
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


# --------------------------------------------------------------------------- matching


def max_shared_fraction(
    test: KmerProfile,
    train: KmerProfile,
    *,
    max_kmer_windows: int = 256,
) -> pd.DataFrame:
    """Per test sequence: distinct k-mers, the largest number shared with one training sequence,
    that fraction (NaN without k-mers), and the index of that training sequence (-1: none).

    """
    if test.k != train.k:
        raise ValueError(f"k-mer lengths differ: test {test.k}, train {train.k}")
    k = test.k
    t_kmers, t_win, n_test = test.kmers, test.windows, test.count
    r_kmers, r_win, n_train = train.kmers, train.windows, train.count
    kmers_per_test = np.bincount(t_win, minlength=n_test)
    best = np.zeros(n_test, dtype=np.int64)
    nearest = np.full(n_test, -1, dtype=np.int64)
    frequent = np.zeros(n_test, dtype=np.int64)
    if len(t_kmers) and len(r_kmers):
        r_kmers, r_win = _sort_by_kmer(r_kmers, r_win, k)
        # Sorted queries make searchsorted walk forward instead of missing the cache each time.
        queries, where = _sort_by_kmer(t_kmers, np.arange(len(t_kmers)), k)
        lo = np.empty(len(t_kmers), dtype=np.int64)
        count = np.empty(len(t_kmers), dtype=np.int64)
        lo[where] = np.searchsorted(r_kmers, queries, side="left")
        count[where] = np.searchsorted(r_kmers, queries, side="right") - lo[where]
        is_frequent = count > max_kmer_windows
        frequent = np.bincount(t_win[is_frequent], minlength=n_test)
        count[is_frequent] = 0
        _best_single(t_win, lo, count, r_win, n_train, best, nearest)
    shared = best + frequent
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(kmers_per_test > 0, shared / np.maximum(kmers_per_test, 1), np.nan)
    return pd.DataFrame(
        {
            "kmers": kmers_per_test,
            "shared_kmers": shared,
            "repeat_kmers": frequent,
            "max_shared": fraction,
            "nearest": np.where(shared > 0, nearest, -1),
        }
    )


def _best_single(
    t_win: np.ndarray,
    lo: np.ndarray,
    count: np.ndarray,
    r_win: np.ndarray,
    n_train: int,
    best: np.ndarray,
    nearest: np.ndarray,
) -> None:
    """Fill best[t] / nearest[t]: the training window sharing most k-mers with test window t.

    Test pairs are sorted by test window, so chunks of whole windows can be expanded into
    (test, train) pairs and counted without ever holding all pairs at once.
    """
    hit = count > 0
    t_win, lo, count = t_win[hit], lo[hit], count[hit]
    if not len(t_win):
        return
    ends = np.cumsum(count)
    start = 0
    while start < len(t_win):
        limit = (ends[start - 1] if start else 0) + _CHUNK_PAIRS
        stop = int(np.searchsorted(ends, limit, side="right"))
        stop = max(stop, start + 1)
        while stop < len(t_win) and t_win[stop] == t_win[stop - 1]:
            stop += 1  # never split one test window across chunks
        cnt = count[start:stop]
        total = int(cnt.sum())
        first = np.repeat(lo[start:stop] - (np.cumsum(cnt) - cnt), cnt)
        train = r_win[first + np.arange(total)]
        keys = np.repeat(t_win[start:stop], cnt) * n_train + train
        keys, shared = _unique_counts(keys)
        tests = keys // n_train
        bounds = np.flatnonzero(np.r_[True, tests[1:] != tests[:-1]])
        top = np.maximum.reduceat(shared, bounds)
        group = np.repeat(np.arange(len(bounds)), np.diff(np.r_[bounds, len(keys)]))
        winners = np.flatnonzero(shared == top[group])
        pick = winners[np.r_[True, group[winners][1:] != group[winners][:-1]]]
        best[tests[pick]] = shared[pick]
        nearest[tests[pick]] = keys[pick] % n_train
        start = stop


# --------------------------------------------------------------------------- tables


def audit_windows(
    train: pd.DataFrame,
    test: pd.DataFrame,
    genome_paths: Mapping[str, str | Path],
    settings: AuditSettings = AuditSettings(),
) -> pd.DataFrame:
    """One row per test window: its coordinates, k-mers, max_shared and the nearest training
    window (genome, chrom, start, group of the train row that shares most)."""
    train_profile = kmer_profile(window_sequences(train, genome_paths), settings.k)
    test_profile = kmer_profile(window_sequences(test, genome_paths), settings.k)
    scores = max_shared_fraction(
        test_profile, train_profile, max_kmer_windows=settings.max_kmer_windows
    )
    keep = [c for c in ("genome", "chrom", "start", "end", "strand", "label", "group") if c in test]
    out = test[keep].reset_index(drop=True).join(scores)
    picked = out["nearest"].to_numpy()
    for col in ("genome", "chrom", "start", "group"):
        if col in train and len(train):
            values = train[col].to_numpy()[np.maximum(picked, 0)]
            out[f"nearest_{col}"] = pd.Series(values, dtype=object).where(picked >= 0, None)
    return out


def summarise_audit(per_window: pd.DataFrame, settings: AuditSettings, task: str) -> pd.DataFrame:
    """Per label and overall: test windows, audited (with k-mers), near-duplicates and their
    fraction (max_shared >= min_shared), and the mean max_shared."""
    rows = []
    parts = [("all", per_window)]
    if "label" in per_window and per_window["label"].nunique() > 1:
        parts += [(str(label), part) for label, part in per_window.groupby("label", sort=True)]
    for label, part in parts:
        audited = part["max_shared"].notna()
        near = int((part["max_shared"] >= settings.min_shared).sum())
        rows.append(
            {
                "task": task,
                "label": label,
                "test_windows": len(part),
                "audited": int(audited.sum()),
                "near_duplicates": near,
                "near_duplicate_fraction": near / audited.sum() if audited.any() else 0.0,
                "mean_max_shared": float(part["max_shared"].mean()) if audited.any() else 0.0,
                "k": settings.k,
                "min_shared": settings.min_shared,
                "max_fraction": settings.max_fraction,
            }
        )
    return pd.DataFrame(rows)


def check_audit(summary: pd.DataFrame, settings: AuditSettings) -> None:
    """Raise NearDuplicateError when the overall near-duplicate fraction exceeds max_fraction."""
    if settings.max_fraction is None:
        return
    row = summary.loc[summary["label"] == "all"].iloc[0]
    if row["near_duplicate_fraction"] > settings.max_fraction:
        raise NearDuplicateError(
            f"task {row['task']!r}: {row['near_duplicates']} of {row['audited']} test windows "
            f"({row['near_duplicate_fraction']:.1%}) share at least {settings.min_shared:.0%} of "
            f"their {settings.k}-mers with a single training window, more than audit.max_fraction "
            f"= {settings.max_fraction:.1%}. The split leaks: give near-identical genomes "
            "(isolates of one species, a genome and its reference) the same group in the sheet, "
            "or raise audit.max_fraction if this is intended"
        )


def audit_task(
    train: pd.DataFrame,
    test: pd.DataFrame,
    genome_paths: Mapping[str, str | Path],
    settings: AuditSettings,
    task: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, per-window table) of one task; check_audit is left to the caller so that the
    tables can be logged before a failure."""
    per_window = audit_windows(train, test, genome_paths, settings)
    return summarise_audit(per_window, settings, task), per_window
