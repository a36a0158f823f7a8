"""Simulated virus and host genomes for the offline demo and for tests.

Real genomes cannot ship with the project, yet a DNA language model needs sequence with structure
to learn, and the virus-vs-host task needs signal that is real but imperfect. So the two profiles
differ the way real ones do (coding density, codon usage, GC, repeats, CpG depletion), genomes of
one family share their tables (so family-grouped splits are meaningful), and class-level tables
are perturbed per family so that the classes overlap.

Internally bases are codes 0-3 (A, C, G, T; complement = 3 - code) and 4 = N.
"""

from __future__ import annotations

import functools
import gzip
import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from dnalm.fasta import _format_record
from dnalm.files import atomic_write

__all__ = [
    "PROFILES",
    "SimulatedSpec",
    "parse_simulated_source",
    "simulate_genome",
    "simulate_metagenome",
    "write_fasta",
]

PROFILES = ("virus", "host")
_SCHEME = "simulated:"
_DEFAULT_LENGTH = {"virus": 50_000, "host": 200_000}
_DEFAULT_RECORDS = {"virus": 1, "host": 2}
_RECORD_RANGE = {"virus": (1, 12), "host": (1, 3)}
_MIN_RECORD_LENGTH = 200
_PARAMS = ("length", "seed", "family", "records")

_ROOT_SEED = 0x444E414C  # "DNAL": fixed so that simulated genomes never change between releases
_CLASS_TAG = {"virus": 1, "host": 2}
_UPPER = np.frombuffer(b"ACGTN", dtype=np.uint8)
_LOWER = np.frombuffer(b"acgtn", dtype=np.uint8)
_CHAIN_STEPS = 1024  # Markov chains run in lockstep blocks of this many steps (see _sample_markov)


@dataclass(frozen=True)
class SimulatedSpec:
    """What to simulate; hashable so that Snakemake params and caches can key on it."""

    profile: str
    length: int
    seed: int = 0
    family: int = 0
    records: int = 1


def parse_simulated_source(source: str) -> SimulatedSpec:
    """Parse ``simulated:<profile>?length=..&seed=..&family=..&records=..`` from a config."""
    if not source.startswith(_SCHEME):
        raise ValueError(
            f"{source!r}: a simulated genome source must start with {_SCHEME!r}, "
            f"e.g. 'simulated:virus?length=50000&seed=1'"
        )
    profile, _, query = source[len(_SCHEME) :].partition("?")
    if profile not in PROFILES:
        raise ValueError(
            f"{source!r}: unknown profile {profile!r}; allowed profiles: {', '.join(PROFILES)}"
        )
    values: dict[str, int] = {}
    for item in filter(None, query.split("&")):
        key, sep, text = item.partition("=")
        if key not in _PARAMS:
            raise ValueError(
                f"{source!r}: unknown parameter {key!r}; allowed parameters: {', '.join(_PARAMS)}"
            )
        if key in values:
            raise ValueError(f"{source!r}: parameter {key!r} given twice")
        try:
            if not sep or not text.strip().isdigit():
                raise ValueError
            values[key] = int(text)
        except ValueError:
            raise ValueError(
                f"{source!r}: parameter {key!r} must be a non-negative integer, got {text!r}"
            ) from None
    records = values.get("records", _DEFAULT_RECORDS[profile])
    low, high = _RECORD_RANGE[profile]
    if not low <= records <= high:
        raise ValueError(
            f"{source!r}: records={records} is out of range for profile {profile!r} "
            f"(allowed: {low} to {high})"
        )
    length = values.get("length", _DEFAULT_LENGTH[profile])
    if length < _MIN_RECORD_LENGTH * records:
        raise ValueError(
            f"{source!r}: length={length} is too short for {records} record(s) "
            f"(allowed: at least {_MIN_RECORD_LENGTH} bp per record)"
        )
    return SimulatedSpec(
        profile=profile,
        length=length,
        seed=values.get("seed", 0),
        family=values.get("family", 0),
        records=records,
    )


# --------------------------------------------------------------------------- tables

