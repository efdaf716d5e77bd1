"""The model fetcher against a local HTTP server standing in for a model host and the Hugging Face Hub."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from localmodel.fetch import ChecksumMismatchError, FetchError, ModelCache, fetch
from localmodel.sources import parse_source
from tests.support.file_server import FileServer, hub_commit

DATA = os.urandom(3 * 1024 * 1024 + 17)
SHA256 = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as running:
        yield running


@pytest.fixture
def cache(tmp_path: Path) -> ModelCache:
    return ModelCache(tmp_path / "cache")


def gets(server: FileServer) -> list[dict[str, str]]:
    return [request.headers for request in server.requests if request.method == "GET"]


def test_https_download_lands_in_the_content_addressed_cache(server: FileServer, cache: ModelCache) -> None:
    source = parse_source(server.add_file("/models/m.gguf", DATA))
    path = fetch(source, cache, SHA256)
    assert path == cache.source_path(source) and path.read_bytes() == DATA
    assert path.resolve() == cache.blob_path(SHA256)
    assert fetch(source, cache, SHA256) == path  # cached: no second download
    assert len(gets(server)) == 1


def test_an_interrupted_download_resumes_where_it_stopped(server: FileServer, cache: ModelCache) -> None:
    source = parse_source(server.add_file("/m.gguf", DATA))
    server.cut_next_download(after_bytes=2_000_000)
    assert fetch(source, cache, SHA256).read_bytes() == DATA
    first, second = gets(server)
    assert "range" not in first
    assert second["range"] == "bytes=2000000-"  # everything received before the cut was kept


def test_a_wrong_checksum_deletes_the_download_and_says_so(server: FileServer, cache: ModelCache) -> None:
    source = parse_source(server.add_file("/m.gguf", DATA))
    with pytest.raises(
        ChecksumMismatchError, match=f"sha256 is {SHA256}, the manifest expects 0+; the download"
    ):
        fetch(source, cache, "0" * 64)
    assert not cache.partial_path(source).exists()
    assert not cache.blob_path(SHA256).exists() and not cache.source_path(source).exists()


def test_two_urls_for_the_same_bytes_share_one_file(server: FileServer, cache: ModelCache) -> None:
    first = fetch(parse_source(server.add_file("/a/m.gguf", DATA)), cache, SHA256)
    second = fetch(parse_source(server.add_file("/mirror/m.gguf", DATA)), cache, SHA256)
    assert first != second and first.resolve() == second.resolve() == cache.blob_path(SHA256)
    assert len(gets(server)) == 1  # the checksum named a file the cache had: no download
    unverified = fetch(parse_source(server.add_file("/third/m.gguf", DATA)), cache)
    assert unverified.resolve() == cache.blob_path(SHA256)  # downloaded, then stored under its checksum


def test_hugging_face_hub_through_huggingface_hub(server: FileServer, cache: ModelCache) -> None:
    server.add_hub_file("org/model", "q4/m.gguf", DATA, revision="v1")
    source = parse_source("hf://org/model@v1/q4/m.gguf")
    path = fetch(source, cache, SHA256, hf_endpoint=server.url)
    assert path == cache.source_path(source) and path.read_bytes() == DATA
    assert path.resolve().name == SHA256  # huggingface_hub names blobs by the LFS etag, the sha256
    assert (
        cache.root / "huggingface" / "models--org--model" / "snapshots" / hub_commit("org/model", "v1")
    ).is_dir()
    assert [request.path for request in server.requests if request.method == "GET"] == [
        "/org/model/resolve/v1/q4/m.gguf"
    ]


def test_a_whole_hugging_face_repository_is_one_directory_source(
    server: FileServer, cache: ModelCache
) -> None:
    """What an engine whose model is several files (Whisper's) fetches: hf://ORG/REPO, every file."""
    files = {"model.bin": DATA, "config.json": b'{"a": 1}', "vocabulary.txt": b"a\nb\n"}
    for name, data in files.items():
        server.add_hub_file("org/whisper", name, data, revision="v2")
    source = parse_source("hf://org/whisper@v2")
    path = fetch(source, cache, hf_endpoint=server.url)
    assert path == cache.source_path(source) and path.is_dir()
    assert {file.name: file.read_bytes() for file in path.iterdir()} == files
    fetched = len(server.requests)
    assert fetch(source, cache, hf_endpoint=server.url) == path and len(server.requests) == fetched  # cached


def test_a_local_directory_is_used_where_it_is(tmp_path: Path, cache: ModelCache) -> None:
    (tmp_path / "voice").mkdir()
    assert fetch(parse_source(f"{tmp_path.as_uri()}/voice/"), cache) == tmp_path / "voice"
    with pytest.raises(FetchError, match="no such directory"):
        fetch(parse_source(f"{tmp_path.as_uri()}/absent/"), cache)
    with pytest.raises(FetchError, match="a directory\\? end the URL with /"):
        fetch(parse_source(f"{tmp_path.as_uri()}/voice"), cache)


def test_hugging_face_wrong_checksum_and_missing_file(server: FileServer, cache: ModelCache) -> None:
    server.add_hub_file("org/model", "m.gguf", DATA)
    with pytest.raises(ChecksumMismatchError, match="the download was deleted"):
        fetch(parse_source("hf://org/model/m.gguf"), cache, "1" * 64, hf_endpoint=server.url)
    assert not [
        blob for blob in (cache.root / "huggingface").rglob("*") if blob.is_file() and "blobs" in blob.parts
    ]
    with pytest.raises(FetchError, match="hf://org/model/absent.gguf: .*NotFound"):
        fetch(parse_source("hf://org/model/absent.gguf"), cache, hf_endpoint=server.url)


def test_http_errors_and_sources_local_mode_cannot_fetch(server: FileServer, cache: ModelCache) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(parse_source(f"{server.url}/absent.gguf"), cache)
    with pytest.raises(FetchError, match="pvc:// sources are mounted in a cluster"):
        fetch(parse_source("pvc://claim/m.gguf"), cache)
    with pytest.raises(FetchError, match="no such file"):
        fetch(parse_source("file:///nowhere/m.gguf"), cache)


def test_fetch_command_prints_the_path(server: FileServer, tmp_path: Path) -> None:
    url = server.add_file("/m.gguf", DATA)
    command = [
        sys.executable,
        "-m",
        "localmodel.cli",
        "fetch",
        url,
        "--sha256",
        SHA256,
        "--cache-dir",
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert Path(result.stdout.strip()).read_bytes() == DATA
    assert "downloading m.gguf" in result.stderr  # progress is shown (as log lines when not on a terminal)
    wrong = subprocess.run([*command[:-4], "--sha256", "f" * 64, "--cache-dir", str(tmp_path / "other")],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert wrong.returncode == 1 and "the download was deleted" in wrong.stderr


def test_local_files_are_verified_once_until_they_change(
    tmp_path: Path, cache: ModelCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(DATA)
    source = parse_source(model.as_uri())
    assert fetch(source, cache, SHA256) == model
    stamp = cache.root / "verified" / SHA256
    assert stamp.is_file()
    with monkeypatch.context() as patched:  # unchanged file: trusted without hashing again
        patched.setattr("localmodel.fetch.sha256_of", lambda *_: pytest.fail("hashed again"))
        assert fetch(source, cache, SHA256) == model
    model.write_bytes(DATA[:-1] + b"!")  # changed: hashed again, and refused
    with pytest.raises(ChecksumMismatchError, match="the file was left as it is"):
        fetch(source, cache, SHA256)
    assert model.exists()
