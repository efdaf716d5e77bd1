"""How `fetch` treats each source type, without a network: in place, refused, or through the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from localmodel.fetch import FetchError, ModelCache, fetch
from localmodel.sources import parse_source

SHA = "c" * 64


@pytest.fixture
def cache(tmp_path: Path) -> ModelCache:
    return ModelCache(tmp_path / "cache")


def test_a_file_is_used_where_it_is(tmp_path: Path, cache: ModelCache) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"gguf")
    assert fetch(parse_source(model.as_uri()), cache) == model
    assert not cache.root.exists()


def test_a_pvc_source_is_refused_outside_a_cluster(cache: ModelCache) -> None:
    with pytest.raises(FetchError, match="pvc:// sources are mounted in a cluster"):
        fetch(parse_source("pvc://claim/m.gguf"), cache)


@pytest.mark.parametrize("url", ["https://host/m.gguf", "hf://org/repo/m.gguf"])
def test_downloaded_sources_are_linked_into_the_cache(
    url: str, cache: ModelCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = cache.blob_path(SHA)
    downloader = "_download" if url.startswith("https") else "_from_hugging_face"
    monkeypatch.setattr(f"localmodel.fetch.{downloader}", lambda *_: blob)
    source = parse_source(url)
    path = fetch(source, cache, SHA)
    assert path == cache.source_path(source) and path.resolve() == blob
    # The blob is there now: the next fetch, of this URL or another with the same bytes, downloads nothing.
    monkeypatch.setattr(f"localmodel.fetch.{downloader}", lambda *_: pytest.fail("downloaded again"))
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"gguf")
    assert fetch(source, cache, SHA) == path
    assert fetch(source, cache) == path
