from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from localmodel.sources import (
    FileSource,
    HttpSource,
    HuggingFaceSource,
    PvcSource,
    SourceError,
    cache_key,
    parse_source,
)


@pytest.mark.parametrize(
    ("url", "expected", "filename"),
    [
        ("file:///models/m.gguf", FileSource(Path("/models/m.gguf")), "m.gguf"),
        ("file:sub/m.gguf", FileSource(Path("/base/sub/m.gguf")), "m.gguf"),
        (
            "https://host/a/m%20x.gguf?download=1",
            HttpSource("https://host/a/m%20x.gguf?download=1"),
            "m x.gguf",
        ),
        ("hf://org/repo/dir/m.gguf", HuggingFaceSource("org/repo", "dir/m.gguf"), "m.gguf"),
        ("hf://org/repo@v1.0/m.gguf", HuggingFaceSource("org/repo", "m.gguf", "v1.0"), "m.gguf"),
        ("pvc://models/llama/m.gguf", PvcSource("models", "llama/m.gguf"), "m.gguf"),
        # Directories: an engine whose model is several files (Whisper, Piper).
        ("file:///models/whisper/", FileSource(Path("/models/whisper"), is_directory=True), "whisper"),
        ("pvc://models/voices/joe/", PvcSource("models", "voices/joe", is_directory=True), "joe"),
        ("hf://org/repo", HuggingFaceSource("org/repo", ""), "repo"),
        ("hf://org/repo@v2/", HuggingFaceSource("org/repo", "", "v2"), "repo"),
    ],
)
def test_parse(url: str, expected: object, filename: str) -> None:
    source = parse_source(url, base_dir=Path("/base"))
    assert source == expected
    assert source.filename == filename


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://bucket/m.gguf", "unsupported scheme 's3'"),
        ("hf://org", "expected hf://ORG/REPO/path/to/file.gguf"),
        ("hf://org/repo@/m.gguf", "empty repository or revision"),
        ("file://server/m.gguf", "file URLs name no host"),
        ("https://host/", "expected https://host/path/to/file.gguf"),
        ("https://host/models/", "a directory of files needs an hf://, pvc:// or file: URL ending in /"),
        ("pvc://claim", "expected pvc://CLAIM/path/to/file.gguf"),
        ("pvc://claim/../../etc/m.gguf", "'..' is not allowed in a pvc:// path"),
        ("pvc://claim/a/../../m.gguf", "'..' is not allowed in a pvc:// path"),
    ],
)
def test_refused_with_what_is_allowed(url: str, message: str) -> None:
    with pytest.raises(SourceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_source(url)


def test_cache_key_is_stable_per_source() -> None:
    main = parse_source("hf://org/repo/m.gguf")
    assert cache_key(main) == cache_key(parse_source("hf://org/repo@main/m.gguf"))
    assert cache_key(main) != cache_key(parse_source("hf://org/repo@v2/m.gguf"))


@pytest.mark.parametrize(
    ("url", "downloads"),
    [
        ("file:///m.gguf", False),
        ("https://host/m.gguf", True),
        ("hf://org/repo/m.gguf", True),
        ("pvc://c/m.gguf", False),
    ],
)
def test_each_type_says_whether_it_is_downloaded(url: str, downloads: bool) -> None:
    source = parse_source(url)
    assert source.downloads is downloads and type(source).downloads is downloads
    assert "downloads" not in {field.name for field in fields(source)}  # a fact of the type, not of a URL


@pytest.mark.parametrize(
    ("url", "directory"),
    [
        ("file:///m/x.gguf", False),
        ("file:///m/x/", True),
        ("pvc://c/x/", True),
        ("hf://org/repo", True),
        ("hf://org/repo@v1", True),
        ("hf://org/repo/x.onnx", False),
        ("https://host/x.gguf", False),
    ],
)
def test_a_directory_url_is_told_without_parsing(url: str, directory: bool) -> None:
    from localmodel.sources import names_directory

    assert names_directory(url) is directory
    assert parse_source(url).is_directory is directory  # the parsed source agrees
