"""Near-duplicate audit: how many test windows are (nearly) copies of some training window?

A group split keeps a species on one side, but only if the sheet's groups are right: isolates of
one species filed under two groups, or a genome that contains another (a prophage in its host),
still leak. This audit measures the leak directly, without trusting the groups: for every test
window, the largest fraction of its canonical k-mers found in any SINGLE training window
(containment). A window above `min_shared` is a near-duplicate; the fraction of such windows is
the number to watch, and `max_fraction` turns it into a hard failure.

Exact, with numpy: every k-mer is packed into one uint64 (`dnalm.kmers`, shared with the
similarity split), sorted once with its window id, and test windows are matched by binary search;
(test, train) pair counts are aggregated in bounded chunks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dnalm.corpus import window_sequences
from dnalm.kmers import KmerProfile, kmer_profile, sort_by_kmer, unique_counts

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
        r_kmers, r_win = sort_by_kmer(r_kmers, r_win, k)
        # Sorted queries make searchsorted walk forward instead of missing the cache each time.
        queries, where = sort_by_kmer(t_kmers, np.arange(len(t_kmers)), k)
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
        keys, shared = unique_counts(keys)
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
