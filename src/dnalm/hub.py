"""Checkpoints and datasets from the Hugging Face Hub (or a local directory), brought in by a job.

`huggingface_hub` does the transfer and keeps its cache: `HF_HOME` (or `HF_HUB_CACHE`) says
where, `HF_ENDPOINT` points it at a mirror, `HF_HUB_OFFLINE=1` makes it work from the cache alone,
`HF_TOKEN` opens private or gated repositories. On top of it, dnalm

- resolves the revision (branch, tag or commit) to one commit and records it, with every file's
  size and hash, in `source.json` beside the copied files;
- checks every file against what the Hub reports for it before anything is copied: the size and
  the sha256 of the content for LFS files, and for small files stored in git itself (config.json,
  README.md) the git blob id, which is git's SHA-1 of `b"blob <size>\\0" + content`. Offline, the
  Hub's metadata cannot be asked for; the cache names each stored file by the ETag the Hub sent
  with it (the sha256 for LFS files, the git blob id for the others), and that name is checked;
- on a mismatch, deletes the bad file from the cache (so neither a rerun nor offline mode can use
  it), writes nothing, and fails naming the file, the expected and the actual hash;
- copies the checked files into the destination whole or not at all (`dnalm.files`).

A local directory is copied the same way, with each file's sha256 recorded. Nothing here runs at
parse time: Snakemake only sees paths, so `snakemake -n` never touches the network.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnalm.files import atomic_directory, write_json

__all__ = [
    "CHECKPOINT_PATTERNS",
    "DATASET_PATTERNS",
    "SOURCE_RECORD",
    "HubError",
    "Snapshot",
    "copy_files",
    "describe_source",
    "download_snapshot",
    "fetch_checkpoint",
    "fetch_dataset",
    "git_blob_sha1",
    "is_hub_id",
    "parse_init_from",
    "read_source_record",
    "resolve_model_dir",
    "sha256_file",
]

SOURCE_RECORD = "source.json"
# What a model needs (config, weights in any of the official layouts, tokenizer files, card);
# never code (*.py) or other frameworks' weights.
CHECKPOINT_PATTERNS = ("*.json", "*.safetensors", "*.bin", "*.ckpt", "*.md", "*.txt")
DATASET_PATTERNS = ("*.parquet", "README.md")
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
_HEX = re.compile(r"[0-9a-f]+")
_CHUNK = 1 << 20

log = logging.getLogger(__name__)


class HubError(ValueError):
    """A repository, revision or file that cannot be fetched or does not check out."""


def is_hub_id(value: str) -> bool:
    """`owner/name`, as the Hub spells repository ids (no scheme, no leading `./` or `/`)."""
    return bool(_HUB_ID.fullmatch(value)) and ".." not in value and not value.endswith(".")


def parse_init_from(value: str) -> tuple[str, str]:
    """`("local", path)` or `("hub", repo id)`.

    An existing directory is always local, so a checkout named like a repository wins over the
    Hub. Otherwise `owner/name` is a Hub id; anything else (an absolute or `./` path, more than
    one slash) is a local path that does not exist, which is an error.
    """
    if Path(value).expanduser().is_dir():
        return "local", value
    if is_hub_id(value):
        return "hub", value
    raise HubError(
        f"init_from {value!r} is neither an existing directory nor a Hugging Face Hub id "
        "(owner/name, e.g. LongSafari/hyenadna-tiny-1k-seqlen-hf); fix the path or the id"
    )


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_sha1(path: str | os.PathLike[str]) -> str:
    """The id git gives a file's content: SHA-1 of `b"blob <size>\\0"` followed by the bytes.
    The Hub reports it (`blobId`) for files stored in git rather than LFS."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"blob {os.path.getsize(path)}\0".encode())
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Snapshot:
    """One commit of a repository in the Hub cache, its files checked."""

    repo_id: str
    repo_type: str
    revision: str
    commit: str
    path: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    offline: bool = False

    def record(self) -> dict[str, Any]:
        from huggingface_hub import constants

        return {
            "source": "hub",
            "repo_id": self.repo_id,
            "repo_type": self.repo_type,
            "revision": self.revision,
            "commit": self.commit,
            "endpoint": constants.ENDPOINT,
            "offline": self.offline,
            "files": self.files,
        }


