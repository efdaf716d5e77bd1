"""The fit planner against figures computed by hand from the shapes of Llama 3.1 8B and 70B at Q4_K_M.

Bytes of the ggml types: Q4_K holds 256 values in 144 bytes (0.5625 a value), Q6_K in 210 (0.8203125).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from localmodel.fit import GIB, MIB, FitError, PlanInput, plan_fit
from localmodel.gguf_header import BytesSource, GGUFHeader, parse_header, read_header
from tests.support.gguf_files import (
    LLAMA_31_8B,
    LLAMA_31_70B,
    LlamaShape,
    header_bytes,
    llama_metadata,
    llama_tensors,
    use_more_bits,
)
from tests.support.models import require_model

Q4_K, Q6_K = 144 / 256, 210 / 256


def llama(shape: LlamaShape, drop: str = "", **extra: object) -> GGUFHeader:
    tensors = [tensor for tensor in llama_tensors(shape) if tensor.name != drop]
    return parse_header(BytesSource(header_bytes({**llama_metadata(shape), **extra}, tensors)))


@pytest.fixture(scope="module")
def eight_b() -> GGUFHeader:
    return llama(LLAMA_31_8B)


@pytest.fixture(scope="module")
def seventy_b() -> GGUFHeader:
    return llama(LLAMA_31_70B)


# Llama 3.1 8B: a layer's matrices are q and o 4096x4096, k and v 4096x1024, gate, up and down
# 4096x14336, its two norms 4096 f32 values. Q4_K_M gives v and down Q6_K in 16 of the 32 layers.
LAYER_8B_Q4 = int((2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336) * Q4_K) + 2 * 4096 * 4
LAYER_8B_Q6 = int((2 * 4096 * 4096 + 4096 * 1024 + 2 * 4096 * 14336) * Q4_K)
LAYER_8B_Q6 += int((4096 * 1024 + 4096 * 14336) * Q6_K) + 2 * 4096 * 4
EMBEDDING_8B = int(4096 * 128256 * Q4_K)  # token_embd, Q4_K
OUTPUT_8B = int(4096 * 128256 * Q6_K) + 4096 * 4  # output Q6_K and output_norm
ROPE_FREQS = 64 * 4


def test_llama_8b_weights_per_layer_and_in_all(eight_b: GGUFHeader) -> None:
    assert (LAYER_8B_Q4, LAYER_8B_Q6) == (122_716_160, 138_936_320)
    plan = plan_fit(eight_b, PlanInput(context_size=8192))
    assert sum(use_more_bits(layer, 32) for layer in range(32)) == 16
    for layer, weights in enumerate(plan.weights_per_layer):
        assert weights == (LAYER_8B_Q6 if use_more_bits(layer, 32) else LAYER_8B_Q4)
    assert plan.other_weights_bytes == EMBEDDING_8B + ROPE_FREQS + OUTPUT_8B
    assert plan.weights_bytes == 16 * LAYER_8B_Q6 + 16 * LAYER_8B_Q4 + EMBEDDING_8B + ROPE_FREQS + OUTPUT_8B
    assert plan.weights_bytes == 4_912_898_304  # the published 8B Q4_K_M file is 4.92 GB with its header


def test_llama_8b_kv_cache_counts_every_context_of_the_backend(eight_b: GGUFHeader) -> None:
    # One cell of one layer: K and V of 8 heads x 128, f16. The backend's contexts: its tokenizer's
    # (512 cells) and a lane's, a stream of 8192 cells per slot.
    cell = 32 * 2 * 8 * 128 * 2
    assert plan_fit(eight_b, PlanInput(context_size=8192)).kv_cache_bytes == (512 + 8192) * cell
    four = plan_fit(eight_b, PlanInput(context_size=8192, slots=4, lanes=2))
    assert four.kv_cache_bytes == (512 + 4 * 8192) * cell
    assert [(c.role, c.n_ctx, c.n_seq, c.cells) for c in four.contexts] == [
        ("tokenizer", 512, 1, 512),
        ("lane 0", 16384, 2, 8192),
        ("lane 1", 16384, 2, 8192),
    ]
    # A context that is not a multiple of 256 is padded: 1000 tokens take 1024 cells.
    assert plan_fit(eight_b, PlanInput(context_size=1000)).kv_cache_bytes == (512 + 1024) * cell
    # q8_0 stores 32 values in 34 bytes (it needs flash attention).
    q8 = plan_fit(eight_b, PlanInput(context_size=8192, kv_cache_type="q8_0", flash_attention=True))
    assert q8.kv_cache_bytes == (512 + 8192) * 32 * 2 * (1024 // 32 * 34)


def test_llama_8b_compute_buffers_follow_the_documented_estimate(eight_b: GGUFHeader) -> None:
    # Tokenizer context (512-token batch): the logits, 4 x 512 x (128256 + 3 x 4096), outweigh attention.
    tokenizer = 4 * 512 * (128256 + 3 * 4096)
    # Lane (64-token batch, 8192 cells): scores 4 x 64 x 8192 x 32 heads, an f32 mask, activations.
    lane = 4 * 64 * 8192 * 32 + 4 * 64 * 8192 + 4 * 64 * (3 * 4096 + 14336)
    outputs = 2 * 4 * 128256  # one token's logits per context
    plan = plan_fit(eight_b, PlanInput(context_size=8192))
    assert plan.compute_bytes == tokenizer + lane + outputs == 364_881_920
    assert plan.total_bytes == plan.weights_bytes + plan.kv_cache_bytes + plan.compute_bytes + 256 * MIB


def test_llama_8b_fits_in_ram_or_not(eight_b: GGUFHeader) -> None:
    roomy = plan_fit(eight_b, PlanInput(context_size=8192, ram_bytes=16 * GIB))
    assert (roomy.verdict, roomy.fits, roomy.gpu_layers) == ("cpu", True, 0)
    assert roomy.reason.startswith("fits in RAM: 6.23 GiB of 16.00 GiB (weights 4.58 GiB, KV cache 1.06 GiB")
    tight = plan_fit(eight_b, PlanInput(context_size=8192, ram_bytes=4 * GIB))
    assert (tight.verdict, tight.fits) == ("none", False)
    assert tight.reason == "does not fit with every layer in RAM: CPU needs 6.23 GiB of 4.00 GiB"


# Llama 3.1 70B: q and o 8192x8192, k and v 8192x1024, gate, up and down 8192x28672; Q4_K_M gives v and
# down Q6_K in 40 of the 80 layers.
LAYER_70B_Q4 = int((2 * 8192 * 8192 + 2 * 8192 * 1024 + 3 * 8192 * 28672) * Q4_K) + 2 * 8192 * 4
LAYER_70B_Q6 = int((2 * 8192 * 8192 + 8192 * 1024 + 2 * 8192 * 28672) * Q4_K)
LAYER_70B_Q6 += int((8192 * 1024 + 8192 * 28672) * Q6_K) + 2 * 8192 * 4
EMBEDDING_70B = int(8192 * 128256 * Q4_K)
OUTPUT_70B = int(8192 * 128256 * Q6_K) + 8192 * 4
KV_CELL_70B = 80 * 2 * 8 * 128 * 2  # bytes of one cell over all layers, f16
ONE_GPU: dict[str, int] = {"gpus": 1, "gpu_memory_bytes": 24 * GIB}
TWO_GPUS: dict[str, int] = {"gpus": 2, "gpu_memory_bytes": 24 * GIB}


def test_llama_70b_weights(seventy_b: GGUFHeader) -> None:
    assert (LAYER_70B_Q4, LAYER_70B_Q6) == (481_361_920, 544_079_872)
    assert sum(use_more_bits(layer, 80) for layer in range(80)) == 40
    plan = plan_fit(seventy_b, PlanInput(context_size=8192))
    assert plan.weights_bytes == 40 * (LAYER_70B_Q4 + LAYER_70B_Q6) + EMBEDDING_70B + ROPE_FREQS + OUTPUT_70B
    assert plan.weights_bytes == 42_470_588_672  # 42.5 GB, as the published file
    assert plan.kv_cache_bytes == (512 + 8192) * KV_CELL_70B


def test_llama_70b_is_refused_on_one_24_gib_gpu(seventy_b: GGUFHeader) -> None:
    # With a GPU and no gpuLayers, every layer goes to it (localmodel.command's default): 81 layers.
    plan = plan_fit(seventy_b, PlanInput(context_size=8192, ram_bytes=64 * GIB, **ONE_GPU))
    assert (plan.verdict, plan.fits, plan.gpu_layers) == ("none", False, 81)
    cpu, gpu = plan.devices
    assert gpu.weights_bytes == 40 * (LAYER_70B_Q4 + LAYER_70B_Q6) + OUTPUT_70B  # the embedding stays in RAM
    assert cpu.weights_bytes == EMBEDDING_70B + ROPE_FREQS
    assert gpu.kv_cache_bytes == (512 + 8192) * KV_CELL_70B
    assert plan.reason.startswith("does not fit with 81 of 81 layers on 1 GPU(s): GPU0 needs 42.59 GiB of 24")
    # As many layers as the GPU holds still leave more than 16 GiB of RAM to find.
    auto = plan_fit(
        seventy_b,
        PlanInput(context_size=8192, ram_bytes=16 * GIB, gpu_layers="auto", **ONE_GPU),
    )
    assert (auto.verdict, auto.gpu_layers) == ("none", 41)
    assert (
        "even with 41 of 81 layers on 1 GPU(s), all they hold: CPU needs 21.53 GiB of 16.00 GiB"
        in auto.reason
    )


def test_llama_70b_on_two_24_gib_gpus_fully_at_8k_partly_at_32k(seventy_b: GGUFHeader) -> None:
    full = plan_fit(seventy_b, PlanInput(context_size=8192, ram_bytes=64 * GIB, **TWO_GPUS))
    assert (full.verdict, full.gpu_layers) == ("gpu", 81)
    cpu, first, second = full.devices
    # Layers 0-40 on GPU 0 (layer/81 < 1/2), 41-79 and the output on GPU 1; 20 of 0-40 have Q6_K v and down.
    assert (first.layers, second.layers) == (41, 40)
    assert first.weights_bytes == 20 * LAYER_70B_Q6 + 21 * LAYER_70B_Q4
    assert second.weights_bytes == 20 * LAYER_70B_Q6 + 19 * LAYER_70B_Q4 + OUTPUT_70B
    assert first.kv_cache_bytes == 41 * (512 + 8192) * KV_CELL_70B // 80
    assert all(gpu.total_bytes <= 24 * GIB for gpu in (first, second)) and cpu.layers == 0

    spec = PlanInput(context_size=32768, ram_bytes=64 * GIB, gpu_layers="auto", **TWO_GPUS)
    partial = plan_fit(seventy_b, spec)
    assert partial.verdict == "partial" and partial.fits and 60 < partial.gpu_layers < 81
    assert all(gpu.total_bytes <= 24 * GIB for gpu in partial.devices[1:])
    layers_in_ram = 81 - partial.gpu_layers
    assert partial.devices[0].layers == layers_in_ram and partial.devices[0].weights_bytes > EMBEDDING_70B
    assert partial.reason.startswith(f"partial offload: {partial.gpu_layers} of 81 layers on 2 GPU(s)")
    # One layer more and a GPU overflows: auto took the most that fit.
    more = plan_fit(seventy_b, replace(spec, gpu_layers=partial.gpu_layers + 1))
    assert not more.fits and any(not gpu.fits for gpu in more.devices[1:])


def test_offloading_layers_moves_their_weights_and_kv_and_the_output_goes_first(eight_b: GGUFHeader) -> None:
    spec = PlanInput(context_size=4096, gpu_layers=1, **ONE_GPU)
    cpu, gpu = plan_fit(eight_b, spec).devices
    assert (gpu.layers, gpu.weights_bytes, gpu.kv_cache_bytes) == (1, OUTPUT_8B, 0)
    cpu, gpu = plan_fit(eight_b, replace(spec, gpu_layers=3)).devices
    # The last two blocks (30 and 31, both Q6_K v and down) and the output layer.
    assert (gpu.layers, gpu.weights_bytes) == (3, 2 * LAYER_8B_Q6 + OUTPUT_8B)
    assert gpu.kv_cache_bytes == 2 * (512 + 4096) * 2 * 8 * 128 * 2
    assert cpu.layers == 30 and cpu.weights_bytes == eight_b.tensor_bytes - gpu.weights_bytes


def test_a_tied_output_puts_a_second_copy_of_the_embedding_on_the_gpu() -> None:
    tied = llama(LLAMA_31_8B, drop="output.weight")
    _, gpu = plan_fit(tied, PlanInput(gpu_layers=1, **ONE_GPU)).devices
    assert gpu.weights_bytes == EMBEDDING_8B + 4096 * 4  # the embedding again, as output, and the norm
    cpu = plan_fit(tied, PlanInput()).devices[0]
    assert cpu.weights_bytes == tied.tensor_bytes  # on the CPU the one mapped copy serves both


def test_gemma_without_a_full_sliding_window_cache_keeps_a_window_of_cells() -> None:
    """Gemma 3: 15 of its 18 layers attend to a window of 512 tokens; llama.cpp's swa_full (its default
    and ours) gives them the whole context anyway, and without it pad(512 + batch, 256) cells."""
    gemma = read_header(require_model("gemma3"))
    cell = 2 * 256 * 1 * 2  # K and V of one 256-value head, f16
    full = plan_fit(gemma, PlanInput(context_size=2048))
    assert full.kv_cache_bytes == 18 * (512 + 2048) * cell
    window = plan_fit(gemma, PlanInput(context_size=2048, swa_full=False))
    # Tokenizer context: 512 cells everywhere. Lane (batch 64): 3 full layers 2048, 15 windowed 768.
    assert window.kv_cache_bytes == 18 * 512 * cell + (3 * 2048 + 15 * 768) * cell


def test_the_json_is_camel_case_and_names_no_model(eight_b: GGUFHeader) -> None:
    plan = plan_fit(eight_b, PlanInput(context_size=8192, ram_bytes=16 * GIB))
    document = json.loads(json.dumps(plan.as_json()))
    assert {
        "weightsBytes",
        "kvCacheBytes",
        "computeBytes",
        "totalBytes",
        "gpuLayers",
        "fits",
        "reason",
    } <= set(document)
    assert (
        document["weightsBytes"] == plan.weights_bytes
        and document["gpuLayers"] == 0
        and "name" not in document
    )
    assert document["devices"][0] == {
        "device": "CPU",
        "layers": 33,
        "weightsBytes": plan.weights_bytes,
        "kvCacheBytes": plan.kv_cache_bytes,
        "computeBytes": plan.compute_bytes,
        "overheadBytes": 256 * MIB,
        "totalBytes": plan.total_bytes,
        "capacityBytes": 16 * GIB,
        "fits": True,
    }


def test_warnings_for_a_context_past_training_and_layers_without_gpus(eight_b: GGUFHeader) -> None:
    plan = plan_fit(eight_b, PlanInput(context_size=262144, gpu_layers=20))
    assert plan.gpu_layers == 0 and plan.verdict == "cpu"
    assert plan.warnings == (
        "contextSize 262144 is beyond the 131072 tokens llama was trained for",
        "gpuLayers 20 asks for GPUs, and none are given: all layers stay in RAM",
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (PlanInput(kv_cache_type="q4_0"), "needs flash attention"),
        (PlanInput(kv_cache_type="q3_K"), "KV cache type 'q3_K'"),
        (PlanInput(gpus=1), "give their memory"),
        (PlanInput(slots=0), "at least 1"),
        (PlanInput(gpu_layers=-2), "gpuLayers -2"),
    ],
)
def test_settings_llama_cpp_refuses_are_errors(eight_b: GGUFHeader, spec: PlanInput, message: str) -> None:
    with pytest.raises(FitError, match=message):
        plan_fit(eight_b, spec)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"llama.attention.kv_lora_rank": 512}, "multi-head latent attention"),
        ({"llama.ssm.state_size": 16}, "recurrent and hybrid"),
    ],
)
def test_models_whose_cache_is_not_counted_here_are_refused(extra: dict[str, object], message: str) -> None:
    with pytest.raises(FitError, match=message):
        plan_fit(llama(LlamaShape(2, 256, 2, 1, 512, n_vocab=256), **extra), PlanInput())


def test_a_header_without_its_shape_is_refused() -> None:
    header = parse_header(BytesSource(header_bytes({"general.architecture": "llama"}, [])))
    with pytest.raises(FitError, match="llama.block_count"):
        plan_fit(header, PlanInput())
