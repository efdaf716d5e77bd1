"""The operator's fit check: the plan against the profile's GPU memory and the spec's memory, the Fits
condition it gives, and what it decides in the pod; the header cache that keeps reconciles from reading
a header twice."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from localmodel.fit import GIB
from localmodel.gguf_header import BytesSource, GGUFHeader, HeaderError, parse_header
from localmodel.manifests import parse_manifest
from localmodel.sources import Source
from localmodel.spec import FitPlanStatus, LocalModel
from localmodel_operator.accelerators import UnknownAcceleratorError
from localmodel_operator.builders import model_source
from localmodel_operator.fit_check import FitCheck, check_fit, cpu_count, planned, served_spec
from localmodel_operator.model_headers import ModelHeaders
from localmodel_operator.settings import AcceleratorProfile, OperatorSettings
from tests.support.gguf_files import (
    LLAMA_31_8B,
    LLAMA_31_70B,
    LlamaShape,
    header_bytes,
    llama_metadata,
    llama_tensors,
)

URL = "https://models.example/m.gguf"


def llama(shape: LlamaShape) -> GGUFHeader:
    return parse_header(BytesSource(header_bytes(llama_metadata(shape), llama_tensors(shape))))


SEVENTY_B, EIGHT_B = llama(LLAMA_31_70B), llama(LLAMA_31_8B)


def model(**spec: Any) -> LocalModel:
    document = {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": "m", "namespace": "ai"},
        "spec": {"model": {"url": URL}, **spec},
    }
    return parse_manifest(document, "test")


def gpus(count: int, context: int = 8192, **engine: Any) -> dict[str, Any]:
    return {
        "resources": {"gpu": {"count": count}},
        "backend": {"engine": {"contextSize": context, **engine}},
    }


def settings(gpu_memory: str | None = "24Gi") -> OperatorSettings:
    base = OperatorSettings()
    nvidia = base.accelerators["nvidia"].model_copy(update={"gpu_memory": gpu_memory})
    return OperatorSettings(accelerators={**base.accelerators, "nvidia": nvidia})


class Reader:
    """A header reader that hands out one header (or raises) and notes what it was asked."""

    def __init__(self, header: GGUFHeader | Exception) -> None:
        self.header = header
        self.asked: list[tuple[str, str | None, dict[str, str]]] = []

    async def read(self, source: Source, sha256: str | None, env: Mapping[str, str]) -> GGUFHeader:
        self.asked.append((source.url, sha256, dict(env)))
        if isinstance(self.header, Exception):
            raise self.header
        return self.header


async def check(built: LocalModel, reader: Reader, operator: OperatorSettings | None = None) -> FitCheck:
    return await check_fit(built, model_source(built), operator or settings(), reader)


async def test_a_70b_is_refused_on_one_24_gib_gpu() -> None:
    fit = await check(model(**gpus(1)), Reader(SEVENTY_B))
    assert (fit.status, fit.reason, fit.refused) == ("False", "DoesNotFit", True)
    # Every layer on the GPU (the default with GPUs); two slots of 8192 tokens (the backend's default).
    assert fit.message.startswith("does not fit with 81 of 81 layers on 1 GPU(s): GPU0 needs 45.09 GiB of 24")
    assert fit.plan is not None and fit.plan.verdict == "none"


async def test_a_70b_on_two_24_gib_gpus_offloads_what_fits_at_32k() -> None:
    fit = await check(model(**gpus(2, 32768, gpuLayers="auto")), Reader(SEVENTY_B))
    assert (fit.status, fit.reason) == ("True", "Fits")
    assert fit.plan is not None and fit.plan.verdict == "partial"
    assert 0 < fit.plan.gpu_layers < 81
    engine = served_spec(model(**gpus(2, 32768, gpuLayers="auto")).spec, fit).backend.engine
    assert engine.gpu_layers == fit.plan.gpu_layers
    # The same at 8k: every layer fits on the two GPUs.
    full = await check(model(**gpus(2, 8192, gpuLayers="auto")), Reader(SEVENTY_B))
    assert full.plan is not None and (full.plan.verdict, full.plan.gpu_layers) == ("gpu", 81)


async def test_a_cpu_model_over_its_memory_limit_is_refused_and_one_within_it_fits() -> None:
    tight = await check(model(resources={"memory": "4Gi"}), Reader(EIGHT_B))
    assert (tight.status, tight.reason) == ("False", "DoesNotFit")
    assert "CPU needs" in tight.message and "of 4.00 GiB" in tight.message
    roomy = await check(model(resources={"memory": "16Gi", "cpu": "4"}), Reader(EIGHT_B))
    assert (roomy.status, roomy.plan and roomy.plan.verdict) == ("True", "cpu")
    assert roomy.plan is not None and roomy.plan.devices[0].capacity_bytes == 16 * GIB


async def test_the_memory_request_is_the_plans_ram_in_whole_mib() -> None:
    fit = await check(model(), Reader(EIGHT_B))
    assert fit.plan is not None
    ram = fit.plan.devices[0].total_bytes
    assert fit.memory_request == f"{-(-ram // (1 << 20))}Mi"
    assert int(fit.memory_request[:-2]) << 20 >= ram > (int(fit.memory_request[:-2]) - 1) << 20


async def test_sources_the_operator_cannot_read_are_not_planned_and_not_read() -> None:
    reader = Reader(EIGHT_B)
    for url in ("pvc://models/m.gguf", "file:///models/m.gguf"):
        fit = await check(model(model={"url": url}), reader)
        assert (fit.status, fit.reason, fit.plan) == ("Unknown", "NotPlanned", None)
        assert url.split(":")[0] in fit.message and "not checked" in fit.message
    assert reader.asked == []


@pytest.mark.parametrize(
    ("backend_type", "url"),
    [("faster-whisper", "hf://Systran/faster-whisper-tiny.en"), ("piper", "https://voices.example/v.onnx")],
)
async def test_only_llama_cpp_models_are_planned(backend_type: str, url: str) -> None:
    """The plan reads GGUF headers: other engines' models (downloaded or not) are neither read nor
    planned, and their pods ask for resources.memory or the operator's default."""
    reader = Reader(EIGHT_B)
    fit = await check(model(model={"url": url}, backend={"type": backend_type}), reader)
    assert (fit.status, fit.reason, fit.plan, fit.memory_request) == ("Unknown", "NotPlanned", None, None)
    assert fit.message == (
        f"the fit plan reads GGUF files: {backend_type} models are not planned (their memory request is "
        "resources.memory, else the operator's 1Gi)"
    )
    assert reader.asked == []


