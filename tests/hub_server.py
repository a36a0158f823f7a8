"""A loopback stand-in for the Hugging Face Hub's file API, as huggingface_hub 2.x calls it.

Point `HF_ENDPOINT` at `HubServer.url` and `snapshot_download`, `hf_hub_download` and
`HfApi.repo_info` talk to it. It answers (repo ids are `owner/name`; `{type}s` is `models` or
`datasets`; revisions are URL-quoted branch names or commit ids):

- `GET /api/{type}s/{repo}/revision/{rev}[?blobs=True]`: the repository's info, `sha` (the
  commit) and `siblings`; with `blobs`, each file's `size`, `blobId` and, for LFS files,
  `lfs: {size, sha256, pointerSize}`;
- `GET /api/{type}s/{repo}/tree/{rev}[/{folder}]?recursive=...`: the file listing
  (`type`, `oid`, `size`, `path`, `lfs: {oid, size, pointerSize}`);
- `HEAD` and `GET /{repo}/resolve/{rev}/{path}` (models) and `/datasets/{repo}/resolve/...`:
  the file, with `X-Repo-Commit`, `ETag` (the git blob id, or the sha256 for LFS files),
  `X-Linked-Etag` and `X-Linked-Size` (LFS files), `Content-Length`, and `Range` support;
- errors as the Hub sends them: 404 with `X-Error-Code` `RepoNotFound`, `RevisionNotFound` or
  `EntryNotFound`.

Files are LFS unless they are small text files (`.json`, `.md`, `.txt`, `.gitattributes`), as on
the Hub. `tamper` makes a file's bytes differ from what the API reports (same size); every request
is logged in `requests`, so a test can tell that offline mode asked nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

GIT_FILES = {".json", ".md", ".txt", ".gitattributes"}
_REPO = r"(?P<repo>[^/]+/[^/]+)"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    files: dict[str, bytes]
    lfs: set[str]
    sha: str = ""

    def __post_init__(self) -> None:
        digest = hashlib.sha1()
        for name in sorted(self.files):
            digest.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        self.sha = digest.hexdigest()

    def entry(self, name: str) -> dict:
        data = self.files[name]
        entry = {"type": "file", "oid": git_blob_id(data), "size": len(data), "path": name}
        if name in self.lfs:
            pointer = (
                f"version https://git-lfs.github.com/spec/v1\noid sha256:x\nsize {len(data)}\n"
            )
            entry["lfs"] = {
                "oid": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "pointerSize": len(pointer),
            }
            entry["oid"] = git_blob_id(pointer.encode())  # git stores the pointer
        return entry


@dataclass
class Repo:
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    tampered: dict[tuple[str, str], bytes] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        sha = self.refs.get(revision, revision)
        return self.commits.get(sha)


class HubServer:
    """`with HubServer() as hub: hub.add(...); os.environ["HF_ENDPOINT"] = hub.url`."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self._server: ThreadingHTTPServer | None = None

    # --- content -------------------------------------------------------------------------

    def add(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        repo_type: str = "model",
        revision: str = "main",
        lfs: set[str] | None = None,
    ) -> str:
        """Commit `files` to `revision` of a repository (created if new); returns the commit."""
        if lfs is None:
            lfs = {n for n in files if PurePosixPath(n).suffix not in GIT_FILES}
        commit = Commit(dict(files), set(lfs))
        repo = self.repos.setdefault((repo_type, repo_id), Repo())
        repo.commits[commit.sha] = commit
        repo.refs[revision] = commit.sha
        return commit.sha

    def tamper(self, repo_id: str, name: str, *, repo_type: str = "model") -> None:
        """Serve other bytes of the same length for `name` at every commit."""
        repo = self.repos[(repo_type, repo_id)]
        for sha, commit in repo.commits.items():
            if name in commit.files:
                data = bytearray(commit.files[name])
                data[len(data) // 2] ^= 0xFF
                repo.tampered[(sha, name)] = bytes(data)

    def untamper(self) -> None:
        for repo in self.repos.values():
            repo.tampered.clear()

    # --- serving -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    api = re.compile(
        rf"^/api/(?P<type>models|datasets)/{_REPO}/(?P<what>revision|tree)/(?P<rest>.+)$"
    )
    resolve = re.compile(rf"^/(?P<type>datasets/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, str(value))
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, data, status: int = 200) -> None:
            body = json.dumps(data).encode()
            self._send(status, body, {"Content-Type": "application/json"})

        def _error(self, code: str, commit: str | None = None) -> None:
            headers = {"X-Error-Code": code, "X-Error-Message": code}
            if commit:
                headers["X-Repo-Commit"] = commit
            self._send(404, json.dumps({"error": code}).encode(), headers)

        def _lookup(self, repo_type: str, repo_id: str, revision: str):
            repo = hub.repos.get((repo_type, repo_id))
            if repo is None:
                self._error("RepoNotFound")
                return None, None
            commit = repo.resolve(unquote(revision))
            if commit is None:
                self._error("RevisionNotFound")
                return None, None
            return repo, commit

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            hub.requests.append((self.command, url.path))
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if match := api.match(url.path):
                repo_type = match["type"][:-1]
                if match["what"] == "revision":
                    self._info(repo_type, match["repo"], match["rest"], query)
                else:
                    revision, _, folder = match["rest"].partition("/")
                    self._tree(repo_type, match["repo"], revision, unquote(folder), query)
            elif match := resolve.match(url.path):
                repo_type = "dataset" if match["type"] else "model"
                self._file(repo_type, match["repo"], match["rev"], unquote(match["path"]))
            else:
                self._send(404, b"not found")

        def _info(self, repo_type: str, repo_id: str, revision: str, query: dict) -> None:
            _, commit = self._lookup(repo_type, repo_id, revision)
            if commit is None:
                return
            siblings = []
            for name in sorted(commit.files):
                sibling = {"rfilename": name}
                if query.get("blobs", "").lower() == "true":
                    entry = commit.entry(name)
                    sibling |= {"size": entry["size"], "blobId": entry["oid"]}
                    if "lfs" in entry:
                        lfs = entry["lfs"]
                        sibling["lfs"] = {
                            "size": lfs["size"],
                            "sha256": lfs["oid"],
                            "pointerSize": lfs["pointerSize"],
                        }
                siblings.append(sibling)
            info = {"id": repo_id, "sha": commit.sha, "private": False, "siblings": siblings}
            if repo_type == "model":
                info["modelId"] = repo_id
            self._json(info)

        def _tree(self, repo_type, repo_id, revision, folder, query) -> None:
            _, commit = self._lookup(repo_type, repo_id, revision)
            if commit is None:
                return
            recursive = query.get("recursive", "").lower() == "true"
            prefix = f"{folder}/" if folder else ""
            entries, folders = [], set()
            for name in sorted(commit.files):
                if not name.startswith(prefix):
                    continue
                rest = name[len(prefix) :]
                if "/" in rest and not recursive:
                    folders.add(prefix + rest.split("/")[0])
                    continue
                if recursive:
                    parts = PurePosixPath(rest).parts[:-1]
                    folders |= {prefix + "/".join(parts[: i + 1]) for i in range(len(parts))}
                entries.append(commit.entry(name))
            entries += [
                {"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "path": f}
                for f in sorted(folders)
            ]
            self._json(entries)

        def _file(self, repo_type: str, repo_id: str, revision: str, name: str) -> None:
            repo, commit = self._lookup(repo_type, repo_id, revision)
            if commit is None:
                return
            if name not in commit.files:
                self._error("EntryNotFound", commit.sha)
                return
            entry = commit.entry(name)
            data = repo.tampered.get((commit.sha, name), commit.files[name])
            headers = {"X-Repo-Commit": commit.sha, "Accept-Ranges": "bytes"}
            if "lfs" in entry:
                headers["ETag"] = f'"{entry["lfs"]["oid"]}"'
                headers["X-Linked-Etag"] = f'"{entry["lfs"]["oid"]}"'
                headers["X-Linked-Size"] = entry["size"]
            else:
                headers["ETag"] = f'"{entry["oid"]}"'
            status = 200
            ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if ranged:
                start = int(ranged[1])
                end = int(ranged[2]) if ranged[2] else len(data) - 1
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data, status = data[start : end + 1], 206
            headers["Content-Length"] = len(data)
            self._send(status, data, headers)

    return Handler
