"""llama-cpp-python behind a small blocking interface: load, generate, embed, tokenize.

Nothing here is async and nothing here is thread-safe: the scheduler calls every method from its single
worker thread, which is what keeps llama.cpp's one context consistent. Generation is our own token loop
over `Llama.generate` (not `create_completion`) so that each reply carries exact token counts and
timings, stop strings never leak into a stream, and a cancel takes effect before the next token.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import math
import os
import random
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from threading import Event
from typing import Any

import jinja2
import llama_cpp
from llama_cpp.llama import LogitsProcessorList
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import LlamaGrammar

from localmodel_llamacpp.options import LoadConfig, SamplingConfig
from localmodel_llamacpp.repack import RepackDecision, decide_repack, parse_system_info, read_cpu_flags
from localmodel_llamacpp.samplers import check_biases
from localmodel_llamacpp.stopping import StopMatcher

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"


class EngineError(Exception):
    """Base of the errors a request can meet in the engine."""


class ModelNotLoadedError(EngineError):
    """A request came before any model was loaded."""


class ModelLoadError(EngineError):
    """The model file is missing, not a GGUF file, or llama.cpp refused it."""


class InvalidRequestError(EngineError):
    """The request cannot be served by this model (too long, bad grammar, wrong mode)."""


class BusyError(EngineError):
    """Too many requests wait already: the router answers 429 with Retry-After, the client retries."""


class StoppingError(EngineError):
    """The backend is shutting down and takes no new work; another replica should serve it."""


# llama.cpp reports why a load or a grammar failed only through its log callback. Route that callback
# into Python logging (warnings and errors; its info lines are thousands per load) and keep the latest
# errors so they can be put into the failure we return.
_llama_log = logging.getLogger("llama.cpp")
_recent_errors: deque[str] = deque(maxlen=8)
# The info lines that say where the weights went ("CPU_REPACK model buffer size = 99.00 MiB").
_buffer_lines: deque[str] = deque(maxlen=16)
# ggml's enum ggml_log_level (ggml.h). llama-cpp-python's own callback still uses an older numbering
# and would print llama.cpp's info lines as warnings.
_GGML_INFO, _GGML_WARN, _GGML_ERROR = 2, 3, 4
_GGML_LEVELS = {_GGML_WARN: logging.WARNING, _GGML_ERROR: logging.ERROR}


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _forward_llama_log(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    message = text.decode("utf-8", "replace").strip()
    if level == _GGML_INFO and "model buffer size" in message:
        _buffer_lines.append(message)
    if level in _GGML_LEVELS and message:
        if level == _GGML_ERROR:
            _recent_errors.append(message)
        _llama_log.log(_GGML_LEVELS[level], message)


llama_cpp.llama_log_set(_forward_llama_log, ctypes.c_void_p(0))


@dataclass(frozen=True)
class Prompt:
    """A raw prompt, or chat messages to render with the model's own chat template."""

    text: str = ""
    messages: list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Chunk:
    """A piece of generated text with the counts and timings so far; the last one has a finish_reason."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    prompt_ms: float
    generation_ms: float
    finish_reason: str | None = None  # "stop", "length" or "cancelled"
    stop_sequence: str = ""  # in the last Chunk: the stop string that ended generation, if one did
    logprobs: tuple[TokenLogprob, ...] = ()  # of the tokens since the previous Chunk, when asked for
    prompt_logprobs: tuple[TokenLogprob, ...] = ()  # of the prompt's tokens, in the first Chunk only
    index: int = 0  # which answer of the request's `n` this Chunk belongs to


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log probability under the model (before sampling's changes), and the most
    likely alternatives at its position."""

    token: bytes  # the token's piece (may be part of a UTF-8 character)
    logprob: float | None  # None for a prompt's first token: nothing came before it
    top: tuple[tuple[bytes, float], ...] = ()