async def test_gpus_of_unknown_size_are_not_planned_and_auto_falls_back_to_every_layer() -> None:
    built = model(**gpus(1, gpuLayers="auto"))
    reader = Reader(SEVENTY_B)
    fit = await check(built, reader, settings(gpu_memory=None))
    assert (fit.status, fit.reason) == ("Unknown", "NotPlanned")
    assert "backend.accelerators.nvidia.gpuMemory" in fit.message and "every layer" in fit.message
    assert reader.asked == []  # nothing to plan against: no read
    assert served_spec(built.spec, fit).backend.engine.gpu_layers is None  # the default: all with GPUs


async def test_an_unreadable_header_is_unknown_with_the_error() -> None:
    fit = await check(model(), Reader(HeaderError("GET https://models.example/m.gguf: HTTP 503")))
    assert (fit.status, fit.reason, fit.refused) == ("Unknown", "HeaderUnreadable", False)
    assert "HTTP 503" in fit.message and fit.memory_request is None and fit.plan_status() is None


async def test_the_pods_token_and_endpoint_and_the_checksum_go_to_the_reader() -> None:
    reader = Reader(EIGHT_B)
    env = [{"name": "HF_TOKEN", "value": "hf_x"}, {"name": "HF_ENDPOINT", "value": "https://mirror"}]
    sha = "b" * 64
    await check(model(model={"url": "hf://org/repo/m.gguf", "sha256": sha}, env=env), reader)
    assert reader.asked == [
        ("hf://org/repo/m.gguf", sha, {"HF_TOKEN": "hf_x", "HF_ENDPOINT": "https://mirror"})
    ]


