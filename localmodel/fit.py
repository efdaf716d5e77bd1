"""Will a model fit? A pure planner from a GGUF header and the serving settings to memory per device.

It counts what llama.cpp (the build llama-cpp-python 0.3.36 ships) allocates when our backend loads a
model, device by device:

- Weights: every tensor's bytes from the header. The input embedding stays on the CPU; the last
  `gpu_layers` of the `n_layer + 1` layers (the repeating blocks, then the output layer) go to the GPUs,
  split evenly as llama.cpp splits layers over equal devices. A model without `output.weight` uses its
  embedding as output: offloading the output layer then puts a second copy of it on the GPU.
- KV cache, per context: llama.cpp pads `n_ctx` to a multiple of 256, and without a unified KV cache
  gives each sequence its own stream of `pad(n_ctx / n_seq, 256)` cells. A layer holds K and V rows of
  `head_dim x n_head_kv` values for each cell, of the cache type (f16: 2 bytes; q8_0: 34 per 32).
  Sliding-window layers get as many cells unless `swa_full` is off (llama.cpp's default is on), then
  `pad(n_swa + n_ubatch, 256)`. A layer's cache lives on that layer's device.
- Compute buffers, per context and device: an estimate (llama.cpp reserves a worst-case graph of
  `n_ubatch` tokens). The larger of two peaks: the logits, `4 x n_ubatch x (n_vocab + 3 n_embd)`, on the
  device with the output layer; and attention, `4 x n_ubatch x n_kv x n_head` for the scores (none with
  flash attention) plus the masks (`4` or, with flash attention, `2 x n_ubatch x n_kv`) and
  `4 x n_ubatch x (3 n_embd + n_ff)` of activations, on every device with layers. With partial offload
  the first GPU also receives the largest CPU-resident weight, which llama.cpp copies over to multiply
  a prompt there. Plus each context's output buffer (the logits of one token per sequence).

And our backend's contexts (backend-images/llama-cpp/localmodel_llamacpp, `backend_contexts`): with
continuous batching, the Llama object's own small context (min(context, 512) tokens, batch 512) and one
context per decode lane of `context_size x slots_in_lane` tokens, a sequence per slot, batch
`max(slots_in_lane, 64)`; loaded for embeddings, one context of `context_size` tokens with a unified
cache. The constants below mirror that code; the integration test loads the real backend and checks
the plan against what llama.cpp reports.

What is read of the model, and which models are refused rather than guessed at: model_shape.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from localmodel.ggml_types import GGML_TYPES_BY_NAME, GgmlType
from localmodel.gguf_header import GGUFHeader
from localmodel.model_shape import ModelShape, ModelShapeError

GIB = 1 << 30
MIB = 1 << 20
# llama.cpp pads the context, and each sequence's share of it, to this many cells.
CONTEXT_PAD = 256
# The cache types llama.cpp accepts for K and V (common/arg.cpp `kv_cache_types`).
KV_CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
# Our backend's contexts (see the module docstring): options.DEFAULT_BATCH_SIZE, batching._IDLE_CONTEXT,
# decoder.PREFILL_CHUNK.
BACKEND_BATCH = 512
IDLE_CONTEXT = 512
PREFILL_CHUNK = 64
MAX_SEQUENCES = 256  # llama_max_parallel_sequences()
# What llama.cpp and the driver hold on a GPU besides these buffers (CUDA context, cuBLAS workspace),
# and what the backend process holds besides llama.cpp's buffers (Python, gRPC, the tokenizer).
GPU_RESERVE = 512 * MIB
RAM_RESERVE = 256 * MIB
_F32 = 4

GpuLayers = int | Literal["auto"] | None


class FitError(ValueError):
    """Settings llama.cpp would refuse whatever the memory, or a model this planner cannot count."""


@dataclass(frozen=True)
class PlanInput:
    """What the spec says about serving (the names follow LocalModel's `backend.engine` and resources)."""

    context_size: int = 4096  # tokens per slot (the backend's default)
    slots: int = 1  # sequences decoded together (`parallel`)
    lanes: int = 1  # decode lanes the slots are split over (the backend's `lanes` option)
    kv_cache_type: str = "f16"  # for K and V: one of KV_CACHE_TYPES
    flash_attention: bool = False
    # Layers to offload, of n_layer + 1 (the output layer counts): -1 all; "auto" as many as fit; None the
    # backend's default (all with GPUs, localmodel.command; none without).
    gpu_layers: GpuLayers = None
    gpus: int = 0
    gpu_memory_bytes: int | None = None  # per GPU
    ram_bytes: int | None = None  # None: RAM is not checked
    embeddings: bool = False  # loaded for embeddings: one context, no batching
    swa_full: bool = True  # llama.cpp's default, which our backend keeps
    gpu_reserve_bytes: int = GPU_RESERVE  # per GPU used
    ram_reserve_bytes: int = RAM_RESERVE


@dataclass(frozen=True)
class ContextShape:
    """One llama.cpp context as the backend asks for it."""

    role: str  # "tokenizer", "lane 0", ...: for the reader of a plan
    n_ctx: int
    n_seq: int
    n_ubatch: int
    unified: bool = False

    @property
    def ubatch(self) -> int:
        # llama.cpp caps the batch at the (unpadded) context for causal models.
        return min(self.n_ubatch, self.n_ctx)

    @property
    def streams(self) -> int:
        return 1 if self.unified else self.n_seq

    @property
    def cells(self) -> int:
        """KV cells per stream, padded as llama.cpp pads them (llama_context's constructor)."""
        n_ctx = _pad(self.n_ctx)
        return n_ctx if self.unified else _pad(n_ctx // self.n_seq)

    def swa_cells(self, n_swa: int, swa_full: bool) -> int:
        if swa_full:
            return self.cells
        window = n_swa * (self.n_seq if self.unified else 1) + self.ubatch
        return _pad(min(self.cells, window))


def backend_contexts(spec: PlanInput) -> tuple[ContextShape, ...]:
    """The llama.cpp contexts our backend makes for these settings (batching.py `_load`)."""
    if spec.embeddings:
        # llama-cpp-python makes an embedding context unified, with as many sequences as batch rows
        # (llama.cpp allows 256 at most).
        batch = min(spec.context_size, BACKEND_BATCH)
        return (ContextShape("embeddings", spec.context_size, min(batch, MAX_SEQUENCES), batch, True),)
    idle = min(spec.context_size, IDLE_CONTEXT)
    contexts = [ContextShape("tokenizer", idle, 1, BACKEND_BATCH)]
    lanes = max(1, min(spec.lanes, spec.slots))
    for index, slots in enumerate(_split(spec.slots, lanes)):
        batch = max(slots, PREFILL_CHUNK)
        contexts.append(ContextShape(f"lane {index}", spec.context_size * slots, slots, batch))
    return tuple(contexts)


@dataclass(frozen=True)
class DeviceUse:
    """What one device holds; `capacity_bytes` None when it was not given (not checked)."""

    device: str  # "CPU", "GPU0", "GPU1", ...
    layers: int  # of the n_layer + 1 (output counted) placed here
    weights_bytes: int
    kv_cache_bytes: int
    compute_bytes: int
    overhead_bytes: int
    capacity_bytes: int | None

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.compute_bytes + self.overhead_bytes

    @property
    def fits(self) -> bool:
        return self.capacity_bytes is None or self.total_bytes <= self.capacity_bytes

    def as_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "layers": self.layers,
            "weightsBytes": self.weights_bytes,
            "kvCacheBytes": self.kv_cache_bytes,
            "computeBytes": self.compute_bytes,
            "overheadBytes": self.overhead_bytes,
            "totalBytes": self.total_bytes,
            "capacityBytes": self.capacity_bytes,
            "fits": self.fits,
        }


Verdict = Literal["cpu", "gpu", "partial", "none"]


@dataclass(frozen=True)
class FitPlan:
    """Where the model goes and why: `verdict` cpu (all in RAM), gpu (all layers on the GPUs), partial
    (`gpu_layers` of `layers` on the GPUs, the rest in RAM) or none (does not fit)."""

    verdict: Verdict
    fits: bool
    reason: str
    gpu_layers: int  # offloaded, of `layers`
    layers: int  # n_layer + 1: the repeating blocks and the output layer
    weights_per_layer: tuple[int, ...]
    other_weights_bytes: int  # the input embedding and the output layer
    devices: tuple[DeviceUse, ...]  # CPU first, then the GPUs
    contexts: tuple[ContextShape, ...]
    warnings: tuple[str, ...] = ()

    @property
    def weights_bytes(self) -> int:
        return sum(device.weights_bytes for device in self.devices)

    @property
    def kv_cache_bytes(self) -> int:
        return sum(device.kv_cache_bytes for device in self.devices)

    @property
    def compute_bytes(self) -> int:
        return sum(device.compute_bytes for device in self.devices)

    @property
    def overhead_bytes(self) -> int:
        return sum(device.overhead_bytes for device in self.devices)

    @property
    def total_bytes(self) -> int:
        return sum(device.total_bytes for device in self.devices)

    def as_json(self) -> dict[str, Any]:
        """camelCase, without the model's name (the caller adds what it names the model by)."""
        return {
            "fits": self.fits,
            "verdict": self.verdict,
            "reason": self.reason,
            "gpuLayers": self.gpu_layers,
            "layers": self.layers,
            "weightsBytes": self.weights_bytes,
            "kvCacheBytes": self.kv_cache_bytes,
            "computeBytes": self.compute_bytes,
            "overheadBytes": self.overhead_bytes,
            "totalBytes": self.total_bytes,
            "devices": [device.as_json() for device in self.devices],
            "warnings": list(self.warnings),
        }


def plan_fit(
    model: GGUFHeader | ModelShape, spec: PlanInput, contexts: tuple[ContextShape, ...] | None = None
) -> FitPlan:
    """Where the model fits with these settings: on the CPU, fully on the GPUs, partly, or nowhere.
    `contexts`: the llama.cpp contexts to count, if not those our backend makes (`backend_contexts`)."""
    try:
        shape = model if isinstance(model, ModelShape) else ModelShape.from_header(model)
    except ModelShapeError as error:
        raise FitError(str(error)) from error
    cache = _check(spec)
    contexts = contexts or backend_contexts(spec)
    total = shape.n_layer + 1
    warnings = _warnings(shape, spec)
    requested = spec.gpu_layers
    if requested is None:
        requested = -1 if spec.gpus else 0
    if spec.gpus == 0:
        if requested not in (0, "auto"):
            warnings.append(
                f"gpuLayers {requested} asks for GPUs, and none are given: all layers stay in RAM"
            )
        requested = 0
    if requested == "auto":
        plans = [_plan(shape, spec, cache, contexts, k) for k in range(total, -1, -1)]
        chosen = next((plan for plan in plans if all(d.fits for d in plan)), None)
        if chosen is None:  # report the most the GPUs hold: the least RAM asked for
            chosen = next((plan for plan in plans if all(d.fits for d in plan[1:])), plans[-1])
    else:
        chosen = _plan(shape, spec, cache, contexts, total if requested < 0 else min(requested, total))
    gpu_layers = sum(device.layers for device in chosen[1:])
    verdict, reason = _verdict(chosen, gpu_layers, total, requested == "auto")
    return FitPlan(
        verdict=verdict,
        fits=verdict != "none",
        reason=reason,
        gpu_layers=gpu_layers,
        layers=total,
        weights_per_layer=shape.layer_weights,
        other_weights_bytes=shape.input_weights + shape.output_weights,
        devices=chosen,
        contexts=contexts,
        warnings=tuple(warnings),
    )


def _plan(
    shape: ModelShape, spec: PlanInput, cache: GgmlType, contexts: tuple[ContextShape, ...], gpu_layers: int
) -> tuple[DeviceUse, ...]:
    """Every device's use with `gpu_layers` offloaded: index 0 the CPU, then GPU 0, 1, ..."""
    place = _placement(shape.n_layer, gpu_layers, spec.gpus)  # per layer, n_layer = output: -1 the CPU
    gpus = max(spec.gpus, 0)
    weights, kv, compute, layers = [0] * (gpus + 1), [0] * (gpus + 1), [0] * (gpus + 1), [0] * (gpus + 1)
    weights[0] += shape.input_weights  # llama.cpp always keeps the input layer on the CPU
    for layer, device in enumerate(place[:-1]):
        weights[device + 1] += shape.layer_weights[layer]
        layers[device + 1] += 1
        for context in contexts:
            cells = (
                context.swa_cells(shape.n_swa, spec.swa_full) if shape.swa_layers[layer] else context.cells
            )
            kv[device + 1] += shape.kv_bytes_per_cell(layer, cache) * cells * context.streams
    output = place[-1] + 1
    weights[output] += shape.output_weights + (shape.tied_output if output else 0)
    layers[output] += 1
    partial = 0 < gpu_layers < shape.n_layer + 1
    for context in contexts:
        for device in range(gpus + 1):
            compute[device] += _compute_bytes(shape, spec, context, layers[device] > 0, device == output)
        # The output buffer, in host memory: logits (and embeddings) of one token per sequence.
        compute[0] += _F32 * (shape.n_vocab + (shape.n_embd if spec.embeddings else 0)) * context.n_seq
        if partial and context.ubatch >= 32 and gpus:
            compute[1] += shape.largest_tensor  # a CPU weight copied to the GPU to multiply a prompt
    devices = [
        DeviceUse("CPU", layers[0], weights[0], kv[0], compute[0], spec.ram_reserve_bytes, spec.ram_bytes)
    ]
    for index in range(gpus):
        used = layers[index + 1] > 0
        devices.append(
            DeviceUse(
                f"GPU{index}",
                layers[index + 1],
                weights[index + 1],
                kv[index + 1],
                compute[index + 1] if used else 0,
                spec.gpu_reserve_bytes if used else 0,
                spec.gpu_memory_bytes,
            )
        )
    return tuple(devices)


def _placement(n_layer: int, gpu_layers: int, gpus: int) -> list[int]:
    """The device of each layer (0..n_layer-1 the blocks, n_layer the output), -1 for the CPU, as
    llama.cpp's load_tensors assigns them over equal GPUs: the last `gpu_layers` of the n_layer + 1
    layers are offloaded, each GPU taking an equal share in order."""
    total = n_layer + 1
    offloaded = min(gpu_layers, total) if gpus else 0
    first = total - offloaded
    splits = [(index + 1) / gpus for index in range(gpus)]
    place = []
    for layer in range(total):
        if layer < first:
            place.append(-1)
        else:
            share = (layer - first) / offloaded
            place.append(next(index for index, split in enumerate(splits) if share < split))
    return place


def _compute_bytes(
    shape: ModelShape, spec: PlanInput, context: ContextShape, has_layers: bool, has_output: bool
) -> int:
    """The estimated compute buffer of one context on one device (see the module docstring)."""
    tokens = context.ubatch
    peak = _F32 * tokens * shape.n_embd  # the input embeddings, on the CPU at least
    if has_output:
        peak = max(peak, _F32 * tokens * (shape.n_vocab + 3 * shape.n_embd))
    if has_layers:
        cells = context.cells
        scores = 0 if spec.flash_attention else _F32 * tokens * cells * max(shape.n_head)
        mask = (2 if spec.flash_attention else _F32) * tokens
        masks = mask * cells
        if any(shape.swa_layers):
            masks += mask * context.swa_cells(shape.n_swa, spec.swa_full)
        activations = _F32 * tokens * (3 * shape.n_embd + shape.n_ff)
        peak = max(peak, scores + masks + activations)
    return peak


def _verdict(devices: tuple[DeviceUse, ...], gpu_layers: int, total: int, auto: bool) -> tuple[Verdict, str]:
    cpu, gpus = devices[0], devices[1:]
    used = [gpu for gpu in gpus if gpu.layers]
    on_gpus = "; ".join(f"{gpu.device} {_use(gpu)}" for gpu in used)
    ram = f"RAM {_use(cpu)}" + ("" if cpu.capacity_bytes is not None else " (RAM not checked)")
    over = [device for device in devices if not device.fits]
    if over:
        if gpu_layers == 0:
            where = "with every layer in RAM"
        elif auto:
            where = f"even with {gpu_layers} of {total} layers on {len(used)} GPU(s), all they hold"
        else:
            where = f"with {gpu_layers} of {total} layers on {len(used)} GPU(s)"
        short = "; ".join(f"{device.device} needs {_use(device)}" for device in over)
        return "none", f"does not fit {where}: {short}"
    if gpu_layers == 0:
        return "cpu", f"fits in RAM: {_use(cpu)} ({_parts(cpu)})"
    if gpu_layers == total:
        return "gpu", f"fits on {len(used)} GPU(s) with all {total} layers offloaded: {on_gpus}; {ram}"
    return "partial", (
        f"partial offload: {gpu_layers} of {total} layers on {len(used)} GPU(s) ({on_gpus}), "
        f"{total - gpu_layers} in RAM; {ram}"
    )


def _use(device: DeviceUse) -> str:
    capacity = f" of {_gib(device.capacity_bytes)}" if device.capacity_bytes is not None else ""
    return f"{_gib(device.total_bytes)}{capacity}"


def _parts(device: DeviceUse) -> str:
    return (
        f"weights {_gib(device.weights_bytes)}, KV cache {_gib(device.kv_cache_bytes)}, "
        f"compute {_gib(device.compute_bytes)}, overhead {_gib(device.overhead_bytes)}"
    )


def _gib(size: int) -> str:
    return f"{size / GIB:.2f} GiB"


def _check(spec: PlanInput) -> GgmlType:
    if spec.context_size < 1 or spec.slots < 1 or spec.lanes < 1:
        raise FitError("contextSize, slots and lanes must be at least 1")
    if spec.kv_cache_type not in KV_CACHE_TYPES:
        raise FitError(f"KV cache type {spec.kv_cache_type!r}: expected one of {', '.join(KV_CACHE_TYPES)}")
    cache = GGML_TYPES_BY_NAME[spec.kv_cache_type]
    if cache.block_size > 1 and not spec.flash_attention:
        # llama_context refuses it: without flash attention V is stored transposed, one value per row.
        raise FitError(f"a {spec.kv_cache_type} (quantized) KV cache needs flash attention on")
    if spec.gpus < 0:
        raise FitError("gpus must not be negative")
    if spec.gpus and spec.gpu_memory_bytes is None:
        raise FitError("with GPUs, give their memory (gpu_memory_bytes)")
    if isinstance(spec.gpu_layers, int) and spec.gpu_layers < -1:
        raise FitError(f"gpuLayers {spec.gpu_layers}: expected -1 (all), 0 or more, or auto")
    return cache


def _warnings(shape: ModelShape, spec: PlanInput) -> list[str]:
    warnings = []
    if shape.context_length and spec.context_size > shape.context_length:
        warnings.append(
            f"contextSize {spec.context_size} is beyond the {shape.context_length} tokens "
            f"{shape.architecture} was trained for"
        )
    return warnings


def _split(total: int, parts: int) -> list[int]:
    """`total` in `parts` whole shares, larger first (lane.py `split`)."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def _pad(value: int) -> int:
    return -(-value // CONTEXT_PAD) * CONTEXT_PAD