@dataclass
class GenerationStats:
    """The most recent generation's figures (GetMetrics); updated token by token."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_per_second: float = 0.0


class LlamaEngine:
    """One loaded llama.cpp model."""

    def __init__(self) -> None:
        self._llama: llama_cpp.Llama | None = None
        self._config: LoadConfig | None = None
        self._chat: Jinja2ChatFormatter | None = None
        self._vocab: Any = None
        self.last = GenerationStats()
        self.weight_buffers: dict[str, float] = {}  # MiB of weights per llama.cpp buffer type

    @property
    def config(self) -> LoadConfig | None:
        return self._config

    @property
    def llama(self) -> llama_cpp.Llama:
        return self._require_model()

    def prompt_tokens(self, prompt: Prompt) -> list[int]:
        """The prompt's tokens (chat messages rendered with the model's template first)."""
        return self._prompt_tokens(self._require_model(), prompt)

    def check_grammar(self, gbnf: str | None) -> None:
        """Raise InvalidRequestError for a GBNF grammar llama.cpp cannot parse."""
        self._grammar(gbnf)

    def load(self, config: LoadConfig, before_release: Callable[[], None] | None = None) -> None:
        """Load a model; on failure the previously loaded model (if any) stays in service.

        `before_release` runs once the new model is loaded, just before the previous one is freed: what
        still decodes with the previous model must stop there.
        """
        check_gguf_file(config.model_path)
        decision = repack_decision(config.repack)
        log.info("weights buffers", extra={"repack": decision.repack, "reason": decision.reason})
        _recent_errors.clear()
        _buffer_lines.clear()
        started = time.perf_counter()
        try:
            llama = open_llama(decision, **config.llama_kwargs())
        except (ValueError, RuntimeError) as error:
            detail = "; ".join(_recent_errors) or str(error)
            raise ModelLoadError(f"llama.cpp could not load {config.model_path}: {detail}") from error
        weight_buffers = parse_buffer_lines(_buffer_lines)
        log.info("warming up: one prompt step and one token step")
        try:
            warm_up(llama)
        except RuntimeError as error:
            llama.close()
            raise ModelLoadError(f"the warm-up decode of {config.model_path} failed: {error}") from error
        previous, self._llama, self._config = self._llama, llama, config
        self.weight_buffers = weight_buffers
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._chat = _chat_formatter(llama)
        if previous is not None:
            if before_release is not None:
                before_release()
            previous.close()
        log.info(
            "model loaded",
            extra={
                "path": str(config.model_path),
                "seconds": round(time.perf_counter() - started, 2),
                "context_size": llama.n_ctx(),
                "threads": config.threads,
                "gpu_layers": config.gpu_layers,
                "repack": decision.repack,
                "weights_mib": weight_buffers,
                "chat_template": self._chat is not None,
            },
        )

    def generate(self, prompt: Prompt, sampling: SamplingConfig, cancelled: Event) -> Iterator[Chunk]:
        """Generate text, one Chunk per token that adds text, then a final Chunk with the finish reason."""
        llama = self._require_model()
        started = time.perf_counter()
        tokens = self._prompt_tokens(llama, prompt)
        room = llama.n_ctx() - len(tokens)
        if room <= 0:
            raise InvalidRequestError(
                f"the prompt has {len(tokens)} tokens; the context holds {llama.n_ctx()}"
            )
        max_new = min(sampling.max_tokens or room, room)
        try:
            check_biases(sampling, llama.n_vocab())
        except ValueError as error:
            raise InvalidRequestError(str(error)) from None
        if sampling.logprobs is not None:
            # Serving one request at a time (an embedding model, or no batch decoder could be made): the
            # log probabilities come with the batch decoders.
            raise InvalidRequestError(
                "logprobs: not available while this backend serves one request at a time"
            )
        grammar = self._grammar(sampling.grammar)
        llama.set_seed(sampling.seed if sampling.seed is not None else random.getrandbits(31))
        # Evaluate the whole prompt every time. Reusing a cached prefix re-evaluates the prompt's tail in a
        # smaller batch, whose rounding differs, so the same request could get a different answer
        # depending on what ran before it. Prefix reuse comes with the batching scheduler's KV slots.
        llama.reset()  # type: ignore[no-untyped-call]

        stats = self.last = GenerationStats(prompt_tokens=len(tokens))
        stops = StopMatcher(sampling.stop)
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        first_token_at: float | None = None
        finish = "length"
        stop_string_reached = False

        def chunk(text: str, finish_reason: str | None = None) -> Chunk:
            now = time.perf_counter()
            first = first_token_at or now
            return Chunk(
                text=text,
                prompt_tokens=len(tokens),
                completion_tokens=stats.completion_tokens,
                prompt_ms=(first - started) * 1000,
                generation_ms=(now - first) * 1000,
                finish_reason=finish_reason,
                stop_sequence=stops.matched if finish_reason else "",
            )

        with closing(self._token_stream(llama, tokens, sampling, grammar)) as stream:
            for token in stream:
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                if cancelled.is_set():
                    finish = "cancelled"
                    break
                if not sampling.ignore_eos and llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                stats.completion_tokens += 1
                elapsed = time.perf_counter() - first_token_at
                stats.tokens_per_second = stats.completion_tokens / elapsed if elapsed > 0 else 0.0
                text, stop_string_reached = stops.feed(utf8.decode(llama.detokenize([token])))
                if stop_string_reached:
                    finish = "stop"
                    yield chunk(text)
                    break
                if stats.completion_tokens >= max_new:
                    yield chunk(text)
                    break
                if text:
                    yield chunk(text)
        # Send what was held back as a possible stop string. Bytes of a character that the token limit
        # cut in half stay in the decoder: sending them would show as U+FFFD.
        yield chunk("" if stop_string_reached else stops.flush(), finish)

    def embed(self, text: str) -> list[float]:
        """A normalised embedding of the whole text (mean of token embeddings if the model pools none)."""
        llama = self._require_model()
        if self._config is None or not self._config.embeddings:
            raise InvalidRequestError("this model was loaded without embeddings; load it with embeddings on")
        if not text:
            raise InvalidRequestError("nothing to embed: the text is empty")
        vector: list[Any] = llama.embed(text, normalize=False, truncate=False)
        if vector and isinstance(vector[0], list):  # pooling "none": one vector per token
            vector = [sum(column) / len(vector) for column in zip(*vector, strict=True)]
        return _normalise(vector)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of the text, without a BOS token (special tokens like <|im_start|> recognised)."""
        llama = self._require_model()
        tokens: list[int] = llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return tokens

    def detokenize(self, tokens: list[int], param: str = "input") -> str:
        """The text of `tokens`; an id outside the vocabulary is an InvalidRequestError naming `param`
        (the request field the ids came in)."""
        llama = self._require_model()
        # llama.cpp aborts the process on an id outside the vocabulary: refuse it here.
        vocabulary = llama.n_vocab()
        outside = next((token for token in tokens if not 0 <= token < vocabulary), None)
        if outside is not None:
            raise InvalidRequestError(
                f"{param}: token id {outside} is outside the model's vocabulary (0 to {vocabulary - 1})"
            )
        return bytes(llama.detokenize(tokens)).decode("utf-8", "replace")

    def memory(self) -> dict[str, int]:
        """Bytes used: process resident memory, model weights (also per llama.cpp buffer type, e.g.
        `weights_CPU_REPACK`), and context state (KV cache)."""
        usage = {"rss": _resident_bytes()}
        if self._llama is not None:
            usage["model"] = int(llama_cpp.llama_model_size(self._llama.model))
            usage["context_state"] = int(llama_cpp.llama_state_get_size(self._llama.ctx))
            for buffer, mib in self.weight_buffers.items():
                usage[f"weights_{buffer}"] = int(mib * 2**20)
        return usage

    def _require_model(self) -> llama_cpp.Llama:
        if self._llama is None:
            raise ModelNotLoadedError("no model is loaded; call LoadModel first")
        return self._llama

    def _prompt_tokens(self, llama: llama_cpp.Llama, prompt: Prompt) -> list[int]:
        if prompt.messages is None:
            if not prompt.text:
                raise InvalidRequestError("empty prompt: send a prompt or chat messages")
            tokens: list[int] = llama.tokenize(prompt.text.encode("utf-8"), add_bos=True, special=True)
            return tokens
        if self._chat is None:
            raise InvalidRequestError("this model has no chat template; send a prompt instead of messages")
        try:
            rendered = self._chat(messages=prompt.messages, tools=prompt.tools)  # type: ignore[arg-type]
        except (jinja2.TemplateError, ValueError, TypeError) as error:
            raise InvalidRequestError(f"the model's chat template rejected the messages: {error}") from error
        # Templates that write the BOS token themselves say so; adding another would change the answer.
        tokens = llama.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
        )
        return tokens

    def _grammar(self, gbnf: str | None) -> LlamaGrammar | None:
        """Parse-check a GBNF grammar: llama-cpp-python would pass a failed parse on as a null pointer."""
        if gbnf is None:
            return None
        _recent_errors.clear()
        sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, gbnf.encode("utf-8"), b"root")
        if not sampler:
            detail = "; ".join(_recent_errors) or "llama.cpp could not parse it"
            raise InvalidRequestError(f"grammar: {detail}")
        llama_cpp.llama_sampler_free(sampler)
        return LlamaGrammar.from_string(gbnf, verbose=False)

    @staticmethod
    def _token_stream(
        llama: llama_cpp.Llama,
        tokens: list[int],
        sampling: SamplingConfig,
        grammar: LlamaGrammar | None,
    ) -> Generator[int, None, None]:
        stream: Generator[int, None, None] = llama.generate(
            tokens,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            typical_p=sampling.typical_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
            frequency_penalty=sampling.frequency_penalty,
            presence_penalty=sampling.presence_penalty,
            mirostat_mode=sampling.mirostat,
            mirostat_tau=sampling.mirostat_tau,
            mirostat_eta=sampling.mirostat_eta,
            grammar=grammar,
            logits_processor=LogitsProcessorList([_biased(sampling.logit_bias)])
            if sampling.logit_bias
            else None,
        )
        return stream


