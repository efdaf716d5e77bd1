"""Model file headers for the fit plan: read where the operator can reach the file, kept in memory.

The operator reads only a GGUF file's header (a few HTTP range requests, about the header's size), and
only for llama.cpp's models (the other engines' are no GGUF files) from sources that are downloaded
(`https`, `hf`): it reaches those as the pod's init container does. A `pvc` claim or a file in the
image is readable only where the backend runs.

`read_header` is blocking (httpx's sync client), so it runs in a worker thread and kopf's event loop
keeps serving other models meanwhile. Headers are kept by (URL, sha256): every reconcile of a model
plans again, and none reads its header twice. A failed read is not kept, so the next reconcile tries
again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from localmodel.gguf_header import GGUFHeader, read_header
from localmodel.sources import Source

log = logging.getLogger(__name__)

# Per request of a header read: long enough for a slow CDN's first byte, short enough that a model
# whose host is down gets its pods (and a HeaderUnreadable condition) without a long wait.
READ_TIMEOUT_SECONDS = 20.0
# Headers of distinct model files kept; a header (tensor table, short metadata) is tens of kilobytes.
MAX_HEADERS = 256


class HeaderReader(Protocol):
    """What the fit check needs: the header of a downloaded source (raises HeaderError or OSError)."""

    async def read(self, source: Source, sha256: str | None, env: Mapping[str, str]) -> GGUFHeader: ...


class ModelHeaders:
    """Headers read over the network, the last MAX_HEADERS kept. `env`: the model's environment, whose
    HF_TOKEN and HF_ENDPOINT the pod's own download uses too (else huggingface_hub's, from the
    operator's environment; else anonymous)."""

    def __init__(self, max_headers: int = MAX_HEADERS, read: Callable[..., GGUFHeader] = read_header) -> None:
        self._headers: OrderedDict[tuple[str, str | None], GGUFHeader] = OrderedDict()
        self._max = max_headers
        self._read = read

    async def read(self, source: Source, sha256: str | None, env: Mapping[str, str]) -> GGUFHeader:
        # Keyed by checksum too: a pinned file is the same file wherever it is named; an unpinned URL
        # is trusted to keep its bytes while the operator runs.
        key = (source.url, sha256)
        header = self._headers.get(key)
        if header is not None:
            self._headers.move_to_end(key)
            return header
        options: dict[str, Any] = {"timeout": READ_TIMEOUT_SECONDS}
        if env.get("HF_TOKEN"):
            options["hf_token"] = env["HF_TOKEN"]
        if env.get("HF_ENDPOINT"):
            options["hf_endpoint"] = env["HF_ENDPOINT"]
        header = await asyncio.to_thread(self._read, source, **options)
        log.info("read the header of %s (%d tensors)", source.url, len(header.tensors))
        self._headers[key] = header
        while len(self._headers) > self._max:
            self._headers.popitem(last=False)
        return header

    def __len__(self) -> int:
        return len(self._headers)
