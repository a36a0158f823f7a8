"""GenomicBenchmarks datasets (Gresova et al. 2023) in their published on-disk layout.

`<root>/<dataset>/{train,test}/<class>/<id>.txt`, one sequence per file, is what the published
archives unpack to and what the labelled-task reader takes. Two ways to get there:
- `rebuild_dataset`: from the official coordinate files (`<dataset>/{train,test}/<class>.csv.gz`,
  columns `id,region,start,end,strand`, 0-based, end exclusive; `metadata.yaml` names each
  class's reference) plus a reference FASTA read by coordinate; minus-strand intervals are
  reverse complemented. Region names are matched as the upstream package does for Ensembl
  references (`chr1` <-> `1`, `chrM` <-> `MT`, transcript ids with or without `.version`), so a
  UCSC (`chr`-named) or an Ensembl reference both work. Sequences are upper-cased by default,
  as the published sets were cut from unmasked Ensembl FASTA.
- `download_dataset`: the published zip archive from a configurable URL template, checked
  (safe paths, layout, and the per-class counts and ids of the official coordinates when given).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd
import yaml

from dnalm.download import DownloadError, download
from dnalm.fasta import open_genome, record_lengths
from dnalm.files import temporary_sibling
from dnalm.tokenization import reverse_complement  # IUPAC-aware, keeps case

__all__ = [
    "ARCHIVE_URL",
    "COLUMNS",
    "DATASETS",
    "PUBLISHED_ARCHIVES",
    "CoordinateError",
    "archive_url",
    "dataset_layout",
    "download_dataset",
    "extract_sequences",
    "read_coordinates",
    "read_metadata",
    "rebuild_dataset",
    "reverse_complement",
    "unpack_archive",
]

DATASETS = (
    "demo_coding_vs_intergenomic_seqs",
    "demo_human_or_worm",
    "drosophila_enhancers_stark",
    "dummy_mouse_enhancers_ensembl",
    "human_enhancers_cohn",
    "human_enhancers_ensembl",
    "human_ensembl_regulatory",
    "human_nontata_promoters",
    "human_ocr_ensembl",
)
# Google Drive file ids of the archives the upstream package downloads (its CLOUD_CACHE table);
# the other datasets have no published archive and are rebuilt from coordinates.
PUBLISHED_ARCHIVES = {
    ("human_nontata_promoters", 0): "1VdUg0Zu8yfLS6QesBXwGz1PIQrTW3Ze4",
    ("demo_coding_vs_intergenomic_seqs", 0): "1cpXg0ULuTGF7h1_HTYvc6p8M-ee43t-v",
    ("demo_human_or_worm", 0): "1Vuc44bXRISqRDXNrxt5lGYLpLsJbrSg8",
    ("human_enhancers_cohn", 0): "176563cDPQ5Y094WyoSBF02QjoVQhWuCh",
    ("human_enhancers_ensembl", 0): "1gZBEV_RGxJE8EON5OObdrp5Tp8JL0Fxb",
}
ARCHIVE_URL = "https://drive.google.com/uc?export=download&id={drive_id}"
COLUMNS = ("id", "region", "start", "end", "strand")
SPLITS = ("train", "test")
_ENST_VERSION = re.compile(r"^(ENS[A-Z]*T\d+)\.\d+$")
_log = logging.getLogger("dnalm")


class CoordinateError(ValueError):
    """A coordinate row that cannot be turned into a sequence, located by file and row."""


def read_metadata(dataset_dir: str | os.PathLike[str]) -> dict:
    """metadata.yaml of a coordinate dataset, checked against its class files."""
    dataset_dir = Path(dataset_dir)
    path = dataset_dir / "metadata.yaml"
    if not path.exists():
        raise FileNotFoundError(
            f"{dataset_dir}: no metadata.yaml; is this a GenomicBenchmarks coordinate dataset "
            "(<dataset>/metadata.yaml, <dataset>/{train,test}/<class>.csv.gz)?"
        )
    meta = yaml.safe_load(path.read_text()) or {}
    classes = meta.get("classes")
    if not isinstance(classes, dict) or not classes:
        raise ValueError(f"{path}: no 'classes' mapping")
    for split in SPLITS:
        for name in classes:
            csv = dataset_dir / split / f"{name}.csv.gz"
            if not csv.exists():
                raise FileNotFoundError(f"{path}: class {name!r} has no {csv}")
    return meta


def read_coordinates(path: str | os.PathLike[str]) -> pd.DataFrame:
    """One class file of coordinates, validated row by row (rows count from 1 after the header)."""
    path = Path(path)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise CoordinateError(
            f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}"
        )
    for column in ("start", "end"):
        bad = ~table[column].str.fullmatch(r"\d+")
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise CoordinateError(
                f"{path}, row {row + 1}: {column} {table[column].iloc[row]!r} is not a "
                "non-negative integer"
            )
        table[column] = table[column].astype("int64")
    empty = table["start"] >= table["end"]
    if empty.any():
        row = int(empty.to_numpy().argmax())
        r = table.iloc[row]
        raise CoordinateError(
            f"{path}, row {row + 1}: region {r['region']}:{r['start']}-{r['end']} is empty "
            "(start must be below end; coordinates are 0-based, end exclusive)"
        )
    bad = ~table["strand"].isin(["+", "-"])
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise CoordinateError(
            f"{path}, row {row + 1}: strand {table['strand'].iloc[row]!r} is not '+' or '-'"
        )
    dupes = table["id"].duplicated()
    if dupes.any():
        row = int(dupes.to_numpy().argmax())
        raise CoordinateError(
            f"{path}, row {row + 1}: duplicate id {table['id'].iloc[row]!r} (ids name the "
            "sequence files, so they must be unique within a class)"
        )
    bad = table["id"].str.contains(r"[/\\]|^\.{0,2}$", regex=True)
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise CoordinateError(
            f"{path}, row {row + 1}: id {table['id'].iloc[row]!r} is not a file name"
        )
    return table


def _aliases(names: list[str]) -> dict[str, str]:
    """Alternative spellings of reference record names -> the record name."""
    table: dict[str, str] = {}
    for name in names:
        alts = [name]
        bare = name[3:] if name.startswith("chr") else name
        alts += [bare, "chr" + bare]
        if bare in ("M", "MT"):
            alts += ["chrM", "MT", "M", "chrMT"]
        match = _ENST_VERSION.match(name)
        if match:
            alts.append(match.group(1))
        for alt in alts:
            table.setdefault(alt, name)
    for name in names:  # an exact name always wins over an alias
        table[name] = name
    return table


def extract_sequences(
    coordinates: pd.DataFrame,
    reference: str | os.PathLike[str],
    *,
    source: str = "coordinates",
    upper: bool = True,
) -> list[str]:
    """The sequence of every row, from a normalised (indexed) reference FASTA."""
    genome = open_genome(reference)
    try:
        lengths = record_lengths(reference)
        aliases = _aliases(list(lengths))
        seqs = []
        for row, (region, start, end, strand) in enumerate(
            zip(
                coordinates["region"],
                coordinates["start"],
                coordinates["end"],
                coordinates["strand"],
                strict=True,
            ),
            start=1,
        ):
            where = f"{source}, row {row}: region {region}:{start}-{end}"
            name = aliases.get(str(region))
            if name is None:
                shown = ", ".join(list(lengths)[:5]) + (" ..." if len(lengths) > 5 else "")
                raise CoordinateError(
                    f"{where}: {region!r} is not a record of the reference {reference} "
                    f"(records: {shown}); is it the assembly the dataset's metadata.yaml names?"
                )
            if end > lengths[name]:
                raise CoordinateError(
                    f"{where}: ends past the end of {name} ({lengths[name]} bp) in the reference "
                    f"{reference}; is it the assembly the dataset's metadata.yaml names?"
                )
            seq = genome[name][int(start) : int(end)].seq
            if strand == "-":
                seq = reverse_complement(seq)
            seqs.append(seq.upper() if upper else seq)
        return seqs
    finally:
        genome.close()


def _write_layout(tmp_root: Path, split: str, name: str, ids, seqs) -> None:
    folder = tmp_root / split / name
    folder.mkdir(parents=True, exist_ok=True)
    for seq_id, seq in zip(ids, seqs, strict=True):
        (folder / f"{seq_id}.txt").write_text(seq)


def _move_into_place(built: Path, final: Path) -> None:
    """Swap a finished directory in; the old one (if any) is removed only after the swap."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(built, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def rebuild_dataset(
    coordinates_dir: str | os.PathLike[str],
    references: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
    out_root: str | os.PathLike[str],
    *,
    upper: bool = True,
    keep: Callable[[pd.DataFrame], pd.Series] | None = None,
    log: logging.Logger | None = None,
) -> Path:
    """Write `<out_root>/<dataset>/{train,test}/<class>/<id>.txt` from coordinates + references.

    `references` is one normalised FASTA for every class, or a mapping class -> FASTA (e.g.
    demo_human_or_worm needs a human and a worm genome). `keep` selects rows (a boolean mask of
    a coordinate table), for a partial rebuild. All or nothing: the dataset appears complete or
    not at all.
    """
    log = log or _log
    coordinates_dir = Path(coordinates_dir)
    meta = read_metadata(coordinates_dir)
    dataset = coordinates_dir.name
    classes = list(meta["classes"])
    if isinstance(references, Mapping):
        missing = [c for c in classes if c not in references]
        if missing:
            raise ValueError(
                f"{dataset}: no reference FASTA given for class(es) {', '.join(missing)} "
                f"(metadata.yaml names: "
                + ", ".join(f"{c}: {meta['classes'][c].get('url', '?')}" for c in missing)
                + ")"
            )
        refs = {c: Path(references[c]) for c in classes}
    else:
        refs = dict.fromkeys(classes, Path(references))
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    tmp_root = temporary_sibling(out_root / dataset, directory=True)
    try:
        for split in SPLITS:
            (tmp_root / split).mkdir()
            for name in classes:
                csv = coordinates_dir / split / f"{name}.csv.gz"
                table = read_coordinates(csv)
                if keep is not None:
                    table = table[keep(table)]
                seqs = extract_sequences(table, refs[name], source=str(csv), upper=upper)
                _write_layout(tmp_root, split, name, table["id"], seqs)
                log.info(
                    "%s %s/%s: %d sequence(s) from %s", dataset, split, name, len(seqs), refs[name]
                )
        final = out_root / dataset
        _move_into_place(tmp_root, final)
    except BaseException:
        shutil.rmtree(tmp_root, ignore_errors=True)
        raise
    return final


