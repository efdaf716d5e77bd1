"""The router driven by the official openai client, over real backends serving real GGUF models."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from tests.support.router import RouterProcess

HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]


def test_models_lists_served_names_and_aliases(router: RouterProcess) -> None:
    client = router.client()
    names = {model.id for model in client.models.list()}
    assert {"smollm2", "gpt-4o-mini", "gemma3", "smollm2-embed", "flaky"} <= names
    assert client.models.retrieve("gemma3").owned_by == "localmodel"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_chat_stream_joins_to_the_answer_and_reports_usage(router: RouterProcess) -> None:
    client = router.client()
    options = {"model": "smollm2", "messages": HELLO, "temperature": 0, "max_tokens": 40}
    answer = client.chat.completions.create(**options)
    text = answer.choices[0].message.content
    assert text and answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.completion_tokens > 0 and answer.usage.prompt_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens

    chunks = list(
        client.chat.completions.create(**options, stream=True, stream_options={"include_usage": True})
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(deltas) == text
    assert len(deltas) > 3, "the answer should arrive in pieces"
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == [answer.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == answer.usage.completion_tokens


def test_async_client_streams_too(router: RouterProcess) -> None:
    async def run() -> tuple[str, str]:
        client = router.async_client()
        options = {"model": "smollm2", "messages": HELLO, "temperature": 0, "max_tokens": 24}
        answer = await client.chat.completions.create(**options)
        stream = await client.chat.completions.create(**options, stream=True)
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream]
        return answer.choices[0].message.content or "", "".join(pieces)

    answer, streamed = asyncio.run(run())
    assert answer and streamed == answer


def test_alias_routes_to_its_model(router: RouterProcess) -> None:
    client = router.client()
    options = {"messages": HELLO, "temperature": 0, "max_tokens": 16}
    direct = client.chat.completions.create(model="smollm2", **options)
    aliased = client.chat.completions.create(model="gpt-4o-mini", **options)
    assert aliased.choices[0].message.content == direct.choices[0].message.content
    assert aliased.model == "gpt-4o-mini"  # answered under the name asked for, as OpenAI does


def test_two_models_are_routed_by_name(router: RouterProcess) -> None:
    client = router.client()
    prompt = "The capital of France is"
    smol = client.completions.create(model="smollm2", prompt=prompt, max_tokens=12, temperature=0)
    gemma = client.completions.create(model="gemma3", prompt=prompt, max_tokens=12, temperature=0)
    assert smol.choices[0].text and gemma.choices[0].text
    assert smol.choices[0].text != gemma.choices[0].text, "two different models answer differently"
    # Gemma-3-270M here is a base model without a chat template: chat is refused clearly.
    with pytest.raises(openai.BadRequestError, match="chat template"):
        client.chat.completions.create(model="gemma3", messages=HELLO, max_tokens=4)


def test_completions_with_several_prompts_and_streaming(router: RouterProcess) -> None:
    client = router.client()
    many = client.completions.create(
        model="smollm2", prompt=["One, two,", "Red, green,"], max_tokens=6, temperature=0
    )
    assert [c.index for c in many.choices] == [0, 1] and all(c.text for c in many.choices)
    single = client.completions.create(model="smollm2", prompt="One, two,", max_tokens=6, temperature=0)
    assert single.choices[0].text == many.choices[0].text
    streamed = client.completions.create(
        model="smollm2", prompt="One, two,", max_tokens=6, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == single.choices[0].text


def test_embeddings_in_a_batch(router: RouterProcess) -> None:
    client = router.client()
    texts = ["The cat sat on the mat.", "A kitten sat on the rug.", "Tax returns are due in April."]
    # The SDK asks for base64 by default and decodes it; ask for floats too.
    for encoding_format in ("base64", "float"):
        result = client.embeddings.create(model="smollm2-embed", input=texts, encoding_format=encoding_format)
        if encoding_format == "base64":
            assert all(isinstance(item.embedding, str) for item in result.data)
            continue
        vectors = [item.embedding for item in result.data]
        assert [item.index for item in result.data] == [0, 1, 2]
        assert all(len(v) == 576 for v in vectors)
        assert result.usage.prompt_tokens > 10

        def cosine(a: list[float], b: list[float]) -> float:
            return sum(x * y for x, y in zip(a, b, strict=True))

        assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    default = client.embeddings.create(model="smollm2-embed", input="hello")  # SDK decodes base64 itself
    assert len(default.data[0].embedding) == 576


def test_tokenize(router: RouterProcess) -> None:
    import httpx

    reply = httpx.post(f"{router.url}/v1/tokenize", json={"model": "smollm2", "content": "Hello world"})
    assert reply.status_code == 200 and reply.json() == {"tokens": [19556, 905], "count": 2}
    back = httpx.post(f"{router.url}/v1/detokenize", json={"model": "smollm2", "tokens": [19556, 905]})
    assert back.status_code == 200 and back.json() == {"content": "Hello world", "prompt": "Hello world"}
    outside = httpx.post(f"{router.url}/v1/detokenize", json={"model": "smollm2", "tokens": [1, 49152]})
    assert outside.status_code == 400, outside.text
    assert "token id 49152 is outside the model's vocabulary" in outside.json()["error"]["message"]
    negative = httpx.post(f"{router.url}/v1/detokenize", json={"model": "smollm2", "tokens": [-1]})
    assert negative.status_code == 400 and negative.json()["error"]["param"] == "tokens.0"


def test_json_mode_returns_parseable_json(router: RouterProcess) -> None:
    client = router.client()
    answer = client.chat.completions.create(
        model="smollm2",
        messages=[
            {"role": "user", "content": "Give the color of the sky as a JSON object with one key, color."}
        ],
        response_format={"type": "json_object"},
        max_tokens=100,
        temperature=0,
    )
    assert answer.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(answer.choices[0].message.content), dict)


def test_json_schema_output_matches_the_schema(router: RouterProcess) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    answer = router.client().chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Name a big city and its population."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
        max_tokens=60,
        temperature=0,
    )
    document = json.loads(answer.choices[0].message.content)
    assert set(document) == {"city", "population"} and isinstance(document["population"], int)


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 30}},
            "required": ["city"],
        },
    },
}


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_tool_call_is_parsed_by_the_client(router: RouterProcess, stream: bool) -> None:
    options = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "max_tokens": 60,
        "temperature": 0,
    }
    client = router.client()
    if stream:
        chunks = list(client.chat.completions.create(**options, stream=True))
        calls = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        name, arguments = calls[0].function.name, calls[0].function.arguments
    else:
        message = client.chat.completions.create(**options).choices[0]
        finish = [message.finish_reason]
        name, arguments = (
            message.message.tool_calls[0].function.name,
            message.message.tool_calls[0].function.arguments,
        )
    assert finish == ["tool_calls"]
    assert name == "get_weather"
    assert isinstance(json.loads(arguments)["city"], str)


def test_leaving_a_stream_stops_generation_on_the_real_backend(router: RouterProcess, chat_backend) -> None:  # type: ignore[no-untyped-def]
    import time

    import grpc

    from localmodel.wire import backend_pb2, backend_pb2_grpc

    client = router.client()
    stream = client.completions.create(
        model="smollm2", prompt="Count: 1, 2, 3, 4,", max_tokens=1500, temperature=0, stream=True
    )
    for _, _chunk in zip(range(3), stream, strict=False):
        pass
    stream.close()  # the client goes away mid-stream

    with grpc.insecure_channel(chat_backend.address) as channel:
        backend = backend_pb2_grpc.BackendStub(channel)
        deadline = time.monotonic() + 15  # generous for a loaded machine; the token count is the proof
        while backend.Status(backend_pb2.HealthMessage()).scheduler.running:
            assert time.monotonic() < deadline, "the backend kept generating after the client left"
            time.sleep(0.05)
        assert backend.GetMetrics(backend_pb2.MetricsRequest()).tokens_generated < 100
    started = time.monotonic()
    client.completions.create(model="smollm2", prompt="Hi", max_tokens=2)
    assert time.monotonic() - started < 15, "the next request should be served promptly"


def test_logit_bias_steers_the_greedy_answer(router: RouterProcess) -> None:
    import httpx

    banana = httpx.post(f"{router.url}/v1/tokenize", json={"model": "smollm2", "content": " banana"}).json()
    token = banana["tokens"][0]
    client = router.client()
    ask = {"model": "smollm2", "prompt": "The capital of France is", "max_tokens": 3, "temperature": 0}
    plain = client.completions.create(**ask).choices[0].text  # type: ignore[call-overload]
    steered = client.completions.create(**ask, logit_bias={str(token): 100}).choices[0].text  # type: ignore[call-overload]
    assert " banana" not in plain
    assert steered.startswith(" banana")  # +100: the biased token wins every greedy pick
    first = httpx.post(f"{router.url}/v1/tokenize", json={"model": "smollm2", "content": plain}).json()[
        "tokens"
    ][0]
    avoided = client.completions.create(**ask, logit_bias={str(first): -100}).choices[0].text  # type: ignore[call-overload]
    assert avoided != plain  # -100 on the token greedy decoding picked first: it is never picked


def test_logit_bias_outside_the_vocabulary_is_400(router: RouterProcess) -> None:
    client = router.client()
    with pytest.raises(openai.BadRequestError, match="token 49152 is not in the vocabulary"):
        client.completions.create(model="smollm2", prompt="Hi", max_tokens=2, logit_bias={"49152": 5})  # type: ignore[dict-item]
    with pytest.raises(openai.BadRequestError, match="biases are between -100 and 100"):
        client.completions.create(model="smollm2", prompt="Hi", max_tokens=2, logit_bias={"5": 101})  # type: ignore[dict-item]


def n_answers(client: openai.OpenAI, model: str) -> tuple[list[str], list[int]]:
    """Chat's n = 3 answers, checked whole and streamed, and the order in which streamed chunks came."""
    ask = {"model": model, "messages": [{"role": "user", "content": "Name a color."}], "max_tokens": 8}
    several = client.chat.completions.create(**ask, n=3, temperature=1.0, seed=11, logprobs=True)  # type: ignore[call-overload]
    assert [choice.index for choice in several.choices] == [0, 1, 2]
    # usage counts every answer's tokens (a logprob each)
    assert several.usage.completion_tokens == sum(len(c.logprobs.content) for c in several.choices)  # type: ignore[union-attr]
    answers = [choice.message.content for choice in several.choices]
    assert all(answers) and len(set(answers)) > 1  # seeds 11, 12, 13: different samples
    again = client.chat.completions.create(**ask, n=3, temperature=1.0, seed=11)  # type: ignore[call-overload]
    assert [choice.message.content for choice in again.choices] == answers  # and reproducible
    one = client.chat.completions.create(**ask, temperature=1.0, seed=11)  # type: ignore[call-overload]
    assert several.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt counted once
    assert answers[0] == one.choices[0].message.content  # answer 0: the request's own seed
    streamed: dict[int, str] = {}
    order: list[int] = []
    stream = client.chat.completions.create(**ask, n=3, temperature=1.0, seed=11, stream=True)  # type: ignore[call-overload]
    finished = set()
    for chunk in stream:
        for choice in chunk.choices:
            order.append(choice.index)
            streamed[choice.index] = streamed.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finished.add(choice.index)
    assert [streamed[i] for i in range(3)] == answers and finished == {0, 1, 2}
    return answers, order


