"""Model URLs parsed once into typed sources: `file:`, `http(s)://`, `hf://` and `pvc://`.

A source is one file, or a directory of them (an engine whose model is several files, as Whisper's and
Piper's are): a `file:` or `pvc://` URL ending in `/`, or an `hf://` URL naming only the repository (its
whole snapshot). Each source knows its canonical URL (the cache key), the file or directory name it
delivers, whether it is downloaded
(fetched into the model cache before use) or read where it is, and where that is (a path, a claim). How
to download, and what volumes a pod needs, stay with the fetcher and the operator's pod builder: those
are their jobs, in their terms (HTTP, mount points), not facts about a URL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import ClassVar
from urllib.parse import unquote, urlsplit


class SourceError(ValueError):
    """A model URL that cannot be parsed; the message says what is allowed."""


@dataclass(frozen=True)
class FileSource:
    """A file on this machine (local mode) or inside the backend container (cluster)."""

    path: Path
    is_directory: bool = False
    downloads: ClassVar[bool] = False

    @property
    def url(self) -> str:
        return self.path.as_uri() + ("/" if self.is_directory else "")

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class HttpSource:
    """A file any HTTP(S) client can GET."""

    url: str
    downloads: ClassVar[bool] = True
    is_directory: ClassVar[bool] = False  # HTTP has no directory listing to fetch one by

    @property
    def filename(self) -> str:
        return PurePosixPath(unquote(urlsplit(self.url).path)).name


@dataclass(frozen=True)
class HuggingFaceSource:
    """One file of a Hugging Face Hub repository, or (`path_in_repo` empty) the whole repository, at a
    branch, tag or commit."""

    repo_id: str
    path_in_repo: str
    revision: str = "main"
    downloads: ClassVar[bool] = True

    @property
    def is_directory(self) -> bool:
        return not self.path_in_repo

    @property
    def url(self) -> str:
        revision = "" if self.revision == "main" else f"@{self.revision}"
        return f"hf://{self.repo_id}{revision}/{self.path_in_repo}"

    @property
    def filename(self) -> str:
        return PurePosixPath(self.path_in_repo or self.repo_id).name


@dataclass(frozen=True)
class PvcSource:
    """A file on a PersistentVolumeClaim; only a cluster can mount it."""

    claim: str
    path: str  # inside the claim, relative; never leaves it (no `..`)
    is_directory: bool = False
    downloads: ClassVar[bool] = False

    @property
    def url(self) -> str:
        return f"pvc://{self.claim}/{self.path}" + ("/" if self.is_directory else "")

    @property
    def filename(self) -> str:
        return PurePosixPath(self.path).name


# `downloads`: fetched into the model cache before use (in a cluster, by an init container into the cache
# volume); the others are read where they are, and only checked against their sha256.
Source = FileSource | HttpSource | HuggingFaceSource | PvcSource


def parse_source(url: str, base_dir: Path | None = None) -> Source:
    """The typed source for a model URL; relative `file:` paths resolve against `base_dir` (or the CWD)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return _file_source(url, parts.netloc, unquote(parts.path), base_dir)
    if scheme in ("http", "https"):
        if not parts.netloc or not PurePosixPath(parts.path).name or parts.path.endswith("/"):
            raise SourceError(
                f"{url!r}: expected {scheme}://host/path/to/file.gguf (one file: a directory of files "
                "needs an hf://, pvc:// or file: URL ending in /)"
            )
        return HttpSource(url)
    if scheme == "hf":
        return _hugging_face_source(url, parts.netloc, parts.path)
    if scheme == "pvc":
        path = parts.path.strip("/")
        if not parts.netloc or not path:
            raise SourceError(f"{url!r}: expected pvc://CLAIM/path/to/file.gguf")
        if ".." in PurePosixPath(path).parts:  # the path is joined to the claim's mount: stay inside it
            raise SourceError(f"{url!r}: '..' is not allowed in a pvc:// path")
        return PvcSource(parts.netloc, path, is_directory=parts.path.endswith("/"))
    raise SourceError(f"{url!r}: unsupported scheme {scheme!r}; use file:, https://, hf:// or pvc://")


def names_directory(url: str) -> bool:
    """Whether a model URL names a directory (ends in `/`, or an `hf://` URL names only a repository),
    without parsing it further: what the spec checks an engine's model against."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "hf":
        return len([segment for segment in parts.path.split("/") if segment]) < 2
    return url.endswith("/")


def cache_key(source: Source) -> str:
    """A short stable name for a source, the same for every manifest that names it."""
    return hashlib.sha256(source.url.encode()).hexdigest()[:16]


def _file_source(url: str, host: str, path: str, base_dir: Path | None) -> FileSource:
    if host not in ("", "localhost"):
        raise SourceError(f"{url!r}: file URLs name no host; use file:///absolute/path or file:relative/path")
    if not path or path == "/":
        raise SourceError(f"{url!r}: expected a file or directory, e.g. file:///models/model.gguf")
    file = Path(path)
    if not file.is_absolute():
        file = (base_dir or Path.cwd()) / file
    return FileSource(Path(file).resolve(), is_directory=path.endswith("/"))


def _hugging_face_source(url: str, repo_owner_and_revision: str, rest: str) -> HuggingFaceSource:
    # hf://org/repo[@revision]/path/in/repo.gguf: the owner is the URL's host, the repository the first
    # path segment (with an optional @revision), the rest the file inside the repository.
    # hf://org/repo[@revision] alone: the repository's whole snapshot.
    segments = [segment for segment in rest.split("/") if segment]
    if not repo_owner_and_revision or not segments:
        raise SourceError(
            f"{url!r}: expected hf://ORG/REPO/path/to/file.gguf, hf://ORG/REPO for the whole repository "
            "(or hf://ORG/REPO@REVISION/...)"
        )
    repo, _, revision = segments[0].partition("@")
    if not repo or (revision == "" and "@" in segments[0]):
        raise SourceError(f"{url!r}: empty repository or revision")
    return HuggingFaceSource(f"{repo_owner_and_revision}/{repo}", "/".join(segments[1:]), revision or "main")
