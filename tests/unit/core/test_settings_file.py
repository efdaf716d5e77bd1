"""One merge of a YAML settings file with flags, for the router, the operator and local mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from localmodel.cli import main as localmodel_main
from localmodel.settings_file import SettingsFileError, load_settings, merge_settings, read_settings_file
from localmodel_operator.__main__ import main as operator_main
from localmodel_router.__main__ import main as router_main


class Example(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOCALMODEL_TEST_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    keys: list[str] = Field(default_factory=list)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    return path


def test_the_file_alone_sets_what_it_names(tmp_path: Path) -> None:
    settings = load_settings(Example, write(tmp_path, "port: 9000\nkeys: [a]\n"))
    assert (settings.host, settings.port, settings.keys) == ("127.0.0.1", 9000, ["a"])


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_an_empty_file_sets_nothing(tmp_path: Path, text: str) -> None:
    assert load_settings(Example, write(tmp_path, text)) == Example()
    assert read_settings_file(None) == {}


def test_flags_override_the_file_and_absent_flags_leave_it(tmp_path: Path) -> None:
    path = write(tmp_path, "host: 0.0.0.0\nport: 9000\nkeys: [from-file]\n")
    settings = load_settings(Example, path, {"port": 9100, "host": None, "keys": None})
    assert (settings.host, settings.port, settings.keys) == ("0.0.0.0", 9100, ["from-file"])
    assert merge_settings(Example, {}, {"keys": ["flag"]}).keys == ["flag"]


def test_the_file_overrides_the_environment_and_flags_override_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALMODEL_TEST_HOST", "env-host")
    monkeypatch.setenv("LOCALMODEL_TEST_PORT", "7000")
    path = write(tmp_path, "port: 9000\n")
    assert (load_settings(Example, path).host, load_settings(Example, path).port) == ("env-host", 9000)
    assert load_settings(Example, path, {"port": 9100}).port == 9100
    assert load_settings(Example, None).port == 7000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port: [1\n", r"settings\.yaml, line 2, column 1: not valid YAML: expected ',' or ']'"),
        ("- port: 1\n", r"settings\.yaml: expected a mapping of example settings, not a list"),
        ("just words\n", r"settings\.yaml: expected a mapping of example settings, not a str"),
    ],
)
def test_a_bad_file_is_named_with_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SettingsFileError, match=message) as caught:
        load_settings(Example, write(tmp_path, text), what="example settings")
    assert str(tmp_path) in str(caught.value) and "<unicode string>" not in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(SettingsFileError) as caught:
        load_settings(Example, missing, what="example settings")
    assert str(caught.value) == f"{missing}: cannot read example settings: No such file or directory"
    assert isinstance(caught.value, ValueError)  # the CLI's usage-error handling catches ValueError


def test_values_that_do_not_fit_are_pydantics_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="port"):
        load_settings(Example, write(tmp_path, "port: -1\n"))
    with pytest.raises(ValidationError, match="extra"):
        load_settings(Example, write(tmp_path, "colour: blue\n"))


# Each entry point that reads a settings file reports a bad one by name, with a usage error (2).


def test_the_router_names_a_bad_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[not, a, mapping]\n")
    assert router_main(["--config", str(path)], prog="localmodel router") == 2
    error = capsys.readouterr().err
    assert f"localmodel router: {path}: expected a mapping of router settings, not a list" in error


def test_the_operator_names_a_bad_settings_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "operator.yaml"
    with pytest.raises(SystemExit) as exited:
        operator_main(["--config", str(missing)], prog="localmodel operator")
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f"localmodel operator: {missing}: cannot read operator settings: No such file" in error


def test_local_mode_names_a_bad_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "port: [1\n")
    with pytest.raises(SystemExit) as exited:
        localmodel_main(["run", str(tmp_path / "model.gguf"), "--config", str(path)])
    assert exited.value.code == 2
    assert f"localmodel run: {path}, line 2, column 1: not valid YAML" in capsys.readouterr().err
