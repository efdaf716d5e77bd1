"""Pure mapping from the backend contract's messages to llama-cpp-python settings.

Proto3 cannot tell "unset" from zero, so zero means "backend default" throughout, as LocalAI's backends
read it. Values that can never work are rejected here with a message naming the field, before llama.cpp
sees them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from localmodel.cpus import available_cpus
from localmodel.wire import backend_pb2
from localmodel_llamacpp.repack import REPACK_MODES

log = logging.getLogger(__name__)

DEFAULT_CONTEXT_SIZE = 4096
DEFAULT_BATCH_SIZE = 512
# llama.cpp's pooling types, by the names LocalAI's and llama-server's users write.
POOLING_TYPES = {"unspecified": -1, "none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}


class OptionsError(ValueError):
    """A request field holds a value that can never work."""


MAX_PARALLEL = 64  # llama.cpp's limit on sequences in one context
# Prompts kept in host memory once their slot is taken (prompt_store.py), as llama-server's --cache-ram.
DEFAULT_PROMPT_CACHE_RAM_MIB = 256
# How much of a slot's cached prompt a new request may reuse (decoder.py): "exact" (the default), only
# whole prefill chunks, so that every answer is the one the request would get on a fresh slot; "prefix",
# the whole common prefix, as llama-server's cache_prompt.
PROMPT_CACHE_MODES = ("exact", "prefix")
# Options that name one of a few modes: option → its modes.
_MODES = {"repack": REPACK_MODES, "prompt_cache": PROMPT_CACHE_MODES}


@dataclass(frozen=True)
class LoadConfig:
    """Everything needed to load one model."""

    model_path: Path
    context_size: int = DEFAULT_CONTEXT_SIZE
    threads: int = field(default_factory=available_cpus)  # the CPUs this process may use
    batch_size: int = DEFAULT_BATCH_SIZE
    gpu_layers: int = 0
    mmap: bool = True
    mlock: bool = False
    embeddings: bool = False
    seed: int = 0
    flash_attention: bool = False
    kv_offload: bool = True
    main_gpu: int = 0
    tensor_split: tuple[float, ...] | None = None
    rope_freq_base: float = 0.0
    rope_freq_scale: float = 0.0
    pooling: int = POOLING_TYPES["unspecified"]
    parallel: int = 0  # sequences decoded together (batching slots); 0: chosen from the context size
    lanes: int = 0  # decode lanes the slots are spread over (lane.py); 0: chosen from model and hardware
    repack: str = "auto"  # weights in llama.cpp's repacked/AMX buffers: auto, on, off (repack.py)
    prompt_cache: str = "exact"  # PROMPT_CACHE_MODES
    # MiB of host memory for prompts whose slot was taken (prompt_store.py); 0: none kept.
    prompt_cache_ram: int = DEFAULT_PROMPT_CACHE_RAM_MIB

    def llama_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `llama_cpp.Llama`."""
        return {
            "model_path": str(self.model_path),
            "n_ctx": self.context_size,
            "n_threads": self.threads,
            "n_threads_batch": self.threads,
            "n_batch": self.batch_size,
            "n_gpu_layers": self.gpu_layers,
            "use_mmap": self.mmap,
            "use_mlock": self.mlock,
            "embedding": self.embeddings,
            "seed": self.seed,
            "flash_attn": self.flash_attention,
            "offload_kqv": self.kv_offload,
            "main_gpu": self.main_gpu,
            "tensor_split": list(self.tensor_split) if self.tensor_split else None,
            "rope_freq_base": self.rope_freq_base,
            "rope_freq_scale": self.rope_freq_scale,
            "pooling_type": self.pooling,
            # Our own log callback (engine.py) keeps llama.cpp's messages; verbose output would print
            # unstructured lines to stderr.
            "verbose": False,
        }


def resolve_model_path(request: backend_pb2.ModelOptions) -> Path:
    """Where the model file is, named the ways LocalAI names it.

    LocalAI sends the full path in `model_file`, the file name in `model` and the models directory in
    `model_path`; other clients send only one of them.
    """
    name = request.model_file or request.model
    if not name:
        raise OptionsError("model_file / model: no model file named")
    path = Path(name)
    if not path.is_absolute() and request.model_path:
        path = Path(request.model_path) / path
    return path


