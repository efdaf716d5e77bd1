"""A remote file read by HTTP range requests, as far as its reader needs and no further."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx


class RangeRequestError(OSError):
    """The server answered a range request with an error status."""


@dataclass
class HttpRangeSource:
    """A remote file read with HTTP range requests. Each request asks for what the reader needs plus
    what it expects to need next (`ahead`: the parser's estimate, so a vocabulary comes in about one
    request and the bytes it skips are not fetched), and at least `min_chunk`. Asked without an estimate,
    it doubles the request with each one, so that any header takes a few. A server that ignores Range
    and sends the whole file is read only as far as needed, then the connection is dropped."""

    client: httpx.Client
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    first_chunk: int = 256 * 1024  # the fixed part of most headers and the start of their vocabulary
    min_chunk: int = 64 * 1024
    max_chunk: int = 64 << 20
    requests: int = 0
    bytes_received: int = 0
    file_size: int | None = None

    def read(self, offset: int, size: int, ahead: int = 0) -> bytes:
        if ahead:
            want = max(size + ahead, self.first_chunk if self.requests == 0 else self.min_chunk)
        else:
            want = max(size, min(self.first_chunk << self.requests, self.max_chunk))
        headers = {**self.headers, "Range": f"bytes={offset}-{offset + want - 1}"}
        self.requests += 1
        # Redirects followed whatever the client's default: the Hub answers with one to its CDN.
        with self.client.stream("GET", self.url, headers=headers, follow_redirects=True) as response:
            if response.status_code == 416:  # asked past the end
                return b""
            if response.status_code not in (200, 206):
                response.read()
                raise RangeRequestError(f"GET {self.url} (bytes {offset}-): HTTP {response.status_code}")
            skip = 0 if response.status_code == 206 else offset  # 200: the body starts at byte 0
            self._note_size(response)
            data = bytearray()
            for piece in response.iter_bytes():
                data += piece
                if len(data) >= skip + want:
                    break
        self.bytes_received += len(data)
        return bytes(data[skip : skip + want])

    def _note_size(self, response: httpx.Response) -> None:
        total = response.headers.get("content-range", "").rpartition("/")[2]
        if total.isdigit():
            self.file_size = int(total)
        elif response.status_code == 200 and response.headers.get("content-length", "").isdigit():
            self.file_size = int(response.headers["content-length"])
