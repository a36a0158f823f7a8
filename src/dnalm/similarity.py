"""Similarity clusters: sequences that nearly copy one another, linked by the audit's own measure.

A split that draws single sequences leaks whenever two of them overlap in the genome (promoters
of one gene, contigs of one virus). Drawing whole clusters instead keeps every near-duplicate
pair on one side, so the near-duplicate audit after the split agrees with the split.

Two sequences are linked when one would be a near-duplicate of the other in the audit
(`dnalm.audit.max_shared_fraction`): its shared canonical k-mers, plus its k-mers that are
repeats (the audit counts those as shared without naming a window), make at least `min_shared`
of its k-mers. A repeat is a k-mer found in more than `max_kmer_windows` sequences. Repeats
link nothing on their own: only pairs that share at least one other k-mer are candidates, so one
repeat family cannot merge a dataset into one cluster. Clusters are the connected components.

Why this bounds the audit: the repeats of a split's training part are repeats here too (a k-mer
in more than `max_kmer_windows` training sequences is in more than that many sequences), so the
audit's score of a test sequence against one training sequence is at most the linking score of
the pair, or, for a pair without a shared non-repeat k-mer, the sequence's own repeat share.
So after a split by cluster only sequences whose repeat k-mers alone reach `min_shared`
(`repeat_bound`) can still be near-duplicates. No split can keep the audit from flagging those,
and crediting their repeats would link them to any sequence sharing one k-mer (a base beside a
repeat element would chain every copy of it into one cluster). So such a sequence is compared
by its non-repeat k-mers alone: it links when it shares `min_shared` of those.

The cost grows with the candidate pairs, the sum over non-repeat k-mers of s(s - 1) / 2 for a
k-mer in s sequences, never with the square of the number of sequences: pairs are expanded in
bounded chunks of whole sequences, counted, and only the links are kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dnalm.kmers import kmer_profile, sort_by_kmer, unique_counts

__all__ = ["SimilarityClusters", "similarity_clusters"]

_CHUNK_PAIRS = 1 << 22  # candidate (sequence, sequence, k-mer) triples expanded at once


@dataclass(frozen=True)
class SimilarityClusters:
    """`cluster`: each sequence's cluster, numbered in order of the clusters' first sequences;
    `kmers` / `repeat_kmers`: each sequence's distinct canonical k-mers and how many of them are
    repeats; `pairs`: candidate pairs (sharing a non-repeat k-mer); `links`: pairs at or above
    `min_shared`; `repeats`: distinct repeat k-mers."""

    cluster: np.ndarray
    kmers: np.ndarray
    repeat_kmers: np.ndarray
    pairs: int
    links: int
    repeats: int
    min_shared: float

    @property
    def sizes(self) -> np.ndarray:
        """Sequences per cluster."""
        return np.bincount(self.cluster, minlength=self.count)

    @property
    def count(self) -> int:
        return int(self.cluster.max()) + 1 if len(self.cluster) else 0

    @property
    def largest_share(self) -> float:
        """The largest cluster's share of all sequences: a split by cluster cannot match its
        fractions when this nears the test or val fraction."""
        return float(self.sizes.max() / len(self.cluster)) if len(self.cluster) else 0.0

    @property
    def repeat_bound(self) -> np.ndarray:
        """Sequences whose repeat k-mers alone reach `min_shared`: the audit may call them
        near-duplicates on either side of any split (its repeats are counted as shared)."""
        return _repeat_bound(self.kmers, self.repeat_kmers, self.min_shared)


def similarity_clusters(
    sequences: Iterable[bytes | str],
    *,
    k: int = 21,
    min_shared: float = 0.5,
    max_kmer_windows: int = 256,
    groups: np.ndarray | None = None,
) -> SimilarityClusters:
    """Cluster sequences that share at least `min_shared` of their canonical k-mers (module
    docstring). `groups` (one integer code per sequence) links the members of each group too, so
    that a source's own groups stay whole as well."""
    if not 1 <= k <= 31:
        raise ValueError(f"k must be between 1 and 31 (one uint64 per k-mer), got {k}")
    if not 0.0 < min_shared <= 1.0:
        raise ValueError(f"min_shared must be in (0, 1], got {min_shared}")
    if max_kmer_windows < 1:
        raise ValueError(f"max_kmer_windows must be positive, got {max_kmer_windows}")
    profile = kmer_profile((s.encode("ascii") if isinstance(s, str) else s for s in sequences), k)
    n = profile.count
    kmers_per_seq = np.bincount(profile.windows, minlength=n)
    # postings: every (k-mer, sequence), sorted by k-mer, then sequence
    kmers, owner = sort_by_kmer(profile.kmers, profile.windows, k)
    del profile
    total = len(kmers)
    starts = np.flatnonzero(np.r_[True, kmers[1:] != kmers[:-1]]) if total else np.zeros(0, int)
    del kmers
    posting = np.diff(np.r_[starts, total])
    is_repeat = np.repeat(posting > max_kmer_windows, posting)
    repeat_kmers = np.bincount(owner[is_repeat], minlength=n)
    # later sequences in the same posting: the partners of each entry, none for repeats
    after = np.repeat(starts + posting, posting) - np.arange(total) - 1
    after[is_repeat] = 0
    del is_repeat
    # a link needs (shared + credit) / denominator >= min_shared for one of the two sequences
    bound = _repeat_bound(kmers_per_seq, repeat_kmers, min_shared)
    credit = np.where(bound, 0, repeat_kmers)
    denominator = np.where(bound, kmers_per_seq - repeat_kmers, kmers_per_seq)
    a, b, pairs = _links(owner, after, denominator, credit, min_shared, n)
    links = len(a)
    if groups is not None:
        ga, gb = _group_links(groups, n)
        a, b = np.concatenate([a, ga]), np.concatenate([b, gb])
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    return SimilarityClusters(
        cluster=_number_by_first(component),
        kmers=kmers_per_seq,
        repeat_kmers=repeat_kmers,
        pairs=pairs,
        links=links,
        repeats=int((posting > max_kmer_windows).sum()),
        min_shared=min_shared,
    )


