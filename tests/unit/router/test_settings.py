from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from localmodel_router.__main__ import build_parser, settings_from

CONFIG = """
models:
  - name: smollm2
    aliases: [gpt-4o-mini]
    endpoints: ["127.0.0.1:50051", "127.0.0.1:50052"]
    maxTokens: 1024
api_keys: ["sk-local-1"]
max_in_flight_per_model: 8
"""


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return settings_from(build_parser("test").parse_args(list(argv)))


def test_config_file_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "router.yaml"
    config.write_text(CONFIG)
    settings = parse(
        "--config", str(config), "--model", "gemma=h:1,h:2", "--alias", "g=gemma", "--port", "9000"
    )
    smol, gemma = settings.models
    assert (smol.name, smol.aliases, smol.max_tokens) == ("smollm2", ["gpt-4o-mini"], 1024)
    assert (gemma.endpoints, gemma.aliases) == (["h:1", "h:2"], ["g"])
    assert settings.port == 9000 and settings.max_in_flight_per_model == 8
    assert [key.get_secret_value() for key in settings.api_keys] == ["sk-local-1"]


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALMODEL_ROUTER_REQUEST_TIMEOUT_SECONDS", "12.5")
    assert parse("--model", "m=h:1").request_timeout_seconds == 12.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "nothing"], "NAME=HOST:PORT"),
        (["--model", "m=h:1", "--alias", "a=other"], "no model named 'other'"),
    ],
)
def test_bad_flags_say_what_is_expected(argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        parse(*argv)


def test_bad_config_values_are_rejected(tmp_path: Path) -> None:
    config = tmp_path / "router.yaml"
    config.write_text("models: [{name: m, endpoints: []}]\nport: -1\n")
    with pytest.raises(ValidationError) as caught:
        parse("--config", str(config))
    assert "endpoints" in str(caught.value) and "port" in str(caught.value)


def test_api_keys_from_a_file_flag_or_environment_join_the_given_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# mounted from a Secret\nsk-file-1\n\n  sk-file-2  \n")
    settings = parse("--model", "m=h:1", "--api-key", "sk-flag", "--api-key-file", str(keys))
    assert [key.get_secret_value() for key in settings.api_keys] == ["sk-flag", "sk-file-1", "sk-file-2"]
    monkeypatch.setenv("LOCALMODEL_ROUTER_API_KEYS_FILE", str(keys))
    assert len(parse("--model", "m=h:1").api_keys) == 2


@pytest.mark.parametrize(("content", "message"), [(None, "cannot read"), ("# none\n\n", "holds no key")])
def test_an_api_keys_file_that_gives_no_key_is_refused(
    tmp_path: Path, content: str | None, message: str
) -> None:
    keys = tmp_path / "keys"
    if content is not None:
        keys.write_text(content)
    with pytest.raises(ValidationError, match=message):
        parse("--model", "m=h:1", "--api-key-file", str(keys))
