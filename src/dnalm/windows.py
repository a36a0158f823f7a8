"""Fixed-length windows over genomes, labelled from the sheet and split by group.

Only coordinates are stored (genome, chrom, start, end, strand, label, group); sequences are read
again by coordinate when tokenizing. Splits are drawn over GROUPS (species, family, genome), never
over windows: windows of one genome overlap and near-identical genomes share a group, so a
window-level split would leak test sequence into training.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pysam

from dnalm.fasta import (
    ACGT_BYTES,
    AMBIGUOUS_FLAG,
    ambiguous_bed_path,
    is_gzip,
    record_lengths,
)

SPLITS = ("train", "val", "test")
WINDOW_COLUMNS = ["genome", "chrom", "start", "end", "strand", "label", "label_id", "group"]
_ACGT = np.zeros(256, dtype=bool)
_ACGT[np.frombuffer(ACGT_BYTES, dtype=np.uint8)] = True  # as normalise_fasta's ambiguity BED
# Bases of window starts read at once: memory is a small multiple of this, whatever the genome;
# 1 Mbp and 4 Mbp measured equally fast (benchmarks/stream_throughput.py --block-size).
DEFAULT_BLOCK_SIZE = 1_000_000


@dataclass(frozen=True)
class WindowSpec:
    length: int
    stride: int
    max_n_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.length < 1 or self.stride < 1:
            raise ValueError(f"window length and stride must be positive, got {self}")
        if not 0.0 <= self.max_n_fraction <= 1.0:
            raise ValueError(f"max_n_fraction must be in [0, 1], got {self.max_n_fraction}")


def window_starts(sequence: str | bytes, spec: WindowSpec) -> np.ndarray:
    """Starts of the windows whose fraction of non-ACGT bases is at most `max_n_fraction`."""
    raw = sequence.encode("ascii") if isinstance(sequence, str) else sequence
    n = len(raw)
    if n < spec.length:
        return np.zeros(0, dtype=np.int64)
    return _grid_starts(raw, (n - spec.length) // spec.stride + 1, spec)


def _grid_starts(raw: bytes, count: int, spec: WindowSpec) -> np.ndarray:
    """Which of the `count` windows at 0, stride, 2*stride, ... of `raw` pass the N filter.

    Most blocks of a genome hold no ambiguous base at all; `bytes.translate` finds that at
    memory speed. Otherwise the windows' counts come from the sorted positions of the
    ambiguous bases (two binary searches per window), not from a pass per base.
    """
    rel = np.arange(count, dtype=np.int64) * spec.stride
    if not raw.translate(None, ACGT_BYTES):
        return rel
    # 0/1 bytes viewed as bool: numpy's nonzero is ~40x faster on bool than on uint8
    where = np.flatnonzero(np.frombuffer(raw.translate(AMBIGUOUS_FLAG), dtype=bool))
    n_ambiguous = np.searchsorted(where, rel + spec.length) - np.searchsorted(where, rel)
    n_frac = n_ambiguous / spec.length
    return rel[n_frac <= spec.max_n_fraction]


def open_indexed(path: str | Path) -> pysam.FastaFile:
    """Region reader of a normalised genome, using (never building) its .fai/.gzi.

    htslib decodes only the BGZF blocks a region touches, so reading a record block by block
    costs what reading it whole does, without holding it.
    """
    path = Path(path)
    fai, gzi = (path.with_name(path.name + ext) for ext in (".fai", ".gzi"))
    compressed = is_gzip(path)
    missing = [str(p) for p in ([fai, gzi] if compressed else [fai]) if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"{path}: index missing ({', '.join(missing)}); create it with normalise_fasta"
        )
    return pysam.FastaFile(
        str(path),
        filepath_index=str(fai),
        filepath_index_compressed=str(gzi) if compressed else None,
    )


def fetch_region(reader: pysam.FastaFile, chrom: str, start: int, end: int) -> bytes:
    """Bases [start, end) of a record as bytes; a short read (file and index disagree) raises."""
    try:
        raw = reader.fetch(reference=chrom, start=start, end=end).encode("ascii")
    except (KeyError, ValueError) as exc:
        problem = str(exc)
    else:
        if len(raw) == end - start:
            return raw
        problem = f"the record ends at {start + len(raw):,}"
    raise ValueError(
        f"{reader.filename.decode()}: cannot read {chrom}:{start:,}-{end:,} ({problem}); the "
        "FASTA and its .fai/.gzi do not match: normalise the genome again"
    )


def record_window_starts(
    reader: pysam.FastaFile,
    chrom: str,
    length: int,
    spec: WindowSpec,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> np.ndarray:
    """`window_starts` of one record, read in blocks of `block_size` bases of window starts.

    A block is read with one window length of overlap, so every window is judged on all of its
    bases and the result does not depend on the block size; memory is one block.
    """
    if length < spec.length:
        return np.zeros(0, dtype=np.int64)
    total = (length - spec.length) // spec.stride + 1
    per_block = max(1, block_size // spec.stride)
    parts = []
    for first in range(0, total, per_block):
        count = min(per_block, total - first)
        origin = first * spec.stride
        raw = fetch_region(reader, chrom, origin, origin + (count - 1) * spec.stride + spec.length)
        parts.append(origin + _grid_starts(raw, count, spec))
    return np.concatenate(parts)


def runs_window_starts(
    length: int, run_starts: np.ndarray, run_ends: np.ndarray, spec: WindowSpec
) -> np.ndarray:
    """`window_starts` of a record known only by its length and its runs of non-ACGT bases
    (sorted, disjoint, 0-based half-open), without its sequence.

    Only windows that overlap a run can fail the filter; their counts of ambiguous bases come
    from prefix sums over the runs, found by binary search. So the work grows with the number
    of windows and runs, never with the bases read.
    """
    if length < spec.length:
        return np.zeros(0, dtype=np.int64)
    total = (length - spec.length) // spec.stride + 1
    grid = np.arange(total, dtype=np.int64) * spec.stride
    if not len(run_starts):
        return grid
    run_starts = np.asarray(run_starts, dtype=np.int64)
    run_ends = np.asarray(run_ends, dtype=np.int64)
    # window k overlaps run [s, e) when s - length < k * stride < e
    lo = np.maximum((run_starts - spec.length) // spec.stride + 1, 0)
    hi = np.minimum((run_ends - 1) // spec.stride + 1, total)
    # sorted disjoint runs give non-decreasing lo and hi: starting each range where the one
    # before ended lists every overlapping window once
    lo[1:] = np.maximum(lo[1:], hi[:-1])
    size = np.maximum(hi - lo, 0)
    if not size.any():
        return grid
    offsets = np.cumsum(size) - size
    index = np.repeat(lo - offsets, size) + np.arange(int(size.sum()), dtype=np.int64)
    first = index * spec.stride
    covered = np.concatenate([[0], np.cumsum(run_ends - run_starts)])

    def ambiguous_before(x: np.ndarray) -> np.ndarray:
        """Non-ACGT bases in [0, x): the runs starting before x, less the part of the last
        one that reaches past x."""
        n = np.searchsorted(run_starts, x, side="left")
        past = np.where(n > 0, np.maximum(run_ends[np.maximum(n - 1, 0)] - x, 0), 0)
        return covered[n] - past

    n_ambiguous = ambiguous_before(first + spec.length) - ambiguous_before(first)
    n_frac = n_ambiguous / spec.length
    keep = np.ones(total, dtype=bool)
    keep[index[~(n_frac <= spec.max_n_fraction)]] = False  # the test _grid_starts makes
    return grid[keep]


_BED_HEADER = re.compile(r"records=(\d+) bases=(\d+)")


def read_ambiguous_runs(
    bed: str | Path, lengths: Mapping[str, int]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """record -> (starts, ends) of the non-ACGT runs in a genome's ambiguous BED, checked
    against its record lengths (`.fai`).

    A BED that does not fit its FASTA would silently let N-rich windows through, so a header
    whose record count or total length disagrees with the index, a record the index lacks, or
    a run out of bounds, unsorted or overlapping raises, naming the file and line.
    """
    bed = Path(bed)

    def fail(message: str, line: int | None = None) -> ValueError:
        where = f"{bed}, line {line}" if line else str(bed)
        return ValueError(
            f"{where}: {message}; the BED of non-ACGT runs does not match its genome: "
            "normalise the genome again (or delete the BED to read the sequence instead)"
        )

    with gzip.open(bed, "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    header = 0
    while header < len(lines) and lines[header].startswith(("#", "track", "browser")):
        found = _BED_HEADER.search(lines[header])
        if found:
            records, bases = int(found[1]), int(found[2])
            if (records, bases) != (len(lengths), sum(lengths.values())):
                raise fail(
                    f"written for {records:,} records and {bases:,} bases, but the index lists "
                    f"{len(lengths):,} records and {sum(lengths.values()):,} bases",
                    header + 1,
                )
        header += 1
    fields = [line.split("\t") for line in lines[header:]]
    for i, row in enumerate(fields):
        if len(row) < 3:
            raise fail(
                f"expected 3 tab-separated columns (chrom start end), got {row!r}", header + i + 1
            )
    if not fields:
        return {}
    chroms = [row[0] for row in fields]
    for i, row in enumerate(fields):
        if not all(v.isascii() and v.isdigit() for v in row[1:3]):
            raise fail(f"start and end must be integers, got {row[1:3]!r}", header + i + 1)
    starts = np.array([int(row[1]) for row in fields], dtype=np.int64)
    ends = np.array([int(row[2]) for row in fields], dtype=np.int64)
    names = list(lengths)
    code_of = {name: i for i, name in enumerate(names)}
    unknown = next((i for i, c in enumerate(chroms) if c not in code_of), None)
    if unknown is not None:
        raise fail(f"record {chroms[unknown]!r} is not in the genome's index", header + unknown + 1)
    codes = np.array([code_of[c] for c in chroms], dtype=np.int64)
    limit = np.array([lengths[n] for n in names], dtype=np.int64)[codes]
    bad = np.flatnonzero((starts < 0) | (ends <= starts) | (ends > limit))
    if len(bad):
        i = int(bad[0])
        raise fail(
            f"run {chroms[i]}:{starts[i]}-{ends[i]} is empty or outside the record "
            f"(length {limit[i]:,})",
            header + i + 1,
        )
    order = np.lexsort((starts, codes))
    same = codes[order][1:] == codes[order][:-1]
    clash = np.flatnonzero(same & (starts[order][1:] < ends[order][:-1]))
    if len(clash):
        i, j = int(order[clash[0] + 1]), int(order[clash[0]])
        raise fail(
            f"run {chroms[i]}:{starts[i]}-{ends[i]} overlaps run {chroms[j]}:{starts[j]}-"
            f"{ends[j]} (line {header + j + 1})",
            header + i + 1,
        )
    codes, starts, ends = codes[order], starts[order], ends[order]
    bounds = np.searchsorted(codes, np.arange(len(names) + 1))
    return {
        names[c]: (starts[bounds[c] : bounds[c + 1]], ends[bounds[c] : bounds[c + 1]])
        for c in np.unique(codes).tolist()
    }


def _genome_window_starts(
    path: Path, spec: WindowSpec, block_size: int, use_bed: bool
) -> Iterator[tuple[str, np.ndarray]]:
    """(record, window starts) of every record: from the BED when there is one, else read."""
    lengths = record_lengths(path)
    bed = ambiguous_bed_path(path) if use_bed else None
    if bed is not None and bed.exists():
        if not path.exists():
            raise FileNotFoundError(f"{path}: genome missing (its index and {bed.name} exist)")
        runs = read_ambiguous_runs(bed, lengths)
        none = (np.zeros(0, dtype=np.int64),) * 2
        for chrom, length in lengths.items():
            yield chrom, runs_window_starts(length, *runs.get(chrom, none), spec)
        return
    with open_indexed(path) as reader:
        for chrom, length in lengths.items():
            yield chrom, record_window_starts(reader, chrom, length, spec, block_size=block_size)


def windows_for_genome(
    path: str | Path,
    spec: WindowSpec,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    use_bed: bool = True,
) -> pd.DataFrame:
    """Windows (chrom, start, end) over every record of a normalised genome.

    With the BED of non-ACGT runs that normalise_fasta writes beside the FASTA
    (`{genome}.ambiguous.bed.gz`), the windows come from the record lengths and those runs
    alone, without reading a base: the genome is then read once, by the tokenize step. Without
    that BED (or `use_bed=False`) every record is streamed block by block (`block_size`).
    """
    chrom, starts = _window_arrays(Path(path), spec, block_size, use_bed)
    return pd.DataFrame(
        {"chrom": _strings(chrom), "start": starts, "end": starts + spec.length}, copy=False
    )


def _window_arrays(
    path: Path, spec: WindowSpec, block_size: int, use_bed: bool
) -> tuple[pa.Array, np.ndarray]:
    """(record of each window, its start), the records' names repeated by arrow: a frame per
    record and their concat cost more than the windows themselves on small genomes."""
    records = [
        (chrom, starts)
        for chrom, starts in _genome_window_starts(path, spec, block_size, use_bed)
        if len(starts)
    ]
    names = pa.array([chrom for chrom, _ in records], pa.large_string())
    codes = np.repeat(np.arange(len(records), dtype=np.int32), [len(s) for _, s in records])
    chrom = pa.DictionaryArray.from_arrays(codes, names).cast(pa.large_string())
    starts = np.concatenate([s for _, s in records]) if records else np.zeros(0)
    return chrom, starts.astype(np.int64, copy=False)


def _strings(values: pa.Array | str, n: int = 0) -> pd.Series:
    """A column of pandas' default "str" dtype from arrow strings, or `n` times one string
    (arrow repeats it by dictionary: pandas' own broadcast of a scalar costs ~10x more)."""
    if isinstance(values, str):
        one = pa.array([values], pa.large_string())
        values = pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), one).cast(one.type)
    return values.to_pandas()


