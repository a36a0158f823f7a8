"""Where a genome or sample comes from: the sheet's `source` field.

One string names the source so that a sheet stays one row per genome:
- a path to a local FASTA (plain, gzip or bgzip), relative to the working directory;
- `simulated:<profile>?length=..&seed=..&family=..&records=..` (profiles: virus, host): a
  seeded synthetic genome, used by the offline default;
- `simulated:metagenome?seed=..&contigs=..&min_length=..&max_length=..&virus_fraction=..`: a
  synthetic mix of contigs (truth in each header), for the `predict` demo;
- `https://...`, `http://...`, `ftp://...`: one FASTA file (plain or gzip), downloaded;
- `ncbi:ACC[,ACC...]`: nucleotide records by accession (E-utilities efetch); `ACC:START-STOP`
  asks for bases START to STOP (1-based, inclusive) of that record only;
- `assembly:GCF_...` / `assembly:GCA_...`: every sequence of an NCBI assembly (Datasets API);
- `refseq:viral`: every viral genome of the current RefSeq release;
- `ucsc:<assembly>` (e.g. `ucsc:hg38`) or `ucsc:<assembly>:<chrom>[,<chrom>...]`: a UCSC
  genome, whole (`bigZips/<assembly>.fa.gz`) or only the named chromosomes
  (`chromosomes/<chrom>.fa.gz`), checked against UCSC's md5sum.txt.
A download source other than a URL may end in `?mirror=<file name>`: the name of the file that
stands in for it in an offline mirror (config `acquire.mirror`, see `dnalm.mirror`); a URL's own
file name serves for a URL. Parsing never touches the network (downloads are jobs, not
parse-time work); `fetch_source` does the download, into a cache folder that a rerun reuses.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

METAGENOME_DEFAULTS = {"seed": 0, "contigs": 40, "min_length": 300, "max_length": 20000}
DOWNLOAD_KINDS = ("url", "ncbi", "assembly", "refseq", "ucsc")
# The acquire config keys that change what a download source yields (the acquire rule's params);
# transfer settings (retries, timeout, cache folder) change nothing and are read by the script.
SOURCE_URL_KEYS = {
    "url": [],
    "ncbi": ["ncbi_eutils_url"],
    "assembly": ["ncbi_datasets_url"],
    "refseq": ["refseq_viral_url"],
    "ucsc": ["ucsc_url"],
}
URL_SCHEMES = ("http", "https", "ftp")
UCSC_URL = "https://hgdownload.soe.ucsc.edu/goldenPath"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_UCSC_ASSEMBLY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_CHROM = re.compile(r"[A-Za-z0-9_.-]+")
_log = logging.getLogger("dnalm")


@dataclass(frozen=True)
class Source:
    kind: str  # local, simulated, metagenome, url, ncbi, assembly, refseq or ucsc
    value: str  # the path, the URL, or the full source string
    args: tuple[str, ...] = field(default=())  # accessions; (assembly, *chromosomes); ...
    mirror: str = ""  # the file that stands in for a download in acquire.mirror, if named

    @property
    def path(self) -> Path:
        return Path(self.value)

    @property
    def is_download(self) -> bool:
        return self.kind in DOWNLOAD_KINDS


def parse_source(source: str, where: str = "") -> Source:
    """Classify a source string; `where` (e.g. "genomes.tsv, genome 'x'") prefixes errors."""
    source = str(source).strip()
    prefix = f"{where}: " if where else ""
    if not source:
        raise ValueError(f"{prefix}empty source; give a FASTA path or simulated:<profile>")
    try:
        return _parse(source)
    except ValueError as err:
        raise ValueError(f"{prefix}{err}") from None


def _parse(source: str) -> Source:
    scheme = _SCHEME.match(source)
    if scheme:
        if scheme.group(1).lower() not in URL_SCHEMES:
            raise ValueError(
                f"source {source!r}: unsupported URL scheme {scheme.group(1)!r}; use https://, "
                "http:// or ftp://, or download the file and give its path"
            )
        parts = urllib.parse.urlsplit(source)
        if not parts.netloc or not parts.path.strip("/"):
            raise ValueError(f"source {source!r}: a URL needs a host and a file path")
        return Source("url", source, (source,))
    head, _, rest = source.partition(":")
    if head in ("ncbi", "assembly", "refseq", "ucsc"):
        rest, mirror = _mirror_name(source, rest)
        parsed = _parse_download(source, head, rest)
        return Source(parsed.kind, source, parsed.args, mirror)
    if source.startswith("simulated:metagenome"):
        metagenome_options(source)
        return Source("metagenome", source)
    if source.startswith("simulated:"):
        from dnalm.simulate import parse_simulated_source

        parse_simulated_source(source)
        return Source("simulated", source)
    return Source("local", source)


def _mirror_name(source: str, rest: str) -> tuple[str, str]:
    """Split `?mirror=<file name>` off a download source."""
    rest, sep, query = rest.partition("?")
    if not sep:
        return rest, ""
    key, _, name = query.partition("=")
    if key != "mirror" or not name.strip() or name != name.strip() or "?" in name:
        raise ValueError(
            f"source {source!r}: the only option of a download source is ?mirror=<file name> "
            "(the file that stands in for it in acquire.mirror)"
        )
    return rest, name


def _parse_download(source: str, head: str, rest: str) -> Source:
    if head == "ncbi":
        from dnalm.ncbi import NUCLEOTIDE_ACCESSION, parse_region

        accs = [a.strip() for a in rest.split(",")] if rest.strip() else []
        bad = []
        for acc in accs:
            try:
                accession, _ = parse_region(acc)
            except ValueError as err:
                raise ValueError(f"source {source!r}: {err}") from None
            if not NUCLEOTIDE_ACCESSION.fullmatch(accession):
                bad.append(acc)
        if not accs or bad:
            what = ", ".join(repr(b) for b in bad) + " is not" if bad else "no accession; need"
            raise ValueError(
                f"source {source!r}: {what} a nucleotide accession; write "
                "ncbi:ACC[:START-STOP][,ACC...], e.g. ncbi:NC_045512.2 or "
                "ncbi:NC_003070.9:1-304277"
            )
        dupes = sorted({a for a in accs if accs.count(a) > 1})
        if dupes:
            raise ValueError(f"source {source!r}: accession(s) {', '.join(dupes)} listed twice")
        return Source("ncbi", source, tuple(accs))
    if head == "assembly":
        from dnalm.ncbi import ASSEMBLY_ACCESSION

        acc = rest.strip()
        if not ASSEMBLY_ACCESSION.fullmatch(acc):
            raise ValueError(
                f"source {source!r}: {acc!r} is not an assembly accession; write "
                "assembly:GCF_<9 digits>[.version] (RefSeq) or assembly:GCA_... (GenBank)"
            )
        return Source("assembly", source, (acc,))
    if head == "refseq":
        if rest.strip() != "viral":
            raise ValueError(
                f"source {source!r}: only refseq:viral (the release's viral genomes) is supported"
            )
        return Source("refseq", source, ("viral",))
    # ucsc
    assembly, _, chroms = rest.partition(":")
    names = [c.strip() for c in chroms.split(",")] if chroms else []
    if not _UCSC_ASSEMBLY.fullmatch(assembly) or not all(_CHROM.fullmatch(c) for c in names):
        raise ValueError(
            f"source {source!r}: write ucsc:<assembly> (e.g. ucsc:hg38) or "
            "ucsc:<assembly>:<chrom>[,<chrom>...] (e.g. ucsc:hg38:chr21,chr22)"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"source {source!r}: a chromosome is listed twice")
    return Source("ucsc", source, (assembly, *names))


def metagenome_options(source: str) -> dict:
    """Options of a `simulated:metagenome?...` source, with defaults filled in."""
    _, _, query = source.partition("?")
    options = dict(METAGENOME_DEFAULTS, virus_fraction=0.3)
    for key, value in parse_qsl(query, strict_parsing=bool(query)):
        if key not in options:
            raise ValueError(
                f"{source!r}: unknown option {key!r}; allowed: {', '.join(sorted(options))}"
            )
        options[key] = float(value) if key == "virus_fraction" else int(value)
    return options


# --------------------------------------------------------------------------- fetching


@dataclass(frozen=True)
class AcquireSettings:
    """The download settings of the config's `acquire:` block (plus NCBI credentials)."""

    download_dir: str = "resources/downloads"
    ncbi_eutils_url: str = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils"
    ncbi_datasets_url: str = "https://api.ncbi.nlm.nih.gov/datasets/v2"
    refseq_viral_url: str = "https://ftp.ncbi.nlm.nih.gov/refseq/release/viral/"
    ucsc_url: str = UCSC_URL
    ncbi_batch_size: int = 200
    ncbi_email: str = ""
    ncbi_api_key: str = field(default="", repr=False)  # never logged
    retries: int = 5
    backoff: float = 2.0
    timeout: float = 120.0
    mirror: str = ""  # a local folder searched before any download (dnalm.mirror)

    @classmethod
    def from_config(
        cls, acquire: dict | None, environ: os._Environ | dict | None = None
    ) -> AcquireSettings:
        """Known keys of `acquire:`; NCBI_API_KEY / NCBI_EMAIL from the environment."""
        environ = os.environ if environ is None else environ
        names = set(cls.__dataclass_fields__) - {"ncbi_api_key"}
        values = {k: v for k, v in (acquire or {}).items() if k in names}
        values.setdefault("ncbi_email", "")
        values["ncbi_email"] = values["ncbi_email"] or environ.get("NCBI_EMAIL", "")
        values["mirror"] = values.get("mirror") or ""  # null in the config: no mirror
        values["ncbi_api_key"] = environ.get("NCBI_API_KEY", "")
        return cls(**values)

    def transfer(self) -> dict:
        return {"retries": self.retries, "backoff": self.backoff, "timeout": self.timeout}


