"""A local folder that stands in for downloads (config `acquire.mirror`).

A machine without network (CI, a compute node) can hold copies of the files a config downloads.
Before any download, acquisition looks for the file in the mirror: by the checksum the sheet or
config pins, else by file name (a URL's last path segment, or a source's `?mirror=<name>`).
Checksums come from the mirror's own `SHA256SUMS` / `MD5SUMS` (sha256sum/md5sum format), or are
computed once and cached beside the downloads, keyed by size and modification time. A file found
by name is checked against the mirror's list when the list has it, and a pinned checksum is
always checked on the file used, so a stale or damaged mirror fails loudly instead of feeding a
run the wrong data.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from dnalm.fasta import file_checksum, parse_checksum
from dnalm.files import write_json

__all__ = ["Mirror", "MirrorError"]

_LISTS = {"sha256": "SHA256SUMS", "md5": "MD5SUMS"}
_log = logging.getLogger("dnalm")


class MirrorError(RuntimeError):
    """The mirror has the file asked for, but not intact, or more than one of that name."""


class Mirror:
    """The files under `root`; computed checksums are cached in `cache_dir`."""

    def __init__(
        self, root: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise MirrorError(
                f"acquire.mirror {self.root} is not a directory (relative paths are from the "
                "working directory)"
            )
        self.cache = Path(cache_dir) / "mirror-checksums.json" if cache_dir else None
        self._files: list[str] | None = None
        self._lists: dict[str, dict[str, str]] = {}

    def files(self) -> list[str]:
        """Every file below the root, as a relative POSIX path, the checksum lists left out."""
        if self._files is None:
            found = []
            for folder, dirs, names in os.walk(self.root):
                dirs.sort()
                rel = Path(folder).relative_to(self.root)
                found += [(rel / n).as_posix() for n in sorted(names)]
            self._files = [f for f in found if f not in _LISTS.values()]
        return self._files

    def listed(self, algorithm: str) -> dict[str, str]:
        """The mirror's own list for `algorithm` (relative path -> hex), empty without one."""
        if algorithm not in self._lists:
            sums: dict[str, str] = {}
            name = _LISTS.get(algorithm)
            path = self.root / name if name else None
            if path is not None and path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    digest, _, rel = line.strip().partition(" ")
                    rel = rel.strip().lstrip("*").removeprefix("./")
                    if digest and rel:
                        sums[rel] = digest.lower()
            self._lists[algorithm] = sums
        return self._lists[algorithm]

    def find(
        self,
        *,
        checksum: str | None = None,
        name: str | None = None,
        log: logging.Logger | None = None,
    ) -> Path | None:
        """The mirror's file for a pinned `checksum`, else for a file `name`; None when absent.

        With a checksum only a file with that checksum counts: a same-named file with another
        one is a different version (logged), and the caller downloads instead.
        """
        log = log or _log
        if checksum:
            algorithm, digest = parse_checksum(checksum)
            for rel in self._with_digest(algorithm, digest):
                path = self.root / rel
                if file_checksum(path, algorithm) == digest:  # the list may be stale
                    return path
                log.warning("mirror: %s is listed as %s but its content differs", path, digest)
            if name and self._named(name):
                log.warning(
                    "mirror: %s has no file with %s; %s there is another version",
                    self.root,
                    checksum,
                    ", ".join(self._named(name)),
                )
            return None
        if not name:
            return None
        matches = self._named(name)
        if len(matches) > 1:
            raise MirrorError(
                f"mirror {self.root}: {len(matches)} files are named {name!r} "
                f"({', '.join(matches)}); name the file by its path below the mirror"
            )
        if not matches:
            return None
        path = self.root / matches[0]
        listed = self.listed("sha256").get(matches[0])
        if listed and file_checksum(path) != listed:
            raise MirrorError(
                f"mirror file {path} does not match its SHA256SUMS entry ({listed}); "
                "the mirror copy is damaged: copy it again"
            )
        return path

    def _named(self, name: str) -> list[str]:
        """Files whose path below the root is `name`, or whose file name is."""
        name = name.strip("/")
        if "/" in name:
            return [name] if (self.root / name).is_file() else []
        return [f for f in self.files() if f.rsplit("/", 1)[-1] == name]

    def _with_digest(self, algorithm: str, digest: str) -> list[str]:
        """Files whose listed (or else computed and cached) checksum is `digest`."""
        listed = self.listed(algorithm)
        hits = [rel for rel, value in listed.items() if value == digest and rel in self.files()]
        if hits:
            return hits
        cache = self._load_cache()
        entries = cache.setdefault(str(self.root.resolve()), {})
        changed = False
        for rel in self.files():
            if rel in listed:
                continue
            stat = (self.root / rel).stat()
            key = f"{algorithm}:{rel}"
            entry = entries.get(key)
            if not entry or entry[:2] != [stat.st_size, stat.st_mtime_ns]:
                entry = [stat.st_size, stat.st_mtime_ns, file_checksum(self.root / rel, algorithm)]
                entries[key] = entry
                changed = True
            if entry[2] == digest:
                hits.append(rel)
        if changed and self.cache is not None:
            with contextlib.suppress(OSError):  # a cache that cannot be written costs time only
                write_json(self.cache, cache)
        return hits

    def _load_cache(self) -> dict:
        if self.cache is None or not self.cache.is_file():
            return {}
        try:
            return json.loads(self.cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
