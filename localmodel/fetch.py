"""Fetch model files into a content-addressed cache: resumable downloads, sha256 checks, progress.

Cache layout under the root (`$LOCALMODEL_CACHE`, else `~/.cache/localmodel`):

    blobs/sha256/<hex>            the files, named by content: two URLs for the same bytes share one
    sources/<key>/<file name>     a link to the blob, one per source URL: a path known before the download
                                  (the operator points the backend at it while an init container fetches);
                                  for a directory source (an hf:// repository), a link to its snapshot
    partial/<key>.part            an interrupted download, resumed by the next fetch
    huggingface/                  huggingface_hub's own cache (itself content-addressed) for hf:// sources

A file whose checksum does not match is deleted, never cached.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import assert_never

import httpx
from filelock import FileLock

from localmodel.progress import transfer_progress
from localmodel.sources import FileSource, HttpSource, HuggingFaceSource, PvcSource, Source, cache_key

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
DOWNLOAD_TRIES = 5  # a dropped connection resumes where it stopped, this many times in all


class FetchError(RuntimeError):
    """The model file could not be had; the message says why and what to do."""


class ChecksumMismatchError(FetchError):
    pass


def default_cache_dir() -> Path:
    if configured := os.environ.get("LOCALMODEL_CACHE"):
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "localmodel"


@dataclass(frozen=True)
class ModelCache:
    root: Path

    def source_path(self, source: Source) -> Path:
        """Where a source's file appears once fetched (a link into blobs/)."""
        return self.root / "sources" / cache_key(source) / source.filename

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / "sha256" / sha256

    def partial_path(self, source: Source) -> Path:
        return self.root / "partial" / f"{cache_key(source)}.part"


def fetch(
    source: Source, cache: ModelCache, sha256: str | None = None, hf_endpoint: str | None = None
) -> Path:
    """The local path of the source's file, downloading and verifying it first where needed."""
    # The one place a source's type decides how its file is had (mypy checks every type has a case).
    match source:
        case FileSource():
            return _local_file(source, sha256, cache)
        case PvcSource():
            raise FetchError(
                f"{source.url}: pvc:// sources are mounted in a cluster; "
                "on one machine use a file: URL instead"
            )
        case HttpSource():
            download = partial(_download, source, cache, sha256)
        case HuggingFaceSource():
            download = partial(_from_hugging_face, source, cache, sha256, hf_endpoint)
        case _:
            assert_never(source)
    target = cache.source_path(source)
    if sha256 is not None and cache.blob_path(sha256).is_file():
        _link(target, cache.blob_path(sha256))  # the same bytes came from another URL already
        return target
    if sha256 is None and (target.is_dir() if source.is_directory else target.is_file()):
        return target  # verified when it was first fetched; without a checksum there is nothing more to check
    _link(target, download())
    return target


def sha256_of(path: Path, description: str | None = None) -> str:
    digest = hashlib.sha256()
    with (
        path.open("rb") as file,
        transfer_progress(description or f"checking {path.name}", path.stat().st_size) as advance,
    ):
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
            advance(len(chunk))
    return digest.hexdigest()


def _local_file(source: FileSource, sha256: str | None, cache: ModelCache) -> Path:
    if source.is_directory:
        if not source.path.is_dir():
            raise FetchError(f"{source.url}: no such directory")
        return source.path  # a directory has no one checksum (the spec refuses sha256 for it)
    if not source.path.is_file():
        raise FetchError(
            f"{source.url}: no such file"
            + (" (a directory? end the URL with /)" if source.path.is_dir() else "")
        )
    if sha256 is None:
        return source.path
    # Hashing a large model takes seconds; a file unchanged since it was last verified is not hashed again.
    stat = source.path.stat()
    fingerprint = f"{source.path}\n{stat.st_size}\n{stat.st_mtime_ns}\n"
    stamp = cache.root / "verified" / sha256
    if stamp.is_file() and stamp.read_text() == fingerprint:
        return source.path
    if (actual := sha256_of(source.path)) != sha256:
        raise ChecksumMismatchError(
            f"{source.url}: sha256 is {actual}, the manifest expects {sha256}; the file was left as it is"
        )
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    return source.path