def _cache_name(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ucsc_files(assembly: str, chroms: tuple[str, ...], base: str = UCSC_URL) -> list[str]:
    """URLs of a UCSC genome: the whole bigZips FASTA, or one file per chromosome."""
    root = f"{base.rstrip('/')}/{assembly}"
    if chroms:
        return [f"{root}/chromosomes/{c}.fa.gz" for c in chroms]
    return [f"{root}/bigZips/{assembly}.fa.gz"]


def _ucsc_md5(url: str, settings: AcquireSettings, log: logging.Logger) -> str | None:
    """The md5 that UCSC publishes beside a file (md5sum.txt), or None with a warning."""
    from dnalm.download import DownloadError, fetch_bytes, parse_md5sums

    folder, _, name = url.rpartition("/")
    try:
        text = fetch_bytes(f"{folder}/md5sum.txt", log=log, **settings.transfer()).decode()
    except DownloadError as err:
        log.warning("%s: no md5sum.txt to verify against (%s)", url, err)
        return None
    md5 = parse_md5sums(text).get(name)
    if md5:
        return f"md5:{md5}"
    log.warning("%s: not listed in %s/md5sum.txt; not verified", url, folder)
    return None


def fetch_source(
    source: Source,
    workdir: str | os.PathLike[str],
    settings: AcquireSettings,
    checksum: str | None = None,
    log: logging.Logger | None = None,
) -> Path:
    """The raw FASTA of a download source, fetched into the cache; returns its path.

    `checksum` pins the raw FASTA as fetched: the downloaded file for a URL or a whole UCSC
    genome; the assembled FASTA for the other kinds (several files or efetch batches are
    concatenated in `workdir`, a temporary folder of the caller).
    """
    from dnalm.download import DownloadChecksumError, concatenate, download
    from dnalm.fasta import file_checksum, parse_checksum
    from dnalm.ncbi import download_assembly, download_refseq_viral, efetch_nucleotide

    log = log or _log
    if not source.is_download:
        raise ValueError(f"{source.value!r} is a {source.kind} source, not a download")
    if settings.mirror:
        name = source.mirror or (_url_name(source.args[0]) if source.kind == "url" else "")
        found = _from_mirror(source.value, settings, checksum, name, log)
        if found is not None:
            return found
    cache = Path(settings.download_dir)
    workdir = Path(workdir)
    opts = {**settings.transfer(), "log": log}
    if source.kind == "url":
        url = source.args[0]
        name = re.sub(r"[^A-Za-z0-9._-]", "_", _url_name(url))
        dest = cache / "url" / f"{_cache_name(url)}-{name or 'download'}"
        return download(url, dest, checksum or None, **opts)
    if source.kind == "ucsc":
        assembly, *chroms = source.args
        urls = ucsc_files(assembly, tuple(chroms), settings.ucsc_url)
        paths = []
        for url in urls:
            pinned = checksum if (checksum and len(urls) == 1) else None
            dest = cache / "ucsc" / f"{assembly}-{_cache_name(url)}-{url.rsplit('/', 1)[-1]}"
            paths.append(download(url, dest, pinned or _ucsc_md5(url, settings, log), **opts))
        if len(paths) == 1:
            return paths[0]
        raw = concatenate(paths, workdir / f"{assembly}.fa.gz")
    elif source.kind == "ncbi":
        raw = efetch_nucleotide(
            source.args,
            workdir / "ncbi.fa",
            base_url=settings.ncbi_eutils_url,
            api_key=settings.ncbi_api_key or None,
            email=settings.ncbi_email or None,
            batch_size=settings.ncbi_batch_size,
            **opts,
        )
    elif source.kind == "assembly":
        raw = download_assembly(
            source.args[0],
            workdir / f"{source.args[0]}.fna",
            cache_dir=cache / "assembly",
            base_url=settings.ncbi_datasets_url,
            api_key=settings.ncbi_api_key or None,
            **opts,
        )
    else:  # refseq:viral
        files = download_refseq_viral(
            cache / "refseq_viral", base_url=settings.refseq_viral_url, **opts
        )
        raw = concatenate(files, workdir / "refseq_viral.fna.gz")
    if checksum:
        algorithm, digest = parse_checksum(checksum)
        actual = file_checksum(raw, algorithm)
        if actual != digest:
            raw.unlink()
            raise DownloadChecksumError(
                source.value, f"{algorithm}:{digest}", f"{algorithm}:{actual}"
            )
    return raw


def _url_name(url: str) -> str:
    """The file name a URL ends in (its last path segment, unquoted)."""
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])