async def test_gpus_of_a_vendor_without_a_profile_are_an_invalid_spec() -> None:
    with pytest.raises(UnknownAcceleratorError):
        await check(
            model(resources={"gpu": {"vendor": "intel"}}), Reader(EIGHT_B), OperatorSettings(accelerators={})
        )


def test_a_model_the_planner_cannot_count_is_not_planned() -> None:
    broken = parse_header(BytesSource(header_bytes({"general.architecture": "llama"}, [])))
    fit = planned(model().spec, broken, None, None)
    assert (fit.status, fit.reason) == ("Unknown", "NotPlanned") and "not checked" in fit.message


def test_the_status_plan_is_camel_case_int64_figures_per_device() -> None:
    fit = planned(model(**gpus(2, 32768, gpuLayers="auto")).spec, SEVENTY_B, 24 * GIB, None)
    status = fit.plan_status()
    assert status is not None and fit.plan is not None
    assert FitPlanStatus.model_validate(status).verdict == "partial"  # what the CRD's schema describes
    assert status["weightsBytes"] == fit.plan.weights_bytes == 42_470_588_672
    assert status["gpuLayers"] == fit.plan.gpu_layers
    cpu, *on_gpus = status["devices"]
    assert cpu == {"device": "CPU", "layers": 81 - fit.plan.gpu_layers, "totalBytes": cpu["totalBytes"]}
    assert [gpu["capacityBytes"] for gpu in on_gpus] == [24 * GIB, 24 * GIB]


def test_explicit_gpu_layers_are_left_alone() -> None:
    spec = model(**gpus(1, gpuLayers=10)).spec
    assert served_spec(spec, None) is spec


@pytest.mark.parametrize(("quantity", "cpus"), [(None, 1), ("500m", 1), ("1500m", 2), ("2", 2), ("1.5", 2)])
def test_cpu_quantities_round_up_to_threads(quantity: str | None, cpus: int) -> None:
    assert cpu_count(quantity) == cpus


async def test_headers_are_read_once_per_file_and_failures_are_read_again() -> None:
    reads: list[tuple[str, dict[str, Any]]] = []
    failing = {"https://down.example/m.gguf"}

    def read(source: Source, **options: Any) -> GGUFHeader:
        reads.append((source.url, options))
        if source.url in failing:
            raise HeaderError(f"GET {source.url}: connection refused")
        return EIGHT_B

    headers = ModelHeaders(max_headers=2, read=read)
    up, down = model_source(model()), model_source(model(model={"url": "https://down.example/m.gguf"}))
    assert await headers.read(up, None, {}) is EIGHT_B
    assert await headers.read(up, None, {}) is EIGHT_B
    assert len(reads) == 1 and "hf_token" not in reads[0][1]  # no token given: huggingface_hub's, or none
    for _ in range(2):
        with pytest.raises(HeaderError):
            await headers.read(down, None, {})
    assert len(reads) == 3  # a failure is not kept
    await headers.read(up, "c" * 64, {"HF_TOKEN": "t"})  # another checksum: another file
    assert len(reads) == 4 and reads[-1][1]["hf_token"] == "t"
    assert len(headers) == 2


def test_a_profiles_gpu_memory_is_a_size() -> None:
    assert AcceleratorProfile(image="i", gpu_memory="80Gi").gpu_memory_bytes == 80 * GIB
    assert AcceleratorProfile(image="i").gpu_memory_bytes is None
    with pytest.raises(ValueError, match="expected a size"):
        AcceleratorProfile(image="i", gpu_memory="lots")