def _matches(name: str, patterns: Sequence[str] | None) -> bool:
    if patterns is None:
        return True
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(Path(name).name, p) for p in patterns)


def _hub_error(err: Exception, repo_id: str, repo_type: str, revision: str) -> HubError:
    """A huggingface_hub exception as one line that says what to change."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    what = f"{repo_type} {repo_id!r}"
    if isinstance(err, GatedRepoError):
        return HubError(
            f"{what} is gated on the Hub: accept its terms on the Hub, then set HF_TOKEN to a "
            "token of that account"
        )
    if isinstance(err, RevisionNotFoundError):
        return HubError(
            f"{what} has no revision {revision!r}; give a branch, tag or commit of it "
            "(revision:), or leave revision out for main"
        )
    if isinstance(err, RepositoryNotFoundError):
        return HubError(
            f"{what} was not found on the Hub ({constants.ENDPOINT}): check the id "
            f"(e.g. LongSafari/hyenadna-tiny-1k-seqlen-hf); a private repository needs HF_TOKEN; "
            f"a local directory must exist"
        )
    if isinstance(err, LocalEntryNotFoundError):  # offline or unreachable, not (all) cached
        cause = (
            "HF_HUB_OFFLINE is set"
            if constants.is_offline_mode()
            else f"the Hub ({constants.ENDPOINT}) could not be reached"
        )
        return HubError(
            f"{what} at revision {revision!r} is not (completely) in the Hub cache "
            f"({constants.HF_HUB_CACHE}) and {cause}: run once with network access (and "
            "HF_HUB_OFFLINE unset), or point HF_HOME at a cache that holds it"
        )
    if isinstance(err, HfHubHTTPError):
        return HubError(f"{what} (revision {revision!r}): the Hub answered: {err}")
    return HubError(f"{what} (revision {revision!r}): {type(err).__name__}: {err}")


def _evict(file: Path) -> None:
    """Remove a bad file from the cache: the snapshot entry and the blob it points to."""
    blob = file.resolve()
    file.unlink(missing_ok=True)
    if blob != file:
        blob.unlink(missing_ok=True)


def _expected_online(
    repo_id: str, repo_type: str, commit: str, patterns: Sequence[str] | None
) -> dict[str, dict[str, Any]]:
    """Size and hash of every file of the commit, as the Hub reports them."""
    from huggingface_hub import HfApi

    info = HfApi().repo_info(repo_id, repo_type=repo_type, revision=commit, files_metadata=True)
    expected = {}
    for sibling in info.siblings or []:
        if not _matches(sibling.rfilename, patterns):
            continue
        if sibling.lfs is not None:
            expected[sibling.rfilename] = {"size": sibling.lfs.size, "sha256": sibling.lfs.sha256}
        elif sibling.blob_id is not None:
            expected[sibling.rfilename] = {"size": sibling.size, "git_blob_sha1": sibling.blob_id}
        else:
            raise HubError(
                f"{repo_type} {repo_id!r} at {commit}: the Hub reports no hash for "
                f"{sibling.rfilename}, so it cannot be checked"
            )
    return expected


def _expected_offline(snapshot: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Offline: the hash each cached file is named by (its ETag: LFS sha256 or git blob id)."""
    expected = {}
    for name in names:
        file = snapshot / name
        blob = file.resolve().name
        if file.is_symlink() and _HEX.fullmatch(blob) and len(blob) == 64:
            expected[name] = {"size": None, "sha256": blob}
        elif file.is_symlink() and _HEX.fullmatch(blob) and len(blob) == 40:
            expected[name] = {"size": None, "git_blob_sha1": blob}
        else:
            raise HubError(
                f"{file}: offline, a cached file is checked against the hash the cache names it "
                "by, and this one is not named by a hash; fetch it once online"
            )
    return expected


