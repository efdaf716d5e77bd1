"""Read LocalModel manifests from YAML files and folders (multi-document files too) into typed models.

Errors say which file, which document and which field, in the manifest's own spelling
(`spec.backend.engine.contextSize`), since that is what the user has to edit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from localmodel.spec import KIND, LocalModel

MANIFEST_SUFFIXES = (".yaml", ".yml")


class ManifestError(ValueError):
    """A manifest that cannot be served; the message says where and why."""


@dataclass(frozen=True)
class Manifest:
    """A parsed LocalModel and the file it came from (relative `file:` URLs resolve against its folder)."""

    model: LocalModel
    path: Path

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def load_manifests(paths: Iterable[Path]) -> list[Manifest]:
    """Every LocalModel in the files and folders given (folders: their *.yaml/*.yml files, sorted)."""
    manifests: list[Manifest] = []
    for path in _manifest_files(paths):
        manifests.extend(_load_file(path))
    if not manifests:
        raise ManifestError(f"no {KIND} manifests found in {', '.join(str(p) for p in paths)}")
    _check_unique_names(manifests)
    return manifests


def parse_manifest(document: Any, where: str) -> LocalModel:
    """One YAML document as a LocalModel; ManifestError naming every invalid field otherwise."""
    if not isinstance(document, dict):
        raise ManifestError(f"{where}: expected a mapping with apiVersion, kind, metadata and spec")
    try:
        return LocalModel.model_validate(document)
    except ValidationError as error:
        problems = "\n".join(
            f"  {_field(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in error.errors()
        )
        raise ManifestError(f"{where}: invalid {KIND}:\n{problems}") from None


def _manifest_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file())
        elif path.is_file():
            yield path
        else:
            raise ManifestError(f"{path}: no such file or folder")


def _load_file(path: Path) -> list[Manifest]:
    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as error:
        raise ManifestError(f"{path}: not valid YAML: {error}") from None
    manifests = []
    for index, document in enumerate(documents):
        if document is None:  # an empty document, e.g. after a trailing `---`
            continue
        where = f"{path}" if len(documents) == 1 else f"{path} (document {index + 1})"
        if isinstance(document, dict) and document.get("kind") not in (None, KIND):
            raise ManifestError(f"{where}: kind {document['kind']!r} is not {KIND}")
        manifests.append(Manifest(parse_manifest(document, where), path))
    return manifests


def _field(location: tuple[int | str, ...]) -> str:
    """`('spec', 'tolerations', 0, 'effect')` → `spec.tolerations[0].effect`."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(document)"


def _check_unique_names(manifests: list[Manifest]) -> None:
    seen: dict[str, Path] = {}
    for manifest in manifests:
        for name in (manifest.model.served_name, *manifest.model.spec.aliases):
            if name in seen:
                raise ManifestError(
                    f"{manifest.path}: the name {name!r} is served already by a model in {seen[name]}"
                )
            seen[name] = manifest.path
