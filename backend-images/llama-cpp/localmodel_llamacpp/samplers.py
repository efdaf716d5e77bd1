"""One request's sampling parameters as a native llama.cpp sampler chain (the batching path).

Each sequence in a batch owns its chain, so requests with different temperatures, penalties, seeds and
grammars share a decode step. The order is llama.cpp's own (common/sampling): penalties, grammar, then
the truncations, temperature and the final pick. Temperature 0 picks greedily (deterministic).
"""

from __future__ import annotations

import ctypes
import random
from typing import Any

import llama_cpp
import numpy as np

from localmodel_llamacpp.options import SamplingConfig

PENALTY_LAST_N = 64  # tokens the repetition penalties look back over (llama.cpp's default)
# llama.cpp's llama_token_data, as a numpy record: the candidates `sample_logits` hands the chain.
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class SamplerChain:
    """A sampler chain for one sequence; `close()` frees it (and every sampler added to it)."""

    def __init__(self, vocab: Any, n_vocab: int, sampling: SamplingConfig) -> None:
        check_biases(sampling, n_vocab)
        self.pointer = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        for sampler in _samplers(vocab, n_vocab, sampling):
            if not sampler:
                self.close()
                raise ValueError("llama.cpp refused a sampler (a grammar it cannot parse?)")
            llama_cpp.llama_sampler_chain_add(self.pointer, sampler)

    def sample(self, ctx: Any, index: int) -> int:
        """Pick the next token from the logits of batch position `index` (and accept it into the chain:
        grammar state and penalty history move on)."""
        return int(llama_cpp.llama_sampler_sample(self.pointer, ctx, index))

    def sample_logits(self, logits: np.ndarray) -> int:
        """Pick the next token from logits kept from an earlier decode, as `sample` picks from a batch
        row's: the same candidates (every token, in id order), the same chain, the token accepted."""
        candidates = np.zeros(len(logits), dtype=_TOKEN_DATA)
        candidates["id"] = np.arange(len(logits), dtype=np.int32)
        candidates["logit"] = logits
        array = llama_cpp.llama_token_data_array(
            data=candidates.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=len(candidates),
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(self.pointer, ctypes.byref(array))
        if not 0 <= array.selected < array.size:
            raise RuntimeError(f"the sampler chain selected no token ({array.selected})")
        token = int(array.data[array.selected].id)  # samplers may sort and shrink the array in place
        llama_cpp.llama_sampler_accept(self.pointer, token)
        return token

    def close(self) -> None:
        if self.pointer:
            llama_cpp.llama_sampler_free(self.pointer)
            self.pointer = None


def check_biases(sampling: SamplingConfig, n_vocab: int) -> None:
    """ValueError for a biased token id the vocabulary does not have (llama.cpp would write past the
    logits)."""
    for token, _ in sampling.logit_bias:
        if token >= n_vocab:
            raise ValueError(f"logit_bias: token {token} is not in the vocabulary (0 to {n_vocab - 1})")


def _samplers(vocab: Any, n_vocab: int, sampling: SamplingConfig) -> list[Any]:
    chain = []
    if sampling.logit_bias:  # first, as llama.cpp's common sampling puts it: every later step sees it
        biases = (llama_cpp.llama_logit_bias * len(sampling.logit_bias))(
            *(llama_cpp.llama_logit_bias(token, bias) for token, bias in sampling.logit_bias)
        )
        chain.append(llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(sampling.logit_bias), biases))
    if sampling.repeat_penalty != 1.0 or sampling.frequency_penalty or sampling.presence_penalty:
        # The binding declares an extra leading int (n_vocab, gone from the C function); passing the
        # look-back twice puts it where the C function reads it whichever signature is right.
        chain.append(
            llama_cpp.llama_sampler_init_penalties(
                PENALTY_LAST_N,
                PENALTY_LAST_N,
                sampling.repeat_penalty,
                sampling.frequency_penalty,
                sampling.presence_penalty,
            )
        )
    if sampling.grammar is not None:
        chain.append(llama_cpp.llama_sampler_init_grammar(vocab, sampling.grammar.encode("utf-8"), b"root"))
    seed = sampling.seed if sampling.seed is not None else random.getrandbits(31)
    if sampling.temperature <= 0:
        chain.append(llama_cpp.llama_sampler_init_greedy())
        return chain
    if sampling.mirostat == 1:
        return [
            *chain,
            llama_cpp.llama_sampler_init_temp(sampling.temperature),
            llama_cpp.llama_sampler_init_mirostat(
                n_vocab, seed, sampling.mirostat_tau, sampling.mirostat_eta, 100
            ),
        ]
    if sampling.mirostat == 2:
        return [
            *chain,
            llama_cpp.llama_sampler_init_temp(sampling.temperature),
            llama_cpp.llama_sampler_init_mirostat_v2(seed, sampling.mirostat_tau, sampling.mirostat_eta),
        ]
    if sampling.top_k > 0:
        chain.append(llama_cpp.llama_sampler_init_top_k(sampling.top_k))
    if sampling.typical_p < 1.0:
        chain.append(llama_cpp.llama_sampler_init_typical(sampling.typical_p, 1))
    if sampling.top_p < 1.0:
        chain.append(llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
    if sampling.min_p > 0:
        chain.append(llama_cpp.llama_sampler_init_min_p(sampling.min_p, 1))
    chain.append(llama_cpp.llama_sampler_init_temp(sampling.temperature))
    chain.append(llama_cpp.llama_sampler_init_dist(seed))
    return chain