def _links(
    owner: np.ndarray,
    after: np.ndarray,
    denominator: np.ndarray,
    credit: np.ndarray,
    min_shared: float,
    n: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Linked pairs (a < b) and the number of candidate pairs. Postings are walked in order of
    their sequence a; every shared k-mer of a pair (a, b) lists a before b, so each pair is
    counted whole within one chunk of a's entries."""
    entry = np.flatnonzero(after > 0)
    if len(after) < (1 << 32) and n < (1 << 32):  # one plain sort of packed keys
        packed = np.sort(
            (owner[entry].astype(np.uint64) << np.uint64(32)) | entry.astype(np.uint64)
        )
        entry = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
        del packed
    else:
        entry = entry[np.argsort(owner[entry], kind="stable")]
    count = after[entry]
    seq = owner[entry]
    ends = np.cumsum(count)
    firsts, seconds = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    pairs = 0
    start = 0
    while start < len(entry):
        limit = (ends[start - 1] if start else 0) + _CHUNK_PAIRS
        stop = max(int(np.searchsorted(ends, limit, side="right")), start + 1)
        while stop < len(entry) and seq[stop] == seq[stop - 1]:
            stop += 1  # never split one sequence's entries across chunks
        cnt = count[start:stop]
        offset = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        partner = owner[np.repeat(entry[start:stop] + 1, cnt) + offset]
        keys, shared = unique_counts(np.repeat(seq[start:stop], cnt) * n + partner)
        a, b = keys // n, keys % n
        pairs += len(keys)
        # in either direction; as the audit computes it, (shared + repeats) / k-mers
        linked = ((shared + credit[a]) / np.maximum(denominator[a], 1) >= min_shared) | (
            (shared + credit[b]) / np.maximum(denominator[b], 1) >= min_shared
        )
        firsts.append(a[linked])
        seconds.append(b[linked])
        start = stop
    return np.concatenate(firsts), np.concatenate(seconds), pairs


def _repeat_bound(kmers: np.ndarray, repeat_kmers: np.ndarray, min_shared: float) -> np.ndarray:
    """The audit's score of a sequence that shares no other k-mer reaches `min_shared`."""
    return (kmers > 0) & (repeat_kmers / np.maximum(kmers, 1) >= min_shared)


def _group_links(groups: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each member of a group linked to the next one: enough to make the group one component."""
    groups = np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"{len(groups)} group codes for {n} sequences")
    order = np.argsort(groups, kind="stable")
    same = groups[order][1:] == groups[order][:-1]
    return order[:-1][same], order[1:][same]


def _number_by_first(component: np.ndarray) -> np.ndarray:
    """Renumber components 0, 1, ... in order of their first sequence, whatever scipy's order."""
    if not len(component):
        return component.astype(np.int64)
    _, first = np.unique(component, return_index=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[component]