def seeded_rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator that depends on the seed and on names, not on processing order."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def split_groups(
    groups: pd.DataFrame,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, str]:
    """Assign every group to train, val or test, stratified by label.

    `groups` has columns group, label and optionally split (a forced assignment). Each label
    needs at least three groups so that every split sees every class.
    """
    label_counts = groups.groupby("group")["label"].nunique()
    mixed = label_counts[label_counts > 1]
    if len(mixed):
        raise ValueError(
            f"group(s) {', '.join(map(repr, mixed.index))} contain genomes of several labels; "
            "a group must have one label (give those genomes different groups)"
        )
    table = groups.drop_duplicates("group").set_index("group")
    forced = table["split"].dropna().to_dict() if "split" in table else {}
    bad = {g: s for g, s in forced.items() if s not in SPLITS}
    if bad:
        raise ValueError(f"unknown split value(s) {bad}; allowed: {', '.join(SPLITS)}")
    assignment: dict[str, str] = dict(forced)
    for label, sub in table.groupby("label"):
        free = sorted(g for g in sub.index if g not in forced)
        seeded_rng(seed, str(label)).shuffle(free)
        have = {s: sum(1 for g in sub.index if forced.get(g) == s) for s in SPLITS}
        n = len(free) + sum(have.values())
        want = {
            "test": max(1, round(n * test_fraction)) - have["test"],
            "val": max(1, round(n * val_fraction)) - have["val"],
        }
        for split in ("test", "val"):
            for _ in range(max(0, want[split])):
                if len(free) <= (0 if have["train"] else 1):
                    break
                assignment[free.pop()] = split
                have[split] += 1
        for g in free:
            assignment[g] = "train"
            have["train"] += 1
        missing = [s for s in SPLITS if have[s] == 0]
        if missing:
            raise ValueError(
                f"label {label!r} has {n} group(s) ({', '.join(sorted(sub.index))}); splitting by "
                f"group needs at least 3 so that {', '.join(missing)} get one; add genomes of "
                "other groups with this label or set their split in the sheet"
            )
    return assignment


