"""Read a GGUF file's header — metadata and tensor table — without reading the weights.

A GGUF file is a header (magic, version, key/value metadata, one entry per tensor: name, shape, ggml
type, offset) followed by the tensor data. The header is a small prefix of the file, so this reads only
that: a local file (`file:`, or `pvc:` where the claim is mounted) from its start, and a remote one
(`https:`, `hf:`) with HTTP range requests that grow until the tensor table has been read.

Why not the `gguf` package (llama.cpp's own Python reader, 0.19): `GGUFReader` memory-maps a whole local
file and builds a view of every tensor's data, so it fails on a prefix ("cannot reshape array") and
cannot read over HTTP; it also decodes every vocabulary entry into numpy, which we do not need. The
format is small and stable (v2/v3), so this module reads it itself, over a `ByteSource` that hands out
bytes by offset.

Long arrays (the tokenizer's vocabulary, scores, merges) are not kept: an array of more than
`MAX_ARRAY_VALUES` values is kept as an `ArrayInfo` (element type and count). Arrays of fixed-size
values are skipped without fetching their bytes at all; arrays of strings have to be walked, since each
string's length comes just before it.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import httpx

from localmodel.ggml_types import GgmlType, GgmlTypeError, ggml_type
from localmodel.ranged_http import HttpRangeSource, RangeRequestError
from localmodel.sources import FileSource, HttpSource, HuggingFaceSource, PvcSource, Source, parse_source

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32  # `general.alignment` when the file does not set it (the GGUF spec's default)
MAX_ARRAY_VALUES = 1024  # longer arrays are summarised (ArrayInfo); per-layer arrays stay well below
# Bounds that a real header never reaches; past them the bytes are not a GGUF header (or are hostile),
# and we stop before allocating what they ask for.
_MAX_STRING = 1 << 26
_MAX_COUNT = 1 << 32
_MAX_DIMS = 4  # GGML_MAX_DIMS


class HeaderError(ValueError):
    """Not a GGUF header we can read: wrong magic or version, truncated, a type we do not know."""


@dataclass(frozen=True)
class ArrayInfo:
    """A metadata array too long to keep (a vocabulary): what it holds and how many."""

    element_type: str
    count: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order: shape[0] is the row length
    type: GgmlType
    offset: int  # from the start of the data section

    @property
    def nbytes(self) -> int:
        return self.type.row_bytes(self.shape[0]) * math.prod(self.shape[1:])


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict[str, Any]  # key → int, float, bool, str, list, or ArrayInfo for long arrays
    tensors: tuple[TensorInfo, ...]
    data_offset: int  # where the tensor data starts: the header's length, padded to the alignment
    file_size: int | None = None  # when the source knows it

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch_value(self, suffix: str, default: Any = None) -> Any:
        """The architecture's own key, e.g. `arch_value("block_count")` for `llama.block_count`."""
        return self.metadata.get(f"{self.architecture}.{suffix}", default)

    @property
    def tensor_bytes(self) -> int:
        return sum(tensor.nbytes for tensor in self.tensors)

    @property
    def model_file_bytes(self) -> int:
        """The file's size: as the source said it, else the header and the tensor data it describes."""
        return self.file_size or self.data_offset + self.tensor_bytes


class ByteSource(Protocol):
    """Bytes by offset. `read` returns at least `size` bytes from `offset` (more is welcome: the reader
    keeps them); `ahead` says how many more the reader expects to need soon."""

    def read(self, offset: int, size: int, ahead: int = 0) -> bytes: ...


# --- parsing ---

_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_TYPE_NAMES = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool", 8: "string"}
_TYPE_NAMES |= {9: "array", 10: "u64", 11: "i64", 12: "f64"}
_STRING, _ARRAY = 8, 9
# Hints for a remote read: bytes of one vocabulary entry before any is seen, of one small key/value
# pair, and of one tensor table entry (a name like blk.31.ffn_down.weight, 2 dims).
_ENTRY_GUESS, _KV_GUESS, _TENSOR_GUESS = 16, 64, 96


class _Cursor:
    """Reads forward through a ByteSource, holding the bytes it was last given."""

    def __init__(self, source: ByteSource) -> None:
        self.pos = 0
        self.ahead = 0  # the parser's guess of how far it will read next, passed on to the source
        self._source = source
        self._buf = b""
        self._buf_pos = 0

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > self._buf_pos + len(self._buf):
            self._fill(size)
        start = self.pos - self._buf_pos
        self.pos = end
        return self._buf[start : start + size]

    def skip(self, size: int) -> None:
        """Move past `size` bytes; nothing is fetched for them."""
        self.pos += size

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self._length("string")).decode("utf-8", "replace")

    def skip_string(self) -> None:
        self.skip(self._length("string"))

    def _length(self, what: str) -> int:
        length = int(self.unpack("<Q"))
        if length > _MAX_STRING:
            raise HeaderError(f"a {what} of {length} bytes at offset {self.pos}: not a GGUF header")
        return length

    def _fill(self, size: int) -> None:
        held_end = self._buf_pos + len(self._buf)
        # Keep what is held from `pos` on and ask only for the rest: a remote source never sends a
        # byte twice.
        keep = self._buf[self.pos - self._buf_pos :] if self.pos < held_end else b""
        start = max(self.pos, held_end)
        missing = self.pos + size - start
        more = self._source.read(start, missing, self.ahead)
        if len(more) < missing:
            raise HeaderError(f"the file ends at offset {start + len(more)}, inside its header")
        self._buf, self._buf_pos = keep + more, self.pos


