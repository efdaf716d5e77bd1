"""ggml's tensor types: how many values a block holds and how many bytes it takes.

The numbers are ggml's `enum ggml_type` (ggml.h), block sizes and bytes `ggml_blck_size` and
`ggml_type_size`; a unit test checks this table against the ggml library llama-cpp-python ships. Both
tensors in a GGUF file and llama.cpp's KV cache cells are stored in these types.
"""

from __future__ import annotations

from dataclasses import dataclass


class GgmlTypeError(ValueError):
    """A type number ggml does not have (or no longer has), or a row of partial blocks."""


@dataclass(frozen=True)
class GgmlType:
    """A ggml tensor type: `block_size` values are stored in `type_size` bytes."""

    name: str
    block_size: int
    type_size: int

    def row_bytes(self, values: int) -> int:
        """Bytes of `values` consecutive values (a row must hold whole blocks)."""
        if values % self.block_size:
            raise GgmlTypeError(f"{values} values are not whole {self.name} blocks of {self.block_size}")
        return values // self.block_size * self.type_size


# Numbers missing here (4, 5, 31-33, 36-38) were removed from ggml; no file uses them.
GGML_TYPES: dict[int, GgmlType] = {
    number: GgmlType(name, block, size)
    for number, (name, block, size) in {
        0: ("f32", 1, 4),
        1: ("f16", 1, 2),
        2: ("q4_0", 32, 18),
        3: ("q4_1", 32, 20),
        6: ("q5_0", 32, 22),
        7: ("q5_1", 32, 24),
        8: ("q8_0", 32, 34),
        9: ("q8_1", 32, 36),
        10: ("q2_K", 256, 84),
        11: ("q3_K", 256, 110),
        12: ("q4_K", 256, 144),
        13: ("q5_K", 256, 176),
        14: ("q6_K", 256, 210),
        15: ("q8_K", 256, 292),
        16: ("iq2_xxs", 256, 66),
        17: ("iq2_xs", 256, 74),
        18: ("iq3_xxs", 256, 98),
        19: ("iq1_s", 256, 50),
        20: ("iq4_nl", 32, 18),
        21: ("iq3_s", 256, 110),
        22: ("iq2_s", 256, 82),
        23: ("iq4_xs", 256, 136),
        24: ("i8", 1, 1),
        25: ("i16", 1, 2),
        26: ("i32", 1, 4),
        27: ("i64", 1, 8),
        28: ("f64", 1, 8),
        29: ("iq1_m", 256, 56),
        30: ("bf16", 1, 2),
        34: ("tq1_0", 256, 54),
        35: ("tq2_0", 256, 66),
        39: ("mxfp4", 32, 17),
        40: ("nvfp4", 64, 36),
        41: ("q1_0", 128, 18),
        42: ("q2_0", 64, 18),
    }.items()
}
GGML_TYPES_BY_NAME = {ggml_type.name.lower(): ggml_type for ggml_type in GGML_TYPES.values()}


def ggml_type(number: int) -> GgmlType:
    """The ggml type with this number; an unknown one is an error that names it."""
    try:
        return GGML_TYPES[number]
    except KeyError:
        raise GgmlTypeError(f"unknown ggml tensor type {number} (newer than this reader?)") from None