# --------------------------------------------------------------------------- published archives


def archive_url(dataset: str, template: str = ARCHIVE_URL, version: int = 0) -> str:
    """The archive URL: `template` with {dataset}, {version} and (if used) {drive_id} filled."""
    fields: dict[str, object] = {"dataset": dataset, "version": version}
    if "{drive_id}" in template:
        drive_id = PUBLISHED_ARCHIVES.get((dataset, version))
        if drive_id is None:
            known = ", ".join(sorted(d for d, _ in PUBLISHED_ARCHIVES))
            raise ValueError(
                f"no published archive is known for GenomicBenchmarks dataset {dataset!r} "
                f"version {version} (known: {known}); rebuild it from the official coordinates "
                "and a reference FASTA (acquire.genomic_benchmarks_references), or point "
                "acquire.genomic_benchmarks_url at a mirror using {dataset}"
            )
        fields["drive_id"] = drive_id
    try:
        return template.format(**fields)
    except (KeyError, IndexError) as err:
        raise ValueError(
            f"genomic_benchmarks_url {template!r}: unknown field {err}; use {{dataset}}, "
            "{version} or {drive_id}"
        ) from None


def dataset_layout(root: str | os.PathLike[str]) -> dict[tuple[str, str], list[str]]:
    """(split, class) -> sorted sequence ids of a dataset directory, checking its layout."""
    root = Path(root)
    layout: dict[tuple[str, str], list[str]] = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            raise ValueError(f"{root}: no {split}/ folder; expected {split}/<class>/<id>.txt")
        classes = sorted(p for p in folder.iterdir() if p.is_dir())
        if not classes:
            raise ValueError(f"{folder}: no class folders")
        for cls in classes:
            ids = sorted(p.stem for p in cls.glob("*.txt"))
            if not ids:
                raise ValueError(f"{cls}: no <id>.txt sequence files")
            layout[(split, cls.name)] = ids
    return layout