def test_n_answers_from_one_prefill_equal_one_call_each(router: RouterProcess) -> None:
    client = router.client()
    shared, shared_order = n_answers(client, "smollm2")  # the backend decodes the three together
    separate, separate_order = n_answers(client, "flaky")  # a backend call per answer, in turn
    assert shared == separate  # answer i is the one seed + i gives, however it is decoded
    assert shared_order != sorted(shared_order), "one prefill: the answers' chunks interleave"
    assert separate_order == sorted(separate_order), "one call each: answers streamed one after another"
    text = client.completions.create(model="smollm2", prompt=["A", "B"], n=2, max_tokens=4, temperature=0)
    assert [choice.index for choice in text.choices] == [0, 1, 2, 3]  # prompt p's answer i is p * n + i
    assert text.choices[0].text == text.choices[1].text  # greedy: n equal answers, as OpenAI gives
    assert text.usage.prompt_tokens == sum(
        client.completions.create(model="smollm2", prompt=p, max_tokens=1).usage.prompt_tokens for p in "AB"
    )  # each prompt counted once
    streamed = client.completions.create(
        model="smollm2", prompt=["A", "B"], n=2, max_tokens=4, temperature=0, stream=True
    )
    pieces: dict[int, str] = {}
    for chunk in streamed:
        for choice in chunk.choices:
            pieces[choice.index] = pieces.get(choice.index, "") + choice.text
    assert [pieces[i] for i in range(4)] == [choice.text for choice in text.choices]