_BASES = "ACGT"
_CODONS = ["".join(c) for c in itertools.product(_BASES, repeat=3)]
_CODE_TABLE = dict(
    zip(
        ["".join(c) for c in itertools.product("TCAG", repeat=3)],
        "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG",
        strict=True,
    )
)
_SENSE = [c for c in _CODONS if _CODE_TABLE[c] != "*" and c != "ATG"] + ["ATG"]
_STOPS = ["TAA", "TAG", "TGA"]
_AMINO = sorted({_CODE_TABLE[c] for c in _SENSE})
# Typical proteome amino-acid frequencies (UniProtKB/Swiss-Prot), percent.
_AA_FREQ = dict(
    zip(
        "ARNDCQEGHILKMFPSTWYV",
        [8.3, 5.5, 4.1, 5.5, 1.4, 3.9, 6.8, 7.1, 2.3, 5.9, 9.7, 5.8, 2.4, 3.9, 4.7, 6.6, 5.3]
        + [1.1, 2.9, 6.9],
        strict=True,
    )
)


_SENSE_CODES = np.array([[_BASES.index(b) for b in c] for c in _SENSE], dtype=np.uint8)
_STOP_CODES = np.array([[_BASES.index(b) for b in c] for c in _STOPS], dtype=np.uint8)
_SENSE_GC = np.array([sum(b in "GC" for b in c) for c in _SENSE], dtype=float)
_SENSE_CPG = np.array([("CG" in c) for c in _SENSE], dtype=float)
_SENSE_AA = np.array([_AMINO.index(_CODE_TABLE[c]) for c in _SENSE])


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([_ROOT_SEED, *key]))


