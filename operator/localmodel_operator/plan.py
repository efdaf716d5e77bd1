"""Pure: desired children and what exists → what to write, and why (nothing, when all is as wanted).

Comparing first keeps a restarted operator silent: objects that already match are not written again.
"Matches" means every field the operator sets has the wanted value; fields the API server or other
controllers add (defaults, status, annotations) are not the operator's business. A child that is no
longer wanted is deleted only where this LocalModel owns it: an object someone else made is left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from localmodel_operator.builders import Unwanted
from localmodel_operator.objects import KubeObject


@dataclass(frozen=True)
class Step:
    action: Literal["create", "update", "keep", "delete"]
    manifest: KubeObject
    reason: str

    @property
    def name(self) -> str:
        return f"{self.manifest['kind']}/{self.manifest['metadata']['name']}"


def plan(
    desired: list[KubeObject],
    existing: dict[str, KubeObject | None],
    unwanted: Sequence[Unwanted] = (),
    owner_uid: str | None = None,
) -> list[Step]:
    """One step per desired object, and a delete for each unwanted one that exists and `owner_uid` owns;
    `existing` is keyed by kind (None: absent)."""
    steps = []
    for gone in unwanted:
        current = existing.get(gone.kind)
        if current is not None and owner_uid is not None and owned_by(current, owner_uid):
            namespace = current.get("metadata", {}).get("namespace")
            target = {"kind": gone.kind, "metadata": {"name": gone.name, "namespace": namespace}}
            steps.append(Step("delete", target, f"not wanted: {gone.reason}"))
    for manifest in desired:
        current = existing.get(manifest["kind"])
        if current is None:
            steps.append(Step("create", manifest, "absent"))
        elif not contains(current, manifest):
            steps.append(Step("update", manifest, f"differs at {first_difference(current, manifest)}"))
        else:
            steps.append(Step("keep", manifest, "as wanted"))
    return steps


def owned_by(manifest: KubeObject, owner_uid: str) -> bool:
    owners = manifest.get("metadata", {}).get("ownerReferences") or []
    return any(owner.get("uid") == owner_uid for owner in owners)


def contains(actual: Any, wanted: Any) -> bool:
    """Whether `actual` has every value of `wanted` (dicts may have more keys; lists match item by item)."""
    return first_difference(actual, wanted) is None


def first_difference(actual: Any, wanted: Any, path: str = "") -> str | None:
    if isinstance(wanted, dict):
        if not isinstance(actual, dict):
            return path or "."
        for key, value in wanted.items():
            found = first_difference(actual.get(key), value, f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(wanted, list):
        if not isinstance(actual, list) or len(actual) != len(wanted):
            return path or "."
        for index, (have, want) in enumerate(zip(actual, wanted, strict=True)):
            found = first_difference(have, want, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    return None if actual == wanted else (path or ".")
