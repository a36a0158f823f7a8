"""Labelled-sequence tasks: sequences that arrive with their class, not windows cut from genomes.

Five sources are read into one table (columns `id`, `sequence`, `label`, `source`, `file`, `line`,
plus `group` and `split` when the source has them):

- GenomicBenchmarks' layout `<dataset>/{train,test}/<class>/<id>.txt` (one sequence per file);
- CSV/TSV with a sequence and a label column (names configurable, default `seq` and `label`);
- ViraMiner's header-less `seq_id,sequence,label` CSVs, one file per sequencing experiment
  (the experiment, i.e. the file stem, is the group: contigs of one sample are related);
- FASTA with the label in the header (`label=<class>` by default, else the last `|` field of the
  record id; or any regex with one capture group);
- a Hugging Face Hub dataset's parquet files, fetched by a job into a directory (`hf_dataset`;
  the split of each file comes from its path, as the Hub names splits).

Every problem is reported with the file, line (or record) and column, because these files are
hand-made more often than genomes are. The table is then split (`assign_splits`; with
`split_by: similarity` over clusters of near-duplicates, `similarity_groups`) and written with the
same columns as genome-task windows plus the inline `sequence` (`labelled_windows`).
"""

from __future__ import annotations

import fnmatch
import gzip
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dnalm.fasta import IUPAC_NUCLEOTIDES, is_gzip, read_fasta
from dnalm.similarity import SimilarityClusters, similarity_clusters
from dnalm.windows import SPLITS, WINDOW_COLUMNS, downsample, seeded_rng

__all__ = [
    "FORMATS",
    "LABELLED_COLUMNS",
    "LabelledInputError",
    "assign_splits",
    "cross_split_duplicates",
    "genomic_benchmarks_dir",
    "hub_dataset_dir",
    "hub_datasets",
    "labelled_downloads",
    "labelled_windows",
    "read_genomic_benchmarks",
    "read_hf_dataset",
    "read_labelled_fasta",
    "read_source",
    "read_table",
    "read_viraminer",
    "source_downloads",
    "similarity_groups",
    "source_paths",
]

FORMATS = ("csv", "tsv", "genomic_benchmarks", "viraminer", "fasta", "hf_dataset")
LABELLED_COLUMNS = [*WINDOW_COLUMNS, "sequence"]
DEFAULT_LABEL_PATTERN = r"label=(\S+)"
DEFAULT_GROUP_PATTERN = r"group=(\S+)"
_INVALID = re.compile(f"[^{IUPAC_NUCLEOTIDES}{IUPAC_NUCLEOTIDES.lower()}]")
_RNA_TO_DNA = str.maketrans("Uu", "Tt")
_DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
# How the Hub names splits in file paths (the `datasets` library's conventions), ours on the right.
HUB_SPLITS = {
    "train": "train",
    "training": "train",
    "validation": "val",
    "valid": "val",
    "val": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
    "eval": "test",
    "evaluation": "test",
}


class LabelledInputError(ValueError):
    """A problem in a labelled-sequence file, located by file, line/record and column."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        message: str,
        *,
        line: int | None = None,
        record: str | None = None,
        column: str | None = None,
    ) -> None:
        self.path = str(path)
        self.message = message
        self.line = line
        self.record = record
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [self.path]
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.record is not None:
            where.append(f"record {self.record!r}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.message}"

    def __reduce__(self):  # keep the location when pickled across processes
        return (_rebuild_error, (self.path, self.message, self.line, self.record, self.column))


def require_columns(
    path: str | os.PathLike[str], wanted: dict, columns: list, line: int | None = None
) -> None:
    """Each named column (source.<key>_column) must exist; the error lists the file's columns."""
    for key, column in wanted.items():
        if column is not None and column not in columns:
            raise LabelledInputError(
                path,
                f"no column {column!r} (the file has: {', '.join(map(str, columns))}); set "
                f"source.{key}_column to the column that holds the {key}",
                line=line,
            )


def _rebuild_error(path, message, line, record, column) -> LabelledInputError:
    return LabelledInputError(path, message, line=line, record=record, column=column)


def _error_at(table: pd.DataFrame, index, message: str, column: str | None = None):
    row = table.loc[index]
    return LabelledInputError(
        row["file"], message, line=row["line"], record=row["id"], column=column
    )


# --------------------------------------------------------------------------- checking


def _clean(table: pd.DataFrame, sequence_column: str = "sequence", label_column: str = "label"):
    """Strip whitespace, write RNA U as T, and reject empty or non-IUPAC sequences and
    missing labels; one regex pass over all sequences keeps this fast on 100k rows."""
    table = table.assign(sequence=table["sequence"].fillna(""), label=table["label"].fillna(""))
    seqs = table["sequence"].str.replace(r"\s+", "", regex=True).str.translate(_RNA_TO_DNA)
    empty = np.flatnonzero(seqs.str.len().to_numpy() == 0)
    if len(empty):
        raise _error_at(table, table.index[empty[0]], "empty sequence", sequence_column)
    joined = "".join(seqs)
    bad = _INVALID.search(joined)
    if bad:
        ends = np.cumsum(seqs.str.len().to_numpy())
        row = int(np.searchsorted(ends, bad.start(), side="right"))
        position = bad.start() - (int(ends[row - 1]) if row else 0) + 1
        raise _error_at(
            table,
            table.index[row],
            f"invalid character {bad.group()!r} at position {position} of the sequence "
            f"(allowed: IUPAC nucleotide codes {IUPAC_NUCLEOTIDES}, upper or lower case)",
            sequence_column,
        )
    labels = table["label"].str.strip()
    missing = np.flatnonzero(labels.str.len().to_numpy() == 0)
    if len(missing):
        raise _error_at(table, table.index[missing[0]], "missing label", label_column)
    return table.assign(sequence=seqs, label=labels)


