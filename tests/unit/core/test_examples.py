"""The example manifests users copy are valid, and the README's run command serves the bundled model."""

from __future__ import annotations

from pathlib import Path

from localmodel.manifests import load_manifests
from localmodel.sources import FileSource, parse_source
from scripts.model_files import MODELS

EXAMPLES = Path(__file__).parents[3] / "examples"


def test_every_example_file_holds_valid_local_models_with_distinct_names() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    manifests = load_manifests([EXAMPLES])  # raises ManifestError naming the file and field if one is bad
    assert {manifest.path for manifest in manifests} == set(files)  # none skipped, none empty
    names = [manifest.model.metadata.name for manifest in manifests]
    assert len(names) == len(set(names))
    assert all(m.model.spec.model is not None or m.model.spec.backend.address for m in manifests)


def test_the_local_example_names_the_file_setup_fetches() -> None:
    (manifest,) = load_manifests([EXAMPLES / "smollm2-local.yaml"])
    source = manifest.model.spec.model
    assert source is not None and source.sha256 == MODELS["smollm2"].sha256
    resolved = parse_source(source.url, manifest.base_dir)
    assert isinstance(resolved, FileSource)
    assert resolved.path == (EXAMPLES.parent / ".models" / MODELS["smollm2"].file_name).resolve()