def _biased(biases: tuple[tuple[int, float], ...]) -> Callable[[Any, Any], Any]:
    """logit_bias on the sequential path: added to the scores before llama-cpp-python samples."""
    tokens = [token for token, _ in biases]
    values = [bias for _, bias in biases]

    def add(_: Any, scores: Any) -> Any:
        scores[tokens] += values
        return scores

    return add


def repack_decision(mode: str) -> RepackDecision:
    """Whether weights go into llama.cpp's extra buffer types on this CPU with this build (repack.py)."""
    return decide_repack(mode, read_cpu_flags(), build_features())


def build_features() -> dict[str, str]:
    """What this llama.cpp build was compiled with and detects (`llama_print_system_info`)."""
    return parse_system_info(llama_cpp.llama_print_system_info().decode("utf-8", "replace"))


def open_llama(repack: RepackDecision | str = "auto", **kwargs: Any) -> llama_cpp.Llama:
    """`llama_cpp.Llama(**kwargs)` with the backend's repack decision (a mode, or one already made):
    what benchmarks and tests that call llama-cpp-python directly must use to run where the backend
    runs (on an AMX machine, plain `Llama` crashes at its first decode)."""
    decision = repack if isinstance(repack, RepackDecision) else repack_decision(repack)
    with _model_params(use_extra_bufts=decision.repack):
        return llama_cpp.Llama(**kwargs)


