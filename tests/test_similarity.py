"""Similarity clusters: exact against brute force, repeats link nothing, and the audit agrees."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from test_audit import brute_kmers, mutate

from dnalm import kmers, similarity
from dnalm.audit import AuditSettings, audit_task
from dnalm.labelled import labelled_windows, similarity_groups
from dnalm.similarity import similarity_clusters


def brute_clusters(
    seqs: list[str], k: int, min_shared: float, max_kmer_windows: int, groups=None
) -> tuple[np.ndarray, int, int]:
    """(cluster per sequence numbered by first member, candidate pairs, links) from sets."""
    sets = [brute_kmers(s, k) for s in seqs]
    seen: dict[str, int] = {}
    for s in sets:
        for word in s:
            seen[word] = seen.get(word, 0) + 1
    repeats = {w for w, n in seen.items() if n > max_kmer_windows}
    parent = list(range(len(seqs)))

    def score(kmer_set: set[str], shared: int) -> float:
        """Repeats count as shared, as in the audit, unless they alone reach min_shared: then
        only the non-repeat k-mers are compared."""
        n = len(kmer_set & repeats)
        if n / len(kmer_set) >= min_shared:
            return shared / (len(kmer_set) - n)
        return (shared + n) / len(kmer_set)

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    pairs = links = 0
    for i in range(len(seqs)):
        for j in range(i + 1, len(seqs)):
            shared = len((sets[i] & sets[j]) - repeats)
            if not shared:
                continue
            pairs += 1
            score_i, score_j = score(sets[i], shared), score(sets[j], shared)
            if score_i >= min_shared or score_j >= min_shared:
                links += 1
                parent[find(j)] = find(i)
    if groups is not None:
        first: dict = {}
        for i, g in enumerate(groups):
            parent[find(i)] = find(first.setdefault(g, i))
    roots = [find(i) for i in range(len(seqs))]
    numbers: dict[int, int] = {}
    return np.array([numbers.setdefault(r, len(numbers)) for r in roots]), pairs, links


def planted(rng: random.Random, families: int = 12, singles: int = 25) -> list[str]:
    """Families of mutated, shifted copies of one segment (some under min_shared), unrelated
    sequences, a repeat element inserted into many of them, and odd cases (N, short, empty)."""

    def random_seq(n: int) -> str:
        return "".join(rng.choice("ACGT") for _ in range(n))

    repeat = random_seq(30)
    seqs = []
    for _ in range(families):
        base = random_seq(260)
        for _ in range(rng.randint(1, 5)):
            start = rng.randint(0, 120)
            seqs.append(mutate(rng, base[start : start + rng.randint(60, 140)], 0.04))
    for _ in range(singles):
        seq = random_seq(rng.randint(40, 120))
        if rng.random() < 0.5:
            cut = rng.randint(0, len(seq))
            seq = seq[:cut] + repeat + seq[cut:]
        seqs.append(seq)
    seqs += ["", "ACG", "NNNNNNNNNNNNNNNNNNNNNNNNN", repeat + "A", repeat.lower()]
    rng.shuffle(seqs)
    return seqs


@pytest.mark.parametrize(
    ("k", "min_shared", "max_kmer_windows"),
    [(8, 0.5, 256), (11, 0.5, 4), (11, 0.3, 6), (21, 0.5, 3), (21, 0.8, 256)],
)
def test_clusters_match_brute_force(k: int, min_shared: float, max_kmer_windows: int) -> None:
    rng = random.Random(k * 100 + max_kmer_windows)
    seqs = planted(rng)
    got = similarity_clusters(seqs, k=k, min_shared=min_shared, max_kmer_windows=max_kmer_windows)
    expected, pairs, links = brute_clusters(seqs, k, min_shared, max_kmer_windows)
    assert got.cluster.tolist() == expected.tolist()
    assert (got.pairs, got.links) == (pairs, links)
    assert got.kmers.tolist() == [len(brute_kmers(s, k)) for s in seqs]
    assert 1 < got.count < len(seqs)  # the case is not trivial: some links, some singletons


def test_groups_are_merged_into_clusters() -> None:
    rng = random.Random(5)
    seqs = planted(rng)
    groups = np.array([rng.randrange(15) for _ in seqs])
    got = similarity_clusters(seqs, k=11, max_kmer_windows=4, groups=groups)
    expected, _, _ = brute_clusters(seqs, 11, 0.5, 4, groups=groups.tolist())
    assert got.cluster.tolist() == expected.tolist()
    with pytest.raises(ValueError, match="3 group codes for"):
        similarity_clusters(seqs, k=11, groups=groups[:3])


def test_small_chunks_and_batches_give_the_same_clusters(monkeypatch: pytest.MonkeyPatch) -> None:
    seqs = planted(random.Random(9), families=20)
    expected = similarity_clusters(seqs, k=11, max_kmer_windows=5)
    monkeypatch.setattr(similarity, "_CHUNK_PAIRS", 3)
    monkeypatch.setattr(kmers, "_BATCH_BASES", 100)
    got = similarity_clusters(seqs, k=11, max_kmer_windows=5)
    assert got.cluster.tolist() == expected.cluster.tolist()
    assert (got.pairs, got.links) == (expected.pairs, expected.links)


def test_a_repeat_family_does_not_merge_the_dataset() -> None:
    """60 unrelated sequences carrying one 100-base element: without repeats it makes them one
    cluster; as a repeat (in more than max_kmer_windows sequences) it links none of them."""
    rng = random.Random(1)
    element = "".join(rng.choice("ACGT") for _ in range(100))
    seqs = ["".join(rng.choice("ACGT") for _ in range(60)) + element for _ in range(60)]
    merged = similarity_clusters(seqs, k=15, max_kmer_windows=100)
    assert merged.count == 1 and merged.largest_share == 1.0
    apart = similarity_clusters(seqs, k=15, max_kmer_windows=50)
    assert apart.repeats == len(brute_kmers(element, 15))
    # k-mers across the junction (a random base or two + the element) are shared by a quarter
    # of the sequences: candidates, but too few to link, and the repeats earn no credit
    assert apart.pairs > 0
    assert apart.count == 60 and apart.links == 0
    # each is mostly repeat: the audit may flag it whatever the split, and this says so
    assert apart.repeat_bound.all()


def test_repeats_count_as_shared_unless_they_alone_reach_min_shared() -> None:
    """k = 11, repeats in more than 3 sequences: a 40-base element in 5 sequences is one."""
    rng = random.Random(4)

    def random_seq(n: int) -> str:
        return "".join(rng.choice("ACGT") for _ in range(n))

    element, x, z = random_seq(40), random_seq(40), random_seq(10)
    seqs = [
        element + x,  # 70 k-mers, 30 repeats (43%)
        element + x[:20] + random_seq(20),  # shares 20 non-repeat k-mers: (20 + 30) / 70
        element + z,  # 40 k-mers, 30 repeats (75%): repeat-bound, 10 non-repeat k-mers
        element + z,  # the same: all 10 non-repeat k-mers shared
        element + z[:5] + random_seq(5),  # repeat-bound, shares 5 of its 10 (the junction)
        random_seq(60),
    ]
    got = similarity_clusters(seqs, k=11, max_kmer_windows=3)
    assert got.repeat_bound.tolist() == [False, False, True, True, True, False]
    # 0-1: by the audit's credit (20 shared k-mers are 28% alone); 2-3: by their non-repeat
    # k-mers; 4 shares 5 of its 10 non-repeat k-mers with 2 and 3: 50%, linked too
    assert got.cluster.tolist() == [0, 0, 1, 1, 1, 2]
    expected, _, _ = brute_clusters(seqs, 11, 0.5, 3)
    assert got.cluster.tolist() == expected.tolist()
    strict = similarity_clusters(seqs, k=11, min_shared=0.6, max_kmer_windows=3)
    assert strict.cluster.tolist() == [0, 0, 1, 1, 2, 3]


def test_empty_and_kmer_less_input() -> None:
    none = similarity_clusters([], k=21)
    assert none.count == 0 and none.largest_share == 0.0
    short = similarity_clusters(["ACGT", "", "NNNNNNNNNNNNNNNNNNNNNNNNN"], k=21)
    assert short.cluster.tolist() == [0, 1, 2] and not short.repeat_bound.any()


def test_settings_are_checked() -> None:
    for kwargs, message in [
        ({"k": 32}, "k must be between 1 and 31"),
        ({"min_shared": 0.0}, "min_shared must be in"),
        ({"max_kmer_windows": 0}, "max_kmer_windows must be positive"),
    ]:
        with pytest.raises(ValueError, match=message):
            similarity_clusters(["ACGT"], **kwargs)


# --------------------------------------------------------------------------- split + audit


def tiled_table(rng: random.Random, n_regions: int = 60) -> pd.DataFrame:
    """Overlapping tiles of random 'genomic regions', as GenomicBenchmarks' negatives are:
    a row split puts tiles of one region on both sides."""
    rows = []
    for r in range(n_regions):
        region = "".join(rng.choice("ACGT") for _ in range(400))
        label = str(r % 2)
        for start in range(0, rng.choice([1, 3, 5]) * 40, 40):
            rows.append((region[start : start + 200], label))
    table = pd.DataFrame(rows, columns=["sequence", "label"])
    return table.assign(
        id=[f"s{i}" for i in range(len(table))], source="tiles", file="tiles.csv", line=1
    )


def audit_fraction(splits: dict[str, pd.DataFrame], settings: AuditSettings) -> float:
    summary, _ = audit_task(splits["train"], splits["test"], {}, settings, "tiles")
    return float(summary.loc[summary["label"] == "all", "near_duplicate_fraction"].iloc[0])


def test_split_by_similarity_leaves_the_audit_nothing_to_find() -> None:
    table = tiled_table(random.Random(2))
    settings = AuditSettings(k=21, min_shared=0.5, max_kmer_windows=256)
    fractions = {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0, "labels": ["0", "1"]}
    by_row = labelled_windows(table, task="tiles", **fractions)
    assert audit_fraction(by_row, settings) > 0.3  # the row split leaks
    grouped, clusters = similarity_groups(
        table, k=settings.k, min_shared=settings.min_shared, max_kmer_windows=256
    )
    assert clusters.count < len(table)
    splits = labelled_windows(grouped, task="tiles", **fractions)
    assert audit_fraction(splits, settings) == 0.0
    # the cluster is the window group, named by its first sequence, and never spans two splits
    sides = pd.concat([part.assign(split=name) for name, part in splits.items()])
    assert (sides.groupby("group")["split"].nunique() == 1).all()
    first = table["id"].to_numpy()[np.unique(clusters.cluster, return_index=True)[1]]
    assert set(sides["group"]) == set(first)
    for name in ("train", "val", "test"):
        assert set(splits[name]["label"]) == {"0", "1"}