def _check(file: Path, expected: dict[str, Any]) -> dict[str, Any]:
    """The file's size and hash if they are the expected ones; else evict it and fail."""
    size = file.stat().st_size
    kind = "sha256" if "sha256" in expected else "git_blob_sha1"
    actual = sha256_file(file) if kind == "sha256" else git_blob_sha1(file)
    problems = []
    if expected.get("size") is not None and size != expected["size"]:
        problems.append(f"{size} bytes instead of {expected['size']}")
    if actual != expected[kind]:
        label = "sha256" if kind == "sha256" else "git blob SHA-1"
        problems.append(f"{label} {actual} instead of {expected[kind]}")
    if problems:
        _evict(file)
        raise HubError(
            f"{file.name}: does not match what the Hub reports ({'; '.join(problems)}); the "
            "cached copy was deleted and nothing was written: fetch again, and if it fails "
            "again the repository or a mirror in between (HF_ENDPOINT) serves other bytes"
        )
    return {"size": size, kind: actual}


def download_snapshot(
    repo_id: str,
    *,
    repo_type: str = "model",
    revision: str | None = None,
    allow_patterns: Sequence[str] | None = None,
    log: logging.Logger = log,
) -> Snapshot:
    """One commit of a repository in the Hub cache, every file (of `allow_patterns`) checked
    against its size and hash (see the module docstring)."""
    from huggingface_hub import constants, snapshot_download

    revision = revision or constants.DEFAULT_REVISION
    offline = constants.is_offline_mode()
    try:
        path = Path(
            snapshot_download(
                repo_id,
                repo_type=repo_type,
                revision=revision,
                allow_patterns=list(allow_patterns) if allow_patterns else None,
            )
        )
        commit = path.name
        present = sorted(
            p.relative_to(path).as_posix()
            for p in path.rglob("*")
            if p.is_file() and _matches(p.relative_to(path).as_posix(), allow_patterns)
        )
        if offline:
            expected = _expected_offline(path, present)
        else:
            expected = _expected_online(repo_id, repo_type, commit, allow_patterns)
    except HubError:
        raise
    except Exception as err:
        raise _hub_error(err, repo_id, repo_type, revision) from err
    missing = sorted(set(expected) - set(present))
    if missing:
        raise HubError(
            f"{repo_type} {repo_id!r} at {commit}: {', '.join(missing)} listed by the Hub but "
            f"not in the cached snapshot {path}; fetch again"
        )
    if not expected:
        raise HubError(
            f"{repo_type} {repo_id!r} at {commit} has no file matching "
            f"{', '.join(allow_patterns or ['*'])}"
        )
    where = "the Hub cache (offline)" if offline else constants.ENDPOINT
    log.info(
        "%s %s: revision %s is commit %s, from %s", repo_type, repo_id, revision, commit, where
    )
    files = {}
    for name in sorted(expected):
        files[name] = _check(path / name, expected[name])
        log.info("  %s: %d bytes, checked", name, files[name]["size"])
    return Snapshot(repo_id, repo_type, revision, commit, path, files, offline)


def copy_files(
    root: Path, names: Iterable[str], dest: str | os.PathLike[str], record: dict[str, Any]
) -> Path:
    """Copy `names` (relative to `root`) and `source.json` into `dest`, whole or not at all.

    A directory output of Snakemake is removed before its job runs, so `dest` then holds exactly
    these files.
    """
    dest = Path(dest)
    with atomic_directory(dest) as tmp:
        for name in names:
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / name, target)  # follows the cache's symlinks
        write_json(tmp / SOURCE_RECORD, record)
    return dest