def test_chat_log_probabilities_streamed_or_not(router: RouterProcess) -> None:
    client = router.client()
    ask = {"model": "smollm2", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 6}
    reply = client.chat.completions.create(**ask, temperature=0, logprobs=True, top_logprobs=3)  # type: ignore[call-overload]
    choice = reply.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    entries = choice.logprobs.content
    assert "".join(entry.token for entry in entries) == choice.message.content
    assert len(entries) == reply.usage.completion_tokens
    for entry in entries:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert bytes(entry.bytes or []).decode("utf-8", "replace") == entry.token
        # Greedy decoding picks the most likely token: it heads its own alternatives, with its logprob.
        assert entry.top_logprobs[0].token == entry.token
        assert abs(entry.top_logprobs[0].logprob - entry.logprob) < 1e-6
        assert [top.logprob for top in entry.top_logprobs] == sorted(
            (top.logprob for top in entry.top_logprobs), reverse=True
        )
    streamed = client.chat.completions.create(
        **ask, temperature=0, logprobs=True, top_logprobs=3, stream=True
    )  # type: ignore[call-overload]
    tokens = [
        e.token for chunk in streamed for c in chunk.choices if c.logprobs for e in c.logprobs.content or []
    ]
    assert tokens == [entry.token for entry in entries]
    plain = client.chat.completions.create(**ask, temperature=0)  # type: ignore[call-overload]
    assert plain.choices[0].logprobs is None and plain.choices[0].message.content == choice.message.content


