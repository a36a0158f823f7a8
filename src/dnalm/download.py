"""Downloading one file, safely: retried, resumed, verified, then moved into place.

Genome downloads are large and servers flaky; a half-written or silently corrupted file would
poison every later rule, because Snakemake trusts any output that exists. So a transfer goes to
`<dest>.part`, survives transient failures (connection errors, 408/429/5xx, a connection cut
mid-body: the next attempt resumes with an HTTP Range request where the server allows), is checked
(pinned checksum; gzip integrity when the content is gzip) and only then renamed to `dest`.
Content errors (checksum mismatch, corrupt gzip, 4xx) remove the `.part`; a transient failure
that outlasts the retries keeps it, so that the next run resumes instead of starting over.

Only the standard library is used (urllib): `http://`, `https://` and `ftp://` URLs. FTP
transfers restart from the beginning (urllib's FTP handler cannot resume).
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import http.client
import logging
import os
import random
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from dnalm.fasta import file_checksum, is_gzip, parse_checksum  # one checksum syntax everywhere
from dnalm.files import atomic_write

__all__ = [
    "DownloadChecksumError",
    "DownloadError",
    "check_gzip",
    "concatenate",
    "download",
    "fetch_bytes",
    "list_links",
    "parse_checksum",
    "parse_md5sums",
]

SCHEMES = ("http", "https", "ftp")
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
CHUNK = 1 << 20
USER_AGENT = "dnalm/0.1 (python-urllib; https://github.com/dnalm)"
_log = logging.getLogger("dnalm")


class DownloadError(RuntimeError):
    """A download that cannot succeed as asked (after retries, or a permanent error)."""


class DownloadChecksumError(DownloadError):
    """The downloaded bytes are not the ones the sheet or config pinned."""

    def __init__(self, url: str, expected: str, actual: str) -> None:
        self.url = url
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{url}: checksum mismatch (expected {expected}, got {actual}); the download was "
            "removed. The server's file changed or the pinned checksum is wrong: check the "
            "source and update the checksum if the new file is intended"
        )

    def __reduce__(self):  # keep the attributes when pickled across processes
        return (DownloadChecksumError, (self.url, self.expected, self.actual))


class _Transient(Exception):
    """One failed attempt worth retrying."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# --------------------------------------------------------------------------- integrity


def parse_md5sums(text: str) -> dict[str, str]:
    """An `md5sum` listing (UCSC's md5sum.txt, an NCBI package's) -> {file name: md5}."""
    sums = {}
    for line in text.splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            sums[parts[1].strip().lstrip("*").removeprefix("./")] = parts[0].lower()
    return sums


def check_gzip(path: str | os.PathLike[str], name: str | None = None) -> None:
    """Decompress to the end: a truncated or corrupt gzip raises DownloadError naming `name`."""
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(CHUNK):
                pass
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as err:
        raise DownloadError(
            f"{name or path}: truncated or corrupt gzip ({err}); the download was removed. "
            "The server's file is incomplete: try again later or use another mirror"
        ) from None


# --------------------------------------------------------------------------- transfer


def _check_url(url: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.netloc:
        raise ValueError(
            f"{url!r} is not a downloadable URL; give an http://, https:// or ftp:// URL"
        )
    return parts


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


def _content_range_start(value: str | None) -> int | None:
    match = re.match(r"bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    return int(match.group(1)) if match else None


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} GB"


def _attempt(
    url: str,
    part: Path,
    *,
    headers: Mapping[str, str],
    timeout: float,
    log: logging.Logger,
    progress_every: float,
) -> None:
    """One request; appends to `part` (resuming) or rewrites it. Raises _Transient to retry."""
    scheme = urllib.parse.urlsplit(url).scheme
    offset = part.stat().st_size if part.exists() else 0
    if offset and scheme == "ftp":
        part.unlink()  # an FTP transfer cannot be resumed
        offset = 0
    request = urllib.request.Request(url)
    request.add_header("User-Agent", USER_AGENT)
    for key, value in headers.items():
        request.add_header(key, value)
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and offset:
            part.unlink()
            raise _Transient("the server refused to resume (HTTP 416); restarting") from None
        if err.code in RETRY_STATUS:
            raise _Transient(
                f"HTTP {err.code} {err.reason}", _retry_after(err.headers.get("Retry-After"))
            ) from None
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        hint = " (check the URL or accession)" if err.code == 404 else ""
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}{hint}") from None
    except urllib.error.URLError as err:
        reason = str(err.reason)
        if scheme == "ftp" and ("550" in reason or "error_perm" in reason):
            raise DownloadError(f"{url}: {reason} (no such file on the FTP server?)") from None
        raise _Transient(reason) from None
    except (OSError, http.client.HTTPException) as err:
        raise _Transient(f"{type(err).__name__}: {err}") from None

    with response:
        status = getattr(response, "status", None)
        if offset and status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _Transient(
                    f"the server resumed at byte {start}, not {offset}; restarting"
                ) from None
            log.info("%s: resuming at byte %d", url, offset)
        elif offset:
            log.info("%s: the server ignored the resume request; restarting", url)
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        received = offset
        started = last_report = time.monotonic()
        with open(part, "ab" if offset else "wb") as out:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as err:
                    raise _Transient(
                        f"connection lost after {received} bytes ({type(err).__name__}: {err})"
                    ) from None
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                now = time.monotonic()
                if now - last_report >= progress_every:
                    last_report = now
                    rate = (received - offset) / max(now - started, 1e-9)
                    of = f" of {_human(total)}" if total else ""
                    log.info("%s: %s%s (%s/s)", url, _human(received), of, _human(rate))
    if total is not None and received < total:
        raise _Transient(f"connection closed after {received} of {total} bytes")