def task_windows(
    sheet: pd.DataFrame,
    genome_paths: Mapping[str, str | Path],
    spec: WindowSpec,
    *,
    assignment: Mapping[str, str],
    seed: int,
    labels: list[str] | None = None,
    max_windows_per_genome: int | None = None,
    balance: str = "none",
    every_label: bool = True,
) -> dict[str, pd.DataFrame]:
    """Labelled windows of a genome-classification task; `assignment` maps group -> split.

    A split left without some label (its groups give no window) is an error rather than a
    silently one-class split (`every_label`; off for a pool that is split afterwards).
    """
    sheet = sheet.copy()
    names = labels or sorted(sheet["label"].unique())
    unknown = set(sheet["label"]) - set(names)
    if unknown:
        raise ValueError(f"labels {sorted(unknown)} are not in the task's labels {names}")
    label_id = {name: i for i, name in enumerate(names)}
    unassigned = sorted(set(sheet["group"]) - set(assignment))
    if unassigned:
        raise ValueError(f"group(s) {unassigned} have no split; rerun the split_groups step")
    frames = []
    for row in sheet.itertuples(index=False):
        win = windows_for_genome(genome_paths[row.genome], spec)
        if max_windows_per_genome and len(win) > max_windows_per_genome:
            keep = seeded_rng(seed, row.genome).choice(
                len(win), max_windows_per_genome, replace=False
            )
            win = win.iloc[np.sort(keep)]
        frames.append(
            win.assign(
                genome=row.genome,
                strand="+",
                label=row.label,
                label_id=label_id[row.label],
                group=row.group,
                split=assignment[row.group],
            )
        )
    allwin = pd.concat(frames, ignore_index=True)
    if allwin.empty:
        longest = max(max(record_lengths(p).values()) for p in genome_paths.values())
        raise ValueError(
            f"no window of length {spec.length} fits any genome (longest record: {longest:,} bp) "
            f"with max_n_fraction {spec.max_n_fraction}; use a shorter window length"
        )
    out = {}
    for split in SPLITS:
        part = allwin[allwin["split"] == split]
        if balance == "downsample" and split != "test" and part["label"].nunique() > 1:
            part = downsample(part, seed, split)
        out[split] = part[WINDOW_COLUMNS].reset_index(drop=True)
    if every_label:
        for split in SPLITS:
            for label in sorted(set(sheet["label"]) - set(out[split]["label"])):
                groups = sorted(
                    {g for g, s in assignment.items() if s == split}
                    & set(sheet.loc[sheet["label"] == label, "group"])
                )
                raise ValueError(
                    f"no {split} window is labelled {label!r}: its {split} group(s) "
                    f"({', '.join(groups) or 'none'}) give no window of length {spec.length} "
                    f"with max_n_fraction {spec.max_n_fraction}; pin other groups to {split} "
                    "with the sheet's split column, change split.seed, or shorten the window"
                )
    return out


