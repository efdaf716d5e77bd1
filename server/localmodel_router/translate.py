"""Pure mapping between OpenAI bodies and the backend contract (PredictOptions in, Reply out)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from localmodel.wire import backend_pb2
from localmodel_router import grammar
from localmodel_router.discovery import ModelRoute
from localmodel_router.errors import BackendError, BadRequestError
from localmodel_router.protocol.chat import ChatCompletionRequest, ChatMessage, FunctionCall, ToolCall
from localmodel_router.protocol.common import FinishReason, GenerationRequest, TokenLogprob
from localmodel_router.protocol.completions import CompletionRequest
from localmodel_router.protocol.rerank import RerankRequest

# OpenAI's defaults where the request leaves a field out.
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0
RANDOM_SEED = -1
COMPLETION_DEFAULT_TOKENS = 16  # what OpenAI's completions generate when max_tokens is not given


@dataclass(frozen=True)
class ToolUse:
    """The tools a chat request lets the model call; its answer is parsed back into tool calls."""

    tools: list[dict[str, Any]]


def max_tokens(requested: int | None, route: ModelRoute, param: str) -> int:
    """Tokens to generate: the request's limit within the model's cap (0: until the model stops)."""
    cap = route.max_tokens
    if requested is not None and cap is not None and requested > cap:
        raise BadRequestError(
            f"{param}: at most {cap} tokens for model '{route.name}', got {requested}", param=param
        )
    return requested or cap or 0


def chat_options(
    request: ChatCompletionRequest, route: ModelRoute
) -> tuple[backend_pb2.PredictOptions, ToolUse | None]:
    """PredictOptions for a chat request, and the tools to parse the answer for (if any)."""
    messages = [_message(i, m) for i, m in enumerate(request.messages)]
    gbnf, tool_use = _constraints(request)
    if tool_use is not None:
        prompt = grammar.tool_system_prompt(tool_use.tools, _tool_choice(request))
        messages.insert(0, backend_pb2.Message(role="system", content=prompt))
    options = _sampling(request, route, request.max_completion_tokens or request.max_tokens, "max_tokens")
    options.messages.extend(messages)
    options.use_tokenizer_template = True
    options.grammar = gbnf
    if request.logprobs:
        options.logprobs = 1
        options.top_logprobs = request.top_logprobs or 0
    return options, tool_use


def completion_options(
    request: CompletionRequest, prompt: str, route: ModelRoute
) -> backend_pb2.PredictOptions:
    limit = request.max_tokens
    if limit is None:  # OpenAI's default for this API, within the model's own cap
        limit = min(COMPLETION_DEFAULT_TOKENS, route.max_tokens or COMPLETION_DEFAULT_TOKENS)
    options = _sampling(request, route, limit, "max_tokens")
    options.prompt = prompt
    if request.logprobs is not None:  # completions' `logprobs: N` is chat's `top_logprobs: N`
        options.logprobs = 1
        options.top_logprobs = request.logprobs
        options.prompt_logprobs = request.echo  # the prompt's tokens too: what loglikelihood evals read
    return options


def token_logprobs(reply: backend_pb2.Reply, prompt: bool = False) -> list[TokenLogprob]:
    """The log probabilities a backend reply carries (a JSON list in chat's shape), if any: of the
    generated tokens, or (`prompt`) of the prompt's."""
    given = reply.prompt_logprobs if prompt else reply.logprobs
    if not given:
        return []
    return [TokenLogprob.model_validate(entry) for entry in json.loads(given)]


def per_choice(options: backend_pb2.PredictOptions, n: int) -> list[backend_pb2.PredictOptions]:
    """The backend requests for `n` answers to one request: one each. A request that names a seed gets
    seed, seed + 1, ... so that its answers differ and each stays reproducible; without one, each
    answer gets a random seed of its own."""
    copies = []
    for index in range(n):
        copy = backend_pb2.PredictOptions()
        copy.CopyFrom(options)
        if options.seed != RANDOM_SEED and index:
            copy.seed = (options.seed + index) % 2**31  # stays a non-negative int32
        copies.append(copy)
    return copies


def join_answers(replies: list[backend_pb2.Reply], n: int) -> list[backend_pb2.Reply]:
    """A stream of `n` interleaved answers (PredictOptions.n) as one whole Reply per answer, as Predict
    gives one: its text and log probabilities joined, its last reply's counts and finish."""
    parts: list[list[backend_pb2.Reply]] = [[] for _ in range(n)]
    for reply in replies:
        if reply.index >= n:
            raise BackendError(f"the backend answered answer {reply.index} of a request for {n}")
        parts[reply.index].append(reply)
    check_answers(sum(1 for part in parts if part), n)
    return [_joined(part) for part in parts]


def check_answers(answered: int, n: int) -> None:
    """Fewer answers than asked for: the backend ignored `n` (one that predates it), a 502 saying so."""
    if answered < n:
        raise BackendError(f"the backend gave {answered} of {n} answers: it does not implement n")


def _joined(replies: list[backend_pb2.Reply]) -> backend_pb2.Reply:
    whole = backend_pb2.Reply()
    whole.CopyFrom(replies[-1])
    whole.message = b"".join(reply.message for reply in replies)
    logprobs = [entry for reply in replies if reply.logprobs for entry in json.loads(reply.logprobs)]
    whole.logprobs = json.dumps(logprobs).encode("utf-8") if logprobs else b""
    whole.prompt_logprobs = next((reply.prompt_logprobs for reply in replies if reply.prompt_logprobs), b"")
    return whole


def completion_prompts(request: CompletionRequest) -> list[str]:
    """The text prompts of a completion request, with what this router cannot do refused clearly."""
    if request.suffix:
        raise BadRequestError("suffix: not supported", param="suffix")
    if request.best_of not in (None, request.n):
        raise BadRequestError(
            "best_of: only best_of = n (every answer returned) is supported", param="best_of"
        )
    prompt = request.prompt
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise BadRequestError("prompt: must not be empty", param="prompt")
    if all(isinstance(p, str) for p in prompt):
        return [p for p in prompt if isinstance(p, str)]
    raise BadRequestError("prompt: token-array prompts are not supported; send text", param="prompt")


def embedding_requests(
    given: str | list[str] | list[int] | list[list[int]],
) -> list[backend_pb2.PredictOptions]:
    """One backend request per input: a string, a string list, a token array or a list of token arrays."""
    if isinstance(given, str):
        given = [given]
    if not given:
        raise BadRequestError("input: must not be empty", param="input")
    if all(isinstance(item, int) for item in given):
        return [backend_pb2.PredictOptions(embedding_tokens=given)]  # type: ignore[arg-type]
    options = []
    for item in given:
        if isinstance(item, str):
            if not item:
                raise BadRequestError("input: strings must not be empty", param="input")
            options.append(backend_pb2.PredictOptions(embeddings=item))
        else:
            options.append(backend_pb2.PredictOptions(embedding_tokens=item))  # type: ignore[arg-type]
    return options


def rerank_request(request: RerankRequest) -> backend_pb2.RerankRequest:
    top_n = request.top_n or len(request.documents)
    return backend_pb2.RerankRequest(query=request.query, documents=request.documents, top_n=top_n)


def detokenize_request(tokens: list[int]) -> backend_pb2.PredictOptions:
    return backend_pb2.PredictOptions(embedding_tokens=tokens)


def tokenize_request(text: str) -> backend_pb2.PredictOptions:
    return backend_pb2.PredictOptions(prompt=text)


def tool_calls(text: str, tool_use: ToolUse) -> list[ToolCall] | None:
    """The tool call in a constrained answer, or None when the model answered in text."""
    call = grammar.parse_tool_call(text, tool_use.tools)
    if call is None:
        return None
    name, arguments = call
    return [
        ToolCall(id=f"call_{uuid.uuid4().hex[:24]}", function=FunctionCall(name=name, arguments=arguments))
    ]


def finish_reason(reply: backend_pb2.Reply) -> FinishReason:
    return "length" if reply.finish_reason == "length" else "stop"


def _sampling(
    request: GenerationRequest, route: ModelRoute, limit: int | None, param: str
) -> backend_pb2.PredictOptions:
    stop = [request.stop] if isinstance(request.stop, str) else (request.stop or [])
    return backend_pb2.PredictOptions(
        tokens=max_tokens(limit, route, param),
        temperature=DEFAULT_TEMPERATURE if request.temperature is None else request.temperature,
        top_p=DEFAULT_TOP_P if request.top_p is None else request.top_p,
        seed=RANDOM_SEED if request.seed is None else request.seed,
        stop_prompts=stop,
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        logit_bias=json.dumps(request.logit_bias) if request.logit_bias else "",
    )


def _message(index: int, message: ChatMessage) -> backend_pb2.Message:
    if isinstance(message.content, list):
        texts = []
        for j, part in enumerate(message.content):
            if part.type != "text" or part.text is None:
                param = f"messages[{index}].content[{j}]"
                raise BadRequestError(
                    f"{param}: only text content is supported, got '{part.type}'", param=param
                )
            texts.append(part.text)
        content = "\n".join(texts)
    else:
        content = message.content or ""
    # "developer" is the newer name of "system"; chat templates know only the older one.
    role = "system" if message.role == "developer" else message.role
    calls = json.dumps([c.model_dump() for c in message.tool_calls]) if message.tool_calls else ""
    return backend_pb2.Message(
        role=role,
        content=content,
        name=message.name or "",
        tool_call_id=message.tool_call_id or "",
        tool_calls=calls,
    )


def _tool_choice(request: ChatCompletionRequest) -> str | dict[str, Any]:
    choice = request.tool_choice or "auto"
    return choice if isinstance(choice, str) else choice.model_dump()


def _constraints(request: ChatCompletionRequest) -> tuple[str, ToolUse | None]:
    """The GBNF grammar a request asks for (response_format or tools), and its tools if they are used."""
    uses_tools = bool(request.tools) and request.tool_choice != "none"
    response_format = request.response_format
    if uses_tools and response_format is not None and response_format.type != "text":
        raise BadRequestError("response_format cannot be combined with tools", param="response_format")
    try:
        if uses_tools:
            tools = [tool.model_dump(exclude_none=True) for tool in request.tools or []]
            return grammar.tool_call_grammar(tools, _tool_choice(request)), ToolUse(tools)
        if response_format is None or response_format.type == "text":
            return "", None
        if response_format.type == "json_object":
            return grammar.json_object_grammar(), None
        assert response_format.json_schema is not None
        return grammar.json_schema_grammar(response_format.json_schema.schema_), None
    except grammar.GrammarError as error:
        raise BadRequestError(str(error), param=str(error).partition(":")[0]) from error
