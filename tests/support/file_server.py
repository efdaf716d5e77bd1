"""A local HTTP server standing in for a plain HTTPS model host and for the Hugging Face Hub in fetch tests.

Plain files (`add_file`) are served as a static host or CDN serves them: HEAD and GET, ETag,
`Accept-Ranges: bytes`, single byte ranges (206) and 416 past the end. Hub files (`add_hub_file`) answer
`{url}/{repo_id}/resolve/{revision}/{filename}` as huggingface.co answers an LFS file, so that
`hf_hub_download(..., endpoint=server.url)` really downloads from here. huggingface_hub 2.4 sends a HEAD to
that URL, reads X-Repo-Commit, X-Linked-Etag (or ETag) and X-Linked-Size from it, then GETs the same URL.
After a cut it retries the GET within the same call (up to 5 times, 1 s apart) from what it has written, which
is a multiple of its 10 MiB read size: a cut in the first 10 MiB restarts from 0, with no Range header.
No X-Xet-* headers are sent, so it never takes the xet path. For a whole repository (`snapshot_download`),
it answers the two API calls huggingface_hub makes first: `/api/models/{repo_id}/revision/{revision}`
(the commit) and `/api/models/{repo_id}/tree/{commit}` (every file, with its LFS sha256), then the files
as above.

    with FileServer() as server:
        url = server.add_file("/models/a.gguf", data)
        server.add_hub_file("org/model", "a.gguf", data)
        server.cut_next_download(after_bytes=1000)
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # as sent, still quoted, with any query string
    headers: dict[str, str]  # names in lower case


@dataclass(frozen=True)
class _File:
    data: bytes
    headers: dict[str, str]  # sent with every answer about this file, besides the standard ones


def hub_commit(repo_id: str, revision: str = "main") -> str:
    """The fake commit (40 hex) a repo's revision resolves to: fixed, so tests can predict cache paths."""
    return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()