def _download(source: HttpSource, cache: ModelCache, sha256: str | None) -> Path:
    partial = cache.partial_path(source)
    partial.parent.mkdir(parents=True, exist_ok=True)
    # Two processes fetching the same URL (two `serve`s, two init containers on one volume) take turns.
    with FileLock(f"{partial}.lock"):
        if sha256 is not None and cache.blob_path(sha256).is_file():
            return cache.blob_path(sha256)
        if sha256 is None and cache.source_path(source).is_file():
            return cache.source_path(source).resolve()  # fetched by whoever held the lock before us
        for attempt in range(1, DOWNLOAD_TRIES + 1):
            try:
                _download_into(source.url, partial, source.filename)
                break
            except httpx.TransportError as error:  # a dropped connection: resume from what arrived
                if attempt == DOWNLOAD_TRIES:
                    raise FetchError(f"{source.url}: download failed {attempt} times: {error}") from error
                log.warning("%s: download interrupted (%s); resuming", source.url, error)
                time.sleep(min(2 ** (attempt - 1), 10))
        return _keep_if_verified(partial, source.url, cache, sha256)


def _download_into(url: str, partial: Path, filename: str) -> None:
    """Append the rest of `url` to `partial` (a Range request when part of it arrived already)."""
    have = partial.stat().st_size if partial.exists() else 0
    # Identity encoding: byte offsets must be the file's, not a compressed stream's.
    headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
    timeout = httpx.Timeout(30.0, read=120.0)
    with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=timeout) as response:
        if response.status_code == 416 and have:
            return  # the partial file is complete already
        if response.status_code not in (200, 206):
            raise FetchError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")
        if response.status_code == 206 and not response.headers.get("Content-Range", "").startswith(
            f"bytes {have}-"
        ):
            raise FetchError(
                f"{url}: the server resumed at the wrong offset ({response.headers.get('Content-Range')})"
            )
        if response.status_code == 200 and have:
            log.info("%s: the server does not resume downloads; starting over", url)
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with (
            partial.open("ab" if have else "wb") as file,
            transfer_progress(
                f"downloading {filename} from {httpx.URL(url).host}",
                total,
                have,
            ) as advance,
        ):
            for chunk in response.iter_bytes():  # as they arrive: a cut loses nothing already received
                file.write(chunk)
                advance(len(chunk))
        if total is not None and partial.stat().st_size < total:
            raise httpx.ReadError(f"connection closed after {partial.stat().st_size} of {total} bytes")


def _keep_if_verified(downloaded: Path, url: str, cache: ModelCache, sha256: str | None) -> Path:
    """Move a finished download into blobs/ under its checksum; delete it if the checksum is wrong."""
    actual = sha256_of(downloaded, f"checking {url}")
    if sha256 is not None and actual != sha256:
        downloaded.unlink()
        raise ChecksumMismatchError(
            f"{url}: sha256 is {actual}, the manifest expects {sha256}; the download was deleted"
        )
    blob = cache.blob_path(actual)
    blob.parent.mkdir(parents=True, exist_ok=True)
    os.replace(downloaded, blob)
    return blob


def _from_hugging_face(
    source: HuggingFaceSource, cache: ModelCache, sha256: str | None, endpoint: str | None
) -> Path:
    # Imported here: huggingface_hub takes a while to import and only hf:// sources need it.
    from huggingface_hub import hf_hub_download, snapshot_download

    hub_cache, hub = cache.root / "huggingface", endpoint or os.environ.get("HF_ENDPOINT")
    try:
        if source.is_directory:  # the whole repository: its snapshot directory, files linked to blobs
            snapshot = snapshot_download(
                source.repo_id, revision=source.revision, cache_dir=hub_cache, endpoint=hub
            )
            return Path(snapshot).resolve()
        path = Path(
            hf_hub_download(
                source.repo_id,
                source.path_in_repo,
                revision=source.revision,
                cache_dir=hub_cache,
                endpoint=hub,
            )
        )
    except Exception as error:  # huggingface_hub raises its own errors, OSError and raw HTTP errors
        raise FetchError(f"{source.url}: {type(error).__name__}: {error}") from error
    if sha256 is not None and (actual := sha256_of(path, f"checking {source.url}")) != sha256:
        blob = path.resolve()
        path.unlink()  # the snapshot's link, then the bytes it points at
        blob.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"{source.url}: sha256 is {actual}, the manifest expects {sha256}; the download was deleted"
        )
    return path.resolve()


def _link(target: Path, blob: Path) -> None:
    """Point the source's stable path at the blob (relative, so the cache folder can move or be mounted)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(blob, target.parent)
    if target.is_symlink() and os.readlink(target) == relative:
        return
    temporary = target.with_name(f".{target.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(relative)
    os.replace(temporary, target)  # atomic: a reader sees the old link or the new one