def _check_unique_ids(table: pd.DataFrame) -> None:
    dupes = table["id"].duplicated(keep=False)
    if dupes.any():
        first, second = table.index[dupes.to_numpy()][:2]
        other = table.loc[first]
        raise _error_at(
            table,
            second,
            f"duplicate id (first at {other['file']}, line {other['line']}); ids must be unique "
            "because predictions are reported by id",
        )


def _exists(path: str | os.PathLike[str], what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    return path


# --------------------------------------------------------------------------- readers


def read_table(
    path: str | os.PathLike[str],
    *,
    sequence_column: str = "seq",
    label_column: str = "label",
    group_column: str | None = None,
    id_column: str | None = None,
    split_column: str | None = None,
    delimiter: str | None = None,
) -> pd.DataFrame:
    """A CSV/TSV (optionally gzipped) with a header; the delimiter follows the extension
    (`.csv` comma, `.tsv`/`.tab` tab) unless given. Ids default to `<file stem>:<line>`."""
    path = _exists(path, "labelled table")
    if delimiter is None:
        suffix = Path(path.name.removesuffix(".gz")).suffix.lower()
        delimiter = _DELIMITERS.get(suffix)
        if delimiter is None:
            raise LabelledInputError(
                path,
                f"cannot tell the delimiter from the extension {suffix or '(none)'!r}; "
                "name the file .csv or .tsv, or set source.delimiter",
            )
    try:
        raw = pd.read_csv(
            path, sep=delimiter, dtype=str, keep_default_na=False, skip_blank_lines=False
        )
    except pd.errors.ParserError as err:
        raise LabelledInputError(path, f"not a valid delimited table: {err}") from None
    except pd.errors.EmptyDataError:
        raise LabelledInputError(path, "empty file (no header, no rows)") from None
    wanted = {
        "sequence": sequence_column,
        "label": label_column,
        "group": group_column,
        "id": id_column,
        "split": split_column,
    }
    require_columns(path, wanted, list(raw.columns), line=1)
    if raw.empty:
        raise LabelledInputError(path, "no rows after the header")
    lines = np.arange(2, len(raw) + 2)  # line 1 is the header
    table = pd.DataFrame(
        {
            "id": raw[id_column].str.strip() if id_column else [f"{path.stem}:{n}" for n in lines],
            "sequence": raw[sequence_column],
            "label": raw[label_column],
            "source": path.name.split(".")[0],
            "file": str(path),
            "line": lines,
        }
    )
    if group_column:
        table["group"] = raw[group_column].str.strip()
        missing = np.flatnonzero(table["group"].str.len().to_numpy() == 0)
        if len(missing):
            raise _error_at(table, missing[0], "missing group", group_column)
    if split_column:
        table["split"] = raw[split_column].str.strip().str.lower()
    return _clean(table, sequence_column, label_column)


def read_viraminer(paths: Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    """ViraMiner CSVs (no header: seq_id, sequence, label; 1 = viral); the group is the file
    stem (the sequencing experiment), so splits can leave whole experiments out."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    frames = []
    for path in paths:
        path = _exists(path, "ViraMiner file")
        try:
            raw = pd.read_csv(
                path,
                header=None,
                names=["id", "sequence", "label"],
                dtype=str,
                keep_default_na=False,
                skip_blank_lines=False,
            )
        except pd.errors.ParserError as err:
            raise LabelledInputError(
                path, f"expected 3 comma-separated fields (seq_id,sequence,label): {err}"
            ) from None
        except pd.errors.EmptyDataError:
            raise LabelledInputError(path, "empty file") from None
        if raw.empty:
            raise LabelledInputError(path, "empty file")
        header = raw.iloc[0].str.lower().tolist()
        if "sequence" in header or "seq" in header:
            raise LabelledInputError(
                path,
                f"the first line looks like a header ({','.join(raw.iloc[0])}); ViraMiner files "
                "have none: use format csv with sequence_column/label_column instead",
                line=1,
            )
        stem = path.name.split(".")[0]
        frames.append(
            raw.assign(
                id=raw["id"].str.strip(),
                source=stem,
                group=stem,
                file=str(path),
                line=np.arange(1, len(raw) + 1),
            )
        )
    table = pd.concat(frames, ignore_index=True)
    return _clean(table, "sequence (field 2)", "label (field 3)")


def genomic_benchmarks_dir(path: str | os.PathLike[str], dataset: str | None = None) -> Path:
    """The dataset directory (the one holding train/ and test/): `path` itself, `path/dataset`,
    or the only dataset under `path` (e.g. the genomic_benchmarks cache root)."""
    path = _exists(path, "GenomicBenchmarks directory")
    if dataset:
        path = _exists(path / dataset, "GenomicBenchmarks dataset directory")
    if (path / "train").is_dir() or (path / "test").is_dir():
        return path
    below = [p for p in sorted(path.iterdir()) if (p / "train").is_dir() or (p / "test").is_dir()]
    if len(below) == 1:
        return below[0]
    found = f"datasets found: {', '.join(p.name for p in below)}; " if below else ""
    raise LabelledInputError(
        path,
        f"not a GenomicBenchmarks dataset directory (expected train/<class>/<id>.txt and "
        f"test/<class>/<id>.txt below it); {found}set source.dataset to choose one",
    )


def _natural(path: Path) -> tuple:
    stem = path.stem
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def read_genomic_benchmarks(
    path: str | os.PathLike[str], dataset: str | None = None
) -> pd.DataFrame:
    """A GenomicBenchmarks dataset as the `genomic_benchmarks` package lays it out:
    `{train,test}/<class>/<id>.txt`, one sequence per file; the class directory is the label."""
    root = genomic_benchmarks_dir(path, dataset)
    rows = []
    for split in ("train", "test"):
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        classes = sorted(p for p in split_dir.iterdir() if p.is_dir())
        if not classes:
            raise LabelledInputError(
                split_dir, "no class directories (expected <class>/<id>.txt below it)"
            )
        for class_dir in classes:
            files = sorted(class_dir.glob("*.txt"), key=_natural)
            if not files:
                raise LabelledInputError(class_dir, "class directory holds no .txt sequence files")
            for f in files:
                rows.append(
                    (f"{split}/{class_dir.name}/{f.stem}", f.read_text(), class_dir.name, split, f)
                )
    table = pd.DataFrame(rows, columns=["id", "sequence", "label", "split", "file"])
    table["file"] = table["file"].astype(str)
    table["line"] = 1
    table["source"] = root.name
    return _clean(table)


def _fasta_headers(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, header text without '>') of every record, in file order."""
    with gzip.open(path, "rt") if is_gzip(path) else open(path) as fh:
        for n, line in enumerate(fh, start=1):
            if line.startswith(">"):
                yield n, line[1:].strip()


def read_labelled_fasta(
    path: str | os.PathLike[str],
    *,
    label_pattern: str | None = None,
    group_pattern: str | None = DEFAULT_GROUP_PATTERN,
) -> pd.DataFrame:
    """FASTA (plain or gzip) with the class in each header.

    Default: `label=<class>` anywhere in the header, else the last `|` field of the record id
    (`>contig7|virus`). A custom `label_pattern` is a regex with one capture group searched in
    the whole header. A group is taken from `group=<name>` when records carry one.
    """
    path = _exists(path, "labelled FASTA")
    records = list(read_fasta(path))  # validates bases, empty records and duplicate ids
    headers = list(_fasta_headers(path))
    if len(headers) != len(records):
        raise LabelledInputError(
            path,
            f"{len(records)} records but {len(headers)} '>' header lines; a labelled FASTA must "
            "be FASTA (the label is read from the '>' header), not GenBank",
        )
    patterns = {}
    for key, pattern in (("label", label_pattern), ("group", group_pattern)):
        if pattern is None:
            continue
        try:
            patterns[key] = re.compile(pattern)
        except re.error as err:
            raise ValueError(
                f"source.{key}_pattern {pattern!r} is not a valid regex: {err}"
            ) from None
        if patterns[key].groups < 1:
            raise ValueError(
                f"source.{key}_pattern {pattern!r} needs a capture group around the {key}, "
                r"e.g. 'class=(\S+)'"
            )
    default_label = re.compile(DEFAULT_LABEL_PATTERN)
    rows = []
    for (line, header), (rid, seq) in zip(headers, records, strict=True):
        match = (patterns.get("label") or default_label).search(header)
        if match:
            label = match.group(1)
        elif label_pattern is None and "|" in rid and rid.rsplit("|", 1)[1]:
            label = rid.rsplit("|", 1)[1]
        else:
            expected = (
                f"nothing matches source.label_pattern {label_pattern!r}"
                if label_pattern
                else "expected 'label=<class>' in the header or '<id>|<class>' as the record id"
            )
            raise LabelledInputError(
                path, f"no label in the header {header!r}: {expected}", line=line, record=rid
            )
        group_match = patterns["group"].search(header) if "group" in patterns else None
        rows.append((rid, seq, label, group_match.group(1) if group_match else None, line))
    table = pd.DataFrame(rows, columns=["id", "sequence", "label", "group", "line"])
    table["file"] = str(path)
    table["source"] = path.name.split(".")[0]
    has_group = table["group"].notna()
    if has_group.all():
        pass
    elif has_group.any():
        raise _error_at(
            table,
            table.index[~has_group.to_numpy()][0],
            "no group in the header while other records have one; give every record a group "
            "(or none)",
        )
    else:
        table = table.drop(columns="group")
    return _clean(table)


def _hub_split(relative: str) -> str | None:
    """The split a Hub file path names (`data/train-00000-of-00001.parquet`,
    `default/test/0000.parquet`, `validation.parquet`), or None."""
    found = set()
    for part in Path(relative).with_suffix("").parts:
        token = re.split(r"[-_.]", part.lower(), maxsplit=1)[0]
        if token in HUB_SPLITS:
            found.add(HUB_SPLITS[token])
    return found.pop() if len(found) == 1 else None


def _class_label_names(schema, column: str) -> list[str] | None:
    """The names of a `ClassLabel` column, from the `datasets` metadata a Hub parquet carries."""
    import json

    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return None
    try:
        features = json.loads(raw)["info"]["features"]
    except (ValueError, KeyError, TypeError):
        return None
    feature = features.get(column) if isinstance(features, dict) else None
    if isinstance(feature, dict) and feature.get("_type") == "ClassLabel":
        return [str(name) for name in feature.get("names", [])] or None
    return None


def read_hf_dataset(
    path: str | os.PathLike[str],
    *,
    sequence_column: str = "seq",
    label_column: str = "label",
    id_column: str | None = None,
    group_column: str | None = None,
    splits: Mapping[str, str | Sequence[str]] | None = None,
) -> pd.DataFrame:
    """The parquet files of a Hub dataset (as `dnalm.hub.fetch_dataset` lays them out), with the
    source's own split: each file's split comes from its path (train, validation/valid/dev,
    test/eval), or from `splits` (split -> glob pattern(s) relative to `path`). Integer labels of
    a `ClassLabel` column become their names; other labels are read as text. Ids default to
    `<split>:<n>`, the row's position in that split."""
    import pyarrow.parquet as pq

    root = _exists(path, "Hub dataset directory")
    files = sorted(p for p in root.rglob("*.parquet") if p.is_file())
    if not files:
        raise LabelledInputError(root, "no parquet file; is this a fetched Hub dataset?")
    assigned: dict[Path, str] = {}
    for file in files:
        relative = file.relative_to(root).as_posix()
        if splits:
            names = [
                name
                for name, patterns in splits.items()
                if any(
                    fnmatch.fnmatch(relative, pattern)
                    for pattern in ([patterns] if isinstance(patterns, str) else patterns)
                )
            ]
            split = HUB_SPLITS.get(names[0], names[0]) if len(names) == 1 else None
            if len(names) > 1:
                raise LabelledInputError(
                    file, f"matches the patterns of several splits ({', '.join(names)})"
                )
            if split is None:
                continue  # a file of no listed split (another subset of the dataset)
            if split not in SPLITS:
                raise ValueError(
                    f"source.splits names split {names[0]!r}; use train, validation or test"
                )
        else:
            split = _hub_split(relative)
            if split is None:
                raise LabelledInputError(
                    file,
                    "its path names no split (train, validation, test); set source.splits to "
                    "map split names to file patterns, e.g. {train: 'data/train-*.parquet'}",
                )
        assigned[file] = split
    if not assigned:
        raise LabelledInputError(root, f"no parquet file matches source.splits {dict(splits)}")
    frames, counters = [], dict.fromkeys(SPLITS, 0)
    for file, split in assigned.items():
        table = pq.read_table(file)
        wanted = {
            "sequence": sequence_column,
            "label": label_column,
            "id": id_column,
            "group": group_column,
        }
        require_columns(file, wanted, table.column_names)
        names = _class_label_names(table.schema, label_column)
        labels = table.column(label_column).to_pandas()
        if names is not None:
            bad = ~labels.isin(range(len(names)))
            if bad.any():
                raise LabelledInputError(
                    file,
                    f"label {labels[bad].iloc[0]!r} is not an id of the ClassLabel {names}",
                    line=int(np.flatnonzero(bad.to_numpy())[0]) + 1,
                    column=label_column,
                )
            labels = labels.map(dict(enumerate(names)))
        n = table.num_rows
        frame = pd.DataFrame(
            {
                "sequence": table.column(sequence_column).to_pandas().astype("string").fillna(""),
                "label": labels.astype("string").fillna(""),
                "split": split,
                "file": str(file),
                "line": np.arange(1, n + 1),
            }
        ).astype({"sequence": object, "label": object})
        if id_column:
            frame["id"] = table.column(id_column).to_pandas().astype(str).str.strip().to_numpy()
        else:
            frame["id"] = [f"{split}:{counters[split] + i}" for i in range(n)]
        counters[split] += n
        if group_column:
            frame["group"] = table.column(group_column).to_pandas().astype(str).to_numpy()
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    table["source"] = root.name
    return _clean(table, sequence_column, label_column)


LABELLED_DOWNLOADS = "resources/downloads/labelled"
HUB_DATASETS = "resources/hub_datasets"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def source_downloads(source: Mapping) -> list[tuple[str, str, str]]:
    """(url, sha256, local path) of each file a source names by `url`/`urls` with `sha256`.

    The local path, `resources/downloads/labelled/<sha256[:16]>/<the URL's file name>`, is what
    the task reads: a job fetches it (from acquire.mirror when there, else the URL), never
    parsing. Its name is the URL's, so a ViraMiner file keeps its experiment as its stem.
    """
    if "url" not in source and "urls" not in source:
        if "sha256" in source:
            raise ValueError("source: sha256 pins files named by url/urls; give those too")
        return []
    if source.get("format") == "genomic_benchmarks":
        raise ValueError(
            "source: a genomic_benchmarks source is a directory; give its path (the "
            "genomic_benchmark rule downloads datasets), not a url"
        )
    urls = [source["url"]] if "url" in source else list(source["urls"])
    sums = source.get("sha256", [])
    sums = [sums] if isinstance(sums, str) else list(sums)
    if len(sums) != len(urls):
        raise ValueError(
            f"source with url {urls[0]}: {len(urls)} url(s) but {len(sums)} sha256 "
            "checksum(s); pin every file with its sha256 (sha256sum <file>), in url order"
        )
    found = []
    for url, digest in zip(urls, sums, strict=True):
        parts = urllib.parse.urlsplit(str(url))
        name = urllib.parse.unquote(parts.path.rsplit("/", 1)[-1])
        if parts.scheme not in ("http", "https", "ftp") or not parts.netloc or not name:
            raise ValueError(f"source url {url!r} is not an http(s)/ftp URL of a file")
        digest = str(digest).strip().lower().removeprefix("sha256:")
        if not _SHA256.fullmatch(digest):
            raise ValueError(f"source url {url}: sha256 {digest!r} is not 64 hex digits")
        if name.startswith(".") or "\\" in name:
            raise ValueError(f"source url {url}: its file name {name!r} is not usable")
        found.append((str(url), digest, f"{LABELLED_DOWNLOADS}/{digest[:16]}/{name}"))
    return found


def labelled_downloads(tasks: Mapping) -> dict[str, tuple[str, str]]:
    """Local path -> (url, sha256) of every file the labelled tasks name by URL: what the
    download_labelled rule makes."""
    files: dict[str, tuple[str, str]] = {}
    for task, spec in tasks.items():
        if "source" not in spec:
            continue
        try:
            for url, digest, path in source_downloads(spec["source"]):
                files.setdefault(path, (url, digest))
        except ValueError as err:
            raise ValueError(f"task {task!r}: {err}") from None
    return files


def hub_dataset_dir(source: Mapping) -> str:
    """Where the fetch_dataset rule puts a Hub dataset (`hf_dataset`): one directory per
    repository and revision, `resources/hub_datasets/<owner>--<name>[@<revision>]`."""
    repo = str(source.get("repo", ""))
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", repo) or ".." in repo:
        raise ValueError(
            f"source repo {repo!r} is not a Hugging Face Hub dataset id (owner/name), e.g. "
            "katarinagresova/Genomic_Benchmarks_human_nontata_promoters"
        )
    name = repo.replace("/", "--")
    if source.get("revision"):
        name += "@" + urllib.parse.quote(str(source["revision"]), safe="")
    return f"{HUB_DATASETS}/{name}"


def hub_datasets(tasks: Mapping) -> dict[str, dict]:
    """Directory -> what to fetch (repo, revision, file patterns or None for every parquet) of
    every Hub dataset the labelled tasks name: what the fetch_dataset rule makes. Tasks naming
    one repository and revision share it; the patterns are the union of theirs."""
    found: dict[str, dict] = {}
    for task, spec in tasks.items():
        source = spec.get("source") or {}
        if source.get("format") != "hf_dataset":
            continue
        try:
            directory = hub_dataset_dir(source)
        except ValueError as err:
            raise ValueError(f"task {task!r}: {err}") from None
        splits = source.get("splits")
        patterns = None
        if splits:
            patterns = sorted(
                {p for v in splits.values() for p in ([v] if isinstance(v, str) else v)}
            )
        entry = found.setdefault(
            directory,
            {"repo": source["repo"], "revision": source.get("revision"), "patterns": patterns},
        )
        if entry["patterns"] is None or patterns is None:
            entry["patterns"] = None
        else:
            entry["patterns"] = sorted(set(entry["patterns"]) | set(patterns))
    return found


def source_paths(source: Mapping) -> list[str]:
    """The files (or the GenomicBenchmarks or Hub dataset directory) a source reads: as given in
    the config, or where the files it names by URL, or its Hub dataset, are fetched to."""
    if source.get("format") == "hf_dataset":
        return [hub_dataset_dir(source)]
    downloads = source_downloads(source)
    if downloads:
        return [path for _, _, path in downloads]
    if "paths" in source:
        return [str(p) for p in source["paths"]]
    return [str(source["path"])]


def _delimiter(path: str, fmt: str) -> str:
    """The extension's delimiter (.csv comma, .tsv/.tab tab), else the format's."""
    suffix = Path(Path(path).name.removesuffix(".gz")).suffix.lower()
    return _DELIMITERS.get(suffix, "\t" if fmt == "tsv" else ",")


def read_source(source: Mapping) -> pd.DataFrame:
    """Read a task's `source` config (format plus its options) into one labelled table."""
    fmt = source.get("format")
    if fmt not in FORMATS:
        raise ValueError(f"unknown source format {fmt!r}; choose one of {', '.join(FORMATS)}")
    paths = source_paths(source)
    if fmt == "hf_dataset":
        table = read_hf_dataset(
            paths[0],
            sequence_column=source.get("sequence_column", "seq"),
            label_column=source.get("label_column", "label"),
            id_column=source.get("id_column"),
            group_column=source.get("group_column"),
            splits=source.get("splits"),
        )
    elif fmt == "viraminer":
        table = read_viraminer(paths)
    elif fmt == "genomic_benchmarks":
        table = read_genomic_benchmarks(paths[0], source.get("dataset"))
    elif fmt == "fasta":
        table = pd.concat(
            [
                read_labelled_fasta(
                    p,
                    label_pattern=source.get("label_pattern"),
                    group_pattern=source.get("group_pattern", DEFAULT_GROUP_PATTERN),
                )
                for p in paths
            ],
            ignore_index=True,
        )
    else:
        table = pd.concat(
            [
                read_table(
                    p,
                    sequence_column=source.get("sequence_column", "seq"),
                    label_column=source.get("label_column", "label"),
                    group_column=source.get("group_column"),
                    id_column=source.get("id_column"),
                    split_column=source.get("split_column"),
                    delimiter=source.get("delimiter") or _delimiter(p, fmt),
                )
                for p in paths
            ],
            ignore_index=True,
        )
    if "group" in table and table["group"].isna().any():  # FASTA files disagree on groups
        row = table.index[table["group"].isna().to_numpy()][0]
        raise _error_at(table, row, "no group while other files' records have one")
    _check_unique_ids(table)
    return table


# --------------------------------------------------------------------------- splitting


def _label_counts(table: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    return (
        pd.crosstab(table["group"], table["label"])
        .reindex(columns=labels, fill_value=0)
        .sort_index()
    )


def _greedy_groups(counts: np.ndarray, targets: np.ndarray, order: np.ndarray) -> np.ndarray:
    """One greedy pass: take a group when it brings the label totals closer to the targets
    (relative error per label, so a rare class counts as much as a common one); never take a
    group whose loss would leave the rest without a label; then give each label with a target
    but no group its first eligible group.

    Plain Python floats, not numpy: a similarity split draws from tens of thousands of groups,
    and numpy's per-call overhead on arrays of a few labels made each pass 5x slower. The sums
    run in numpy's order for fewer than 8 labels, so the picks are the same."""
    rows = counts.tolist()
    goal = targets.tolist()
    pool = counts.sum(axis=0).tolist()
    scale = np.maximum(targets, 1.0).tolist()
    labels = range(len(goal))
    taken = np.zeros(len(counts), dtype=bool)
    have = [0.0] * len(goal)

    def keeps_rest_complete(row: list[float]) -> bool:
        return all(pool[i] - have[i] - row[i] > 0 or pool[i] == 0 for i in labels)

    def error(totals: list[float]) -> float:
        return sum([abs(totals[i] - goal[i]) / scale[i] for i in labels])

    current = error(have)
    for g in order.tolist():
        row = rows[g]
        if not keeps_rest_complete(row):
            continue
        after = [have[i] + row[i] for i in labels]
        closer = error(after)
        if closer < current:
            taken[g] = True
            have, current = after, closer
    for label in [i for i in labels if have[i] == 0 and goal[i] > 0]:
        for g in order.tolist():
            row = rows[g]
            if not taken[g] and row[label] and keeps_rest_complete(row):
                taken[g] = True
                have = [have[i] + row[i] for i in labels]
                break
    return taken


def _draw_groups(
    counts: pd.DataFrame, targets: pd.Series, rng: np.random.Generator, passes: int = 16
) -> list[str]:
    """Groups (rows of `counts`: sequences per label) whose label totals come closest to
    `targets`: the best of several greedy passes, each over a seeded random order."""
    matrix = counts.to_numpy(dtype=float)
    goal = targets.reindex(counts.columns).to_numpy(dtype=float)
    scale = np.maximum(goal, 1.0)
    best, best_score = None, None
    for _ in range(passes):
        taken = _greedy_groups(matrix, goal, rng.permutation(len(matrix)))
        have = matrix[taken].sum(axis=0)
        score = (int(((have == 0) & (goal > 0)).sum()), float((np.abs(have - goal) / scale).sum()))
        if best_score is None or score < best_score:
            best, best_score = taken, score
    return list(counts.index[best])


def _draw_rows(table: pd.DataFrame, targets: pd.Series, rng: np.random.Generator) -> pd.Index:
    """Stratified random rows: about `targets[label]` of each label, at least one, and never
    all of a label (the rest must keep it)."""
    picked = []
    for label, part in table.groupby("label", sort=True):
        k = min(max(1, round(float(targets[label]))), len(part) - 1)
        if k > 0:
            picked.append(part.index[np.sort(rng.choice(len(part), k, replace=False))])
    return picked[0].append(picked[1:]) if picked else pd.Index([])


def assign_splits(
    table: pd.DataFrame,
    *,
    labels: list[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    test_groups: Sequence[str] | None = None,
    val_groups: Sequence[str] | None = None,
) -> pd.Series:
    """train/val/test for every row, stratified by label and seeded.

    Test: the rows of `test_groups` if given, else the source's own test split (GenomicBenchmarks,
    a `split_column`), else drawn (`test_fraction` of the rows). Val: `val_groups` if given, else
    the source's val rows, else drawn: `val_fraction` of all rows when test was drawn too (as for
    genome tasks), of the remaining (train) rows when the source fixed test. With a `group`
    column whole groups are drawn (a group is never on two sides; groups may mix labels, as a
    ViraMiner experiment does), else single rows.
    """
    grouped = "group" in table
    for name, given in (("test_groups", test_groups), ("val_groups", val_groups)):
        if not given:
            continue
        if not grouped:
            raise ValueError(f"{name} is set but the source has no group column")
        unknown = sorted(set(given) - set(table["group"]))
        if unknown:
            raise ValueError(
                f"{name} {unknown} are not groups of the source "
                f"(groups: {', '.join(sorted(table['group'].unique()))})"
            )
    if test_groups and val_groups and set(test_groups) & set(val_groups):
        raise ValueError(
            f"groups {sorted(set(test_groups) & set(val_groups))} are in both "
            "test_groups and val_groups"
        )
    source_split = table.get("split")
    if source_split is not None:
        bad = ~source_split.isin(SPLITS)
        if bad.any():
            row = table.index[bad.to_numpy()][0]
            raise _error_at(
                table, row, f"unknown split {source_split[row]!r}; use train, val or test", "split"
            )
        if not {"train", "test"} <= set(source_split):
            source_split = None  # one split only (e.g. just a test set): re-split it
        elif test_groups:
            raise ValueError(
                "the source has its own train/test split and test_groups is set too; "
                "drop one of them"
            )
    split = pd.Series(None, index=table.index, dtype=object)
    test_drawn = False
    if test_groups:
        split[table["group"].isin(test_groups)] = "test"
    elif source_split is not None:
        split[source_split != "train"] = source_split[source_split != "train"]
    else:
        test_drawn = True
        _draw(table, split, "test", test_fraction * table["label"].value_counts(), labels, seed)
    if val_groups:
        clash = split[table["group"].isin(val_groups)].dropna()
        if len(clash):
            raise ValueError(
                f"val_groups {sorted(set(table.loc[clash.index, 'group']))} hold "
                f"{clash.iloc[0]} rows of the source"
            )
        split[table["group"].isin(val_groups)] = "val"
    elif not (split == "val").any():
        rest = table[split.isna()]
        base = table if test_drawn else rest
        _draw(rest, split, "val", val_fraction * base["label"].value_counts(), labels, seed)
    split[split.isna()] = "train"
    _check_splits(table, split, labels)
    return split


def _draw(table, split: pd.Series, name: str, targets, labels, seed: int) -> None:
    targets = targets.reindex(labels, fill_value=0)
    rng = seeded_rng(seed, name)
    if "group" in table:
        chosen = _draw_groups(_label_counts(table, labels), targets, rng)
        split[table.index[table["group"].isin(chosen).to_numpy()]] = name
    else:
        split[_draw_rows(table, targets, rng)] = name


def _check_splits(table: pd.DataFrame, split: pd.Series, labels: list[str]) -> None:
    if "group" in table:
        spans = split.groupby(table["group"]).nunique()
        leaked = sorted(spans[spans > 1].index)
        if leaked:
            raise ValueError(
                f"group(s) {', '.join(leaked)} have rows in more than one split of the source; "
                "a group must stay on one side (fix the source's split or its groups)"
            )
    for name in SPLITS:
        part = table[split == name]
        missing = [x for x in labels if x not in set(part["label"])]
        if missing:
            unit = "groups" if "group" in table else "sequences"
            held = sorted(part["group"].unique()) if "group" in table and len(part) else []
            counts = table["label"].value_counts().reindex(labels, fill_value=0).to_dict()
            raise ValueError(
                f"the {name} split has no sequence labelled {', '.join(map(repr, missing))} "
                f"({name} groups: {', '.join(held) or 'none'}; sequences per label: {counts}); "
                f"every split needs every label: choose test_groups/val_groups that hold every "
                f"label, or give the task more {unit}"
            )


def similarity_groups(
    table: pd.DataFrame,
    *,
    k: int,
    min_shared: float,
    max_kmer_windows: int,
    max_length: int | None = None,
    test_groups: Sequence[str] | None = None,
    val_groups: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, SimilarityClusters]:
    """The table with `group` set to each sequence's similarity cluster (`split_by:
    similarity`), so that the group draw keeps near-duplicates on one side.

    The measure is the audit's (`k`, `min_shared`, `max_kmer_windows` of the `audit` config;
    `dnalm.similarity`), on the sequences as the task keeps them (`max_length`). A source's
    own groups are merged in: a group and every sequence linked to it form one cluster. A
    cluster is named by the id of its first sequence, its own id when alone, as in a row split.
    The split is drawn from the clusters, so a source's own train/test split, test_groups and
    val_groups are errors.
    """
    pinned = [n for n, v in (("test_groups", test_groups), ("val_groups", val_groups)) if v]
    if pinned:
        raise ValueError(
            f"split_by: similarity draws every split from the similarity clusters, so "
            f"source.{' and source.'.join(pinned)} cannot pin groups; drop "
            f"{' and '.join(pinned)}, or keep them with split_by: group"
        )
    if "split" in table and {"train", "test"} <= set(table["split"]):
        files = ", ".join(sorted(table["file"].unique())[:3])
        raise ValueError(
            f"{files}: the source has its own train/test split (GenomicBenchmarks train/ and "
            "test/, or source.split_column), but split_by: similarity draws every split; keep the "
            "source's split with split_by: group, or give a source without one"
        )
    seqs = table["sequence"]
    if max_length:
        seqs = seqs.str.slice(0, max_length)
    groups = pd.factorize(table["group"])[0] if "group" in table else None
    clusters = similarity_clusters(
        seqs,
        k=k,
        min_shared=min_shared,
        max_kmer_windows=max_kmer_windows,
        groups=groups,
    )
    _, first = np.unique(clusters.cluster, return_index=True)
    names = table["id"].to_numpy()[first][clusters.cluster]
    return table.assign(group=names), clusters


# --------------------------------------------------------------------------- windows


def _cap(part: pd.DataFrame, n: int, seed: int, key: str) -> pd.DataFrame:
    """At most `n` rows, keeping class proportions (largest remainder, one per class at least)."""
    if len(part) <= n:
        return part
    sizes = part["label"].value_counts().sort_index()
    exact = sizes / sizes.sum() * n
    take = np.maximum(np.floor(exact).astype(int), 1)
    short = n - int(take.sum())
    if short > 0:
        for label in (exact - np.floor(exact)).sort_values(ascending=False).index[:short]:
            take[label] += 1
    keep = []
    for label, group in part.groupby("label", sort=True):
        k = min(int(take[label]), len(group))
        keep.append(
            group.index[seeded_rng(seed, "cap", key, str(label)).choice(len(group), k, False)]
        )
    return part.loc[keep[0].append(keep[1:]).sort_values()]


def labelled_windows(
    table: pd.DataFrame,
    *,
    task: str,
    labels: list[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    test_groups: Sequence[str] | None = None,
    val_groups: Sequence[str] | None = None,
    balance: str = "none",
    max_sequences_per_split: int | None = None,
    max_length: int | None = None,
) -> dict[str, pd.DataFrame]:
    """train/val/test tables in the genome-task window schema plus `sequence`.

    genome = the task (one source file) or the file stem (several, e.g. ViraMiner experiments);
    chrom = the sequence id; start 0, end = length; group = the source's group, else the id
    (each sequence its own unit). `max_length` keeps the first bases of longer sequences, as a
    tokenizer's truncation would. Balancing (train/val) and the cap run after the split.
    """
    unknown = ~table["label"].isin(labels)
    if unknown.any():
        row = table.index[unknown.to_numpy()][0]
        raise _error_at(
            table,
            row,
            f"label {table.at[row, 'label']!r} is not among the task's labels {labels}; add it "
            "to the task's labels or fix the file",
            "label",
        )
    absent = [x for x in labels if x not in set(table["label"])]
    if absent:
        raise ValueError(
            f"task {task!r}: no sequence is labelled {', '.join(map(repr, absent))} "
            f"(labels found: {sorted(table['label'].unique())}); fix the task's labels"
        )
    split = assign_splits(
        table,
        labels=labels,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        test_groups=test_groups,
        val_groups=val_groups,
    )
    seqs = table["sequence"]
    if max_length:
        seqs = seqs.str.slice(0, max_length)
    label_id = {name: i for i, name in enumerate(labels)}
    several = table["source"].nunique() > 1
    out = pd.DataFrame(
        {
            "genome": table["source"] if several else task,
            "chrom": table["id"],
            "start": np.zeros(len(table), dtype=np.int64),
            "end": seqs.str.len().astype(np.int64),
            "strand": "+",
            "label": table["label"],
            "label_id": table["label"].map(label_id).astype(np.int64),
            "group": table["group"] if "group" in table else table["id"],
            "sequence": seqs,
        }
    )
    result = {}
    for name in SPLITS:
        part = out[split == name]
        if balance == "downsample" and name != "test" and part["label"].nunique() > 1:
            part = downsample(part, seed, name)
        if max_sequences_per_split:
            part = _cap(part, max_sequences_per_split, seed, name)
        result[name] = part[LABELLED_COLUMNS].reset_index(drop=True)
    return result


def cross_split_duplicates(splits: Mapping[str, pd.DataFrame]) -> dict[str, int]:
    """Sequences of val/test identical to a train sequence: leakage the split cannot see."""
    train = set(splits["train"]["sequence"].str.upper())
    return {
        name: int(splits[name]["sequence"].str.upper().isin(train).sum())
        for name in ("val", "test")
    }
