"""Continuous batching over llama.cpp's batch API: N slots, one decode loop, each sequence on its own.

Every step (`BatchDecoder.step`) does two decodes: one chunk of one waiting prompt (prefill), then one
token of every generating sequence, in a single batch with each sequence's own id and positions. So a
long prompt is taken in chunks between the others' tokens instead of freezing them. Where a step is
bound by reading the weights (bigger models, GPUs) another sequence in it costs little; where it is bound
by arithmetic (small models on a few CPU cores) it costs nearly a step of its own, and lanes (lane.py)
are what gains there.

Sequences do not share KV memory (`kv_unified` off: one KV stream per slot), and prompts are always
prefilled in chunks aligned to multiples of `PREFILL_CHUNK` from position 0. With both, a sequence's
numbers depend on what runs beside it only through how many rows a step has, and where llama.cpp's
kernels give a row the same result at any row count, at temperature 0 each request gets the answer it
would get alone (a test holds this for SmolLM2 on CPU; kernels that switch with the row count, such as
K-quant tiles from 8 rows, may change a near-tie). A new request takes the free slot whose cached tokens
share the longest prefix with its prompt, and keeps that prefix's KV (`prompt_cache`): only whole chunks of
it by default (`exact`), so that the kept KV is bit for bit what a fresh slot would compute and each
answer stays the one the request gets alone; or all of it (`prefix`, as llama-server's cache_prompt), so
a shared start shorter than a chunk is not decoded again either. With `prefix` the rest of the prompt
is decoded from a position off the chunk grid, in batches of other sizes than a fresh slot's, which
changes the last bits of its numbers: a near-tie at temperature 0 may then go the other way, depending on
what the slot ran before (SmolLM2 answered "Name three colours." differently when asked twice).
In both modes a slot keeps the logits after the prompt it prefilled (`_Slot.held`): a request with that
very prompt decodes nothing and samples its first token from them, which are what decoding gave.

A request for several answers to one prompt (`n`) takes as many slots: its prompt is prefilled in one of
them and, once its last chunk is decoded, the KV cells are copied to the others (`llama_memory_seq_cp`;
between KV streams that copies the stream's buffer, bit for bit) and every answer samples its first
token from the same logits with its own sampler chain (seed + i). From there the answers are sequences
like any other, so answer i is the one a request of its own with seed + i gets. Answers that find no
free slot here are placed by the scheduler elsewhere or later (batching.py).

A decoder owns one llama.cpp context and is stepped by one thread (its lane, lane.py); only `prepare`
and `best_reuse`, which do not touch the context, are called from the scheduler's thread.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from threading import Event
from typing import Any

import llama_cpp
import numpy as np

from localmodel_llamacpp.engine import (
    Chunk,
    GenerationStats,
    InvalidRequestError,
    LlamaEngine,
    Prompt,
    TokenLogprob,
)
from localmodel_llamacpp.logprobs import token_logprobs
from localmodel_llamacpp.options import LoadConfig, SamplingConfig
from localmodel_llamacpp.prompt_store import PromptStore, StoredPrompt
from localmodel_llamacpp.samplers import SamplerChain
from localmodel_llamacpp.step_size import StepSizer
from localmodel_llamacpp.stopping import StopMatcher

log = logging.getLogger(__name__)

PREFILL_CHUNK = 64  # prompt tokens per prefill decode; also the granularity of prefix reuse
MAX_KV_TOKENS = 16384  # slots x context size the default slot count stays within


def default_slots(context_size: int) -> int:
    """Slots when the load asks for none: up to 4, each with the full context, within MAX_KV_TOKENS."""
    return max(1, min(4, MAX_KV_TOKENS // max(1, context_size)))


def reusable_prefix(cached: Sequence[int], prompt: list[int], chunk: int = PREFILL_CHUNK) -> int:
    """Tokens of `prompt` whose KV a slot holding `cached` can keep: the common prefix, in whole chunks of
    `chunk` tokens (1: all of it), and never the whole prompt (its last token must be decoded again to
    get logits)."""
    common = 0
    for cached_token, token in zip(cached, prompt, strict=False):
        if cached_token != token:
            break
        common += 1
    return (min(common, len(prompt) - 1) // chunk) * chunk


@dataclass
class Request:
    """One generation, as the scheduler hands it in; `send` delivers Chunks (or an exception)."""

    prompt: Prompt
    sampling: SamplingConfig
    send: Callable[[object], None]
    cancelled: Event
    arrived: float = field(default_factory=time.perf_counter)
    answers: range = range(1)  # which of the prompt's answers (`sampling.n`) this request still asks for


@dataclass
class Admission:
    """A request checked and tokenized, with a sampler per answer, ready to take a slot per answer."""

    request: Request
    tokens: list[int]
    samplers: list[SamplerChain]  # answer request.answers[i]'s
    max_new: int

    def close(self) -> None:
        for sampler in self.samplers:
            sampler.close()

    def split(self, count: int) -> Request:
        """Keep the first `count` answers; the rest as a request of its own, to be placed again."""
        rest = self.request.answers[count:]
        for sampler in self.samplers[count:]:
            sampler.close()
        self.samplers = self.samplers[:count]
        self.request = replace(self.request, answers=self.request.answers[:count])
        return replace(self.request, answers=rest)


@dataclass
class _Sequence:
    request: Request
    tokens: list[int]  # the prompt
    max_new: int
    sampler: SamplerChain
    pending: list[int]  # prompt tokens still to prefill, then the last sampled token
    pos: int  # position of pending[0]
    stops: StopMatcher
    stats: GenerationStats
    utf8: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))
    generated: int = 0
    first_token_at: float | None = None
    prefilling: bool = True
    last_step: int = 0  # the number of the generation step in which this sequence last got a token
    logprobs: list[TokenLogprob] = field(default_factory=list)  # of tokens not sent in a Chunk yet
    prompt_logprobs: list[TokenLogprob] = field(default_factory=list)  # sent in the first Chunk
    index: int = 0  # which of the request's answers
    follows: int | None = None  # the slot whose prompt this answer waits to copy (another answer's)

    def chunk(self, text: str, finish_reason: str | None = None) -> Chunk:
        now = time.perf_counter()
        first = self.first_token_at or now
        logprobs, self.logprobs = tuple(self.logprobs), []
        prompt, self.prompt_logprobs = tuple(self.prompt_logprobs), []
        return Chunk(
            text=text,
            prompt_tokens=len(self.tokens),
            completion_tokens=self.generated,
            prompt_ms=(first - self.request.arrived) * 1000,
            generation_ms=(now - first) * 1000,
            finish_reason=finish_reason,
            stop_sequence=self.stops.matched if finish_reason else "",
            logprobs=logprobs,
            prompt_logprobs=prompt,
            index=self.index,
        )


@dataclass
class _Slot:
    index: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV this slot's sequence holds
    # The logits after the prompt `cached` starts with (its length, and the prefill's last row): a
    # request with that very prompt samples its first token from them without decoding anything.
    held: tuple[int, np.ndarray] | None = None
    sequence: _Sequence | None = None
    last_used: float = 0.0
    tokens_per_second: float = 0.0


class BatchDecoder:
    def __init__(self, engine: LlamaEngine, config: LoadConfig, slots: int, store: PromptStore) -> None:
        """`store`: the host memory for prompts, shared by the model's decoders (a prompt saved by one
        lane is restored by another: the model and the KV layout are the same)."""
        llama = engine.llama
        self._engine = engine
        self.context_size = config.context_size
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = config.context_size * slots  # each slot's stream gets the full context size
        # A step decodes one prefill chunk or one token per slot, never more: a bigger batch would only
        # enlarge the compute and logits buffers (512 rows of a 262k vocabulary are 512 MiB).
        params.n_batch = params.n_ubatch = max(slots, PREFILL_CHUNK)
        params.n_seq_max = slots
        params.n_threads = params.n_threads_batch = config.threads
        params.kv_unified = False  # a KV stream per slot: sequences never see each other's cells
        params.offload_kqv = config.kv_offload
        params.flash_attn_type = 1 if config.flash_attention else 0
        params.no_perf = True
        self._ctx = llama_cpp.llama_init_from_model(llama.model, params)
        if not self._ctx:
            raise RuntimeError(f"llama.cpp could not make a context with {slots} sequences")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._batch = llama_cpp.llama_batch_init(params.n_batch, 0, 1)
        self._threads = config.threads
        self._reuse_chunk = PREFILL_CHUNK if config.prompt_cache == "exact" else 1
        self._sizer = StepSizer()  # also counts the generation steps
        self.slots = [_Slot(i) for i in range(slots)]
        self.prompt_tokens_decoded = 0  # prefilled, all time: a reused prefix and copied prompts not
        self._store = store
        self.prompts_restored = 0  # from the host store, all time

    # --- what the scheduler asks ---

    @property
    def active(self) -> int:
        return sum(slot.sequence is not None for slot in self.slots)

    @property
    def free_slots(self) -> int:
        return len(self.slots) - self.active

    def kv_cells(self) -> tuple[int, int]:
        """KV cells held by running sequences (cached prefixes of idle slots not counted), and all cells."""
        used = sum(
            slot.sequence.pos + len(slot.sequence.pending) for slot in self.slots if slot.sequence is not None
        )
        return used, self.context_size * len(self.slots)

    def prepare(self, request: Request) -> Admission | None:
        """Tokenize and check a request and build a sampler per answer; None (the error sent) if it
        cannot run.

        This touches the model and its vocabulary but not this decoder's context, so the scheduler calls
        it on its own thread while the lanes decode.
        """
        samplers: list[SamplerChain] = []  # closed again if a later answer's cannot be built
        try:
            tokens = self._engine.prompt_tokens(request.prompt)
            room = self.context_size - len(tokens)
            if room <= 0:
                raise InvalidRequestError(
                    f"the prompt has {len(tokens)} tokens; the context holds {self.context_size}"
                )
            self._engine.check_grammar(request.sampling.grammar)
            for index in request.answers:
                samplers.append(SamplerChain(self._vocab, self._n_vocab, request.sampling.answer(index)))
        except (InvalidRequestError, ValueError) as error:
            for sampler in samplers:
                sampler.close()
            request.send(error if isinstance(error, InvalidRequestError) else InvalidRequestError(str(error)))
            return None
        return Admission(request, tokens, samplers, min(request.sampling.max_tokens or room, room))

    def best_reuse(self, admission: Admission) -> int:
        """The most prompt tokens a free slot here could keep (what placing a request across lanes asks)."""
        request, tokens = admission.request, admission.tokens
        return max((self._reusable(s, request, tokens) for s in self.slots if s.sequence is None), default=0)

    def start(self, admission: Admission) -> None:
        """Run a prepared request in the free slot that can reuse most of its prompt; its further answers
        in the least recently used other free slots, waiting there for the prompt's KV."""
        request, tokens = admission.request, admission.tokens
        if request.cancelled.is_set():
            admission.close()
            return
        free = [slot for slot in self.slots if slot.sequence is None]
        reusable = {s.index: self._reusable(s, request, tokens) for s in free}
        slot = max(free, key=lambda s: (reusable[s.index], -s.last_used))
        keep = reusable[slot.index]
        stored, stored_keep = None, 0
        if keep < len(tokens) and not request.sampling.prompt_logprobs:
            stored, stored_keep = self._store.best(tokens, self._reusable_prefix)
        if stored is not None and stored_keep > keep:
            slot = min(free, key=lambda s: s.last_used)  # its own prompt goes to the store first
            self._save(slot)
            if self._restore(slot, stored):
                keep = stored_keep
            else:
                keep = 0
        elif slot.held is not None and keep < slot.held[0]:
            self._save(slot)  # the prompt it holds is about to be overwritten
        llama_cpp.llama_memory_seq_rm(self._memory, slot.index, keep, -1)
        slot.cached = tokens[:keep]
        whole = keep == len(tokens)  # the slot holds this prompt and the logits after it
        if not whole:
            slot.held = None  # its cells from `keep` on are rewritten by this prompt
        # GetMetrics reports the latest generation's figures, as on the sequential path; the prompt
        # tokens it counts are the ones decoded (a reused prefix is not, nor the copies of a prompt).
        stats = self._engine.last = GenerationStats(prompt_tokens=len(tokens) - keep)
        first, *more = zip(request.answers, admission.samplers, strict=True)
        slot.sequence = self._sequence(admission, first, tokens[keep:], keep, stats)
        others = sorted((s for s in free if s is not slot), key=lambda s: s.last_used)
        assert len(others) >= len(more), "the scheduler placed more answers than there are free slots"
        for follower, answer in zip(others, more, strict=False):
            self._save(follower)
            follower.cached, follower.held = [], None  # its cells are replaced by the copy
            follower.sequence = self._sequence(admission, answer, [], 0, GenerationStats())
            follower.sequence.follows = slot.index
        if whole:
            slot.sequence.prefilling = False
            self._answer_prompt(slot)

    def _reusable(self, slot: _Slot, request: Request, tokens: list[int]) -> int:
        """Tokens of the prompt whose KV `slot` can keep: all of them where it holds the logits after
        this very prompt (nothing to decode: they are what decoding it gave), else its cache mode's
        share of the common prefix."""
        if request.sampling.prompt_logprobs:  # every prompt position's logits are needed: decode it all
            return 0
        held = slot.held
        if held is not None and held[0] == len(tokens) and slot.cached[: len(tokens)] == tokens:
            return len(tokens)
        return self._reusable_prefix(slot.cached, tokens)

    def _reusable_prefix(self, cached: Sequence[int], tokens: list[int]) -> int:
        return reusable_prefix(cached, tokens, self._reuse_chunk)

    def _save(self, slot: _Slot) -> None:
        """Put the prompt `slot` holds (with the logits after it) into the host store before its cells
        are overwritten; what the slot generated after it is dropped first."""
        held = slot.held
        if held is None or not self._store.max_bytes:
            return
        length, logits = held
        prompt = tuple(slot.cached[:length])
        if prompt in self._store:
            return
        llama_cpp.llama_memory_seq_rm(self._memory, slot.index, length, -1)
        slot.cached = list(prompt)
        size = llama_cpp.llama_state_seq_get_size(self._ctx, slot.index)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self._ctx, buffer, size, slot.index)
        if written:
            self._store.put(StoredPrompt(prompt, ctypes.string_at(buffer, written), logits))

    def _restore(self, slot: _Slot, stored: StoredPrompt) -> bool:
        """Load a stored prompt's KV into `slot` (its cells replaced): False if llama.cpp refused it."""
        llama_cpp.llama_memory_seq_rm(self._memory, slot.index, -1, -1)
        state = (ctypes.c_uint8 * len(stored.state)).from_buffer_copy(stored.state)
        if not llama_cpp.llama_state_seq_set_data(self._ctx, state, len(stored.state), slot.index):
            log.warning("a stored prompt could not be restored", extra={"tokens": len(stored.tokens)})
            slot.cached, slot.held = [], None
            return False
        self._store.take(stored)
        self.prompts_restored += 1
        slot.cached, slot.held = list(stored.tokens), (len(stored.tokens), stored.logits)
        return True

    @staticmethod
    def _sequence(
        admission: Admission,
        answer: tuple[int, SamplerChain],
        pending: list[int],
        pos: int,
        stats: GenerationStats,
    ) -> _Sequence:
        index, sampler = answer
        request = admission.request
        sequence = _Sequence(
            request,
            admission.tokens,
            admission.max_new,
            sampler,
            pending,
            pos,
            StopMatcher(request.sampling.stop),
            stats,
        )
        sequence.index = index
        return sequence

    def set_threads(self, threads: int) -> None:
        """Threads for the next decodes; the scheduler shares the cores among the lanes that are busy."""
        if threads != self._threads:
            llama_cpp.llama_set_n_threads(self._ctx, threads, threads)
            self._threads = threads

    def step(self) -> None:
        """One prefill chunk (if a prompt waits) and one token for generating sequences: all of them, or
        as many as the step sizer measured to be fastest per token, those that waited longest first."""
        for slot in self.slots:
            sequence = slot.sequence
            if sequence is not None and sequence.request.cancelled.is_set():
                self._finish(slot, "cancelled")
        prefilling = [
            s
            for s in self.slots
            if s.sequence is not None and s.sequence.prefilling and s.sequence.follows is None
        ]
        if prefilling:
            self._prefill(min(prefilling, key=lambda s: s.sequence.request.arrived))  # type: ignore[union-attr]
        generating = [s for s in self.slots if s.sequence is not None and not s.sequence.prefilling]
        if generating:
            size = self._sizer.size(len(generating))
            if size < len(generating):
                generating.sort(key=lambda s: s.sequence.last_step)  # type: ignore[union-attr]
                generating = generating[:size]
            started = time.perf_counter()
            self._generate(generating)
            self._sizer.record(len(generating), time.perf_counter() - started)

    def fail_all(self, error: Exception) -> None:
        for slot in self.slots:
            if slot.sequence is not None:
                self._release(slot, error)

    def close(self) -> None:
        self.fail_all(InvalidRequestError("the model was unloaded"))
        llama_cpp.llama_batch_free(self._batch)
        llama_cpp.llama_free(self._ctx)

    # --- decoding ---

    def _prefill(self, slot: _Slot) -> None:
        sequence = slot.sequence
        assert sequence is not None
        # Chunks end on multiples of PREFILL_CHUNK, wherever the prompt (or the reused prefix) starts.
        size = PREFILL_CHUNK - sequence.pos % PREFILL_CHUNK
        chunk, sequence.pending = sequence.pending[:size], sequence.pending[size:]
        last = not sequence.pending
        every = sequence.request.sampling.prompt_logprobs  # logits at every position, for the prompt's
        self._fill(
            [
                (token, sequence.pos + i, slot.index, every or (last and i == len(chunk) - 1))
                for i, token in enumerate(chunk)
            ]
        )
        followers = [s for s in self.slots if s.sequence is not None and s.sequence.follows == slot.index]
        if not self._decode([slot, *followers]):
            return
        self.prompt_tokens_decoded += len(chunk)
        if every:
            self._note_prompt_logprobs(sequence, len(chunk))
        slot.cached.extend(chunk)
        sequence.pos += len(chunk)
        if last:
            sequence.prefilling = False
            slot.held = (sequence.pos, self._row_logits(len(chunk) - 1).copy())
            self._answer_prompt(slot)

    def _answer_prompt(self, slot: _Slot) -> None:
        """Once `slot` holds its prompt's KV and the logits after it: copy them to the request's other
        answers, then sample every answer's first token from those logits."""
        assert slot.held is not None
        followers = [s for s in self.slots if s.sequence is not None and s.sequence.follows == slot.index]
        for follower in followers:  # before the first token: it may end the answer, free its slot
            self._copy_prompt(slot, follower)
        logits = slot.held[1]
        for each in (slot, *followers):
            assert each.sequence is not None
            self._take(each, self._sample_held(each.sequence, logits))

    def _copy_prompt(self, source: _Slot, slot: _Slot) -> None:
        """Give a waiting answer the prompt's KV, just decoded in `source`. llama.cpp copies the whole KV
        stream at the start of the next decode, before that decode writes any cell."""
        prompt, sequence = source.sequence, slot.sequence
        assert prompt is not None and sequence is not None
        llama_cpp.llama_memory_seq_cp(self._memory, source.index, slot.index, -1, -1)
        slot.cached, slot.held = list(source.cached), source.held
        sequence.pos, sequence.follows, sequence.prefilling = prompt.pos, None, False
        sequence.prompt_logprobs = list(prompt.prompt_logprobs)  # each answer's first Chunk has them

    def _generate(self, slots: list[_Slot]) -> None:
        entries = []
        for slot in slots:
            sequence = slot.sequence
            assert sequence is not None
            (token,) = sequence.pending
            entries.append((token, sequence.pos, slot.index, True))
        self._fill(entries)
        if not self._decode(slots):
            return
        for index, slot in enumerate(slots):
            sequence = slot.sequence
            assert sequence is not None
            slot.cached.extend(sequence.pending)
            sequence.pos += 1
            sequence.last_step = self._sizer.steps + 1  # this step's number: recorded once it ends
            self._take(slot, self._sample(sequence, index))

    def _note_prompt_logprobs(self, sequence: _Sequence, decoded: int) -> None:
        """The log probability of each prompt token whose predecessor was just decoded (batch rows
        0..decoded-1 predict the prompt's positions pos+1 ..); the first token has none."""
        top = sequence.request.sampling.logprobs or 0
        if sequence.pos == 0:
            sequence.prompt_logprobs.append(TokenLogprob(self._piece(sequence.tokens[0]), None))
        for row in range(decoded):
            position = sequence.pos + row + 1
            if position >= len(sequence.tokens):
                break  # the last row predicts the first generated token: the sampler's
            sequence.prompt_logprobs.append(
                self._logprob(self._row_logits(row), sequence.tokens[position], top)
            )

    def _sample(self, sequence: _Sequence, index: int) -> int:
        """The next token from batch position `index`'s logits, its log probabilities noted if asked."""
        token = sequence.sampler.sample(self._ctx, index)
        self._note_logprob(sequence, token, lambda: self._row_logits(index))
        return token

    def _sample_held(self, sequence: _Sequence, logits: np.ndarray) -> int:
        """The first token, from the logits after the prompt (a slot's `held`), as `_sample` picks."""
        token = sequence.sampler.sample_logits(logits)
        self._note_logprob(sequence, token, lambda: logits)
        return token

    def _note_logprob(self, sequence: _Sequence, token: int, logits: Callable[[], np.ndarray]) -> None:
        top = sequence.request.sampling.logprobs
        if top is not None and not llama_cpp.llama_vocab_is_eog(self._vocab, token):
            sequence.logprobs.append(self._logprob(logits(), token, top))

    def _row_logits(self, row: int) -> np.ndarray:
        """Batch row `row`'s logits, in the context's buffer (valid until the next decode)."""
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._ctx, row), shape=(self._n_vocab,))

    def _logprob(self, logits: np.ndarray, token: int, top: int) -> TokenLogprob:
        """`token`'s log probability under `logits`, with the `top` likeliest tokens."""
        chosen, best = token_logprobs(logits, token, top)
        return TokenLogprob(self._piece(token), chosen, tuple((self._piece(i), lp) for i, lp in best))

    def _fill(self, entries: list[tuple[int, int, int, bool]]) -> None:
        batch = self._batch
        batch.n_tokens = len(entries)
        for i, (token, pos, seq_id, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq_id
            batch.logits[i] = logits

    def _decode(self, slots: list[_Slot]) -> bool:
        code = llama_cpp.llama_decode(self._ctx, self._batch)
        if code == 0:
            return True
        error = RuntimeError(f"llama_decode failed with code {code}")
        log.error("decode failed", extra={"code": code, "sequences": len(slots)})
        for slot in slots:
            if slot.sequence is not None:
                self._release(slot, error, keep_cache=False)
        return False

    def _take(self, slot: _Slot, token: int) -> None:
        """Account for a sampled token: end, stop string, limit, or text to send and decode next."""
        sequence = slot.sequence
        assert sequence is not None
        if sequence.first_token_at is None:
            sequence.first_token_at = time.perf_counter()
        sampling = sequence.request.sampling
        if not sampling.ignore_eos and llama_cpp.llama_vocab_is_eog(self._vocab, token):
            self._finish(slot, "stop")
            return
        sequence.generated += 1
        elapsed = time.perf_counter() - sequence.first_token_at
        slot.tokens_per_second = sequence.generated / elapsed if elapsed > 0 else 0.0
        sequence.stats.completion_tokens = sequence.generated
        sequence.stats.tokens_per_second = slot.tokens_per_second
        text, stopped = sequence.stops.feed(sequence.utf8.decode(self._piece(token)))
        if stopped:
            sequence.request.send(sequence.chunk(text))
            self._finish(slot, "stop", flush=False)
            return
        if text:
            sequence.request.send(sequence.chunk(text))
        if sequence.generated >= sequence.max_new:
            self._finish(slot, "length")
            return
        sequence.pending = [token]

    def _finish(self, slot: _Slot, reason: str, flush: bool = True) -> None:
        sequence = slot.sequence
        assert sequence is not None
        # What a stop string held back goes out now; bytes of a character cut by the limit do not.
        self._release(slot, sequence.chunk(sequence.stops.flush() if flush else "", reason))

    def _release(self, slot: _Slot, last: object, keep_cache: bool = True) -> None:
        """Free the slot, then send its request `last` (final Chunk or error): a client that has seen
        its end must find the slot free (Status counts it no more). The KV stays for prefix reuse (its
        cells are overwritten by the next user)."""
        sequence = slot.sequence
        assert sequence is not None
        sequence.sampler.close()
        slot.sequence = None
        slot.last_used = time.perf_counter()
        if not keep_cache:
            llama_cpp.llama_memory_seq_rm(self._memory, slot.index, -1, -1)
            slot.cached, slot.held = [], None
        sequence.request.send(last)

    def _piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:size]
