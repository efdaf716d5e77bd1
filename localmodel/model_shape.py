"""What the fit planner needs to know of a model, from its GGUF header, read as llama.cpp reads it.

The keys are llama.cpp's (`{arch}.block_count`, `{arch}.attention.head_count_kv`, ...), with its
defaults: KV heads as many as heads, head size `n_embd / n_head`. Tensors named `blk.N.` are layer N's;
`output`, `output_norm` the output layer's; the rest (the token embedding) the input side's.

Refused rather than guessed: recurrent and hybrid models (their state is not a KV cache) and multi-head
latent attention (DeepSeek's compressed cache).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from localmodel.ggml_types import GgmlType
from localmodel.gguf_header import ArrayInfo, GGUFHeader

# Layers whose K and V llama.cpp keeps for a sliding window only, per architecture: every `n`th layer
# attends to the whole context, the others to the window (llama_hparams::set_swa_pattern). Architectures
# not listed that name a window are counted as attending to the whole context (an over-estimate).
SWA_PATTERNS = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2}
# The output layer's tensors (with the repeating blocks in "blk.N."; the rest is the input side).
_OUTPUT_TENSORS = frozenset({"output.weight", "output.bias", "output_norm.weight", "output_norm.bias"})
_BLOCK = re.compile(r"blk\.(\d+)\.")


class ModelShapeError(ValueError):
    """A header that lacks what the planner needs, or a model whose cache it does not count."""


@dataclass(frozen=True)
class ModelShape:
    """What the planner needs of a model, read from its header."""

    architecture: str
    n_layer: int
    n_embd: int
    n_vocab: int
    n_ff: int  # the widest feed-forward activation of a layer
    n_head: tuple[int, ...]  # per layer
    n_head_kv: tuple[int, ...]  # per layer; 0: a layer without attention
    head_dim_k: int
    head_dim_v: int
    n_swa: int  # the sliding window in tokens; 0: none
    swa_layers: tuple[bool, ...]
    context_length: int  # trained
    layer_weights: tuple[int, ...]  # bytes per repeating layer
    input_weights: int  # bytes: the token embedding and whatever else precedes the blocks
    output_weights: int  # bytes: the output layer's own tensors
    tied_output: int  # bytes of the embedding, used again as output when there is no output.weight
    largest_tensor: int  # bytes of the largest matrix in the blocks or the output layer

    @classmethod
    def from_header(cls, header: GGUFHeader) -> ModelShape:
        arch = header.architecture
        if not arch:
            raise ModelShapeError("the header names no general.architecture")
        _refuse_unplanned(header)
        n_layer = _required_int(header, "block_count")
        n_embd = _required_int(header, "embedding_length")
        n_head = _per_layer(header, "attention.head_count", n_layer, None)
        n_head_kv = _per_layer(header, "attention.head_count_kv", n_layer, n_head)
        head_dim = n_embd // max(n_head) if max(n_head) else 0
        head_dim_k = int(header.arch_value("attention.key_length", head_dim))
        head_dim_v = int(header.arch_value("attention.value_length", head_dim))
        n_swa = int(header.arch_value("attention.sliding_window", 0) or 0)

        layers = [0] * n_layer
        input_weights = output_weights = largest = 0
        names = {tensor.name for tensor in header.tensors}
        for tensor in header.tensors:
            block = _BLOCK.match(tensor.name)
            if block and int(block.group(1)) < n_layer:
                layers[int(block.group(1))] += tensor.nbytes
            elif tensor.name in _OUTPUT_TENSORS:
                output_weights += tensor.nbytes
            else:
                input_weights += tensor.nbytes
            if len(tensor.shape) > 1 and (block or tensor.name in _OUTPUT_TENSORS):
                largest = max(largest, tensor.nbytes)
        embedding = next((t for t in header.tensors if t.name == "token_embd.weight"), None)
        tied = embedding.nbytes if embedding is not None and "output.weight" not in names else 0
        return cls(
            architecture=arch,
            n_layer=n_layer,
            n_embd=n_embd,
            n_vocab=_vocabulary(header, embedding.shape if embedding else None),
            n_ff=_feed_forward(header, n_layer),
            n_head=n_head,
            n_head_kv=n_head_kv,
            head_dim_k=head_dim_k,
            head_dim_v=head_dim_v,
            n_swa=n_swa,
            swa_layers=_swa_layers(header, n_layer, n_swa),
            context_length=int(header.arch_value("context_length", 0) or 0),
            layer_weights=tuple(layers),
            input_weights=input_weights,
            output_weights=output_weights,
            tied_output=tied,
            largest_tensor=max(largest, tied),
        )

    def kv_bytes_per_cell(self, layer: int, cache: GgmlType) -> int:
        """Bytes of K and V for one cell of one layer."""
        heads = self.n_head_kv[layer]
        return cache.row_bytes(self.head_dim_k * heads) + cache.row_bytes(self.head_dim_v * heads)


def _refuse_unplanned(header: GGUFHeader) -> None:
    arch = header.architecture
    if header.arch_value("attention.kv_lora_rank") is not None:
        raise ModelShapeError(f"{arch}: multi-head latent attention (a compressed KV cache) is not planned")
    recurrent = any(
        key.startswith((f"{arch}.ssm.", f"{arch}.wkv.", f"{arch}.rwkv.")) for key in header.metadata
    )
    if recurrent or arch.startswith(("mamba", "rwkv")):
        raise ModelShapeError(
            f"{arch}: recurrent and hybrid models (their state is not a KV cache) are not planned"
        )


def _required_int(header: GGUFHeader, suffix: str) -> int:
    value = header.arch_value(suffix)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ModelShapeError(f"the header has no usable {header.architecture}.{suffix} (got {value!r})")
    return value


def _per_layer(
    header: GGUFHeader, suffix: str, n_layer: int, default: tuple[int, ...] | None
) -> tuple[int, ...]:
    value = header.arch_value(suffix)
    if value is None and default is not None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * n_layer
    if isinstance(value, list) and len(value) == n_layer and all(isinstance(v, int) for v in value):
        return tuple(value)
    raise ModelShapeError(
        f"{header.architecture}.{suffix}: expected a number or one per layer, got {value!r}"
    )


def _feed_forward(header: GGUFHeader, n_layer: int) -> int:
    widths = _per_layer(header, "feed_forward_length", n_layer, (0,) * n_layer)
    # A mixture of experts multiplies each used expert's width.
    experts = int(header.arch_value("expert_used_count", 0) or 0)
    expert_width = int(header.arch_value("expert_feed_forward_length", 0) or 0)
    return max(max(widths), experts * expert_width)


def _vocabulary(header: GGUFHeader, embedding_shape: tuple[int, ...] | None) -> int:
    size = header.arch_value("vocab_size")
    if isinstance(size, int) and size > 0:
        return size
    tokens = header.metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, ArrayInfo):
        return tokens.count
    if isinstance(tokens, list) and tokens:
        return len(tokens)
    if embedding_shape is not None and len(embedding_shape) == 2:
        return embedding_shape[1]
    raise ModelShapeError("the header says nothing of the vocabulary's size")


def _swa_layers(header: GGUFHeader, n_layer: int, n_swa: int) -> tuple[bool, ...]:
    if n_swa <= 0:
        return (False,) * n_layer
    pattern = header.arch_value("attention.sliding_window_pattern")
    if isinstance(pattern, list) and len(pattern) == n_layer:
        return tuple(bool(flag) for flag in pattern)
    period = pattern if isinstance(pattern, int) and not isinstance(pattern, bool) else None
    period = period or SWA_PATTERNS.get(header.architecture)
    if not period:
        return (False,) * n_layer
    return tuple(layer % period < period - 1 for layer in range(n_layer))
