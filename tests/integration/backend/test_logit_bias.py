"""logit_bias on the engine's sequential path (llama-cpp-python's generate; the batching path has its own
sampler chain, tested through the router in tests/integration/router/test_openai_api.py)."""

from __future__ import annotations

from pathlib import Path
from threading import Event

import pytest

from localmodel_llamacpp.engine import InvalidRequestError, LlamaEngine, Prompt
from localmodel_llamacpp.options import LoadConfig, SamplingConfig

PROMPT = Prompt(text="The capital of France is")


def answer(engine: LlamaEngine, **sampling: object) -> str:
    chunks = engine.generate(PROMPT, SamplingConfig(max_tokens=3, **sampling), Event())  # type: ignore[arg-type]
    return "".join(chunk.text for chunk in chunks)


def test_a_bias_steers_the_sequential_path_and_an_unknown_token_is_refused(smollm2_path: Path) -> None:
    engine = LlamaEngine()
    engine.load(LoadConfig(model_path=smollm2_path, context_size=512, threads=2))
    banana = engine.tokenize(" banana")[0]
    assert " banana" not in answer(engine)
    assert answer(engine, logit_bias=((banana, 100.0),)).startswith(" banana")
    with pytest.raises(InvalidRequestError, match="token 49152 is not in the vocabulary"):
        answer(engine, logit_bias=((49152, 1.0),))
