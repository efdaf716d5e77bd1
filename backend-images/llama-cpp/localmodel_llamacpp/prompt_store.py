"""Prompts kept in host memory after their slot is taken by another: llama-server's `--cache-ram`.

With more conversations (or repeated prompts) than slots, a slot's prompt is overwritten by the next
request, and coming back to it meant decoding it again. Before a slot's prompt is overwritten, the
decoder saves that sequence's KV state (`llama_state_seq_get_data`) with the logits after its last
token here; a later request whose prompt starts the same way restores it into a free slot
(`llama_state_seq_set_data`) instead of decoding that start again. The state is the KV the prefill
wrote, bit for bit, so a restored prompt keeps the cache mode's guarantee (`exact`: whole chunks only).

Bookkeeping only, one store for all of a model's lanes (a prompt saved by one lane can be restored by
another): a byte-bounded, least-recently-used map from prompt tokens to what was saved; the decoder
makes the llama.cpp calls.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StoredPrompt:
    tokens: tuple[int, ...]
    state: bytes  # llama_state_seq_get_data of a sequence holding exactly `tokens`
    logits: np.ndarray  # after the last of `tokens`

    @property
    def size(self) -> int:
        return len(self.state) + self.logits.nbytes


class PromptStore:
    """Shared by a model's lanes, each on its own thread: every method takes the store's lock."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._prompts: OrderedDict[tuple[int, ...], StoredPrompt] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._prompts)

    def __contains__(self, tokens: tuple[int, ...]) -> bool:
        with self._lock:
            return tokens in self._prompts

    def put(self, prompt: StoredPrompt) -> None:
        """Keep `prompt`, dropping the least recently used ones while over the bound (one larger than
        the whole bound is not kept)."""
        if prompt.size > self.max_bytes:
            return
        with self._lock:
            self._drop(prompt.tokens)
            self._prompts[prompt.tokens] = prompt
            self.bytes += prompt.size
            while self.bytes > self.max_bytes:
                self._drop(next(iter(self._prompts)))

    def best(
        self, tokens: list[int], reusable: Callable[[Sequence[int], list[int]], int]
    ) -> tuple[StoredPrompt | None, int]:
        """The stored prompt of which `reusable(stored, tokens)` keeps the most tokens, and how many (a
        stored prompt equal to `tokens` keeps all of them: its logits start the answer)."""
        with self._lock:
            whole = self._prompts.get(tuple(tokens))
            prompts = list(self._prompts.values())
        if whole is not None:
            return whole, len(tokens)
        found, most = None, 0
        for prompt in prompts:
            kept = reusable(prompt.tokens, tokens)
            if kept > most:
                found, most = prompt, kept
        return found, most

    def take(self, prompt: StoredPrompt) -> None:
        """Mark `prompt` as just used (it is restored into a slot, and stays stored)."""
        with self._lock:
            if prompt.tokens in self._prompts:  # another lane may have dropped it meanwhile
                self._prompts.move_to_end(prompt.tokens)

    def _drop(self, tokens: tuple[int, ...]) -> None:
        dropped = self._prompts.pop(tokens, None)
        if dropped is not None:
            self.bytes -= dropped.size