def parse_header(source: ByteSource, file_size: int | None = None) -> GGUFHeader:
    """The header of the GGUF file that `source` reads; only the header's bytes are asked for."""
    cursor = _Cursor(source)
    magic = cursor.take(4)
    if magic != GGUF_MAGIC:
        raise HeaderError(f"not a GGUF file: it starts with {magic!r}, not {GGUF_MAGIC!r}")
    version = cursor.unpack("<I")
    if version & 0xFFFF == 0:
        raise HeaderError("a big-endian GGUF file; only little-endian files are read")
    if version not in (2, 3):
        raise HeaderError(f"GGUF version {version}; versions 2 and 3 are read")
    tensor_count, kv_count = cursor.unpack("<Q"), cursor.unpack("<Q")
    if tensor_count > _MAX_COUNT or kv_count > _MAX_COUNT:
        raise HeaderError(f"{tensor_count} tensors and {kv_count} keys: not a GGUF header")

    metadata: dict[str, Any] = {}
    for index in range(kv_count):
        cursor.ahead = (kv_count - index) * _KV_GUESS + tensor_count * _TENSOR_GUESS
        key = cursor.string()
        metadata[key] = _value(cursor, cursor.unpack("<I"), key)
    cursor.ahead = tensor_count * _TENSOR_GUESS
    tensors = tuple(_tensor_info(cursor) for _ in range(tensor_count))

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise HeaderError(f"general.alignment must be a power of two, got {alignment!r}")
    data_offset = -(-cursor.pos // alignment) * alignment
    return GGUFHeader(version, metadata, tensors, data_offset, file_size)


def _value(cursor: _Cursor, value_type: int, key: str) -> Any:
    if value_type in _SCALARS:
        return cursor.unpack(_SCALARS[value_type])
    if value_type == _STRING:
        return cursor.string()
    if value_type != _ARRAY:
        raise HeaderError(f"{key}: unknown metadata value type {value_type}")
    element_type, count = cursor.unpack("<I"), cursor.unpack("<Q")
    if count > _MAX_COUNT:
        raise HeaderError(f"{key}: an array of {count} values: not a GGUF header")
    if count <= MAX_ARRAY_VALUES:
        return [_value(cursor, element_type, key) for _ in range(count)]
    _skip_array(cursor, element_type, count, key)
    return ArrayInfo(_TYPE_NAMES.get(element_type, str(element_type)), count)


def _skip_array(cursor: _Cursor, element_type: int, count: int, key: str) -> None:
    if element_type in _SCALARS:
        cursor.skip(count * struct.calcsize(_SCALARS[element_type]))
    elif element_type == _STRING:
        with _expecting_entries(cursor, count) as walked:
            for _ in walked:
                cursor.skip_string()
    elif element_type == _ARRAY:
        for _ in range(count):
            _value(cursor, _ARRAY, key)
    else:
        raise HeaderError(f"{key}: unknown array element type {element_type}")


@contextmanager
def _expecting_entries(cursor: _Cursor, count: int) -> Iterator[Iterator[int]]:
    """Count through `count` variable-size entries, keeping `cursor.ahead` at the bytes that the
    entries still to come will take at the average size of those seen (and 15 % more: later entries of
    a vocabulary tend to be longer), so that a remote source fetches the rest of it in one request."""
    start, saved = cursor.pos, cursor.ahead

    def entries() -> Iterator[int]:
        for index in range(count):
            if index % 1024 == 0:
                average = (cursor.pos - start) / index if index >= 64 else _ENTRY_GUESS
                cursor.ahead = int(average * (count - index) * 1.15) + saved
            yield index

    try:
        yield entries()
    finally:
        cursor.ahead = saved


def _tensor_info(cursor: _Cursor) -> TensorInfo:
    name = cursor.string()
    n_dims = cursor.unpack("<I")
    if not 1 <= n_dims <= _MAX_DIMS:
        raise HeaderError(f"tensor {name}: {n_dims} dimensions (ggml has 1 to {_MAX_DIMS})")
    shape = tuple(int(cursor.unpack("<Q")) for _ in range(n_dims))
    type_number = cursor.unpack("<I")
    try:
        tensor_type = ggml_type(type_number)
    except GgmlTypeError as error:
        raise HeaderError(f"tensor {name}: {error}") from None
    offset = cursor.unpack("<Q")
    tensor = TensorInfo(name, shape, tensor_type, offset)
    try:
        tensor.nbytes  # noqa: B018 - a row of partial blocks is a broken file: say which tensor
    except GgmlTypeError as error:
        raise HeaderError(f"tensor {name} {shape}: {error}") from None
    return tensor


# --- where the bytes come from ---


class BytesSource:
    """A header already in memory (tests, or bytes fetched another way)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, offset: int, size: int, ahead: int = 0) -> bytes:
        return self.data[offset : offset + size + ahead]


class FileByteSource:
    """A local file, read forward in chunks of at least `chunk` bytes."""

    def __init__(self, file: BinaryIO, chunk: int = 1 << 20) -> None:
        self._file = file
        self._chunk = chunk

    def read(self, offset: int, size: int, ahead: int = 0) -> bytes:
        self._file.seek(offset)
        return self._file.read(max(size + ahead, self._chunk))


def read_header(
    location: str | Path | Source,
    *,
    headers: Mapping[str, str] | None = None,
    hf_token: str | None = None,
    hf_endpoint: str | None = None,
    pvc_mount: Path | None = None,
    client: httpx.Client | None = None,
    timeout: float = 30.0,
) -> GGUFHeader:
    """The GGUF header of a model file named by a path, a model URL or a parsed Source.

    `file:` and plain paths are read from disk; `pvc:` likewise under `pvc_mount` (where the claim is
    mounted: only a pod or a node that mounts it can read it); `https:` with range requests, sending
    `headers`; `hf:` at the Hub (`hf_endpoint`, else HF_ENDPOINT or huggingface.co), with `hf_token`
    (else the token huggingface_hub finds) as its bearer token.
    """
    source = _as_source(location)
    match source:
        case FileSource(path=path):
            return read_local_header(path)
        case PvcSource(claim=claim, path=path):
            if pvc_mount is None:
                raise HeaderError(f"{source.url}: a claim's file is read where it is mounted; pass pvc_mount")
            log.debug("reading a header on a claim", extra={"claim": claim, "mount": str(pvc_mount)})
            return read_local_header(pvc_mount / path)
        case HttpSource(url=url):
            return read_remote_header(url, headers or {}, client=client, timeout=timeout)
        case HuggingFaceSource():
            url, hub_headers = _hub_request(source, hf_token, hf_endpoint)
            return read_remote_header(url, {**hub_headers, **(headers or {})}, client=client, timeout=timeout)
    raise AssertionError(f"unhandled source {source!r}")  # pragma: no cover - Source is a closed union


def read_local_header(path: Path) -> GGUFHeader:
    """The header of a local GGUF file, reading only its first megabytes."""
    try:
        with path.open("rb") as file:
            return parse_header(FileByteSource(file), path.stat().st_size)
    except OSError as error:
        raise HeaderError(f"cannot read {path}: {error.strerror or error}") from error


def read_remote_header(
    url: str,
    headers: Mapping[str, str],
    *,
    client: httpx.Client | None = None,
    timeout: float = 30.0,
) -> GGUFHeader:
    """The header of a GGUF file at an HTTP(S) URL, by range requests (redirects followed)."""
    own = client is None
    http = client or httpx.Client(follow_redirects=True, timeout=timeout)
    try:
        source = HttpRangeSource(http, url, dict(headers))
        header = parse_header(source)
    except (httpx.HTTPError, RangeRequestError) as error:
        raise HeaderError(f"GET {url}: {error}") from error
    finally:
        if own:
            http.close()
    log.info(
        "read a remote GGUF header",
        extra={"url": url, "requests": source.requests, "bytes": source.bytes_received},
    )
    return GGUFHeader(header.version, header.metadata, header.tensors, header.data_offset, source.file_size)


def _as_source(location: str | Path | Source) -> Source:
    if isinstance(location, Path):
        return FileSource(location)
    if isinstance(location, str):
        return (
            parse_source(location)
            if "://" in location or location.startswith("file:")
            else FileSource(Path(location))
        )
    return location


def _hub_request(
    source: HuggingFaceSource, token: str | None, endpoint: str | None
) -> tuple[str, dict[str, str]]:
    """The Hub's URL for the file (it redirects to its CDN, which honours Range) and its headers: the
    token given, else the one huggingface_hub finds (HF_TOKEN, `hf auth login`)."""
    # Imported here: huggingface_hub takes a while to import and only hf: sources need it.
    from huggingface_hub import get_token, hf_hub_url

    url = hf_hub_url(source.repo_id, source.path_in_repo, revision=source.revision, endpoint=endpoint)
    token = token or get_token()
    return url, {"Authorization": f"Bearer {token}"} if token else {}
