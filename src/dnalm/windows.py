"""Fixed-length windows over genomes, labelled from the sheet and split by group.

Only coordinates are stored (genome, chrom, start, end, strand, label, group); sequences are read
again by coordinate when tokenizing. Splits are drawn over GROUPS (species, family, genome), never
over windows: windows of one genome overlap and near-identical genomes share a group, so a
window-level split would leak test sequence into training.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dnalm.fasta import open_genome, record_lengths

SPLITS = ("train", "val", "test")
WINDOW_COLUMNS = ["genome", "chrom", "start", "end", "strand", "label", "label_id", "group"]
_ACGT = np.zeros(256, dtype=bool)
_ACGT[np.frombuffer(b"ACGTacgt", dtype=np.uint8)] = True


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
    ambiguous = ~_ACGT[np.frombuffer(raw, dtype=np.uint8)]
    csum = np.concatenate([[0], np.cumsum(ambiguous, dtype=np.int64)])
    starts = np.arange(0, n - spec.length + 1, spec.stride, dtype=np.int64)
    n_frac = (csum[starts + spec.length] - csum[starts]) / spec.length
    return starts[n_frac <= spec.max_n_fraction]


def windows_for_genome(path: str | Path, spec: WindowSpec) -> pd.DataFrame:
    """Windows (chrom, start, end) over every record of a normalised genome."""
    fasta = open_genome(path)
    frames = []
    for chrom, length in record_lengths(path).items():
        if length < spec.length:
            continue
        starts = window_starts(fasta[chrom][:].seq, spec)
        frames.append(pd.DataFrame({"chrom": chrom, "start": starts, "end": starts + spec.length}))
    if not frames:
        return pd.DataFrame({"chrom": pd.Series(dtype=str), "start": [], "end": []}).astype(
            {"start": np.int64, "end": np.int64}
        )
    return pd.concat(frames, ignore_index=True)


def _rng(seed: int, *keys: str) -> np.random.Generator:
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
        _rng(seed, str(label)).shuffle(free)
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
) -> dict[str, pd.DataFrame]:
    """Labelled windows of a genome-classification task; `assignment` maps group -> split."""
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
            keep = _rng(seed, row.genome).choice(len(win), max_windows_per_genome, replace=False)
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


def downsample(windows: pd.DataFrame, seed: int, key: str = "") -> pd.DataFrame:
    """Drop windows of larger classes at random (seeded) down to the smallest class."""
    smallest = windows["label"].value_counts().min()
    parts = []
    for label, part in windows.groupby("label", sort=True):
        if len(part) > smallest:
            keep = _rng(seed, key, str(label)).choice(len(part), smallest, replace=False)
            part = part.iloc[np.sort(keep)]
        parts.append(part)
    return pd.concat(parts).sort_index()


def pretraining_roles(
    genomes: list[str], splits: list[pd.DataFrame], *, exclude_test_genomes: bool = True
) -> pd.DataFrame:
    """Role of each pretraining genome: train, val (held out by a task) or excluded.

    `splits` are the tasks' genome -> split tables. A genome some task tests on is excluded by
    default; with `exclude_test_genomes=False` it joins the pretraining train split on purpose.
    """
    held = {s: set() for s in ("val", "test")}
    for table in splits:
        for split in held:
            held[split] |= set(table.loc[table["split"] == split, "genome"])
    rows = []
    for genome in genomes:
        if genome in held["test"] and exclude_test_genomes:
            rows.append((genome, "excluded", "a task tests on it"))
        elif genome in held["test"]:
            rows.append((genome, "train", "a task tests on it; kept (exclude_test_genomes: false)"))
        elif genome in held["val"]:
            rows.append((genome, "val", "a task validates on it"))
        else:
            rows.append((genome, "train", ""))
    return pd.DataFrame(rows, columns=["genome", "role", "reason"])


def corpus_windows(
    genomes: list[str],
    genome_paths: Mapping[str, str | Path],
    spec: WindowSpec,
) -> pd.DataFrame:
    """Unlabelled windows for language-model pretraining."""
    frames = [
        windows_for_genome(genome_paths[g], spec).assign(
            genome=g, strand="+", label="", label_id=-1, group=g
        )
        for g in genomes
    ]
    if not frames:
        return pd.DataFrame({c: [] for c in WINDOW_COLUMNS})
    return pd.concat(frames, ignore_index=True)[WINDOW_COLUMNS]


def class_counts(splits: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Windows per split and label, with the number of genomes and groups behind them."""
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
                }
            )
    return pd.DataFrame(rows, columns=["split", "label", "windows", "genomes", "groups"])
