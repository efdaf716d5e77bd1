"""A component's settings from an optional YAML file with command-line flags over it: the one merge.

Precedence, highest first: flags given on the command line, the file, the settings class's environment
variables (`LOCALMODEL_ROUTER_*`, `LOCALMODEL_OPERATOR_*`), its defaults. The file and the flags both reach
the pydantic-settings class as init values, which it ranks over the environment; a flag counts as given
unless it is None (an empty repeatable flag is passed as None by its caller).

A file that cannot be read, is not YAML or is not a mapping raises SettingsFileError naming the file;
values that do not fit the settings raise pydantic's ValidationError from the class itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic_settings import BaseSettings

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class SettingsFileError(ValueError):
    """A settings file that cannot be read, is not valid YAML, or is not a mapping; the message names it."""


def read_settings_file(path: Path | None, what: str = "settings") -> dict[str, Any]:
    """The file's top-level mapping: {} without a file or for an empty one. `what` names it in errors."""
    if path is None:
        return {}
    try:
        text = path.read_text()
    except OSError as error:
        raise SettingsFileError(f"{path}: cannot read {what}: {error.strerror or error}") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SettingsFileError(f"{path}{_where(error)}: not valid YAML: {_problem(error)}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise SettingsFileError(f"{path}: expected a mapping of {what}, not a {type(values).__name__}")
    return values


def merge_settings(
    settings_class: type[SettingsT], file_values: Mapping[str, Any], flags: Mapping[str, Any]
) -> SettingsT:
    """The settings from the file's values with every given (not None) flag over them."""
    given = {key: value for key, value in flags.items() if value is not None}
    return settings_class(**{**file_values, **given})


def load_settings(
    settings_class: type[SettingsT],
    path: Path | None,
    flags: Mapping[str, Any] | None = None,
    what: str = "settings",
) -> SettingsT:
    """`read_settings_file` then `merge_settings`, for callers with nothing to take from the file first."""
    return merge_settings(settings_class, read_settings_file(path, what), flags or {})


def _where(error: yaml.YAMLError) -> str:
    mark = error.problem_mark if isinstance(error, yaml.MarkedYAMLError) else None
    return f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _problem(error: yaml.YAMLError) -> str:
    # PyYAML's own text names "<unicode string>", not the file: the problem alone, placed by _where.
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        return error.problem
    return str(error)