def _from_mirror(
    what: str,
    settings: AcquireSettings,
    checksum: str | None,
    name: str,
    log: logging.Logger,
) -> Path | None:
    """The mirror's file for a download, checked against the pinned checksum; None if absent."""
    from dnalm.fasta import verify_checksum
    from dnalm.mirror import Mirror

    mirror = Mirror(settings.mirror, settings.download_dir)
    found = mirror.find(checksum=checksum, name=name or None, log=log)
    if found is None:
        how = f"checksum {checksum}" if checksum else f"name {name!r}" if name else "no name"
        log.info("mirror %s: nothing for %s (%s); downloading", settings.mirror, what, how)
        return None
    if checksum:
        verify_checksum(found, checksum)
    log.info("mirror: %s stands in for %s (no download)", found, what)
    return found


def fetch_file(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str,
    settings: AcquireSettings,
    log: logging.Logger | None = None,
) -> Path:
    """One pinned file (a labelled task's table, say) at `dest`: copied from the mirror when it
    has the file, else downloaded; either way written whole and checked against `sha256`."""
    import shutil

    from dnalm.download import download
    from dnalm.fasta import verify_checksum
    from dnalm.files import atomic_path

    log = log or _log
    checksum = f"sha256:{sha256}"
    dest = Path(dest)
    found = _from_mirror(url, settings, checksum, _url_name(url), log) if settings.mirror else None
    if found is None:
        return download(url, dest, checksum, log=log, **settings.transfer())
    with atomic_path(dest) as tmp:
        shutil.copyfile(found, tmp)
        verify_checksum(tmp, checksum)
    return dest
