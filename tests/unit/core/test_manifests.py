from __future__ import annotations

from pathlib import Path

import pytest

from localmodel.manifests import ManifestError, load_manifests

MODEL = """apiVersion: localmodel.dev/v1alpha1
kind: LocalModel
metadata: {{name: {name}}}
spec:
  model: {{url: "file:{name}.gguf"}}
"""


def test_folder_and_multi_document_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MODEL.format(name="a") + "---\n" + MODEL.format(name="b") + "---\n")
    (tmp_path / "c.yml").write_text(MODEL.format(name="c"))
    (tmp_path / "notes.txt").write_text("not a manifest")
    manifests = load_manifests([tmp_path])
    assert [m.model.metadata.name for m in manifests] == ["a", "b", "c"]
    assert manifests[0].base_dir == tmp_path


def test_the_document_with_the_error_is_named(tmp_path: Path) -> None:
    bad = MODEL.format(name="b").replace("spec:", "spec:\n  replicas: -1")
    (tmp_path / "m.yaml").write_text(MODEL.format(name="a") + "---\n" + bad)
    with pytest.raises(
        ManifestError, match=r"m\.yaml \(document 2\): invalid LocalModel:\n  spec\.replicas: "
    ):
        load_manifests([tmp_path / "m.yaml"])


def test_other_kinds_and_duplicates_are_refused(tmp_path: Path) -> None:
    (tmp_path / "svc.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")
    with pytest.raises(ManifestError, match="kind 'Service' is not LocalModel"):
        load_manifests([tmp_path / "svc.yaml"])
    (tmp_path / "twice.yaml").write_text(MODEL.format(name="a") + "---\n" + MODEL.format(name="a"))
    with pytest.raises(ManifestError, match="the name 'a' is served already"):
        load_manifests([tmp_path / "twice.yaml"])


def test_missing_files_and_broken_yaml(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file or folder"):
        load_manifests([tmp_path / "absent.yaml"])
    (tmp_path / "broken.yaml").write_text("spec: [unclosed")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifests([tmp_path / "broken.yaml"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no LocalModel manifests found"):
        load_manifests([tmp_path / "empty"])