@contextmanager
def _model_params(use_extra_bufts: bool) -> Iterator[None]:
    """Make `Llama` load with `use_extra_bufts` set. llama-cpp-python 0.3.36 has no argument for it; its
    constructor starts from `llama_model_default_params()`, so hand it defaults with the field changed.
    Safe: models load on one thread only (the scheduler's worker)."""
    module = llama_cpp.llama_cpp
    original = module.llama_model_default_params

    def params() -> Any:
        defaults = original()
        defaults.use_extra_bufts = use_extra_bufts
        return defaults

    module.llama_model_default_params = params
    try:
        yield
    finally:
        module.llama_model_default_params = original


def warm_up(llama: llama_cpp.Llama) -> None:
    """Decode a few tokens, then one, and forget them: the prompt and the generation kernels both run
    once before the backend says SERVING, so a kernel that crashes on this machine crashes here (as
    llama-server's warm-up does), never in a user's request."""
    tokens = llama.tokenize(b"Hello, world", add_bos=True, special=False)[:4] or [0]
    memory = llama_cpp.llama_get_memory(llama.ctx)
    try:
        for step in (tokens, tokens[-1:]):
            array = (llama_cpp.llama_token * len(step))(*step)
            status = llama_cpp.llama_decode(llama.ctx, llama_cpp.llama_batch_get_one(array, len(step)))
            if status != 0:
                raise RuntimeError(f"llama_decode returned {status}")
    finally:
        llama_cpp.llama_memory_clear(memory, True)
        llama.reset()  # type: ignore[no-untyped-call]


def parse_buffer_lines(lines: Iterable[str]) -> dict[str, float]:
    """MiB per buffer type ({"CPU_REPACK": 12.7, "CPU_Mapped": 235.2}) from llama.cpp's load lines
    ("load_tensors:   CPU_REPACK model buffer size =    12.66 MiB")."""
    sizes: dict[str, float] = {}
    for line in lines:
        head, _, size = line.partition("model buffer size =")
        name = head.split(":")[-1].strip()
        try:
            sizes[name] = sizes.get(name, 0.0) + float(size.split()[0])
        except (ValueError, IndexError):
            continue
    return sizes


def check_gguf_file(path: Path) -> None:
    """Fail with a clear message for a missing, unreadable or non-GGUF file (llama.cpp says much less)."""
    try:
        with path.open("rb") as f:
            magic = f.read(len(GGUF_MAGIC))
    except FileNotFoundError as error:
        raise ModelLoadError(f"model file not found: {path}") from error
    except OSError as error:
        raise ModelLoadError(f"cannot read model file {path}: {error.strerror}") from error
    if magic != GGUF_MAGIC:
        raise ModelLoadError(f"{path} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r})")


def _chat_formatter(llama: llama_cpp.Llama) -> Jinja2ChatFormatter | None:
    """The model's own chat template from its GGUF metadata, if it has one."""
    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        return None

    def token_text(token: int) -> str:
        return bytes(llama.detokenize([token], special=True)).decode("utf-8", "replace") if token >= 0 else ""

    return Jinja2ChatFormatter(
        template=template, eos_token=token_text(llama.token_eos()), bos_token=token_text(llama.token_bos())
    )


def _normalise(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else vector


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
