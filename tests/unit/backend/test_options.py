from __future__ import annotations

import json
from pathlib import Path

import pytest

from localmodel.wire import backend_pb2
from localmodel_llamacpp.options import (
    DEFAULT_CONTEXT_SIZE,
    POOLING_TYPES,
    OptionsError,
    chat_messages,
    load_config,
    resolve_model_path,
    sampling_config,
)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"model_file": "/models/a.gguf"}, "/models/a.gguf"),
        ({"model": "a.gguf", "model_path": "/models"}, "/models/a.gguf"),  # LocalAI: name + directory
        ({"model_file": "/abs/a.gguf", "model_path": "/models"}, "/abs/a.gguf"),
        ({"model": "rel/a.gguf"}, "rel/a.gguf"),
    ],
)
def test_model_path_resolution(fields: dict[str, str], expected: str) -> None:
    assert resolve_model_path(backend_pb2.ModelOptions(**fields)) == Path(expected)


def test_load_defaults_and_mapping() -> None:
    config = load_config(
        backend_pb2.ModelOptions(
            model_file="/m.gguf", n_gpu_layers=-1, embeddings=True, options=["pooling:mean"]
        )
    )
    kwargs = config.llama_kwargs()
    assert kwargs["n_ctx"] == DEFAULT_CONTEXT_SIZE and kwargs["n_threads"] >= 1
    assert kwargs["n_gpu_layers"] == -1 and kwargs["embedding"] is True
    assert kwargs["pooling_type"] == POOLING_TYPES["mean"]
    assert kwargs["verbose"] is False


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model_file": "/m.gguf", "context_size": -1}, "context_size"),
        ({"model_file": "/m.gguf", "flash_attention": "sometimes"}, "flash_attention"),
        ({"model_file": "/m.gguf", "tensor_split": "1,x"}, "tensor_split"),
        ({"model_file": "/m.gguf", "main_gpu": "first"}, "main_gpu"),
        ({"model_file": "/m.gguf", "options": ["pooling:median"]}, "pooling"),
        ({"model_file": "/m.gguf", "options": ["lanes:0"]}, "lanes must be between"),
        ({"model_file": "/m.gguf", "options": ["parallel:many"]}, "parallel"),
        ({"model_file": "/m.gguf", "options": ["repack:sometimes"]}, "repack must be one of auto, on, off"),
        (
            {"model_file": "/m.gguf", "options": ["prompt_cache:all"]},
            "prompt_cache must be one of exact, prefix",
        ),
        ({}, "no model file"),
    ],
)
def test_bad_load_options_name_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        load_config(backend_pb2.ModelOptions(**fields))


def test_slots_and_lanes_options() -> None:
    config = load_config(backend_pb2.ModelOptions(model_file="/m.gguf", options=["parallel:8", "lanes:2"]))
    assert (config.parallel, config.lanes) == (8, 2)
    assert load_config(backend_pb2.ModelOptions(model_file="/m.gguf")).lanes == 0  # chosen at load


def test_repack_option() -> None:
    assert load_config(backend_pb2.ModelOptions(model_file="/m.gguf")).repack == "auto"
    for mode in ("on", "off", "auto"):
        options = [f"repack:{mode}"]
        assert load_config(backend_pb2.ModelOptions(model_file="/m.gguf", options=options)).repack == mode


def test_prompt_cache_option() -> None:
    assert load_config(backend_pb2.ModelOptions(model_file="/m.gguf")).prompt_cache == "exact"
    options = ["prompt_cache:prefix"]
    assert (
        load_config(backend_pb2.ModelOptions(model_file="/m.gguf", options=options)).prompt_cache == "prefix"
    )


def test_unknown_backend_options_are_ignored() -> None:
    # LocalAI passes options meant for other backends; they must not fail the load, nor change it.
    plain = load_config(backend_pb2.ModelOptions(model_file="/m.gguf"))
    options = ["use_jinja:true", "gpu:yes"]
    assert load_config(backend_pb2.ModelOptions(model_file="/m.gguf", options=options)) == plain


def test_logprobs_are_asked_for_with_a_number_of_alternatives() -> None:
    assert sampling_config(backend_pb2.PredictOptions()).logprobs is None
    assert sampling_config(backend_pb2.PredictOptions(logprobs=1)).logprobs == 0
    assert sampling_config(backend_pb2.PredictOptions(logprobs=1, top_logprobs=5)).logprobs == 5


def test_logit_bias_is_passed_as_token_bias_pairs() -> None:
    config = sampling_config(backend_pb2.PredictOptions(logit_bias='{"42": 5, "7": -100}'))
    assert config.logit_bias == ((42, 5.0), (7, -100.0))


def test_sampling_zero_means_default() -> None:
    config = sampling_config(backend_pb2.PredictOptions())
    assert (config.top_p, config.top_k, config.repeat_penalty, config.temperature) == (1.0, 0, 1.0, 0.0)
    assert config.seed == 0 and config.grammar is None and config.stop == ()


def test_sampling_mapping() -> None:
    config = sampling_config(
        backend_pb2.PredictOptions(
            tokens=7, seed=-1, stop_prompts=["\n", ""], temperature=0.5, grammar="root ::= x"
        )
    )
    assert (config.max_tokens, config.seed, config.stop, config.temperature) == (7, None, ("\n",), 0.5)
    assert config.grammar == "root ::= x"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 2.0}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"tokens": -1}, "tokens"),
        ({"mirostat": 3}, "mirostat"),
        ({"logprobs": 1, "top_logprobs": 21}, "top_logprobs: between 0 and 20"),
        ({"logit_bias": "{not json"}, "logit_bias"),
        ({"logit_bias": "[42, 5]"}, "logit_bias: expected a JSON object"),
        ({"logit_bias": '{"x": 5}'}, "logit_bias: expected token id → number"),
        ({"logit_bias": '{"42": "up"}'}, "logit_bias: expected token id → number"),
    ],
)
def test_bad_sampling_options_name_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        sampling_config(backend_pb2.PredictOptions(**fields))


def test_chat_messages_keep_tool_fields() -> None:
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    request = backend_pb2.PredictOptions(
        messages=[
            backend_pb2.Message(role="assistant", content="", tool_calls=json.dumps(calls)),
            backend_pb2.Message(role="tool", content="42", tool_call_id="c1", name="f"),
        ]
    )
    assert chat_messages(request) == [
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "content": "42", "tool_call_id": "c1", "name": "f"},
    ]


def test_chat_message_without_role_is_rejected() -> None:
    with pytest.raises(OptionsError, match=r"messages\[0\].role"):
        chat_messages(backend_pb2.PredictOptions(messages=[backend_pb2.Message(content="hi")]))
