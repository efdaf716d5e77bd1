"""The host store of prompts: bounded in bytes, least recently used dropped first, best match found."""

from __future__ import annotations

import numpy as np

from localmodel_llamacpp.decoder import reusable_prefix
from localmodel_llamacpp.prompt_store import PromptStore, StoredPrompt

LOGITS = np.zeros(4, dtype=np.float32)  # 16 bytes


def prompt(tokens: range, state_bytes: int = 84) -> StoredPrompt:
    return StoredPrompt(tuple(tokens), b"s" * state_bytes, LOGITS)  # 100 bytes with the logits


def whole_chunks(stored, tokens: list[int]) -> int:
    return reusable_prefix(stored, tokens, 4)


def test_the_least_recently_used_go_first_when_over_the_bound() -> None:
    store = PromptStore(max_bytes=250)
    a, b, c = prompt(range(0, 8)), prompt(range(10, 18)), prompt(range(20, 28))
    store.put(a)
    store.put(b)
    store.take(a)  # used: b is now the oldest
    store.put(c)
    assert a.tokens in store and c.tokens in store and b.tokens not in store
    assert (len(store), store.bytes) == (2, 200)
    store.put(prompt(range(30, 38), state_bytes=1000))  # larger than the whole bound: not kept
    assert (len(store), store.bytes) == (2, 200)


def test_the_best_match_is_the_whole_prompt_else_the_most_kept() -> None:
    store = PromptStore(max_bytes=10_000)
    short, long = prompt(range(0, 6)), prompt(range(0, 12))
    store.put(short)
    store.put(long)
    assert store.best(list(range(0, 6)), whole_chunks) == (short, 6)  # its logits start the answer
    assert store.best([*range(0, 10), 99], whole_chunks) == (long, 8)  # two whole chunks of 4
    assert store.best([99, 1, 2], whole_chunks) == (None, 0)
