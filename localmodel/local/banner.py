"""What local mode prints once it serves: the URL, the models, and requests ready to paste."""

from __future__ import annotations

import json

from rich.console import Group
from rich.text import Text

from localmodel.spec import LocalModel, Task
from localmodel_router.settings import RouterSettings


def serving_banner(url: str, models: list[LocalModel], settings: RouterSettings) -> Group:
    lines = [Text.assemble("OpenAI-compatible API at ", (url, "bold cyan"))]
    for model in models:
        spec = model.spec
        if spec.backend.address:
            how = f"external backend {spec.backend.address}"
        elif spec.min_replicas == 0:
            idle = spec.scale_down_delay_seconds
            how = f"{spec.initial_replicas} replica(s) now; scales to zero after {idle}s idle"
        else:
            how = f"{spec.initial_replicas} replica(s)"
        tasks = ", ".join(task.value for task in spec.tasks)
        lines.append(Text(f"  {model.served_name}  ({tasks}; {how})"))
    example = _example_model(models)
    key = "$LOCALMODEL_API_KEY" if settings.api_keys else "unused"
    auth = f' -H "Authorization: Bearer {key}"' if settings.api_keys else ""
    curl, call = _example_requests(example, url, auth)
    python = f'from openai import OpenAI\nclient = OpenAI(base_url="{url}", api_key="{key}")\n{call}'
    # Plain lines, no box around them: the snippets must survive copy and paste.
    return Group(
        *lines,
        Text("\nTry it (Ctrl-C stops the server):", style="bold"),
        Text(curl),
        Text(""),
        Text(python),
    )


def _example_requests(model: LocalModel, url: str, auth: str) -> tuple[str, str]:
    """A curl command line and a Python call of the OpenAI client for the model's first task."""
    name, tasks = model.served_name, model.spec.tasks
    body: dict[str, object]
    if Task.SPEECH in tasks:
        body = {"model": name, "input": "Hello!", "voice": "alloy", "response_format": "wav"}
        curl = (
            f"curl {url}/audio/speech{auth} \\\n  -H 'Content-Type: application/json' -d '{json.dumps(body)}'"
        )
        call = f'client.audio.speech.create(model="{name}", voice="alloy", input="Hello!", response_format="wav")'  # noqa: E501
        return f"{curl} --output hello.wav", f'{call}.write_to_file("hello.wav")'
    if Task.TRANSCRIPTION in tasks:
        curl = f"curl {url}/audio/transcriptions{auth} \\\n  -F file=@hello.wav -F model={name}"
        call = f'client.audio.transcriptions.create(model="{name}", file=open("hello.wav", "rb"))'
        return curl, f"print({call}.text)"
    if Task.CHAT in tasks:
        path, body = "chat/completions", {"model": name, "messages": [{"role": "user", "content": "Hello!"}]}
        call = f'client.chat.completions.create(model="{name}", messages={body["messages"]})'
        show = ".choices[0].message.content"
    else:
        path, body = "embeddings", {"model": name, "input": "Hello!"}
        call = f'client.embeddings.create(model="{name}", input="Hello!")'
        show = ".data[0].embedding[:4]"
    curl = f"curl {url}/{path}{auth} \\\n  -H 'Content-Type: application/json' -d '{json.dumps(body)}'"
    return curl, f"print({call}{show})"


def _example_model(models: list[LocalModel]) -> LocalModel:
    """A chat model if there is one: the friendliest first request."""
    return next((model for model in models if Task.CHAT in model.spec.tasks), models[0])
