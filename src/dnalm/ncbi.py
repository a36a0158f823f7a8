"""NCBI sources: nucleotide accessions, assembly accessions and the viral RefSeq release.

- `ncbi:ACC1,ACC2[:START-STOP]` -> E-utilities efetch (db=nuccore, rettype=fasta) through
  Bio.Entrez, in batches (a region is a request of its own), spaced by Bio.Entrez to NCBI's
  limit: 3 requests/s, 10 with an API key (`NCBI_API_KEY` in the environment). Every requested
  accession must come back, or the download fails naming the missing ones.
- `assembly:GCF_...|GCA_...` -> the NCBI Datasets v2 REST API genome download (a zip data package
  holding `ncbi_dataset/data/<accession>/*_genomic.fna`, checked against its md5sum.txt), chosen
  over the FTP layout because it needs no assembly name and resolves an unversioned accession.
- `refseq:viral` -> every `viral.<n>.1.genomic.fna.gz` listed in the release directory.

All base URLs are parameters (config `acquire:` block) so that tests and mirrors can redirect them.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import logging
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

from dnalm.download import DownloadError, download, fetch_bytes, list_links, parse_md5sums
from dnalm.files import atomic_write

__all__ = [
    "ASSEMBLY_ACCESSION",
    "DATASETS_URL",
    "EUTILS_URL",
    "NUCLEOTIDE_ACCESSION",
    "NcbiError",
    "REFSEQ_VIRAL_URL",
    "download_assembly",
    "download_refseq_viral",
    "efetch_nucleotide",
    "entrez",
    "parse_region",
]

EUTILS_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils"
DATASETS_URL = "https://api.ncbi.nlm.nih.gov/datasets/v2"
REFSEQ_VIRAL_URL = "https://ftp.ncbi.nlm.nih.gov/refseq/release/viral/"
REFSEQ_VIRAL_FILES = r"viral\.\d+\.1\.genomic\.fna\.gz"

# GenBank (U12345, AB123456, MN908947.3), WGS (AAAA01000001) and RefSeq (NC_045512.2, NZ_CP...)
NUCLEOTIDE_ACCESSION = re.compile(r"[A-Z]{1,6}(_[A-Z]{0,4})?[0-9]{5,12}(\.[0-9]+)?")
ASSEMBLY_ACCESSION = re.compile(r"GC[AF]_[0-9]{9}(\.[0-9]+)?")
_FASTA_SUFFIXES = (".fna", ".fa", ".fasta", ".fas")
_log = logging.getLogger("dnalm")


class NcbiError(DownloadError):
    """NCBI answered, but not with what was asked for."""


_REGION = re.compile(r"(?P<accession>[^:]+):(?P<start>[0-9]+)-(?P<stop>[0-9]+)")


def parse_region(text: str) -> tuple[str, tuple[int, int] | None]:
    """`ACC` -> (ACC, None); `ACC:START-STOP` (1-based, inclusive) -> (ACC, (START, STOP))."""
    if ":" not in text:
        return text, None
    match = _REGION.fullmatch(text)
    start, stop = (int(match["start"]), int(match["stop"])) if match else (0, 0)
    if not match or not 1 <= start <= stop:
        raise ValueError(
            f"{text!r}: a region is ACC:START-STOP, 1-based and inclusive, START <= STOP "
            "(e.g. NC_003070.9:1-304277)"
        )
    return match["accession"], (start, stop)


def _header_accessions(line: bytes) -> list[str]:
    """Accession-like words of a FASTA header id (plain `NC_1.2` or `ref|NC_1.2|` style, and
    `NC_1.2:1-100` for a region)."""
    word = line[1:].split(maxsplit=1)[0].decode("ascii", "replace") if line[1:].strip() else ""
    parts = word.split("|")
    return [p for p in parts if NUCLEOTIDE_ACCESSION.fullmatch(p.split(":")[0])] or [word]


def _matches(requested: str, found: str) -> bool:
    accession, region = requested.partition(":")[::2]
    got, got_region = found.partition(":")[::2]
    if region != got_region:
        return False
    return got == accession if "." in accession else got.split(".")[0] == accession


def _check_batch(url: str, path: Path, batch: Sequence[str], log: logging.Logger) -> None:
    """The answer is FASTA and holds every requested accession (streamed: batches can be GBs)."""
    found: list[str] = []
    first = b""
    with open(path, "rb") as fh:
        for line in fh:
            if not first and line.strip():
                first = line.lstrip()
                if not first.startswith(b">"):
                    snippet = (first + fh.read(300))[:300].decode("utf-8", "replace")
                    raise NcbiError(
                        f"{url}: efetch did not answer with FASTA for {', '.join(batch[:5])}"
                        f"{' ...' if len(batch) > 5 else ''}: {snippet!r}"
                    )
            if line.startswith(b">"):
                found.extend(_header_accessions(line))
    if not first:
        raise NcbiError(f"{url}: efetch answered with nothing for {', '.join(batch[:5])}")
    missing = []
    for acc in batch:
        hits = [f for f in found if _matches(acc, f)]
        if not hits:
            missing.append(acc)
        elif "." not in acc:
            log.info("ncbi: %s resolved to %s", acc, hits[0])
    if missing:
        raise NcbiError(
            f"{url}: NCBI returned no record for {len(missing)} accession(s): "
            f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}; check them at "
            "https://www.ncbi.nlm.nih.gov/nuccore (withdrawn, misspelt, or not a nucleotide record)"
        )


@contextlib.contextmanager
def entrez(
    base_url: str = EUTILS_URL,
    *,
    email: str | None = None,
    api_key: str | None = None,
    tool: str = "dnalm",
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 120.0,
) -> Iterator[ModuleType]:
    """Bio.Entrez set up for one download, pointed at `base_url`, restored afterwards.

    Bio.Entrez spaces its requests by NCBI's rule (3/s, 10/s with an API key), retries
    connection errors, HTTP 5xx and 429 (`max_tries`, `sleep_between_tries`), and POSTs long
    id lists. Its base URL is not a setting: each function names
    https://eutils.ncbi.nlm.nih.gov/entrez/eutils itself (Biopython 1.88). The one seam is
    `Bio.Entrez.urlopen`, the function its `_open` sends every request through; inside this
    block it is replaced by one that moves the request below `base_url` and adds `timeout`.
    Bio.Entrez's settings are module state, so one block at a time per process.
    """
    from Bio import Entrez

    base = base_url.rstrip("/")
    saved = {
        name: getattr(Entrez, name)
        for name in ("email", "api_key", "tool", "max_tries", "sleep_between_tries", "urlopen")
    }
    send = saved["urlopen"]

    def urlopen(request: urllib.request.Request, *args, **kwargs):
        url = request.full_url
        if not url.startswith(EUTILS_URL + "/"):
            raise NcbiError(f"Bio.Entrez asked for {url}, outside {EUTILS_URL}; not redirected")
        moved = urllib.request.Request(  # a copy: Bio.Entrez sends the same request on a retry
            base + url[len(EUTILS_URL) :],
            data=request.data,
            headers=dict(request.header_items()),
            method=request.get_method(),
        )
        kwargs.setdefault("timeout", timeout)
        return send(moved, *args, **kwargs)

    Entrez.email = email or None
    Entrez.api_key = api_key or None
    Entrez.tool = tool
    Entrez.max_tries = retries + 1
    Entrez.sleep_between_tries = backoff
    Entrez.urlopen = urlopen
    try:
        yield Entrez
    finally:
        for name, value in saved.items():
            setattr(Entrez, name, value)


def _efetch_batch(
    Entrez: ModuleType,
    batch: Sequence[str],
    dest: Path,
    *,
    url: str,
    retries: int,
    backoff: float,
    log: logging.Logger,
) -> None:
    """One efetch answer, streamed to `dest`. Bio.Entrez retries a request that fails; a body
    cut off while it arrives is asked for again here, as a download would resume it."""
    what = f"efetch of {', '.join(batch[:5])}{' ...' if len(batch) > 5 else ''}"
    ids, region = [parse_region(a)[0] for a in batch], parse_region(batch[0])[1]
    span = {"seq_start": region[0], "seq_stop": region[1]} if region else {}
    for attempt in range(retries + 1):
        try:
            handle = Entrez.efetch(db="nuccore", id=ids, rettype="fasta", retmode="text", **span)
        except urllib.error.HTTPError as err:
            err.close()
            raise NcbiError(f"{url}: HTTP {err.code} {err.reason} ({what})") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", err)
            raise NcbiError(f"{url}: {reason} after {retries + 1} attempt(s) ({what})") from None
        raw = handle.buffer if isinstance(handle, io.TextIOWrapper) else handle  # FASTA bytes
        try:
            with raw, open(dest, "wb") as out:
                shutil.copyfileobj(raw, out, 1 << 20)
                length = raw.headers.get("Content-Length", "")
                if length.isdigit() and out.tell() < int(length):  # read(n) does not raise
                    raise http.client.IncompleteRead(b"", int(length) - out.tell())
            return
        except (OSError, http.client.HTTPException) as err:
            if attempt == retries:
                raise NcbiError(f"{url}: the answer was cut off ({err}) ({what})") from None
            delay = backoff * 2**attempt
            log.warning("%s: answer cut off (%s); asking again in %.1f s", url, err, delay)
            time.sleep(delay)


def efetch_nucleotide(
    accessions: Sequence[str],
    dest: str | os.PathLike[str],
    *,
    base_url: str = EUTILS_URL,
    api_key: str | None = None,
    email: str | None = None,
    tool: str = "dnalm",
    batch_size: int = 200,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 120.0,
    log: logging.Logger | None = None,
) -> Path:
    """FASTA of nucleotide accessions via Bio.Entrez efetch, in batches, written atomically;
    every accession must come back. `ACC:START-STOP` fetches that region (efetch's seq_start
    and seq_stop, which apply to a whole request, so each region is a request of its own)."""
    log = log or _log
    accs = [a.strip() for a in accessions]
    if not accs or not all(accs):
        raise ValueError("efetch_nucleotide needs at least one accession (and no empty ones)")
    dupes = sorted({a for a in accs if accs.count(a) > 1})
    if dupes:
        raise ValueError(f"duplicate accession(s) {', '.join(dupes)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    url = base_url.rstrip("/") + "/efetch.fcgi"
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    batches: list[list[str]] = []  # in the order given; a region is a request of its own
    for acc in accs:
        if parse_region(acc)[1] is not None:
            batches.append([acc])
        elif batches and len(batches[-1]) < batch_size and parse_region(batches[-1][0])[1] is None:
            batches[-1].append(acc)
        else:
            batches.append([acc])
    log.info(
        "ncbi: %d accession(s) in %d efetch request(s) through Bio.Entrez, at most %d/s%s",
        len(accs),
        len(batches),
        10 if api_key else 3,
        " (API key)" if api_key else "",
    )
    with (
        entrez(
            base_url,
            email=email,
            api_key=api_key,
            tool=tool,
            retries=retries,
            backoff=backoff,
            timeout=timeout,
        ) as Entrez,
        tempfile.TemporaryDirectory(prefix=".efetch-", dir=dest.parent) as tmp,
        atomic_write(dest, "wb") as out,
    ):
        for n, batch in enumerate(batches):
            body = Path(tmp) / f"batch{n}.fa"
            _efetch_batch(Entrez, batch, body, url=url, retries=retries, backoff=backoff, log=log)
            _check_batch(url, body, batch, log)
            with open(body, "rb") as src:
                last = b"\n"
                for line in src:
                    if line.strip() or out.tell():  # drop leading blank lines only
                        out.write(line)
                        last = line[-1:]
                if last != b"\n":
                    out.write(b"\n")
            body.unlink()
    return dest


# --------------------------------------------------------------------------- assemblies


def _package_md5s(zf: zipfile.ZipFile) -> dict[str, str]:
    names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == "md5sum.txt"]
    if not names:
        return {}
    return parse_md5sums(zf.read(names[0]).decode("utf-8", "replace"))


def download_assembly(
    accession: str,
    dest: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str],
    base_url: str = DATASETS_URL,
    api_key: str | None = None,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 300.0,
    log: logging.Logger | None = None,
) -> Path:
    """The genomic FASTA of one assembly (all its sequences) from an NCBI Datasets package."""
    log = log or _log
    if not ASSEMBLY_ACCESSION.fullmatch(accession):
        raise ValueError(
            f"{accession!r} is not an assembly accession (GCF_ or GCA_ plus 9 digits, "
            "e.g. GCF_000005845.2)"
        )
    url = (
        f"{base_url.rstrip('/')}/genome/accession/{urllib.parse.quote(accession)}/download"
        "?include_annotation_type=GENOME_FASTA"
    )
    headers = {"Accept": "application/zip"}
    if api_key:
        headers["api-key"] = api_key
    package = download(
        url,
        Path(cache_dir) / f"{accession}.zip",
        headers=headers,
        gzip_check=False,
        retries=retries,
        backoff=backoff,
        timeout=timeout,
        log=log,
    )
    dest = Path(dest)
    try:
        with zipfile.ZipFile(package) as zf:
            broken = zf.testzip()
            if broken is not None:
                raise NcbiError(f"{url}: member {broken} of the data package is corrupt")
            members = sorted(
                n
                for n in zf.namelist()
                if n.startswith("ncbi_dataset/data/") and n.lower().endswith(_FASTA_SUFFIXES)
            )
            if not members:
                raise NcbiError(
                    f"{url}: the data package holds no genomic FASTA for {accession}; check the "
                    "accession (GCF_ = RefSeq, GCA_ = GenBank) and that the assembly is public"
                )
            sums = _package_md5s(zf)
            with atomic_write(dest, "wb") as out:
                for name in members:
                    digest = hashlib.md5()
                    with zf.open(name) as src:
                        last = b"\n"
                        while chunk := src.read(1 << 20):
                            digest.update(chunk)
                            out.write(chunk)
                            last = chunk[-1:]
                        if last != b"\n":
                            out.write(b"\n")
                    want = sums.get(name)
                    if want and digest.hexdigest() != want:
                        raise NcbiError(
                            f"{url}: {name} fails the package's md5sum.txt (expected {want}, "
                            f"got {digest.hexdigest()})"
                        )
                    log.info("assembly %s: %s", accession, name)
    except zipfile.BadZipFile:
        head = package.read_bytes()[:200].decode("utf-8", "replace")
        package.unlink()
        raise NcbiError(f"{url}: the answer is not a zip data package: {head!r}") from None
    except NcbiError:
        package.unlink()
        raise
    return dest


# --------------------------------------------------------------------------- viral RefSeq


def download_refseq_viral(
    cache_dir: str | os.PathLike[str],
    *,
    base_url: str = REFSEQ_VIRAL_URL,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 300.0,
    log: logging.Logger | None = None,
) -> list[Path]:
    """Every `viral.<n>.1.genomic.fna.gz` of the current release, cached per release number.

    The release directory is rewritten at every release under the same file names, so files
    are cached under the release number (`../RELEASE_NUMBER`); when that cannot be read, the
    cache is not trusted and every file is fetched again.
    """
    log = log or _log
    opts = {"retries": retries, "backoff": backoff, "timeout": timeout, "log": log}
    base = base_url if base_url.endswith("/") else base_url + "/"
    release = ""
    with contextlib.suppress(DownloadError):
        release = fetch_bytes(urllib.parse.urljoin(base, "../RELEASE_NUMBER"), **opts).decode()
        release = release.strip() if re.fullmatch(r"\s*\d+\s*", release) else ""
    urls = list_links(base, REFSEQ_VIRAL_FILES, **opts)
    if not urls:
        raise NcbiError(
            f"{base}: no viral.<n>.1.genomic.fna.gz files listed; is refseq_viral_url the "
            "RefSeq release's viral directory?"
        )
    log.info("refseq viral: release %s, %d file(s)", release or "unknown", len(urls))
    folder = Path(cache_dir) / (f"release{release}" if release else "current")
    paths = []
    for url in urls:
        name = url.rsplit("/", 1)[-1]
        paths.append(download(url, folder / name, reuse=bool(release), **opts))
    return paths