def _safe_extract(zf: zipfile.ZipFile, target: Path, name: str) -> None:
    for member in zf.infolist():
        parts = Path(member.filename).parts
        if member.filename.startswith(("/", "\\")) or ".." in parts or ":" in member.filename:
            raise DownloadError(f"{name}: unsafe path {member.filename!r} in the archive")
    zf.extractall(target)


def _find_dataset_root(tmp: Path, dataset: str) -> Path:
    candidates = [tmp / dataset, tmp]
    candidates += [p for p in tmp.iterdir() if p.is_dir() and not p.name.startswith("__MACOSX")]
    for cand in candidates:
        if (cand / "train").is_dir() and (cand / "test").is_dir():
            return cand
    raise DownloadError(
        f"the archive of {dataset} has no train/ and test/ folders (found: "
        f"{', '.join(sorted(p.name for p in tmp.iterdir())) or 'nothing'})"
    )


def unpack_archive(
    archive: str | os.PathLike[str],
    dataset: str,
    out_root: str | os.PathLike[str],
    *,
    coordinates_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Unpack a published archive to `<out_root>/<dataset>`, checked, all or nothing.

    With `coordinates_dir` (the official coordinates of this dataset), the classes, the number
    of sequences and their ids must match them exactly, so that a wrong or stale archive fails.
    """
    archive = Path(archive)
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(out_root / dataset, directory=True)
    lifted = tmp.with_name(tmp.name + "-root")
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                broken = zf.testzip()
                if broken is not None:
                    raise DownloadError(f"{archive}: member {broken} is corrupt")
                _safe_extract(zf, tmp, str(archive))
        except zipfile.BadZipFile:
            head = archive.read_bytes()[:120].decode("utf-8", "replace")
            raise DownloadError(
                f"{archive}: not a zip archive (a web page instead? it starts with {head!r})"
            ) from None
        root = _find_dataset_root(tmp, dataset)
        layout = dataset_layout(root)
        if coordinates_dir is not None:
            meta = read_metadata(coordinates_dir)
            for split in SPLITS:
                for name in meta["classes"]:
                    want = sorted(
                        read_coordinates(Path(coordinates_dir) / split / f"{name}.csv.gz")["id"]
                    )
                    have = layout.get((split, name))
                    if have is None:
                        raise DownloadError(f"{archive}: no {split}/{name}/ folder")
                    if have != want:
                        extra = sorted(set(have) - set(want))[:3]
                        lost = sorted(set(want) - set(have))[:3]
                        raise DownloadError(
                            f"{archive}: {split}/{name} holds {len(have)} sequence(s), the "
                            f"official coordinates {len(want)} (not in coordinates: {extra}; "
                            f"missing: {lost}); the archive is not this dataset's version"
                        )
            unknown = {c for _, c in layout} - set(meta["classes"])
            if unknown:
                raise DownloadError(f"{archive}: class folder(s) {sorted(unknown)} not in metadata")
        final = out_root / dataset
        if root != tmp:  # lift the dataset folder out of the extraction folder first
            os.replace(root, lifted)
            root = lifted
        _move_into_place(root, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(lifted, ignore_errors=True)
    return final


def download_dataset(
    dataset: str,
    out_root: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str],
    url_template: str = ARCHIVE_URL,
    version: int = 0,
    checksum: str | None = None,
    coordinates_dir: str | os.PathLike[str] | None = None,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 300.0,
    log: logging.Logger | None = None,
) -> Path:
    """Download and unpack the published archive of `dataset` (see `archive_url`)."""
    url = archive_url(dataset, url_template, version)
    path = download(
        url,
        Path(cache_dir) / f"{dataset}.v{version}.zip",
        checksum,
        gzip_check=False,
        retries=retries,
        backoff=backoff,
        timeout=timeout,
        log=log,
    )
    try:
        return unpack_archive(path, dataset, out_root, coordinates_dir=coordinates_dir)
    except DownloadError:
        path.unlink(missing_ok=True)  # a bad archive must not be reused from the cache
        raise
