"""Downloads against a loopback HTTP server serving ../shared/data: checksums, retries, resume,
truncated gzip, fake E-utilities / Datasets / RefSeq / UCSC endpoints, and a real snakemake run.
Nothing here touches the internet."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import threading
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from conftest import ROOT, SHARED_DATA, require_data, run_snakemake

from dnalm.download import (
    DownloadChecksumError,
    DownloadError,
    download,
    list_links,
    parse_checksum,
)
from dnalm.fasta import read_fasta
from dnalm.labelled import labelled_downloads
from dnalm.mirror import MirrorError
from dnalm.ncbi import (
    NcbiError,
    download_assembly,
    download_refseq_viral,
    efetch_nucleotide,
    entrez,
)
from dnalm.sources import AcquireSettings, fetch_file, fetch_source, parse_source

VIRAL = SHARED_DATA / "genomes/viral/viral_reference_genomes.fasta"
ECOLI = SHARED_DATA / "genomes/nonviral/Ecoli_K12_MG1655_NC_000913.3.fna.gz"
MITO = SHARED_DATA / "genomes/nonviral/primate_mitochondria.fa"
HG38_SLICE = SHARED_DATA / "genomes/nonviral/Hsapiens_hg38_chr2_1-2333275.fa.gz"
FAST = {"backoff": 0.01, "timeout": 10}

DATA_FILES = {"VIRAL": VIRAL, "ECOLI": ECOLI, "MITO": MITO, "HG38_SLICE": HG38_SLICE}
DATA_FILES["SHARED_DATA"] = SHARED_DATA


@pytest.fixture(autouse=True)
def _real_data(request):
    """Only the tests that name a real data file need ../shared/data; the others (retries, rate
    limits, error pages) run anywhere."""
    named = set(request.node.function.__code__.co_names)
    require_data(*(path for name, path in DATA_FILES.items() if name in named))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the server


class Loopback:
    """A ThreadingHTTPServer on 127.0.0.1 whose routes are set per test; it logs every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def _handle(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with owner.lock:
                    owner.requests.append(
                        {
                            "path": path,
                            "query": urllib.parse.urlsplit(self.path).query,
                            "method": self.command,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                            "time": time.monotonic(),
                        }
                    )
                self.body = body
                route = owner.routes.get(path)
                if route is None:
                    self.send_error(404, "Not Found")
                    return
                route(self)

            do_GET = do_POST = do_CONNECT = _handle  # CONNECT: an https request via a proxy

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def hits(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(data: bytes, *, honor_range: bool = True, cut_at: int | None = None, status: int = 200):
    """A route answering `data` (Range-aware); `cut_at` sends the full length header but only
    that many bytes, then drops the connection."""

    def route(h: BaseHTTPRequestHandler) -> None:
        start = 0
        rng = h.headers.get("Range")
        if honor_range and rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
        payload = data[start:]
        h.send_response(206 if start else status)
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload if cut_at is None else payload[: max(0, cut_at - start)])
        if cut_at is not None:
            h.wfile.flush()
            h.close_connection = True

    return route


def fail_first(n: int, code: int, then: Callable, headers: dict | None = None) -> Callable:
    count = {"n": 0}

    def route(h: BaseHTTPRequestHandler) -> None:
        count["n"] += 1
        if count["n"] <= n:
            h.send_response(code)
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        then(h)

    return route


def once_then(first: Callable, then: Callable) -> Callable:
    calls = {"n": 0}

    def route(h: BaseHTTPRequestHandler) -> None:
        calls["n"] += 1
        (first if calls["n"] == 1 else then)(h)

    return route


@pytest.fixture
def server():
    srv = Loopback()
    yield srv
    srv.close()


# --------------------------------------------------------------------------- download()


def test_download_verifies_and_reuses_the_cache(server, tmp_path):
    data = MITO.read_bytes()
    server.routes["/mito.fa"] = serve(data)
    dest = tmp_path / "mito.fa"
    download(server.url("/mito.fa"), dest, f"sha256:{sha256(data)}", **FAST)
    assert dest.read_bytes() == data and not (tmp_path / "mito.fa.part").exists()
    # bare md5 hex is told by its length; a verified cached file is not fetched again
    download(server.url("/mito.fa"), dest, hashlib.md5(data).hexdigest(), **FAST)
    assert len(server.hits("/mito.fa")) == 1


def test_checksum_mismatch_names_url_and_sums_and_leaves_nothing(server, tmp_path):
    data = MITO.read_bytes()
    server.routes["/mito.fa"] = serve(data)
    wrong = "0" * 64
    with pytest.raises(DownloadChecksumError) as info:
        download(server.url("/mito.fa"), tmp_path / "m.fa", f"sha256:{wrong}", **FAST)
    text = str(info.value)
    assert server.url("/mito.fa") in text and wrong in text and sha256(data) in text
    assert list(tmp_path.iterdir()) == []


def test_503_twice_then_success(server, tmp_path):
    data = ECOLI.read_bytes()
    server.routes["/ecoli.fna.gz"] = fail_first(2, 503, serve(data))
    dest = download(server.url("/ecoli.fna.gz"), tmp_path / "e.fna.gz", sha256(data), **FAST)
    assert len(server.hits("/ecoli.fna.gz")) == 3 and dest.read_bytes() == data


def test_429_waits_for_retry_after(server, tmp_path):
    data = b">x\nACGT\n"
    server.routes["/x.fa"] = fail_first(1, 429, serve(data), {"Retry-After": "1"})
    start = time.monotonic()
    download(server.url("/x.fa"), tmp_path / "x.fa", **FAST)
    assert time.monotonic() - start >= 0.9  # the server's Retry-After, not the 0.01 s back-off


def test_404_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("/nope.fa"), tmp_path / "n.fa", retries=3, **FAST)
    assert len(server.hits("/nope.fa")) == 1 and list(tmp_path.iterdir()) == []


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    data = ECOLI.read_bytes()
    half = len(data) // 2
    server.routes["/e.gz"] = once_then(serve(data, cut_at=half), serve(data))
    dest = download(server.url("/e.gz"), tmp_path / "e.gz", sha256(data), **FAST)
    hits = server.hits("/e.gz")
    assert len(hits) == 2 and "range" not in hits[0]["headers"]
    assert hits[1]["headers"]["range"] == f"bytes={half}-"
    assert dest.read_bytes() == data


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    data = ECOLI.read_bytes()
    server.routes["/e.gz"] = once_then(
        serve(data, cut_at=len(data) // 3), serve(data, honor_range=False)
    )
    dest = download(server.url("/e.gz"), tmp_path / "e.gz", sha256(data), **FAST)
    assert dest.read_bytes() == data  # 200 on a Range request: rewritten, not appended


def test_exhausted_retries_keep_the_part_and_the_next_run_resumes(server, tmp_path):
    data = ECOLI.read_bytes()
    server.routes["/e.gz"] = serve(data, cut_at=len(data) // 4)  # a cut at every attempt
    with pytest.raises(DownloadError, match="failed after 1 attempt.*next run resumes"):
        download(server.url("/e.gz"), tmp_path / "e.gz", retries=0, **FAST)
    assert (tmp_path / "e.gz.part").stat().st_size == len(data) // 4
    server.routes["/e.gz"] = serve(data)
    download(server.url("/e.gz"), tmp_path / "e.gz", sha256(data), **FAST)
    assert server.hits("/e.gz")[-1]["headers"]["range"] == f"bytes={len(data) // 4}-"
    assert (tmp_path / "e.gz").read_bytes() == data


def test_truncated_gzip_is_an_error_and_leaves_nothing(server, tmp_path):
    data = ECOLI.read_bytes()[: len(ECOLI.read_bytes()) // 2]  # complete transfer, broken file
    server.routes["/t.fna.gz"] = serve(data)
    with pytest.raises(DownloadError, match="truncated or corrupt gzip") as info:
        download(server.url("/t.fna.gz"), tmp_path / "t.fna.gz", **FAST)
    assert server.url("/t.fna.gz") in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_fail_before_any_request(server, tmp_path):
    with pytest.raises(ValueError, match="not a downloadable URL"):
        download("file:///etc/hostname", tmp_path / "x")
    with pytest.raises(ValueError, match="algorithm"):
        download(server.url("/x"), tmp_path / "x", "abc123")
    with pytest.raises(ValueError, match="wrong length"):
        parse_checksum("sha256:" + "a" * 32)
    assert server.requests == []


def test_ftp_urls_go_through_urllib_and_are_retried(tmp_path):
    """No FTP server here: a refused FTP connection is transient, retried, then reported."""
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"ftp://127.0.0.1:{port}/pub/genome.fa.gz"
    assert parse_source(url).kind == "url"
    with pytest.raises(DownloadError, match="failed after 2 attempt"):
        download(url, tmp_path / "g.fa.gz", retries=1, backoff=0.01, timeout=5)
    assert not (tmp_path / "g.fa.gz").exists()


# --------------------------------------------------------------------------- NCBI


def _records() -> list[tuple[str, bytes]]:
    """(header id, raw record text) of the viral reference FASTA, headers as they are."""
    text = VIRAL.read_bytes()
    out = []
    for chunk in text.split(b"\n>"):
        chunk = chunk if chunk.startswith(b">") else b">" + chunk
        out.append((chunk[1:].split(maxsplit=1)[0].decode(), chunk.rstrip(b"\n") + b"\n"))
    return out


def efetch_form(request: dict) -> dict[str, list[str]]:
    """The parameters of an efetch request: the query of a GET, the body of a POST."""
    text = request["body"].decode() if request["method"] == "POST" else request["query"]
    return urllib.parse.parse_qs(text)


def _reply(h: BaseHTTPRequestHandler, body: bytes) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/plain")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def fake_efetch(h: BaseHTTPRequestHandler) -> None:
    """E-utilities efetch over the viral file: records by accession (versioned or not)."""
    query = urllib.parse.urlsplit(h.path).query
    form = urllib.parse.parse_qs(h.body.decode() if h.command == "POST" else query)
    assert form["db"] == ["nuccore"] and form["rettype"] == ["fasta"]
    body = b""
    for acc in form["id"][0].split(","):
        for rid, raw in _records():
            ids = [p for p in rid.split("|") if p] if "|" in rid else [rid]
            if any(i == acc or i.split(".")[0] == acc for i in ids):
                body += raw + b"\n"
    _reply(h, body)


def any_efetch(h: BaseHTTPRequestHandler) -> None:
    """efetch that knows every accession: a short record named after each."""
    query = urllib.parse.urlsplit(h.path).query
    form = urllib.parse.parse_qs(h.body.decode() if h.command == "POST" else query)
    _reply(h, b"".join(f">{acc} made up\nACGT\n".encode() for acc in form["id"][0].split(",")))


ACCS = ["NC_045512.2", "NC_001802", "NC_001608.3", "NC_000866.4", "NC_002549", "NC_026438.1"]


def test_efetch_batches_rate_limit_and_records(server, tmp_path):
    server.routes["/eutils/efetch.fcgi"] = fake_efetch
    dest = efetch_nucleotide(
        ACCS,
        tmp_path / "n.fa",
        base_url=server.url("/eutils"),
        email="me@example.org",
        batch_size=2,
        **FAST,
    )
    hits = server.hits("/eutils/efetch.fcgi")
    assert len(hits) == 3 and all(h["method"] == "GET" for h in hits)  # Bio.Entrez: few ids
    forms = [efetch_form(h) for h in hits]
    assert [f["id"][0] for f in forms] == [",".join(ACCS[i : i + 2]) for i in (0, 2, 4)]
    assert all(f["tool"] == ["dnalm"] and f["email"] == ["me@example.org"] for f in forms)
    assert all("api_key" not in f for f in forms)
    gaps = [b["time"] - a["time"] for a, b in zip(hits, hits[1:], strict=False)]
    assert min(gaps) >= 0.3  # 3 requests/s without a key
    records = dict(read_fasta(dest))
    originals = dict(read_fasta(VIRAL))
    assert len(records) == 6
    assert records["NC_001802"] == originals["NC_001802"]
    assert records["gi|29366675|ref|NC_000866.4|"] == originals["gi|29366675|ref|NC_000866.4|"]


def test_efetch_posts_long_id_lists_in_batches(server, tmp_path):
    server.routes["/eutils/efetch.fcgi"] = any_efetch
    accs = [f"NC_{i:06d}.1" for i in range(1, 451)]
    dest = efetch_nucleotide(accs, tmp_path / "n.fa", base_url=server.url("/eutils"), **FAST)
    hits = server.hits("/eutils/efetch.fcgi")
    assert [h["method"] for h in hits] == ["POST", "POST", "GET"]  # 200, 200 and 50 ids
    assert [len(efetch_form(h)["id"][0].split(",")) for h in hits] == [200, 200, 50]
    assert list(dict(read_fasta(dest))) == accs


def test_efetch_api_key_raises_the_rate_and_missing_records_fail(server, tmp_path):
    server.routes["/eutils/efetch.fcgi"] = fake_efetch
    efetch_nucleotide(
        ACCS[:3], tmp_path / "a.fa", base_url=server.url("/eutils"), api_key="K3Y", batch_size=1
    )
    hits = server.hits("/eutils/efetch.fcgi")
    assert all(efetch_form(h)["api_key"] == ["K3Y"] for h in hits)
    gaps = [b["time"] - a["time"] for a, b in zip(hits, hits[1:], strict=False)]
    assert min(gaps) >= 0.09  # Bio.Entrez spaces requests with a key 0.1 s apart, not 0.37
    with pytest.raises(NcbiError, match="no record for 1 accession.*NC_999999.1"):
        efetch_nucleotide(
            ["NC_045512.2", "NC_999999.1"], tmp_path / "b.fa", base_url=server.url("/eutils")
        )
    assert not (tmp_path / "b.fa").exists()


def test_efetch_error_page_is_reported(server, tmp_path):
    server.routes["/eutils/efetch.fcgi"] = serve(b"Error: API rate limit exceeded\n")
    with pytest.raises(NcbiError, match="did not answer with FASTA.*rate limit"):
        efetch_nucleotide(["NC_045512.2"], tmp_path / "c.fa", base_url=server.url("/eutils"))
    server.routes["/eutils/efetch.fcgi"] = fail_first(9, 400, serve(b""))
    with pytest.raises(NcbiError, match="HTTP 400.*efetch of NC_045512.2"):
        efetch_nucleotide(["NC_045512.2"], tmp_path / "c.fa", base_url=server.url("/eutils"))
    assert len(server.hits("/eutils/efetch.fcgi")) == 2  # a 400 is not retried
    assert list(tmp_path.iterdir()) == []


def test_efetch_retries_server_errors_and_cut_answers(server, tmp_path):
    server.routes["/eutils/efetch.fcgi"] = fail_first(2, 503, fake_efetch)
    dest = efetch_nucleotide(["NC_045512.2"], tmp_path / "a.fa", base_url=server.url("/eutils"))
    assert len(server.hits("/eutils/efetch.fcgi")) == 3  # Bio.Entrez's own retries
    assert list(dict(read_fasta(dest))) == ["NC_045512.2"]
    whole = dict(_records())["NC_045512.2"] + b"\n"
    server.routes["/eutils/efetch.fcgi"] = once_then(serve(whole, cut_at=1000), serve(whole))
    dest = efetch_nucleotide(
        ["NC_045512.2"], tmp_path / "b.fa", base_url=server.url("/eutils"), **FAST
    )
    assert len(server.hits("/eutils/efetch.fcgi")) == 5  # asked again after the cut
    assert dest.read_bytes() == whole
    server.routes["/eutils/efetch.fcgi"] = fail_first(9, 503, fake_efetch)
    with pytest.raises(NcbiError, match="HTTP 503.*efetch of NC_045512.2"):
        efetch_nucleotide(
            ["NC_045512.2"], tmp_path / "c.fa", base_url=server.url("/eutils"), retries=1
        )
    assert len(server.hits("/eutils/efetch.fcgi")) == 7  # retries=1: two tries
    assert not (tmp_path / "c.fa").exists()


def test_entrez_settings_are_restored_and_only_eutils_is_redirected(server):
    from Bio import Entrez

    before = (Entrez.email, Entrez.api_key, Entrez.tool, Entrez.max_tries, Entrez.urlopen)
    with entrez(server.url("/eutils"), email="a@b.c", api_key="K", retries=2) as module:
        assert (module.email, module.api_key, module.tool, module.max_tries) == (
            "a@b.c",
            "K",
            "dnalm",
            3,
        )
        with pytest.raises(NcbiError, match="outside https://eutils.ncbi.nlm.nih.gov"):
            module.urlopen(urllib.request.Request("https://example.org/efetch.fcgi"))
    assert (Entrez.email, Entrez.api_key, Entrez.tool, Entrez.max_tries, Entrez.urlopen) == before
    assert server.requests == []


def _datasets_zip(accession: str, fasta: bytes, md5: str | None = None) -> bytes:
    name = f"ncbi_dataset/data/{accession}/{accession}_ASM584v2_genomic.fna"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("README.md", "NCBI Datasets package")
        zf.writestr(f"ncbi_dataset/data/{accession}/assembly_data_report.jsonl", "{}\n")
        zf.writestr(name, fasta)
        zf.writestr("md5sum.txt", f"{md5 or hashlib.md5(fasta).hexdigest()}  {name}\n")
    return buf.getvalue()


def test_assembly_from_a_datasets_package(server, tmp_path):
    fasta = gzip.decompress(ECOLI.read_bytes())
    path = "/datasets/v2/genome/accession/GCF_000005845.2/download"
    server.routes[path] = serve(_datasets_zip("GCF_000005845.2", fasta))
    dest = download_assembly(
        "GCF_000005845.2",
        tmp_path / "ecoli.fna",
        cache_dir=tmp_path / "cache",
        base_url=server.url("/datasets/v2"),
        api_key="K3Y",
        **FAST,
    )
    assert dest.read_bytes() == fasta
    hit = server.hits(path)[0]
    assert hit["query"] == "include_annotation_type=GENOME_FASTA"
    assert hit["headers"]["api-key"] == "K3Y"
    server.routes[path] = serve(_datasets_zip("GCF_000005845.2", fasta, md5="0" * 32))
    (tmp_path / "cache" / "GCF_000005845.2.zip").unlink()
    with pytest.raises(NcbiError, match="md5sum.txt"):
        download_assembly(
            "GCF_000005845.2",
            tmp_path / "bad.fna",
            cache_dir=tmp_path / "cache",
            base_url=server.url("/datasets/v2"),
            **FAST,
        )
    assert not (tmp_path / "bad.fna").exists()
    assert not (tmp_path / "cache" / "GCF_000005845.2.zip").exists()


def _refseq_routes(server: Loopback) -> bytes:
    """Two viral.N.1.genomic.fna.gz files (the viral FASTA cut in two) plus decoys."""
    text = VIRAL.read_bytes()
    cut = text.index(b"\n>", len(text) // 2) + 1
    parts = [gzip.compress(text[:cut], 1), gzip.compress(text[cut:], 1)]
    names = ["viral.1.1.genomic.fna.gz", "viral.2.1.genomic.fna.gz"]
    links = [*names, "viral.1.protein.faa.gz", "viral.1.1.genomic.gbff.gz", "../"]
    html = "".join(f'<a href="{n}">{n}</a>  2025-01-01 10:00  1.2M\n' for n in links)
    server.routes["/refseq/release/viral/"] = serve(f"<html><pre>{html}</pre></html>".encode())
    server.routes["/refseq/release/RELEASE_NUMBER"] = serve(b"229\n")
    for name, data in zip(names, parts, strict=True):
        server.routes[f"/refseq/release/viral/{name}"] = serve(data)
    return text


def test_refseq_viral_lists_fetches_and_caches_by_release(server, tmp_path):
    _refseq_routes(server)
    base = server.url("/refseq/release/viral/")
    urls = list_links(base, r"viral\.\d+\.1\.genomic\.fna\.gz", **FAST)
    assert [u.rsplit("/", 1)[-1] for u in urls] == [
        "viral.1.1.genomic.fna.gz",
        "viral.2.1.genomic.fna.gz",
    ]
    paths = download_refseq_viral(tmp_path, base_url=base, **FAST)
    assert [p.parent.name for p in paths] == ["release229", "release229"]
    download_refseq_viral(tmp_path, base_url=base, **FAST)
    assert len(server.hits("/refseq/release/viral/viral.1.1.genomic.fna.gz")) == 1


def test_fetch_source_kinds_through_the_loopback(server, tmp_path):
    text = _refseq_routes(server)
    server.routes["/eutils/efetch.fcgi"] = fake_efetch
    slice_bytes = HG38_SLICE.read_bytes()
    server.routes["/ucsc/hg38/chromosomes/chr2.fa.gz"] = serve(slice_bytes)
    server.routes["/ucsc/hg38/chromosomes/md5sum.txt"] = serve(
        f"{hashlib.md5(slice_bytes).hexdigest()}  chr2.fa.gz\n".encode()
    )
    settings = AcquireSettings.from_config(
        {
            "download_dir": str(tmp_path / "cache"),
            "ncbi_eutils_url": server.url("/eutils"),
            "refseq_viral_url": server.url("/refseq/release/viral/"),
            "ucsc_url": server.url("/ucsc"),
            "backoff": 0.01,
        },
        environ={},
    )
    work = tmp_path / "work"
    work.mkdir()
    viral = fetch_source(parse_source("refseq:viral"), work, settings)
    assert gzip.decompress(viral.read_bytes()) == text
    ncbi = fetch_source(parse_source("ncbi:NC_045512.2,NC_001802"), work, settings)
    assert list(dict(read_fasta(ncbi))) == ["NC_045512.2", "NC_001802"]
    ucsc = fetch_source(parse_source("ucsc:hg38:chr2"), work, settings)
    assert ucsc.read_bytes() == slice_bytes
    server.routes["/ucsc/hg38/chromosomes/md5sum.txt"] = serve(f"{'0' * 32}  chr2.fa.gz\n".encode())
    ucsc.unlink()
    with pytest.raises(DownloadChecksumError, match="chr2.fa.gz: checksum mismatch"):
        fetch_source(parse_source("ucsc:hg38:chr2"), work, settings)
    with pytest.raises(DownloadChecksumError, match="ncbi:NC_045512.2"):
        fetch_source(parse_source("ncbi:NC_045512.2"), work, settings, checksum="1" * 64)


# --------------------------------------------------------------------------- the rule


def test_snakemake_acquires_download_sources(server, tmp_path):
    """A real snakemake run: loopback URLs (one flaky) with checksums, an ncbi: source and a
    GenomicBenchmarks archive."""
    mito = MITO.read_bytes()
    ecoli = ECOLI.read_bytes()
    server.routes["/mito.fa"] = serve(mito)
    server.routes["/flaky/ecoli.fna.gz"] = fail_first(2, 503, serve(ecoli))
    server.routes["/eutils/efetch.fcgi"] = fake_efetch
    rows = [
        ("mito", "host", "h0", server.url("/mito.fa"), f"sha256:{sha256(mito)}"),
        ("ecoli", "host", "h1", server.url("/flaky/ecoli.fna.gz"), hashlib.md5(ecoli).hexdigest()),
        ("sars", "virus", "v0", "ncbi:NC_045512.2,NC_001802", ""),
        ("h2", "host", "h2", "simulated:host?length=3000&seed=2", ""),
        ("v1", "virus", "v1", "simulated:virus?length=3000&seed=1", ""),
        ("v2", "virus", "v2", "simulated:virus?length=3000&seed=2", ""),
    ]
    _sheet_and_config(
        tmp_path,
        rows,
        ncbi_eutils_url=server.url("/eutils"),
        backoff=0.01,
        genomic_benchmarks_url=server.url("/gb/{dataset}.zip"),
    )
    dry = run_snakemake(tmp_path, "-n", configfile=tmp_path / "config.yaml", timeout=120)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert server.requests == []  # parsing and planning never download
    targets = [f"resources/genomes/{g}.fa.gz" for g in ("mito", "ecoli", "sars")]
    targets.append("resources/genomic_benchmarks/toy")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for split in ("train", "test"):
            for cls in ("a", "b"):
                zf.writestr(f"toy/{split}/{cls}/{split}{cls}.txt", "ACGT")
    server.routes["/gb/toy.zip"] = serve(archive.getvalue())
    run = run_snakemake(tmp_path, *targets, configfile=tmp_path / "config.yaml", timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    assert len(server.hits("/flaky/ecoli.fna.gz")) == 3
    assert dict(read_fasta(tmp_path / "resources/genomes/mito.fa.gz")) == dict(read_fasta(MITO))
    assert list(dict(read_fasta(tmp_path / "resources/genomes/sars.fa.gz"))) == [
        "NC_045512.2",
        "NC_001802",
    ]
    for g in ("mito", "ecoli", "sars"):
        assert (tmp_path / f"resources/genomes/{g}.fa.gz.fai").exists()
    assert list((tmp_path / "resources/downloads/url").iterdir())  # the cache a rerun reuses
    assert (tmp_path / "resources/genomic_benchmarks/toy/test/b/testb.txt").read_text() == "ACGT"
    log = (tmp_path / "logs/acquire_genome/ecoli.log").read_text()
    assert "attempt 1/6 failed (HTTP 503" in log and "checksum verified" in log


def _sheet_and_config(tmp_path, rows, **acquire) -> None:
    """genomes.tsv of `rows`, and config.yaml: the default config on it, with these `acquire`
    settings and no predict samples."""
    sheet = "genome\tlabel\tgroup\tsource\tchecksum\n" + "".join("\t".join(r) + "\n" for r in rows)
    (tmp_path / "genomes.tsv").write_text(sheet)
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["genomes"] = "genomes.tsv"
    config.pop("predict", None)
    config["acquire"] = acquire
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))


def test_default_profile_runs_one_ncbi_download_at_a_time(server, tmp_path):
    """profiles/default sets `resources: [ncbi=1]`: two ncbi: genomes on 2 cores are fetched
    one after the other, so E-utilities' per-IP rate holds across jobs, not only within one."""
    spans: list[tuple[float, float]] = []

    def slow_efetch(h: BaseHTTPRequestHandler) -> None:
        start = time.monotonic()
        time.sleep(1.5)
        fake_efetch(h)
        spans.append((start, time.monotonic()))

    server.routes["/eutils/efetch.fcgi"] = slow_efetch
    rows = [
        ("sars", "virus", "v0", "ncbi:NC_045512.2", ""),
        ("hiv", "virus", "v1", "ncbi:NC_001802", ""),
        ("v2", "virus", "v2", "simulated:virus?length=3000&seed=2", ""),
        *[(f"h{i}", "host", f"h{i}", f"simulated:host?length=3000&seed={i}", "") for i in range(3)],
    ]
    _sheet_and_config(tmp_path, rows, ncbi_eutils_url=server.url("/eutils"), backoff=0.01)
    targets = ["resources/genomes/sars.fa.gz", "resources/genomes/hiv.fa.gz"]
    run = run_snakemake(tmp_path, *targets, configfile=tmp_path / "config.yaml", cores=2)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    assert "Using workflow specific profile profiles/default" in run.stdout + run.stderr
    log = "".join(p.read_text() for p in (tmp_path / ".snakemake/log").glob("*.log"))
    assert re.search(r"Provided resources: .*ncbi\D+1\b", log), log[:2000]
    first, second = sorted(spans)
    assert first[1] <= second[0]  # the second job's request began after the first one's ended


# --------------------------------------------------------------------------- regions


def region_efetch(sequences: dict[str, str]) -> Callable:
    """efetch of whole records or of seq_start..seq_stop of one, as NCBI names a region."""

    def route(h: BaseHTTPRequestHandler) -> None:
        query = urllib.parse.urlsplit(h.path).query
        form = urllib.parse.parse_qs(h.body.decode() if h.command == "POST" else query)
        body = b""
        for acc in form["id"][0].split(","):
            seq, name = sequences[acc], acc
            if "seq_start" in form:
                start, stop = int(form["seq_start"][0]), int(form["seq_stop"][0])
                seq, name = seq[start - 1 : stop], f"{acc}:{start}-{stop}"
            body += f">{name} some organism\n{seq}\n".encode()
        _reply(h, body)

    return route


def test_efetch_regions_are_requests_of_their_own(server, tmp_path):
    seqs = {"NC_000001.1": "ACGT" * 50, "NC_000002.1": "GGCC" * 10, "NC_000003.1": "TTAA" * 5}
    server.routes["/eutils/efetch.fcgi"] = region_efetch(seqs)
    accs = ["NC_000003.1", "NC_000001.1:5-12", "NC_000002.1", "NC_000001.1:1-4"]
    dest = efetch_nucleotide(accs, tmp_path / "r.fa", base_url=server.url("/eutils"), **FAST)
    forms = [efetch_form(h) for h in server.hits("/eutils/efetch.fcgi")]
    asked = [(f["id"][0], f.get("seq_start"), f.get("seq_stop")) for f in forms]
    assert asked == [
        ("NC_000003.1", None, None),
        ("NC_000001.1", ["5"], ["12"]),
        ("NC_000002.1", None, None),
        ("NC_000001.1", ["1"], ["4"]),
    ]
    assert list(read_fasta(dest)) == [
        ("NC_000003.1", seqs["NC_000003.1"]),
        ("NC_000001.1:5-12", "ACGTACGT"),
        ("NC_000002.1", seqs["NC_000002.1"]),
        ("NC_000001.1:1-4", "ACGT"),
    ]
    server.routes["/eutils/efetch.fcgi"] = serve(b">NC_000001.1:1-40 wrong region\nACGT\n")
    with pytest.raises(NcbiError, match=r"no record for 1 accession.*NC_000001.1:1-4\b"):
        efetch_nucleotide(["NC_000001.1:1-4"], tmp_path / "x.fa", base_url=server.url("/eutils"))


# --------------------------------------------------------------------------- the mirror


def _settings(tmp_path, server, mirror) -> AcquireSettings:
    return AcquireSettings.from_config(
        {
            "download_dir": str(tmp_path / "cache"),
            "ncbi_eutils_url": server.url("/eutils"),
            "mirror": str(mirror) if mirror else None,
            "backoff": 0.01,
        },
        environ={},
    )


def test_mirror_hit_by_checksum_or_name_makes_no_request(server, tmp_path):
    server.routes["/mito.fa"] = serve(MITO.read_bytes())
    server.routes["/eutils/efetch.fcgi"] = fake_efetch
    settings = _settings(tmp_path, server, SHARED_DATA)
    work = tmp_path / "work"
    work.mkdir()
    # a URL whose file name is not the mirror's: found by its pinned checksum (SHA256SUMS)
    url = parse_source(server.url("/elsewhere/mitochondria.fa"))
    got = fetch_source(url, work, settings, checksum=f"sha256:{sha256(MITO.read_bytes())}")
    assert got == SHARED_DATA / "genomes/nonviral/primate_mitochondria.fa"
    # an ncbi: source, found by the file name it gives
    ecoli = parse_source("ncbi:NC_000913.3?mirror=Ecoli_K12_MG1655_NC_000913.3.fna.gz")
    assert fetch_source(ecoli, work, settings) == ECOLI
    # a labelled task's file, copied to where the task reads it
    dest = tmp_path / "labelled" / "exp4_2014_B.csv"
    viraminer = SHARED_DATA / "viraminer/exp4_2014_B.csv"
    digest = sha256(viraminer.read_bytes())
    fetch_file(server.url("/x/exp4_2014_B.csv"), dest, digest, settings)
    assert dest.read_bytes() == viraminer.read_bytes()
    assert server.requests == []


def test_mirror_miss_downloads(server, tmp_path):
    mito = MITO.read_bytes()
    server.routes["/mito.fa"] = serve(mito)
    server.routes["/eutils/efetch.fcgi"] = fake_efetch
    settings = _settings(tmp_path, server, SHARED_DATA)
    work = tmp_path / "work"
    work.mkdir()
    got = fetch_source(parse_source(server.url("/mito.fa")), work, settings)  # no such name
    assert got.read_bytes() == mito and got.is_relative_to(tmp_path / "cache")
    sars = fetch_source(parse_source("ncbi:NC_045512.2?mirror=not_there.fa"), work, settings)
    assert list(dict(read_fasta(sars))) == ["NC_045512.2"]
    table = b"seq,label\nACGT,1\n"  # in no mirror
    server.routes["/tables/t.csv"] = serve(table)
    dest = tmp_path / "labelled" / "t.csv"
    fetch_file(server.url("/tables/t.csv"), dest, sha256(table), settings)
    assert dest.read_bytes() == table
    paths = ["/mito.fa", "/eutils/efetch.fcgi", "/tables/t.csv"]
    assert [r["path"] for r in server.requests] == paths


def test_mirror_checks_what_it_hands_out(server, tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "a").mkdir(parents=True)
    (mirror / "b").mkdir()
    (mirror / "a" / "g.fa").write_bytes(b">x\nACGT\n")
    (mirror / "b" / "g.fa").write_bytes(b">y\nACGT\n")
    (mirror / "one.fa").write_bytes(b">z\nGGGG\n")
    settings = _settings(tmp_path, server, mirror)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(MirrorError, match="2 files are named 'g.fa'"):
        fetch_source(parse_source("ncbi:NC_045512.2?mirror=g.fa"), work, settings)
    got = fetch_source(parse_source("ncbi:NC_045512.2?mirror=b/g.fa"), work, settings)
    assert got == mirror / "b" / "g.fa"
    # no SHA256SUMS: checksums are computed once and cached beside the downloads
    pinned = f"sha256:{sha256(b'>z' + bytes([10]) + b'GGGG' + bytes([10]))}"
    url = parse_source(server.url("/other.fa"))
    assert fetch_source(url, work, settings, checksum=pinned) == mirror / "one.fa"
    cached = (tmp_path / "cache" / "mirror-checksums.json").read_text()
    assert pinned.split(":")[1] in cached
    # a listed checksum that the file no longer has: the mirror copy is damaged
    (mirror / "SHA256SUMS").write_text(f"{'0' * 64}  ./one.fa\n")
    with pytest.raises(MirrorError, match="does not match its SHA256SUMS entry"):
        fetch_source(parse_source("ncbi:NC_045512.2?mirror=one.fa"), work, settings)
    assert server.requests == []


def test_real_cpu_acquisitions_run_offline_from_the_mirror(server, tmp_path, monkeypatch):
    """config/real_cpu.yaml with acquire.mirror at ../shared/data: every genome acquisition and
    every labelled file comes from the mirror. All traffic is sent to the loopback server as a
    proxy, and it sees no request."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, server.url(""))
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    config = yaml.safe_load((ROOT / "config/real_cpu.yaml").read_text())
    config["acquire"]["mirror"] = str(SHARED_DATA)
    (tmp_path / "config").mkdir()
    (tmp_path / "config/real_genomes.tsv").write_text((ROOT / config["genomes"]).read_text())
    (tmp_path / "real_cpu.yaml").write_text(yaml.safe_dump(config))
    sheet = [
        line.split("\t")
        for line in (tmp_path / "config/real_genomes.tsv").read_text().splitlines()
        if line and not line.startswith("#")
    ][1:]
    labelled = labelled_downloads(config["tasks"])
    targets = [f"resources/genomes/{row[0]}.fa.gz" for row in sheet] + sorted(labelled)
    run = run_snakemake(
        tmp_path, *targets, configfile=tmp_path / "real_cpu.yaml", cores=2, timeout=900
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    assert server.requests == []
    assert len(sheet) == 9 and len(labelled) == 6
    mirror = SHARED_DATA / "genomes"
    pairs = {
        "ecoli": mirror / "nonviral/Ecoli_K12_MG1655_NC_000913.3.fna.gz",
        "athaliana": mirror / "nonviral/Athaliana_1pct.fa.gz",
        "microviridae": mirror / "viral/microviridae_100_genomes.fasta",
    }
    mask = str.maketrans("RYKMSWBDHV", "N" * 10)  # soft_mask: upper, iupac: mask
    for genome, original in pairs.items():
        got = dict(read_fasta(tmp_path / f"resources/genomes/{genome}.fa.gz"))
        assert got == {rid: seq.upper().translate(mask) for rid, seq in read_fasta(original)}
        log = (tmp_path / f"logs/acquire_genome/{genome}.log").read_text()
        assert f"mirror: {original} stands in for" in log
    for path, (url, digest) in labelled.items():
        data = (tmp_path / path).read_bytes()
        assert sha256(data) == digest and url.rsplit("/", 1)[-1] == path.rsplit("/", 1)[-1]