class FileServer:
    """Serves files on 127.0.0.1 (a free port) from a background thread while the context is open."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._files: dict[str, _File] = {}
        self._hub: dict[tuple[str, str, str], _File] = {}  # (repo_id, revision or commit, filename)
        self._revisions: dict[str, set[str]] = {}  # repo_id -> revisions and commits it answers to
        self._cut_after: int | None = None
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, self))
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="file-server", daemon=True)

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def add_file(self, path: str, data: bytes) -> str:
        """Serve `data` at the URL path `path` (e.g. "/models/a.gguf"); returns its full URL."""
        self._files[path] = _File(data, {"ETag": f'"{hashlib.sha256(data).hexdigest()}"'})
        return self.url + quote(path)

    def add_hub_file(self, repo_id: str, filename: str, data: bytes, revision: str = "main") -> None:
        """Serve `data` as file `filename` of `repo_id` at `revision` and at the commit it resolves to."""
        commit = hub_commit(repo_id, revision)
        sha256 = hashlib.sha256(data).hexdigest()  # the Hub's etag of an LFS file; it names the cached blob
        headers = {"ETag": f'"{sha256}"', "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data))}
        entry = _File(data, {**headers, "X-Repo-Commit": commit})
        for rev in (revision, commit):
            self._hub[(repo_id, rev, filename)] = entry
            self._revisions.setdefault(repo_id, set()).add(rev)

    def cut_next_download(self, after_bytes: int) -> None:
        """The next GET of any file sends `after_bytes` bytes of its body, then closes the connection."""
        with self._lock:
            self._cut_after = after_bytes

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _take_cut(self) -> int | None:
        with self._lock:
            cut, self._cut_after = self._cut_after, None
            return cut

    def _hub_api(self, path: str) -> _File | None:
        """The Hub API's JSON for a repository's revision or its file tree, as huggingface_hub reads them."""
        repo_id, what, revision = "", "", ""
        for kind in ("revision", "tree"):
            head, found, tail = path.removeprefix("/api/models/").partition(f"/{kind}/")
            if found:
                repo_id, what, revision = unquote(head), kind, unquote(tail).strip("/")
                break
        if not what or revision not in self._revisions.get(repo_id, set()):
            return None
        files = {
            name: file for (repo, rev, name), file in self._hub.items() if repo == repo_id and rev == revision
        }
        if what == "revision":
            body: object = {
                "id": repo_id,
                "sha": hub_commit(repo_id, revision),
                "siblings": [{"rfilename": name} for name in files],
            }
        else:
            body = [
                {
                    "type": "file",
                    "path": name,
                    "size": len(file.data),
                    "oid": hashlib.sha1(file.data).hexdigest(),
                    "lfs": {
                        "oid": hashlib.sha256(file.data).hexdigest(),
                        "size": len(file.data),
                        "pointerSize": 134,
                    },
                }
                for name, file in files.items()
            ]
        return _File(json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _find(self, raw_path: str) -> tuple[_File | None, dict[str, str]]:
        """The file at a request path, or None and the headers of the Hub's 404 for it."""
        path = urlsplit(raw_path).path
        if unquote(path) in self._files:
            return self._files[unquote(path)], {}
        if path.startswith("/api/models/"):
            return self._hub_api(path), {"X-Error-Code": "RevisionNotFound"}
        repo_id, resolve, rest = path.lstrip("/").partition("/resolve/")
        revision, _, filename = rest.partition("/")
        # Split, then unquote: the client quotes the revision whole, so "refs/pr/1" arrives as refs%2Fpr%2F1.
        repo_id, revision, filename = unquote(repo_id), unquote(revision), unquote(filename)
        if not resolve or repo_id not in self._revisions:
            return None, {"X-Error-Code": "RepoNotFound"} if resolve else {}
        if revision not in self._revisions[repo_id]:
            return None, {"X-Error-Code": "RevisionNotFound"}
        found = self._hub.get((repo_id, revision, filename))
        return found, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": hub_commit(repo_id, revision)}


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) asked for by a single-range Range header; None (no or odd header): the whole file."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:  # a suffix: the last N bytes ("bytes=-0" asks for none, which cannot be satisfied)
        return (max(size - int(last), 0) if int(last) else size), size
    if last and int(last) < int(first):
        return None
    return int(first), (min(int(last) + 1, size) if last else size)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client relies on Content-Length to see a cut body

    def __init__(self, owner: FileServer, *args: Any) -> None:
        self.owner = owner  # set first: the base class handles the request inside __init__
        super().__init__(*args)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("file server: " + format, *args)

    def _answer(self, send_body: bool) -> None:
        asked = {name.lower(): value for name, value in self.headers.items()}
        self.owner._record(RecordedRequest(self.command, self.path, asked))
        found, missing = self.owner._find(self.path)
        size = len(found.data) if found else 0
        span = _byte_range(asked.get("range"), size)
        start, end = span or (0, size)
        if found is None or (span is not None and start >= size):
            status, headers = (404, missing) if found is None else (416, {"Content-Range": f"bytes */{size}"})
            self._send_head(status, {**headers, "Content-Length": "0"})
            return
        headers = {**found.headers, "Accept-Ranges": "bytes", "Content-Length": str(end - start)}
        if span:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        self._send_head(206 if span else 200, headers)
        if send_body:
            self._stream(memoryview(found.data)[start:end], self.owner._take_cut())

    def _send_head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _stream(self, body: memoryview, cut: int | None) -> None:
        limit = len(body) if cut is None else min(cut, len(body))
        try:
            for offset in range(0, limit, CHUNK_SIZE):
                self.wfile.write(body[offset : min(offset + CHUNK_SIZE, limit)])
            if cut is not None:
                # A FIN (a reset could drop bytes the client has not read yet) short of the Content-Length
                # promised: the client gets exactly `cut` bytes, then a premature end of the body.
                self.connection.shutdown(socket.SHUT_WR)
                self.close_connection = True
        except OSError:  # the client went away mid-body
            self.close_connection = True