def read_source_record(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The `source.json` of a fetched checkpoint or dataset (None where there is none)."""
    record = Path(directory) / SOURCE_RECORD
    return json.loads(record.read_text()) if record.exists() else None


def describe_source(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """A fetched checkpoint for a summary: repo and commit (or local path) and its directory."""
    record = read_source_record(directory)
    source = {"source": "local"} if record is None else record
    return {k: v for k, v in source.items() if k != "files"} | {"dir": str(directory)}


def _local_files(root: Path, patterns: Sequence[str]) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and _matches(p.relative_to(root).as_posix(), patterns)
    )


def fetch_checkpoint(
    init_from: str,
    dest: str | os.PathLike[str],
    *,
    revision: str | None = None,
    check: Callable[[Path], Any] | None = None,
    log: logging.Logger = log,
) -> dict[str, Any]:
    """Bring an official HyenaDNA checkpoint (Hub id or local directory, either layout) to
    `dest`, checked, with `source.json`; returns that record. The layout, and `check` (called
    with the checkpoint's directory, e.g. whether it fits a model entry), run before anything is
    written, so a checkpoint that `load_hyenadna` cannot read or that does not fit never lands."""
    from dnalm.hyenadna_config import CheckpointError, detect_layout

    kind, value = parse_init_from(init_from)
    if kind == "local":
        if revision:
            raise HubError(
                f"init_from {init_from!r} is a local directory; revision applies to Hub ids only"
            )
        root = Path(value).expanduser()
        names = _local_files(root, CHECKPOINT_PATTERNS)
        files = {}
        for name in names:
            files[name] = {"size": (root / name).stat().st_size, "sha256": sha256_file(root / name)}
        record = {"source": "local", "path": str(root.resolve()), "files": files}
        log.info("local checkpoint %s: %d files", root, len(names))
    else:
        snapshot = download_snapshot(
            value, revision=revision, allow_patterns=CHECKPOINT_PATTERNS, log=log
        )
        root, names, record = snapshot.path, sorted(snapshot.files), snapshot.record()
    try:
        layout, weights = detect_layout(root)
    except CheckpointError as err:
        raise HubError(
            f"init_from {init_from!r} is not an official HyenaDNA checkpoint: {err}"
        ) from None
    record["layout"] = layout
    log.info("layout: %s (%s)", layout, weights.name)
    if check is not None:
        check(root)
    copy_files(root, names, dest, record)
    return record


def fetch_dataset(
    repo_id: str,
    dest: str | os.PathLike[str],
    *,
    revision: str | None = None,
    patterns: Sequence[str] | None = None,
    log: logging.Logger = log,
) -> dict[str, Any]:
    """Bring a Hub dataset's parquet files (those matching `patterns`, else all) and its card to
    `dest`, checked, with `source.json`; returns that record."""
    if not is_hub_id(repo_id):
        raise HubError(f"repo {repo_id!r} is not a Hugging Face Hub id (owner/name)")
    wanted = [*patterns, "README.md"] if patterns else list(DATASET_PATTERNS)
    snapshot = download_snapshot(
        repo_id, repo_type="dataset", revision=revision, allow_patterns=wanted, log=log
    )
    if not any(name.endswith(".parquet") for name in snapshot.files):
        raise HubError(
            f"dataset {repo_id!r} at {snapshot.commit} has no parquet file"
            + (f" matching {', '.join(patterns)}" if patterns else "")
            + "; dnalm reads the Hub's parquet files (the refs/convert/parquet revision has "
            "them for most datasets)"
        )
    copy_files(snapshot.path, sorted(snapshot.files), dest, snapshot.record())
    return snapshot.record()


def resolve_model_dir(model: str, log: logging.Logger = log) -> Path:
    """A model directory for `--model`: an existing directory as it is, else a Hub id fetched
    into the Hub cache (checked, see `download_snapshot`); `owner/name@revision` pins one."""
    if Path(model).expanduser().is_dir():
        return Path(model).expanduser()
    repo_id, _, revision = model.partition("@")
    if not is_hub_id(repo_id):
        raise HubError(
            f"--model {model!r} is neither a directory nor a Hugging Face Hub id (owner/name)"
        )
    return download_snapshot(
        repo_id, revision=revision or None, allow_patterns=CHECKPOINT_PATTERNS, log=log
    ).path