def download(
    url: str,
    dest: str | os.PathLike[str],
    checksum: str | None = None,
    *,
    retries: int = 5,
    backoff: float = 2.0,
    max_backoff: float = 120.0,
    timeout: float = 60.0,
    headers: Mapping[str, str] | None = None,
    gzip_check: bool = True,
    reuse: bool = True,
    progress_every: float = 10.0,
    log: logging.Logger | None = None,
) -> Path:
    """Fetch `url` into `dest`, all or nothing; return `dest`.

    `checksum` (`sha256:<hex>`, `md5:<hex>` or bare hex) is verified before the file is moved
    into place. With `reuse`, an existing `dest` is kept when it matches the checksum (or when
    no checksum is given). Retries wait `backoff * 2**attempt` seconds (capped,
    with a little jitter, or the server's Retry-After when longer).
    """
    log = log or _log
    _check_url(url)
    expected = parse_checksum(checksum) if checksum else None
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if reuse and expected is None:
            log.info("%s: using the cached %s", url, dest)
            return dest
        if reuse and expected is not None and file_checksum(dest, expected[0]) == expected[1]:
            log.info("%s: using the cached %s (checksum verified)", url, dest)
            return dest
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    failures: list[str] = []
    for attempt in range(retries + 1):
        try:
            _attempt(
                url,
                part,
                headers=headers or {},
                timeout=timeout,
                log=log,
                progress_every=progress_every,
            )
            break
        except _Transient as err:
            failures.append(str(err))
            if attempt == retries:
                kept = (
                    f"; the partial file {part} is kept and the next run resumes it"
                    if part.exists()
                    else ""
                )
                raise DownloadError(
                    f"{url}: failed after {retries + 1} attempt(s): {'; '.join(failures[-3:])}"
                    f"{kept}"
                ) from None
            delay = min(max_backoff, backoff * 2**attempt) * (1 + 0.1 * random.random())
            if err.retry_after is not None:
                delay = max(delay, min(err.retry_after, max_backoff))
            log.warning(
                "%s: attempt %d/%d failed (%s); retrying in %.1f s",
                url,
                attempt + 1,
                retries + 1,
                err,
                delay,
            )
            time.sleep(delay)
    try:
        if expected is not None:
            algorithm, digest = expected
            actual = file_checksum(part, algorithm)
            if actual != digest:
                raise DownloadChecksumError(url, f"{algorithm}:{digest}", f"{algorithm}:{actual}")
        if gzip_check and is_gzip(part):
            check_gzip(part, name=url)
        os.replace(part, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise
    log.info("%s -> %s (%s)", url, dest, _human(dest.stat().st_size))
    return dest


def fetch_bytes(url: str, **kwargs) -> bytes:
    """A small resource (a directory index, md5sum.txt) in memory, with download()'s retries."""
    with tempfile.TemporaryDirectory(prefix="dnalm-fetch-") as tmp:
        path = download(url, Path(tmp) / "body", reuse=False, gzip_check=False, **kwargs)
        return path.read_bytes()


_HREF = re.compile(rb"""href\s*=\s*["']?([^"'\s>]+)""", re.IGNORECASE)


def _natural_key(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def list_links(url: str, pattern: str, **kwargs) -> list[str]:
    """Absolute URLs of the files an HTML directory index links to whose names match `pattern`.

    NCBI's and UCSC's FTP sites are also served over HTTPS with plain index pages, so listing a
    release directory is a regex over its links (sorted naturally: viral.2 before viral.10).
    """
    base = url if url.endswith("/") else url + "/"
    body = fetch_bytes(base, **kwargs)
    names = set()
    for raw in _HREF.findall(body):
        href = urllib.parse.unquote(raw.decode("utf-8", "replace"))
        name = href.rstrip("/").rsplit("/", 1)[-1]
        if re.fullmatch(pattern, name):
            names.add(name)
    return [urllib.parse.urljoin(base, n) for n in sorted(names, key=_natural_key)]


def concatenate(parts: Iterable[str | os.PathLike[str]], dest: str | os.PathLike[str]) -> Path:
    """Byte-wise concatenation (gzip members concatenate into a valid gzip), atomically."""
    with atomic_write(dest, "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, CHUNK)
    return Path(dest)