def _solve_tilt(gc_of_log_tilt, target: float) -> float:
    """Bisection on a log GC tilt; used to hit a target GC whatever the random tables are."""
    lo, hi = -8.0, 8.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if gc_of_log_tilt(mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _codon_probs(
    class_z: np.ndarray, family_z: np.ndarray, aa_noise: np.ndarray, gc: float, cpg: float
) -> np.ndarray:
    aa = np.array([_AA_FREQ[a] for a in _AMINO]) * aa_noise
    syn = np.exp(class_z + family_z) * np.where(_SENSE_CPG > 0, cpg, 1.0)
    group_sum = np.bincount(_SENSE_AA, weights=syn)
    base = aa[_SENSE_AA] * syn / group_sum[_SENSE_AA]

    def probs(log_tilt: float) -> np.ndarray:
        p = base * np.exp(log_tilt * _SENSE_GC)
        return p / p.sum()

    log_tilt = _solve_tilt(lambda t: float(probs(t) @ _SENSE_GC) / 3, gc)
    return probs(log_tilt)


def _stationary(trans: np.ndarray, order: int) -> np.ndarray:
    """Stationary distribution over the 4**order contexts of an order-k chain."""
    n = 4**order
    matrix = np.zeros((n, n))
    nxt = (np.arange(n)[:, None] * 4 + np.arange(4)[None, :]) % n
    np.add.at(matrix, (np.repeat(np.arange(n), 4), nxt.ravel()), trans.ravel())
    pi = np.full(n, 1.0 / n)
    for _ in range(500):
        new = pi @ matrix
        if np.abs(new - pi).max() < 1e-12:
            break
        pi = new
    return pi / pi.sum()


def _markov_chain(
    order: int, class_z: np.ndarray, family_z: np.ndarray, gc: float, cpg: float
) -> np.ndarray:
    """Transition table (4**order, 4) with a target stationary GC and optional CpG depletion."""
    n = 4**order
    base = np.exp(class_z + family_z)
    ends_in_c = (np.arange(n) % 4) == 1
    base[ends_in_c, 2] *= cpg
    is_gc = np.array([0.0, 1.0, 1.0, 0.0])

    def trans(log_tilt: float) -> np.ndarray:
        t = base * np.exp(log_tilt * is_gc)[None, :]
        return t / t.sum(axis=1, keepdims=True)

    def gc_of(log_tilt: float) -> float:
        t = trans(log_tilt)
        return float(_stationary(t, order) @ (t @ is_gc))

    return trans(_solve_tilt(gc_of, gc))


@dataclass(frozen=True)
class _ProfileParams:
    order: int  # Markov order of non-coding sequence
    gc_range: tuple[float, float]  # family GC is drawn uniformly from this range
    coding_range: tuple[float, float]  # per-genome coding density
    gene_codons: tuple[float, float]  # lognormal (median codons, sigma)
    introns: float  # mean introns per gene
    cpg: float  # CpG depletion in non-coding sequence (1 = none)
    codon_cpg: float
    repeat_range: tuple[float, float]  # fraction of genome in dispersed repeats
    microsat_range: tuple[float, float]
    n_runs: tuple[int, int]
    class_sigma: float  # spread of class-level codon/Markov logits around neutral
    family_sigma: float  # per-family perturbation of those logits


_PARAMS_BY_PROFILE = {
    "virus": _ProfileParams(
        order=2,
        gc_range=(0.36, 0.49),
        coding_range=(0.85, 0.95),
        gene_codons=(250.0, 0.7),
        introns=0.0,
        cpg=0.8,
        codon_cpg=0.8,
        repeat_range=(0.0, 0.0),
        microsat_range=(0.0, 0.0),
        n_runs=(0, 0),
        class_sigma=0.5,
        family_sigma=0.35,
    ),
    "host": _ProfileParams(
        order=3,
        gc_range=(0.46, 0.59),
        coding_range=(0.40, 0.60),
        gene_codons=(350.0, 0.6),
        introns=1.5,
        cpg=0.25,
        codon_cpg=0.5,
        repeat_range=(0.08, 0.18),
        microsat_range=(0.01, 0.03),
        n_runs=(2, 6),
        class_sigma=0.5,
        family_sigma=0.35,
    ),
}


@dataclass(frozen=True)
class _FamilyTables:
    codon_p: np.ndarray
    stop_p: np.ndarray
    chain: np.ndarray
    chain_pi: np.ndarray
    repeats: tuple[np.ndarray, ...]  # consensus sequences of dispersed repeat families
    repeat_p: np.ndarray


@functools.lru_cache(maxsize=64)
def _family_tables(profile: str, family: int) -> _FamilyTables:
    """Tables shared by all genomes of one family; the class part is the same for every family."""
    prm = _PARAMS_BY_PROFILE[profile]
    tag = _CLASS_TAG[profile]
    cls = _rng(tag, 0)
    fam = _rng(tag, 1, family)
    n_ctx = 4**prm.order
    class_codon_z = cls.normal(0.0, prm.class_sigma, len(_SENSE))
    class_aa = np.exp(cls.normal(0.0, 0.15, len(_AMINO)))
    class_chain_z = cls.normal(0.0, prm.class_sigma, (n_ctx, 4))
    class_stop = cls.dirichlet(np.full(3, 4.0))

    gc = fam.uniform(*prm.gc_range)
    coding_gc = float(np.clip(gc + 0.02, 0.2, 0.8))  # coding is a little GC-richer than the rest
    codon_p = _codon_probs(
        class_codon_z,
        fam.normal(0.0, prm.family_sigma, len(_SENSE)),
        class_aa * np.exp(fam.normal(0.0, 0.1, len(_AMINO))),
        coding_gc,
        prm.codon_cpg,
    )
    chain = _markov_chain(
        prm.order,
        class_chain_z,
        fam.normal(0.0, prm.family_sigma, (n_ctx, 4)),
        float(np.clip(gc - 0.03, 0.2, 0.8)),
        prm.cpg,
    )
    pi = _stationary(chain, prm.order)
    stop_p = fam.dirichlet(class_stop * 20.0)

    repeats: list[np.ndarray] = []
    if prm.repeat_range[1] > 0:
        for _ in range(int(fam.integers(3, 8))):
            length = int(np.exp(fam.uniform(np.log(150), np.log(3000))))
            consensus = _sample_markov(fam, chain, pi, prm.order, length)
            if fam.random() < 0.5:  # SINE/LINE-like poly(A) tail
                consensus = np.concatenate(
                    [consensus, np.zeros(int(fam.integers(10, 30)), np.uint8)]
                )
            repeats.append(consensus)
    repeat_p = 1.0 / np.arange(1, len(repeats) + 1)  # a few families dominate, as in real genomes
    repeat_p = repeat_p / repeat_p.sum() if len(repeat_p) else repeat_p
    return _FamilyTables(codon_p, stop_p, chain, pi, tuple(repeats), repeat_p)


# --------------------------------------------------------------------------- sampling


def _sample_markov(
    rng: np.random.Generator, chain: np.ndarray, pi: np.ndarray, order: int, total: int
) -> np.ndarray:
    """Sample ``total`` bases from an order-k chain.

    A chain is inherently sequential, so many independent chains (each started from the
    stationary distribution) run in lockstep and are concatenated: 1024 numpy steps per call
    instead of one Python step per base. The seams are invisible to k-mer statistics.
    """
    if total <= 0:
        return np.zeros(0, dtype=np.uint8)
    steps = min(_CHAIN_STEPS, total)
    n_chains = -(-total // steps)
    n_ctx = 4**order
    cum = np.cumsum(chain, axis=1)[:, :3]
    state = rng.choice(n_ctx, size=n_chains, p=pi)
    u = rng.random((steps, n_chains))
    out = np.empty((steps, n_chains), dtype=np.uint8)
    for t in range(steps):
        x = (u[t][:, None] > cum[state]).sum(axis=1)
        out[t] = x
        state = (state * 4 + x) % n_ctx
    return out.T.ravel()[:total]


def _revcomp(codes: np.ndarray) -> np.ndarray:
    out = codes[::-1].copy()
    acgt = out < 4
    out[acgt] = 3 - out[acgt]
    return out


def _split_length(rng: np.random.Generator, total: int, parts: int) -> list[int]:
    spare = total - _MIN_RECORD_LENGTH * parts
    shares = rng.dirichlet(np.full(parts, 4.0))
    lengths = [_MIN_RECORD_LENGTH + int(s * spare) for s in shares]
    lengths[0] += total - sum(lengths)
    return lengths


def _build_record(
    rng: np.random.Generator, length: int, prm: _ProfileParams, tables: _FamilyTables
) -> tuple[np.ndarray, np.ndarray]:
    """Genes and the sequence between them; returns (codes, non-coding mask)."""
    density = rng.uniform(*prm.coding_range)
    median, sigma = prm.gene_codons
    # layout: gap, gene, gap, gene, ..., gap; lengths first, so that sequence is drawn in bulk
    gaps = [int(rng.integers(30, 300))]  # leader / UTR
    genes: list[tuple[int, int, list[int]]] = []  # (codons between ATG and stop, strand, introns)
    used = gaps[0]
    strand = 1
    while used < length:
        n_codons = int(np.clip(rng.lognormal(np.log(median), sigma), 40, 4000))
        if rng.random() < 0.3:  # strand switches come in runs, as in operons and gene clusters
            strand = -strand
        n_introns = min(int(rng.poisson(prm.introns)), 10) if prm.introns else 0
        introns = [int(v) for v in np.clip(rng.lognormal(np.log(150), 0.8, n_introns), 40, 3000)]
        cds = 3 * (n_codons + 2)
        mean_gap = max(cds * (1 - density) / density - sum(introns), 10.0)
        gaps.append(int(rng.gamma(2.0, mean_gap / 2.0)) + 1)
        genes.append((n_codons, strand, introns))
        used += cds + sum(introns) + gaps[-1]

    codons = _SENSE_CODES[rng.choice(len(_SENSE), size=sum(g[0] for g in genes), p=tables.codon_p)]
    stops = _STOP_CODES[rng.choice(3, size=len(genes), p=tables.stop_p)]
    markov_total = sum(gaps) + sum(sum(g[2]) for g in genes)
    markov = _sample_markov(rng, tables.chain, tables.chain_pi, prm.order, markov_total)
    atg = np.array([0, 3, 2], dtype=np.uint8)

    def take(n: int) -> np.ndarray:
        nonlocal m_pos
        m_pos += n
        return markov[m_pos - n : m_pos]

    m_pos = c_pos = 0
    pieces = [take(gaps[0])]
    noncoding = [np.ones(gaps[0], dtype=bool)]
    for k, (n_codons, strand, introns) in enumerate(genes):
        cds = np.concatenate([atg, codons[c_pos : c_pos + n_codons].ravel(), stops[k]])
        c_pos += n_codons
        cuts = np.sort(rng.choice(np.arange(1, n_codons + 1), len(introns), replace=False)) * 3
        parts: list[np.ndarray] = []
        masks: list[np.ndarray] = []
        prev = 0
        for cut, intron_length in zip(cuts, introns, strict=True):
            body = take(intron_length).copy()
            body[:2] = (2, 3)  # GT ... AG splice sites
            body[-2:] = (0, 2)
            parts += [cds[prev:cut], body]
            masks += [np.zeros(cut - prev, bool), np.ones(intron_length, bool)]
            prev = cut
        parts.append(cds[prev:])
        masks.append(np.zeros(len(cds) - prev, bool))
        gene, mask = np.concatenate(parts), np.concatenate(masks)
        if strand < 0:
            gene, mask = _revcomp(gene), mask[::-1]
        pieces += [gene, take(gaps[k + 1])]
        noncoding += [mask, np.ones(gaps[k + 1], dtype=bool)]
    return np.concatenate(pieces)[:length], np.concatenate(noncoding)[:length]


def _place(rng: np.random.Generator, free: np.ndarray, length: int, tries: int = 50) -> int | None:
    """Start of a random free span of ``length`` (repeats land in non-coding DNA only)."""
    if length >= len(free):
        return None
    starts = rng.integers(0, len(free) - length, size=tries)
    for s in starts:
        if free[s : s + length].all():
            return int(s)
    return None


def _add_host_features(
    rng: np.random.Generator,
    codes: np.ndarray,
    free: np.ndarray,
    prm: _ProfileParams,
    tables: _FamilyTables,
    n_runs: int,
) -> np.ndarray:
    """Soft-masked repeats and N runs; returns the lowercase mask."""
    lower = np.zeros(len(codes), dtype=bool)
    free = free.copy()
    target = rng.uniform(*prm.repeat_range) * len(codes)
    covered = failures = 0
    while covered < target and failures < 100:  # give up when the free space is used up
        consensus = tables.repeats[rng.choice(len(tables.repeats), p=tables.repeat_p)]
        if rng.random() < 0.3:
            copy = consensus
        else:  # most copies are fragments (5'-truncated LINEs and friends)
            frag = int(np.clip(rng.lognormal(np.log(250), 0.7), 40, len(consensus)))
            start = int(rng.integers(0, len(consensus) - frag + 1))
            copy = consensus[start : start + frag]
        copy = copy.copy()
        divergence = rng.uniform(0.02, 0.25)  # older copies have drifted further
        hit = rng.random(len(copy)) < divergence
        copy[hit] = (copy[hit] + rng.integers(1, 4, int(hit.sum()))) % 4
        if rng.random() < 0.5:
            copy = _revcomp(copy)
        s = _place(rng, free, len(copy))
        if s is None:
            failures += 1
            continue
        codes[s : s + len(copy)] = copy
        lower[s : s + len(copy)] = True
        free[s : s + len(copy)] = False
        covered += len(copy)

    target = rng.uniform(*prm.microsat_range) * len(codes)
    covered = failures = 0
    while covered < target and failures < 100:
        unit_len = int(rng.choice([1, 2, 3, 4, 5, 6], p=[0.25, 0.3, 0.15, 0.15, 0.08, 0.07]))
        unit = rng.integers(0, 4, unit_len).astype(np.uint8)
        total = int(rng.integers(15, 150))
        tract = np.resize(unit, total)
        hit = rng.random(total) < rng.uniform(0.0, 0.05)
        tract[hit] = rng.integers(0, 4, int(hit.sum()))
        s = _place(rng, free, total)
        if s is None:
            failures += 1
            continue
        codes[s : s + total] = tract
        lower[s : s + total] = True
        free[s : s + total] = False
        covered += total

    for _ in range(n_runs):
        run = int(np.exp(rng.uniform(np.log(10), np.log(500))))
        s = _place(rng, free, run, tries=200)
        if s is None:
            continue
        codes[s : s + run] = 4
        lower[s : s + run] = False
        free[s : s + run] = False
    return lower


def _terminal_repeat(rng: np.random.Generator, codes: np.ndarray) -> None:
    """Inverted terminal repeats, which many DNA viruses and phages carry."""
    n = int(rng.integers(30, 150))
    if len(codes) > 4 * n:
        codes[-n:] = _revcomp(codes[:n])


def simulate_genome(spec: SimulatedSpec) -> list[tuple[str, str]]:
    """(record_id, sequence) pairs with realistic, profile-specific statistics."""
    if spec.profile not in PROFILES:
        raise ValueError(f"unknown profile {spec.profile!r}; allowed: {', '.join(PROFILES)}")
    if spec.records < 1 or spec.length < _MIN_RECORD_LENGTH * spec.records:
        raise ValueError(
            f"{spec}: need records >= 1 and length >= {_MIN_RECORD_LENGTH} bp per record"
        )
    prm = _PARAMS_BY_PROFILE[spec.profile]
    tables = _family_tables(spec.profile, spec.family)
    rng = _rng(_CLASS_TAG[spec.profile], 2, spec.family, spec.seed)
    lengths = _split_length(rng, spec.length, spec.records)
    runs_total = int(rng.integers(prm.n_runs[0], prm.n_runs[1] + 1)) if prm.n_runs[1] else 0
    runs = np.bincount(rng.integers(0, spec.records, runs_total), minlength=spec.records)
    if runs_total:
        runs = np.maximum(runs, 1)  # every chromosome has at least one gap

    out: list[tuple[str, str]] = []
    prefix = f"sim_{spec.profile}_f{spec.family}_s{spec.seed}"
    for k, length in enumerate(lengths):
        codes, free = _build_record(rng, length, prm, tables)
        if tables.repeats:
            lower = _add_host_features(rng, codes, free, prm, tables, int(runs[k]))
        else:
            lower = np.zeros(len(codes), dtype=bool)
            if rng.random() < 0.5:
                _terminal_repeat(rng, codes)
        text = np.where(lower, _LOWER[codes], _UPPER[codes]).astype(np.uint8).tobytes()
        name = f"chr{k + 1}" if spec.profile == "host" else f"seg{k + 1}"
        out.append((f"{prefix}_{name}", text.decode("ascii")))
    return out


# --------------------------------------------------------------------------- metagenome


def simulate_metagenome(
    seed: int,
    n_contigs: int = 40,
    min_length: int = 300,
    max_length: int = 20000,
    virus_fraction: float = 0.3,
) -> list[tuple[str, str, str]]:
    """(contig_id, description, sequence) contigs with the truth in the description.

    Source genomes come from families >= 1000, which default configs never use, so a model
    trained on the demo genomes meets these contigs as unseen families.
    """
    if n_contigs < 1:
        raise ValueError(f"n_contigs must be at least 1, got {n_contigs}")
    if not 1 <= min_length <= max_length:
        raise ValueError(f"need 1 <= min_length <= max_length, got {min_length}, {max_length}")
    if not 0.0 <= virus_fraction <= 1.0:
        raise ValueError(f"virus_fraction must be in [0, 1], got {virus_fraction}")
    rng = _rng(3, seed)
    n_virus = int(round(n_contigs * virus_fraction))
    labels = np.array(["virus"] * n_virus + ["host"] * (n_contigs - n_virus))
    rng.shuffle(labels)
    lengths = np.exp(rng.uniform(np.log(min_length), np.log(max_length), n_contigs))
    lengths = np.clip(np.round(lengths).astype(int), min_length, max_length)

    pool: dict[str, list[str]] = {}
    for profile, size, default in (("virus", 10, 50_000), ("host", 4, 200_000)):
        count = int((labels == profile).sum())
        genome_length = max(default, 2 * max_length)
        pool[profile] = [
            seq
            for k in range(min(count, size))
            for _, seq in simulate_genome(
                SimulatedSpec(profile, genome_length, seed=seed, family=1000 + k, records=1)
            )
        ]

    contigs: list[tuple[str, str, str]] = []
    for i, (label, length) in enumerate(zip(labels, lengths, strict=True)):
        length = int(length)
        for _ in range(50):
            source = pool[str(label)][int(rng.integers(len(pool[str(label)])))]
            start = int(rng.integers(0, len(source) - length + 1))
            piece = source[start : start + length].upper()
            if piece.count("N") <= length // 2:
                break
        if rng.random() < 0.5:  # assemblers emit either strand
            piece = piece[::-1].translate(str.maketrans("ACGTN", "TGCAN"))
        contigs.append((f"contig_{i + 1:04d}", f"label={label} length={length}", piece))
    return contigs


# --------------------------------------------------------------------------- writing


def write_fasta(
    records: Iterable[Sequence[str]], path: str | os.PathLike[str], line_width: int = 60
) -> None:
    """Write (id, seq) or (id, description, seq) records; gzip when the name ends in .gz.

    Written to a temporary file and renamed, so that an interrupted run never leaves a
    truncated FASTA that a later step would take for a complete one.
    """
    with atomic_write(path, "wb") as raw:
        if str(path).endswith(".gz"):
            # mtime=0 and no file name: identical input gives byte-identical output
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
                _write_records(out, records, line_width)
        else:
            _write_records(raw, records, line_width)


def _write_records(out, records: Iterable[Sequence[str]], line_width: int) -> None:
    for record in records:
        if len(record) == 2:
            record_id, seq = record
            description = ""
        elif len(record) == 3:
            record_id, description, seq = record
        else:
            raise ValueError(
                f"expected (id, seq) or (id, description, seq), got {len(record)} items"
            )
        out.write(_format_record(record_id, seq, line_width, description))