def test_completion_log_probabilities_in_the_completions_shape(router: RouterProcess) -> None:
    client = router.client()
    reply = client.completions.create(
        model="smollm2", prompt="The sky is", max_tokens=5, temperature=0, logprobs=2
    )
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.token_logprobs and logprobs.top_logprobs
    assert "".join(logprobs.tokens) == reply.choices[0].text
    assert logprobs.text_offset is not None and logprobs.text_offset[0] == 0
    assert logprobs.text_offset == sorted(logprobs.text_offset)
    assert all(len(top) == 2 for top in logprobs.top_logprobs)
    assert all(value <= 0 for value in logprobs.token_logprobs)


def test_echo_with_logprobs_scores_every_prompt_token_after_the_first(router: RouterProcess) -> None:
    client = router.client()
    prompt = "The capital of France is"
    first = client.completions.create(model="smollm2", prompt=prompt, max_tokens=1, temperature=0, logprobs=1)
    generated = first.choices[0].logprobs
    assert generated is not None and generated.token_logprobs and generated.token_logprobs[0] is not None
    # Score the prompt with the generated token appended, as loglikelihood evals do: the model's log
    # probability of that token at that place is the one it had when it generated it.
    scored = client.completions.create(
        model="smollm2",
        prompt=prompt + first.choices[0].text,
        max_tokens=1,
        temperature=0,
        logprobs=1,
        echo=True,
    )
    choice = scored.choices[0]
    assert choice.text.startswith(prompt + first.choices[0].text)
    logprobs = choice.logprobs
    assert logprobs is not None and logprobs.token_logprobs and logprobs.tokens and logprobs.text_offset
    prompt_count = scored.usage.prompt_tokens
    assert logprobs.token_logprobs[0] is None  # nothing came before the first token
    assert all(value is not None and value <= 0 for value in logprobs.token_logprobs[1:prompt_count])
    assert "".join(logprobs.tokens[:prompt_count]) == prompt + first.choices[0].text
    assert abs(logprobs.token_logprobs[prompt_count - 1] - generated.token_logprobs[0]) < 1e-2
    assert len(logprobs.tokens) == prompt_count + 1  # and the one generated token after them
    streamed = client.completions.create(
        model="smollm2", prompt=prompt, max_tokens=1, temperature=0, logprobs=1, echo=True, stream=True
    )
    chunks = [c.choices[0] for c in streamed if c.choices]
    assert "".join(c.text for c in chunks) == prompt + first.choices[0].text  # the prompt comes first
    assert chunks[0].logprobs is not None and chunks[0].logprobs.token_logprobs[0] is None
