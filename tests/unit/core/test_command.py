from __future__ import annotations

from typing import Any

import pytest

from localmodel.command import backend_command
from localmodel.spec import LocalModelSpec


def spec(**fields: Any) -> LocalModelSpec:
    return LocalModelSpec.model_validate({"model": {"url": "hf://o/r/m.gguf"}, **fields})


def test_defaults_leave_choices_to_the_backend() -> None:
    command = backend_command(spec(), "/models/m.gguf", "0.0.0.0:50051")
    assert command.argv == ["localmodel", "backend", "--addr", "0.0.0.0:50051", "--model", "/models/m.gguf"]
    assert command.env == {}


def test_engine_options_tasks_and_env() -> None:
    command = backend_command(
        spec(
            tasks=["embedding"],
            backend={
                "engine": {
                    "contextSize": 8192,
                    "threads": 4,
                    "batchSize": 256,
                    "parallel": 4,
                    "flashAttention": "on",
                    "repack": "off",
                    "options": ["pooling:mean"],
                    "args": ["--mlock"],
                }
            },
            env=[{"name": "OMP_NUM_THREADS", "value": "4"}],
        ),
        "/m.gguf",
        "127.0.0.1:7000",
    )
    assert command.args == (
        "--addr", "127.0.0.1:7000", "--model", "/m.gguf",
        "--context-size", "8192", "--threads", "4", "--batch-size", "256", "--parallel", "4",
        "--flash-attention", "on", "--repack", "off", "--embeddings", "--option", "pooling:mean", "--mlock",
    )  # fmt: skip
    assert command.env == {"OMP_NUM_THREADS": "4"}


def test_gpus_offload_every_layer_unless_told_otherwise() -> None:
    with_gpu = spec(resources={"gpu": {"count": 1}})
    assert backend_command(with_gpu, "/m", "a:1").args[-2:] == ("--gpu-layers", "-1")
    told = spec(resources={"gpu": {"count": 1}}, backend={"engine": {"gpuLayers": 10}})
    assert backend_command(told, "/m", "a:1").args[-2:] == ("--gpu-layers", "10")


def test_auto_gpu_layers_never_reach_the_backend() -> None:
    """The backend takes a number: `auto` is for a fit plan to replace, and building a command with it
    unreplaced is the caller's mistake, said at once."""
    auto = spec(resources={"gpu": {"count": 1}}, backend={"engine": {"gpuLayers": "auto"}})
    with pytest.raises(ValueError, match="gpuLayers auto: replace it with the fit plan's layer count"):
        backend_command(auto, "/m", "a:1")


def test_the_backend_accepts_every_flag_the_command_emits() -> None:
    from localmodel_llamacpp.__main__ import build_parser

    everything = spec(
        tasks=["embedding"],
        resources={"gpu": {"count": 1}},
        backend={
            "engine": {
                "contextSize": 1,
                "threads": 1,
                "batchSize": 1,
                "parallel": 2,
                "flashAttention": "auto",
            }
        },
    )
    command = backend_command(everything, "/m.gguf", "a:1", grace_period=1, default_threads=1, metrics_port=9)
    parsed = build_parser().parse_args(list(command.args))
    assert (parsed.context_size, parsed.parallel, parsed.gpu_layers, parsed.embeddings) == (1, 2, -1, True)
    assert (parsed.grace_period, parsed.metrics_port) == (1, 9)


def test_grace_period_and_default_threads_are_flags_and_a_spec_threads_wins() -> None:
    command = backend_command(spec(), "/m.gguf", "127.0.0.1:7000", grace_period=28.0, default_threads=1)
    assert command.args[4:] == ("--grace-period", "28.0", "--threads", "1")
    pinned = backend_command(spec(backend={"engine": {"threads": 3}}), "/m.gguf", "a:1", default_threads=1)
    assert pinned.args[4:] == ("--threads", "3")


def test_local_mode_decides_auto_gpu_layers_before_the_command_is_built() -> None:
    from localmodel.local.group import without_auto_layers

    with_gpu = spec(resources={"gpu": {"count": 1}}, backend={"engine": {"gpuLayers": "auto"}})
    without_gpu = spec(backend={"engine": {"gpuLayers": "auto"}})
    assert "--gpu-layers" in backend_command(without_auto_layers(with_gpu), "/m.gguf", "a:1").args
    args = backend_command(without_auto_layers(with_gpu), "/m.gguf", "a:1").args
    assert args[args.index("--gpu-layers") + 1] == "-1"
    args = backend_command(without_auto_layers(without_gpu), "/m.gguf", "a:1").args
    assert args[args.index("--gpu-layers") + 1] == "0"
    plain = spec(backend={"engine": {"gpuLayers": 5}})
    assert without_auto_layers(plain) is plain


@pytest.mark.parametrize(
    ("backend_type", "entry_point"),
    [
        ("faster-whisper", ["python", "-m", "localmodel_whisper"]),
        ("piper", ["python", "-m", "localmodel_piper"]),
    ],
)
def test_each_engine_gets_its_entry_point_and_the_shared_flags(
    backend_type: str, entry_point: list[str]
) -> None:
    model = LocalModelSpec.model_validate(
        {
            "model": {"url": "hf://o/r"},
            "backend": {"type": backend_type, "engine": {"threads": 2, "parallel": 2, "options": ["k:v"]}},
        }
    )
    command = backend_command(model, "/models/m", "0.0.0.0:50051", grace_period=10, metrics_port=9090)
    assert command.argv[: len(entry_point)] == entry_point
    args = command.argv[len(entry_point) :]
    assert args[:4] == ["--addr", "0.0.0.0:50051", "--model", "/models/m"]
    for flag, value in (
        ("--grace-period", "10"),
        ("--threads", "2"),
        ("--parallel", "2"),
        ("--metrics-port", "9090"),
    ):
        assert args[args.index(flag) + 1] == value
    assert "--context-size" not in args and "--gpu-layers" not in args and "--embeddings" not in args


def test_whisper_runs_on_the_gpu_only_when_one_is_asked_for() -> None:
    def device(**fields: Any) -> str:
        model = LocalModelSpec.model_validate(
            {"model": {"url": "hf://o/r"}, "backend": {"type": "faster-whisper"}, **fields}
        )
        args = backend_command(model, "/m", "a:1").args
        return args[args.index("--device") + 1]

    assert device() == "cpu"
    assert device(resources={"gpu": {"count": 1}}) == "cuda"
