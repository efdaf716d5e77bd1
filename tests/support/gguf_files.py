"""GGUF headers built in tests: any metadata and tensor table, and Llama-3.1-shaped models (8B, 70B).

A header is written as GGUF v3 lays it out (magic, version, counts, key/value pairs, tensor infos, padding
to the alignment); the tensor data is not written — the planner needs only the header. `Typed` pins a
value's GGUF type where the Python type does not say it (an int is written as u32, or i64 when it does
not fit; a float as f32).

The Llama shapes follow Meta's configurations and llama.cpp's Q4_K_M recipe (llama_tensor_get_type):
the embedding Q4_K, the output Q6_K, attn_v and ffn_down Q6_K in the layers `use_more_bits` picks and
Q4_K elsewhere, the other matrices Q4_K, norms F32.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from localmodel.ggml_types import GGML_TYPES_BY_NAME

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_FORMATS = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?"}
_FORMATS |= {U64: "<Q", I64: "<q", F64: "<d"}
_TYPE_NUMBERS = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 8, "q4_K": 12, "q6_K": 14, "bf16": 30}


@dataclass(frozen=True)
class Typed:
    """A metadata value with its GGUF value type; for an array, `type` is the element type."""

    type: int
    value: Any
    array: bool = False


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]  # ggml order: shape[0] is the row length
    type: str  # ggml type name, e.g. "q4_K"
    type_number: int | None = None  # to write a type this module has no number for

    @property
    def nbytes(self) -> int:
        """Its bytes (a row of partial blocks, which a reader must refuse, rounded up to whole ones)."""
        ggml = GGML_TYPES_BY_NAME[self.type.lower()]
        rows = 1
        for size in self.shape[1:]:
            rows *= size
        return -(-self.shape[0] // ggml.block_size) * ggml.type_size * rows


def header_bytes(
    metadata: dict[str, Any], tensors: list[Tensor], alignment: int = 32, version: int = 3
) -> bytes:
    """A GGUF header: what precedes the tensor data, padded to `alignment`."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata)))
    for key, value in metadata.items():
        out += _string(key)
        out += _value(value, with_type=True)
    offset = 0
    for tensor in tensors:
        number = tensor.type_number if tensor.type_number is not None else _TYPE_NUMBERS[tensor.type]
        out += _string(tensor.name) + struct.pack("<I", len(tensor.shape))
        out += b"".join(struct.pack("<Q", size) for size in tensor.shape)
        out += struct.pack("<IQ", number, offset)
        offset += -(-tensor.nbytes // alignment) * alignment
    out += bytes(-len(out) % alignment)
    return bytes(out)


def data_bytes(tensors: list[Tensor], alignment: int = 32) -> int:
    """The length of the data section that would follow the header."""
    return sum(-(-tensor.nbytes // alignment) * alignment for tensor in tensors)


def _string(text: str) -> bytes:
    encoded = text.encode()
    return struct.pack("<Q", len(encoded)) + encoded


def _typed(value: Any) -> Typed:
    if isinstance(value, Typed):
        return value
    if isinstance(value, bool):
        return Typed(BOOL, value)
    if isinstance(value, int):
        return Typed(U32 if 0 <= value < 2**32 else I64, value)
    if isinstance(value, float):
        return Typed(F32, value)
    if isinstance(value, str):
        return Typed(STRING, value)
    if isinstance(value, list):
        element = _typed(value[0]).type if value else U32
        return Typed(element, value, array=True)
    raise TypeError(f"no GGUF type for {value!r}")


def _value(value: Any, with_type: bool) -> bytes:
    typed = _typed(value)
    if typed.array:
        head = struct.pack("<I", ARRAY) if with_type else b""
        # Items of an array of arrays are Typed arrays themselves; other items are plain values.
        items = (item if isinstance(item, Typed) else Typed(typed.type, item) for item in typed.value)
        body = b"".join(_value(item, with_type=False) for item in items)
        return head + struct.pack("<IQ", typed.type, len(typed.value)) + body
    head = struct.pack("<I", typed.type) if with_type else b""
    if typed.type == STRING:
        return head + _string(typed.value)
    return head + struct.pack(_FORMATS[typed.type], typed.value)


# --- Llama 3.1 shapes ---


@dataclass(frozen=True)
class LlamaShape:
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_vocab: int = 128256
    context_length: int = 131072


LLAMA_31_8B = LlamaShape(n_layer=32, n_embd=4096, n_head=32, n_head_kv=8, n_ff=14336)
LLAMA_31_70B = LlamaShape(n_layer=80, n_embd=8192, n_head=64, n_head_kv=8, n_ff=28672)


def use_more_bits(layer: int, n_layer: int) -> bool:
    """llama.cpp's choice of the layers whose attn_v and ffn_down get more bits (llama-quant.cpp)."""
    return layer < n_layer // 8 or layer >= 7 * n_layer // 8 or (layer - n_layer // 8) % 3 == 2


def llama_tensors(shape: LlamaShape) -> list[Tensor]:
    """The tensor table of a Llama 3.1 GGUF at Q4_K_M."""
    e, kv = shape.n_embd, shape.n_embd // shape.n_head * shape.n_head_kv
    tensors = [
        Tensor("token_embd.weight", (e, shape.n_vocab), "q4_K"),
        Tensor("rope_freqs.weight", (64,), "f32"),
    ]
    for i in range(shape.n_layer):
        more = "q6_K" if use_more_bits(i, shape.n_layer) else "q4_K"
        tensors += [
            Tensor(f"blk.{i}.attn_norm.weight", (e,), "f32"),
            Tensor(f"blk.{i}.attn_q.weight", (e, e), "q4_K"),
            Tensor(f"blk.{i}.attn_k.weight", (e, kv), "q4_K"),
            Tensor(f"blk.{i}.attn_v.weight", (e, kv), more),
            Tensor(f"blk.{i}.attn_output.weight", (e, e), "q4_K"),
            Tensor(f"blk.{i}.ffn_norm.weight", (e,), "f32"),
            Tensor(f"blk.{i}.ffn_gate.weight", (e, shape.n_ff), "q4_K"),
            Tensor(f"blk.{i}.ffn_up.weight", (e, shape.n_ff), "q4_K"),
            Tensor(f"blk.{i}.ffn_down.weight", (shape.n_ff, e), more),
        ]
    return tensors + [
        Tensor("output_norm.weight", (e,), "f32"),
        Tensor("output.weight", (e, shape.n_vocab), "q6_K"),
    ]


def llama_metadata(shape: LlamaShape, vocabulary: bool = False) -> dict[str, Any]:
    """Llama 3.1's metadata; with `vocabulary`, a tokenizer of its size (128,256 tokens, 280,147 merges)
    whose entries are as long as the real ones on average, so that the header is as long as a real one."""
    metadata: dict[str, Any] = {
        "general.architecture": "llama",
        "general.name": f"Llama 3.1 shape, {shape.n_layer} layers",
        "general.file_type": Typed(U32, 15),  # Q4_K_M
        "llama.block_count": shape.n_layer,
        "llama.context_length": shape.context_length,
        "llama.embedding_length": shape.n_embd,
        "llama.feed_forward_length": shape.n_ff,
        "llama.attention.head_count": shape.n_head,
        "llama.attention.head_count_kv": shape.n_head_kv,
        "llama.rope.freq_base": 500000.0,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "llama.rope.dimension_count": shape.n_embd // shape.n_head,
        "llama.vocab_size": shape.n_vocab,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "llama-bpe",
    }
    if vocabulary:
        metadata["tokenizer.ggml.tokens"] = Typed(
            STRING, [f"t{i % 7919:x}{'x' * (i % 5)}" for i in range(shape.n_vocab)], True
        )
        metadata["tokenizer.ggml.token_type"] = Typed(I32, [1] * shape.n_vocab, True)
        metadata["tokenizer.ggml.merges"] = Typed(
            STRING, [f"m{i % 977} n{i % 331}" for i in range(280147)], True
        )
    metadata["tokenizer.ggml.bos_token_id"] = 128000
    metadata["tokenizer.ggml.eos_token_id"] = 128009
    return metadata
