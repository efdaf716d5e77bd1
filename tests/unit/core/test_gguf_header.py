"""The GGUF header reader: real test models, headers built here, and ggml's own type table."""

from __future__ import annotations

import ctypes
import struct
from pathlib import Path

import llama_cpp
import pytest

from localmodel.ggml_types import GGML_TYPES
from localmodel.gguf_header import (
    ArrayInfo,
    BytesSource,
    HeaderError,
    parse_header,
    read_header,
    read_local_header,
)
from tests.support.gguf_files import (
    ARRAY,
    F64,
    I8,
    I16,
    I64,
    STRING,
    U8,
    U16,
    U32,
    U64,
    Tensor,
    Typed,
    header_bytes,
)
from tests.support.models import require_model

TENSORS = [Tensor("token_embd.weight", (64, 10), "q8_0"), Tensor("blk.0.attn_q.weight", (256, 4), "q4_K")]


@pytest.fixture(scope="module")
def gemma_path() -> Path:
    return require_model("gemma3")


class CountingSource(BytesSource):
    """Remembers every byte range the reader asked for (not counting its hints of what comes next)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[tuple[int, int]] = []

    def read(self, offset: int, size: int, ahead: int = 0) -> bytes:
        self.asked.append((offset, size))
        return super().read(offset, size, ahead)


def test_the_real_test_models_tensor_table_accounts_for_every_byte_of_data(
    smollm2_path: Path, tmp_path: Path
) -> None:
    header = read_local_header(smollm2_path)
    assert header.version == 3 and header.architecture == "llama"
    assert header.arch_value("block_count") == 30 and header.arch_value("attention.head_count_kv") == 3
    assert len(header.tensors) == 272
    assert header.file_size == smollm2_path.stat().st_size
    # The data section holds the tensors and nothing else: their sizes add up to it exactly.
    assert header.tensor_bytes == header.file_size - header.data_offset
    assert header.metadata["tokenizer.ggml.tokens"] == ArrayInfo("string", 49152)
    # Read from a prefix that ends where the data begins: nothing past the header is needed.
    prefix = tmp_path / "prefix.gguf"
    prefix.write_bytes(smollm2_path.read_bytes()[: header.data_offset])
    assert read_header(str(prefix)).tensors == header.tensors
    assert read_header(prefix.as_uri()).metadata == header.metadata


def test_gemma_is_read_too(gemma_path: Path) -> None:
    header = read_header(gemma_path)
    assert header.architecture == "gemma3" and header.arch_value("attention.sliding_window") == 512
    assert header.tensor_bytes == gemma_path.stat().st_size - header.data_offset
    assert {tensor.type.name for tensor in header.tensors} == {"f32", "q5_0", "q4_K", "q8_0", "q6_K"}


def test_every_value_type_is_read_back() -> None:
    metadata = {
        "u8": Typed(U8, 200),
        "i8": Typed(I8, -100),
        "u16": Typed(U16, 60000),
        "i16": Typed(I16, -30000),
        "u32": 4_000_000_000,
        "i32": Typed(5, -2_000_000_000),
        "f32": 0.5,
        "bool": True,
        "string": "naïve",
        "u64": Typed(U64, 2**40),
        "i64": Typed(I64, -(2**40)),
        "f64": Typed(F64, 0.1),
        "array": [1, 2, 3],
        "strings": ["a", "bc"],
        "nested": Typed(ARRAY, [Typed(U32, [1, 2], True), Typed(U32, [3], True)], True),
        "general.alignment": 64,
    }
    header = parse_header(BytesSource(header_bytes(metadata, TENSORS, alignment=64)))
    values = header.metadata
    assert values["u8"] == 200 and values["i8"] == -100 and values["u16"] == 60000 and values["i16"] == -30000
    assert values["u32"] == 4_000_000_000 and values["i32"] == -2_000_000_000 and values["f32"] == 0.5
    assert values["bool"] is True and values["string"] == "naïve"
    assert values["u64"] == 2**40 and values["i64"] == -(2**40) and values["f64"] == 0.1
    assert values["array"] == [1, 2, 3] and values["strings"] == ["a", "bc"]
    assert values["nested"] == [[1, 2], [3]]
    assert header.data_offset % 64 == 0
    q8_0, q4_k = header.tensors
    assert (q8_0.name, q8_0.shape, q8_0.type.name, q8_0.nbytes) == (
        "token_embd.weight",
        (64, 10),
        "q8_0",
        680,
    )
    assert (q4_k.offset, q4_k.nbytes) == (704, 4 * 144)  # after 680 bytes, padded to 64


def test_long_arrays_are_summarised_and_fixed_size_ones_never_read() -> None:
    scores = Typed(6, [0.0] * 100_000, True)  # f32: 400 kB the reader has no use for
    tokens = Typed(STRING, [f"token{i}" for i in range(5000)], True)
    data = header_bytes({"scores": scores, "tokens": tokens, "after": "still read"}, TENSORS)
    source = CountingSource(data)
    header = parse_header(source)
    assert header.metadata["scores"] == ArrayInfo("f32", 100_000)
    assert header.metadata["tokens"] == ArrayInfo("string", 5000)
    assert header.metadata["after"] == "still read" and len(header.tensors) == 2
    start = data.index(b"scores") + len("scores") + 4 + 12  # key, value type, element type and count
    skipped = range(start, start + 400_000)
    assert not any(offset in skipped or offset + size - 1 in skipped for offset, size in source.asked)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GGML" + bytes(20), "not a GGUF file"),
        (b"GGUF" + struct.pack("<I", 3 << 24) + bytes(16), "big-endian"),
        (b"GGUF" + struct.pack("<I", 1) + bytes(16), "GGUF version 1"),
        (header_bytes({"a": "b"}, TENSORS)[:60], "ends at offset"),
        (
            header_bytes({}, [Tensor("odd", (100, 2), "q4_0")]),
            r"odd \(100, 2\): 100 values are not whole q4_0",
        ),
        (
            header_bytes({}, [Tensor("new", (32,), "f32", type_number=99)]),
            "tensor new: unknown ggml tensor type 99",
        ),
        (header_bytes({"general.alignment": 48}, TENSORS), "power of two"),
    ],
)
def test_what_is_not_a_readable_header_is_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(HeaderError, match=message):
        parse_header(BytesSource(data))


def test_a_claims_file_is_read_under_its_mount_and_only_there(smollm2_path: Path) -> None:
    header = read_header(f"pvc://models/{smollm2_path.name}", pvc_mount=smollm2_path.parent)
    assert len(header.tensors) == 272
    with pytest.raises(HeaderError, match="pass pvc_mount"):
        read_header("pvc://models/model.gguf")


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(HeaderError, match="cannot read"):
        read_header(tmp_path / "absent.gguf")


def test_the_type_table_is_ggmls_own() -> None:
    """Block sizes and bytes per block as the ggml library that llama-cpp-python ships reports them."""
    ggml = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    ggml.ggml_type_name.restype, ggml.ggml_type_name.argtypes = ctypes.c_char_p, [ctypes.c_int]
    ggml.ggml_blck_size.restype, ggml.ggml_blck_size.argtypes = ctypes.c_int64, [ctypes.c_int]
    ggml.ggml_type_size.restype, ggml.ggml_type_size.argtypes = ctypes.c_size_t, [ctypes.c_int]
    ggml_type_count = 43  # GGML_TYPE_COUNT in this build; a newer ggml adds types to the table
    live = {
        number: (
            ggml.ggml_type_name(number).decode(),
            ggml.ggml_blck_size(number),
            ggml.ggml_type_size(number),
        )
        for number in range(ggml_type_count)
        if ggml.ggml_blck_size(number) > 0  # removed types report 0
    }
    assert {number: (t.name, t.block_size, t.type_size) for number, t in GGML_TYPES.items()} == live