def load_config(request: backend_pb2.ModelOptions) -> LoadConfig:
    """LoadModel's options as a validated LoadConfig."""
    for name in ("context_size", "n_batch", "threads"):
        if getattr(request, name) < 0:
            raise OptionsError(f"{name}: must not be negative, got {getattr(request, name)}")
    if request.flash_attention not in ("", "on", "off", "auto", "true", "false"):
        raise OptionsError(f"flash_attention: expected on, off or auto, got {request.flash_attention!r}")
    extra = parse_backend_options(request.options)
    defaults = LoadConfig(model_path=Path())
    return LoadConfig(
        model_path=resolve_model_path(request),
        context_size=request.context_size or DEFAULT_CONTEXT_SIZE,
        threads=request.threads or defaults.threads,
        batch_size=request.n_batch or DEFAULT_BATCH_SIZE,
        gpu_layers=request.n_gpu_layers,
        mmap=request.mmap,
        mlock=request.mlock,
        embeddings=request.embeddings,
        seed=request.seed,
        # This llama-cpp-python binding has no "auto": auto means off, which is right on CPUs.
        flash_attention=request.flash_attention in ("on", "true"),
        kv_offload=not request.no_kv_offload,
        main_gpu=_parse_int("main_gpu", request.main_gpu) if request.main_gpu else 0,
        tensor_split=_parse_tensor_split(request.tensor_split) if request.tensor_split else None,
        rope_freq_base=request.rope_freq_base,
        rope_freq_scale=request.rope_freq_scale,
        pooling=int(extra.get("pooling", POOLING_TYPES["unspecified"])),
        parallel=int(extra.get("parallel", 0)),
        lanes=int(extra.get("lanes", 0)),
        repack=str(extra.get("repack", "auto")),
        prompt_cache=str(extra.get("prompt_cache", "exact")),
        prompt_cache_ram=int(extra.get("prompt_cache_ram", DEFAULT_PROMPT_CACHE_RAM_MIB)),
    )


def parse_backend_options(options: list[str] | Any) -> dict[str, int | str]:
    """The backend-specific "key:value" options this backend understands.

    LocalAI passes options meant for many backends; unknown keys are logged and ignored, not fatal.
    """
    known: dict[str, int | str] = {}
    for option in options:
        key, _, value = option.partition(":")
        if key in ("parallel", "lanes"):
            known[key] = number = _parse_int(f"options: {key}", value)
            if not 1 <= number <= MAX_PARALLEL:
                raise OptionsError(f"options: {key} must be between 1 and {MAX_PARALLEL}, got {value}")
        elif key == "prompt_cache_ram":
            known[key] = number = _parse_int(f"options: {key}", value)
            if number < 0:
                raise OptionsError(f"options: {key} is MiB of host memory, 0 or more, got {value}")
        elif key == "pooling":
            if value not in POOLING_TYPES:
                raise OptionsError(f"options: pooling must be one of {sorted(POOLING_TYPES)}, got {value!r}")
            known["pooling"] = POOLING_TYPES[value]
        elif key in _MODES:
            if value not in _MODES[key]:
                raise OptionsError(f"options: {key} must be one of {', '.join(_MODES[key])}, got {value!r}")
            known[key] = value
        else:
            log.warning("ignoring backend option this backend does not know", extra={"option": option})
    return known


@dataclass(frozen=True)
class SamplingConfig:
    """How to pick tokens and when to stop, for one request."""

    max_tokens: int = 0  # 0: until end of text or the context is full
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    seed: int | None = None  # None: a random seed
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    grammar: str | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit)
    logprobs: int | None = None  # each token's log probability and this many top alternatives; None: no
    prompt_logprobs: bool = False  # the prompt's tokens' too (with `logprobs` alternatives each)
    n: int = 1  # answers to the one prompt (answer i sampled as `answer(i)`)

    def answer(self, index: int) -> SamplingConfig:
        """How answer `index` of `n` is sampled: seed + index (as a request of its own with that seed
        would be, the router's old way), each answer a random seed of its own without one."""
        if self.seed is None or index == 0:
            return self
        return replace(self, seed=(self.seed + index) % 2**31)  # stays a non-negative int32