def split_table(
    sheet: pd.DataFrame, *, val_fraction: float, test_fraction: float, seed: int
) -> pd.DataFrame:
    """The sheet's genomes with the split of their group (the `split_groups` step's output)."""
    cols = ["group", "label"] + (["split"] if "split" in sheet else [])
    assignment = split_groups(
        sheet[cols], val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    table = sheet[["genome", "label", "group"]].copy()
    table["split"] = table["group"].map(assignment)
    return table


def record_split_table(
    sheet: pd.DataFrame,
    records: Mapping[str, Mapping[str, int]],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    min_length: int = 1,
) -> pd.DataFrame:
    """Split by chromosome (record) within genomes: one row per (genome, chrom) with its unit
    (group) and split, for tasks with few genomes, e.g. one host genome against viruses.

    The unit is '<sheet group>:<record name>', so the same chromosome of two assemblies in one
    group (homologous, near-identical) lands on one side. `records` maps genome -> {record:
    length} (record_lengths); records shorter than `min_length` (the window length) are left
    out, so that every unit yields windows. A sheet `split` pins all of a genome's records.
    """
    rows = []
    for row in sheet.itertuples(index=False):
        if row.genome not in records:
            raise ValueError(f"genome {row.genome!r} has no record lengths (is its .fai missing?)")
        kept = [c for c, n in records[row.genome].items() if n >= min_length]
        if not kept:
            raise ValueError(
                f"genome {row.genome!r}: no record is at least {min_length:,} bp long, so "
                "splitting it by chromosome leaves nothing; use a shorter window"
            )
        forced = getattr(row, "split", None)
        if pd.isna(forced) or forced == "":
            forced = None
        for chrom in kept:
            rows.append((row.genome, chrom, row.label, f"{row.group}:{chrom}", forced))
    table = pd.DataFrame(rows, columns=["genome", "chrom", "label", "group", "split"])
    forced = table[["group", "split"]].dropna().drop_duplicates()
    clash = forced[forced["group"].duplicated(keep=False)]
    if len(clash):
        raise ValueError(
            f"chromosome unit {clash['group'].iat[0]!r} is pinned to several splits "
            f"({', '.join(sorted(clash['split']))}) by genomes of one group; pin them alike"
        )
    table["split"] = table.groupby("group")["split"].transform("first")  # a pin binds the unit
    assignment = split_groups(
        table[["group", "label", "split"]],
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
    table["split"] = table["group"].map(assignment)
    return table


def apply_record_splits(windows: pd.DataFrame, table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Windows (any split) -> train/val/test by their (genome, chrom) in a record_split_table;
    each window's `group` becomes its chromosome unit, so reports count units."""
    key = ["genome", "chrom"]
    merged = windows.drop(columns=["group", "split"], errors="ignore").merge(
        table[[*key, "group", "split"]], on=key, how="left", validate="many_to_one"
    )
    missing = merged[merged["split"].isna()]
    if len(missing):
        genome, chrom = missing[key].iloc[0]
        raise ValueError(
            f"{len(missing)} window(s) lie on records without a split (first: genome {genome!r}, "
            f"record {chrom!r}); rerun the split step"
        )
    columns = [c for c in WINDOW_COLUMNS if c in merged]
    return {s: merged.loc[merged["split"] == s, columns].reset_index(drop=True) for s in SPLITS}


def task_windows_by_record(
    table: pd.DataFrame,
    genome_paths: Mapping[str, str | Path],
    spec: WindowSpec,
    *,
    seed: int,
    labels: list[str] | None = None,
    max_windows_per_genome: int | None = None,
    balance: str = "none",
) -> dict[str, pd.DataFrame]:
    """`task_windows` on a chromosome split (a record_split_table).

    Windows are cut and capped per genome exactly as in a group split, so the two modes differ
    only in where a window goes: to the split of its (genome, chrom). Balancing runs after that,
    per split. A split left without some label (the cap or the N filter emptied its chromosomes)
    is an error rather than a silently one-class split.
    """
    genomes = table.drop_duplicates("genome")[["genome", "label"]]
    whole = task_windows(
        genomes.assign(group=genomes["genome"]),
        genome_paths,
        spec,
        assignment={g: "train" for g in genomes["genome"]},
        seed=seed,
        labels=labels,
        max_windows_per_genome=max_windows_per_genome,
        every_label=False,
    )["train"]
    out = apply_record_splits(whole, table)
    for split in SPLITS:
        part = out[split]
        if balance == "downsample" and split != "test" and part["label"].nunique() > 1:
            out[split] = downsample(part, seed, split).reset_index(drop=True)
        for label in sorted(set(table["label"]) - set(part["label"])):
            units = table.loc[(table["split"] == split) & (table["label"] == label), "group"]
            cap = max_windows_per_genome and f" among the {max_windows_per_genome:,} per genome"
            raise ValueError(
                f"no {split} window is labelled {label!r}: its {split} chromosome(s) "
                f"({', '.join(units) or 'none'}) give no window of length {spec.length} with max_n_fraction "
                f"{spec.max_n_fraction}{cap or ''}; raise max_windows_per_genome or max_n_fraction, "
                "or change split.seed"
            )
    return out


def downsample(windows: pd.DataFrame, seed: int, key: str = "") -> pd.DataFrame:
    """Drop windows of larger classes at random (seeded) down to the smallest class."""
    smallest = windows["label"].value_counts().min()
    parts = []
    for label, part in windows.groupby("label", sort=True):
        if len(part) > smallest:
            keep = seeded_rng(seed, key, str(label)).choice(len(part), smallest, replace=False)
            part = part.iloc[np.sort(keep)]
        parts.append(part)
    return pd.concat(parts).sort_index()


def pretraining_roles(
    genomes: list[str], splits: list[pd.DataFrame], *, exclude_test_genomes: bool = True
) -> pd.DataFrame:
    """Role of each pretraining genome: train, val (held out by a task) or excluded.

    `splits` are the tasks' split tables: genome -> split, or with a `chrom` column (a
    chromosome split) (genome, chrom) -> split. A genome some task tests on is excluded by
    default. Of a chromosome-split genome only the test chromosomes are (`excluded_chroms`),
    as HyenaDNA holds chromosomes out, and its val chromosomes validate pretraining
    (`val_chroms`). With `exclude_test_genomes=False` test genomes and chromosomes join the
    pretraining train split on purpose. The chromosome lists are space-separated: a FASTA
    record name holds no whitespace.
    """
    held: dict[str, set[str]] = {s: set() for s in ("val", "test")}  # whole genomes
    chroms: dict[str, dict[str, set[str]]] = {s: {} for s in ("val", "test")}
    for table in splits:
        for split in held:
            part = table.loc[table["split"] == split]
            if "chrom" not in table:
                held[split] |= set(part["genome"])
                continue
            for genome, chrom in zip(part["genome"], part["chrom"], strict=True):
                chroms[split].setdefault(genome, set()).add(chrom)
    rows = []
    for genome in genomes:
        if genome in held["test"] and exclude_test_genomes:
            rows.append((genome, "excluded", "a task tests on it", "", ""))
            continue
        if genome in held["test"]:
            role, reason = "train", "a task tests on it; kept (exclude_test_genomes: false)"
        elif genome in held["val"]:
            role, reason = "val", "a task validates on it"
        else:
            role, reason = "train", ""
        test = chroms["test"].get(genome, set())
        val = chroms["val"].get(genome, set()) - test if role == "train" else set()
        notes = [reason] if reason else []
        if test:
            kept = "left out" if exclude_test_genomes else "kept (exclude_test_genomes: false)"
            notes.append(f"a task tests on chromosome(s) {_chrom_list(test)}: {kept}")
        if val:
            notes.append(f"a task validates on chromosome(s) {_chrom_list(val)}: pretraining val")
        excluded = test if exclude_test_genomes else set()
        rows.append((genome, role, "; ".join(notes), _chrom_list(val), _chrom_list(excluded)))
    columns = ["genome", "role", "reason", "val_chroms", "excluded_chroms"]
    return pd.DataFrame(rows, columns=columns)


def _chrom_list(names: set[str]) -> str:
    return " ".join(sorted(names))


def _chrom_set(value: object) -> set[str]:
    """A roles table's chromosome list (also as read back from corpus.tsv, empty = NaN)."""
    return set(value.split()) if isinstance(value, str) else set()


def hold_out_validation_genome(roles: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Give pretraining a val genome when no task holds one out (e.g. only labelled-sequence
    tasks): one train genome, drawn with the seed, if at least two are train."""
    train = sorted(roles.loc[roles["role"] == "train", "genome"])
    val_chroms = roles["val_chroms"].map(_chrom_set) if "val_chroms" in roles else []
    if (roles["role"] == "val").any() or any(val_chroms) or len(train) < 2:
        return roles
    pick = train[int(seeded_rng(seed, "pretrain-val").integers(len(train)))]
    roles = roles.copy()
    roles.loc[roles["genome"] == pick, ["role", "reason"]] = [
        "val",
        "drawn for validation: no genome task holds a genome out",
    ]
    return roles


def corpus_windows(
    genomes: list[str],
    genome_paths: Mapping[str, str | Path],
    spec: WindowSpec,
) -> pd.DataFrame:
    """Unlabelled windows for language-model pretraining."""
    frames = []
    for g in genomes:
        chrom, starts = _window_arrays(Path(genome_paths[g]), spec, DEFAULT_BLOCK_SIZE, True)
        n = len(starts)
        # one constructor in column order: adding five columns one by one and reordering
        # them cost about 3x as much (measured on the hg38 slice's 4,536 windows)
        columns = {
            "genome": _strings(g, n),
            "chrom": _strings(chrom),
            "start": starts,
            "end": starts + spec.length,
            "strand": _strings("+", n),
            "label": _strings("", n),
            "label_id": np.full(n, -1, dtype=np.int64),
            "group": _strings(g, n),
        }
        frames.append(pd.DataFrame(columns, copy=False))
    if not frames:
        return pd.DataFrame({c: [] for c in WINDOW_COLUMNS})
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def pretraining_corpus(
    roles: pd.DataFrame, genome_paths: Mapping[str, str | Path], spec: WindowSpec
) -> dict[str, pd.DataFrame]:
    """Pretraining train/val windows by `pretraining_roles`: a genome goes to its role's split
    less its `excluded_chroms`, its `val_chroms` to val; each genome is windowed once."""
    parts: dict[str, list[pd.DataFrame]] = {"train": [], "val": []}
    for row in roles.to_dict("records"):
        if row["role"] == "excluded":
            continue
        win = corpus_windows([row["genome"]], genome_paths, spec)
        win = win[~win["chrom"].isin(_chrom_set(row.get("excluded_chroms")))]
        to_val = win["chrom"].isin(_chrom_set(row.get("val_chroms")))
        parts[row["role"]].append(win[~to_val])
        parts["val"].append(win[to_val])
    empty = pd.DataFrame({c: [] for c in WINDOW_COLUMNS})
    return {
        split: pd.concat(frames, ignore_index=True) if frames else empty
        for split, frames in parts.items()
    }


def class_counts(splits: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Windows per split and label, with the number of genomes and groups behind them and the
    windows of the largest group: statistics resample whole groups, so one big group (a large
    similarity cluster, a genome with many windows) moves that many windows at once."""
    rows = []
    for split, df in splits.items():
        for label, part in df.groupby("label"):
            rows.append(
                {
                    "split": split,
                    "label": label,
                    "windows": len(part),
                    "genomes": part["genome"].nunique(),
                    "groups": part["group"].nunique(),
                    "largest_group": int(part["group"].value_counts().max()),
                }
            )
    columns = ["split", "label", "windows", "genomes", "groups", "largest_group"]
    return pd.DataFrame(rows, columns=columns)
