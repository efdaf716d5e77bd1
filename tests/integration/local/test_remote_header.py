"""Reading a GGUF header over HTTP range requests from a server on loopback, for https: and hf: URLs."""

from __future__ import annotations

import mmap
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from localmodel.fit import PlanInput, plan_fit
from localmodel.gguf_header import parse_header, read_header, read_local_header
from localmodel.ranged_http import HttpRangeSource
from tests.support.file_server import FileServer, _File
from tests.support.gguf_files import LLAMA_31_8B, data_bytes, header_bytes, llama_metadata, llama_tensors
from tests.support.models import require_model

_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as running:
        yield running


def bytes_asked(server: FileServer) -> tuple[int, int]:
    """GET requests made, and the bytes their Range headers asked for."""
    gets = [request for request in server.requests if request.method == "GET"]
    spans = [_RANGE.fullmatch(request.headers["range"]) for request in gets]
    return len(gets), sum(int(span[2]) - int(span[1]) + 1 for span in spans if span)


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_a_remote_header_is_the_local_one_read_in_a_few_requests(server: FileServer, model: str) -> None:
    path = require_model(model)
    local = read_local_header(path)
    url = server.add_file(f"/models/{path.name}", path.read_bytes())
    remote = read_header(url)
    assert (remote.metadata, remote.tensors, remote.data_offset) == (
        local.metadata,
        local.tensors,
        local.data_offset,
    )
    assert remote.file_size == path.stat().st_size
    requests, asked = bytes_asked(server)
    # The header and little more: these small models' vocabularies are 1.8 % (SmolLM2) and 2.6 % (Gemma)
    # of their files, and a vocabulary's strings have to be walked (Gemma's 2 MB of scores and token
    # types are skipped, never fetched).
    assert requests <= 4
    assert asked <= local.data_offset * 1.1 + 256 * 1024
    assert plan_fit(remote, PlanInput()).weights_bytes == local.tensor_bytes


def test_an_8b_models_header_is_well_under_one_percent_of_it(server: FileServer, tmp_path: Path) -> None:
    """A file of Llama 3.1 8B's size and header (its vocabulary: 128,256 tokens, 280,147 merges), the
    4.9 GB of weights a hole in a sparse file, served as any static host serves a file."""
    tensors = llama_tensors(LLAMA_31_8B)
    header = header_bytes(llama_metadata(LLAMA_31_8B, vocabulary=True), tensors)
    size = len(header) + data_bytes(tensors)
    file = tmp_path / "llama-8b.gguf"
    with file.open("wb") as out:
        out.write(header)
        out.truncate(size)
    with file.open("rb") as opened, mmap.mmap(opened.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        # FileServer.add_file would hash all 4.9 GB for its ETag; a sparse file needs none.
        server._files["/llama-8b.gguf"] = _File(mapped, {})  # type: ignore[arg-type]
        remote = read_header(f"{server.url}/llama-8b.gguf")
        requests, asked = bytes_asked(server)
        assert len(remote.tensors) == len(tensors) and remote.file_size == size
        assert requests <= 5
        assert asked < size / 100 / 4, f"{asked} bytes of {size}"  # under a quarter of 1 %
        assert asked <= len(header) * 1.1 + 256 * 1024


def test_hf_urls_go_to_the_hub_with_the_token(server: FileServer) -> None:
    path = require_model("smollm2")
    server.add_hub_file("HuggingFaceTB/SmolLM2-GGUF", "smol.gguf", path.read_bytes(), revision="v1")
    header = read_header(
        "hf://HuggingFaceTB/SmolLM2-GGUF@v1/smol.gguf", hf_endpoint=server.url, hf_token="hf_x"
    )
    assert len(header.tensors) == 272
    gets = [request for request in server.requests if request.method == "GET"]
    assert gets and all(request.headers["authorization"] == "Bearer hf_x" for request in gets)
    assert all(request.path == "/HuggingFaceTB/SmolLM2-GGUF/resolve/v1/smol.gguf" for request in gets)


def test_https_sends_the_headers_given(server: FileServer) -> None:
    url = server.add_file("/m.gguf", require_model("smollm2").read_bytes())
    read_header(url, headers={"X-Api-Key": "secret"})
    assert all(request.headers["x-api-key"] == "secret" for request in server.requests)


class _WholeFile(BaseHTTPRequestHandler):
    """A server that ignores Range: every GET gets the whole file, 200."""

    protocol_version = "HTTP/1.1"
    data = b""
    sent: list[int] = []

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()
        written = 0
        try:
            for start in range(0, len(self.data), 1 << 16):
                written += self.wfile.write(self.data[start : start + (1 << 16)])
        except OSError:  # the reader hung up once it had the header
            self.close_connection = True
        self.sent.append(written)

    def log_message(self, *_args: Any) -> None:
        pass


def test_a_server_that_ignores_ranges_is_read_only_as_far_as_needed() -> None:
    data = require_model("smollm2").read_bytes()
    _WholeFile.data, _WholeFile.sent = data, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _WholeFile)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with httpx.Client() as client:
            source = HttpRangeSource(client, f"http://127.0.0.1:{httpd.server_address[1]}/m.gguf")
            header = parse_header(source)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(header.tensors) == 272 and source.file_size == len(data)
    # Each request restarts at byte 0, and is dropped as soon as it covers what was asked.
    assert source.bytes_received < len(data) / 4