MAX_TOP_LOGPROBS = 20  # OpenAI's bound
MAX_ANSWERS = 128  # OpenAI's bound on `n`


def _logit_bias(text: str) -> tuple[tuple[int, float], ...]:
    """The JSON object `{"token id": bias}` as pairs (the vocabulary check comes with the model)."""
    if not text:
        return ()
    biases = _parse_json("logit_bias", text)
    if not isinstance(biases, dict):
        raise OptionsError("logit_bias: expected a JSON object of token id → bias")
    pairs = []
    for token, bias in biases.items():
        if not str(token).isdigit() or not isinstance(bias, int | float) or isinstance(bias, bool):
            raise OptionsError(f"logit_bias: expected token id → number, got {token!r}: {bias!r}")
        pairs.append((int(token), float(bias)))
    return tuple(pairs)


def sampling_config(request: backend_pb2.PredictOptions) -> SamplingConfig:
    """Predict's options as a validated SamplingConfig."""
    if request.tokens < 0:
        raise OptionsError(f"tokens: must not be negative, got {request.tokens}")
    if request.temperature < 0:
        raise OptionsError(f"temperature: must not be negative, got {request.temperature}")
    if not 0 <= request.top_p <= 1:
        raise OptionsError(f"top_p: must be between 0 and 1, got {request.top_p}")
    if request.top_k < 0:
        raise OptionsError(f"top_k: must not be negative, got {request.top_k}")
    if request.mirostat not in (0, 1, 2):
        raise OptionsError(f"mirostat: must be 0, 1 or 2, got {request.mirostat}")
    if not 0 <= request.top_logprobs <= MAX_TOP_LOGPROBS:
        raise OptionsError(f"top_logprobs: between 0 and {MAX_TOP_LOGPROBS}, got {request.top_logprobs}")
    if not 0 <= request.n <= MAX_ANSWERS:
        raise OptionsError(f"n: between 1 and {MAX_ANSWERS} (0: 1), got {request.n}")
    return SamplingConfig(
        max_tokens=request.tokens,
        temperature=request.temperature,
        top_p=request.top_p or 1.0,
        top_k=request.top_k,
        typical_p=request.typical_p or 1.0,
        repeat_penalty=request.repeat_penalty or 1.0,
        frequency_penalty=request.frequency_penalty,
        presence_penalty=request.presence_penalty,
        logit_bias=_logit_bias(request.logit_bias),
        # `logprobs` (non-zero) asks for them; `top_logprobs`, for that many alternatives of each token.
        logprobs=request.top_logprobs if request.logprobs or request.prompt_logprobs else None,
        prompt_logprobs=request.prompt_logprobs,
        mirostat=request.mirostat,
        mirostat_tau=request.mirostat_tau or 5.0,
        mirostat_eta=request.mirostat_eta or 0.1,
        seed=request.seed if request.seed >= 0 else None,
        stop=tuple(s for s in request.stop_prompts if s),
        ignore_eos=request.ignore_eos,
        grammar=request.grammar or None,
        n=request.n or 1,
    )


def chat_messages(request: backend_pb2.PredictOptions) -> list[dict[str, Any]]:
    """The request's messages as the dicts chat templates expect (OpenAI's message shape)."""
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(request.messages):
        if not message.role:
            raise OptionsError(f"messages[{i}].role: missing")
        entry: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.name:
            entry["name"] = message.name
        if message.tool_call_id:
            entry["tool_call_id"] = message.tool_call_id
        if message.reasoning_content:
            entry["reasoning_content"] = message.reasoning_content
        if message.tool_calls:
            entry["tool_calls"] = _parse_json(f"messages[{i}].tool_calls", message.tool_calls)
        messages.append(entry)
    return messages


def chat_tools(request: backend_pb2.PredictOptions) -> list[dict[str, Any]] | None:
    """The request's tool definitions, for chat templates that render them."""
    return _parse_json("tools", request.tools) if request.tools else None


def _parse_json(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise OptionsError(f"{name}: not valid JSON ({error})") from error


def _parse_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError as error:
        raise OptionsError(f"{name}: expected an integer, got {text!r}") from error


def _parse_tensor_split(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError as error:
        raise OptionsError(f"tensor_split: expected comma-separated numbers, got {text!r}") from error
