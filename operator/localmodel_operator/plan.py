"""Pure: desired children and what exists → what to write, and why (nothing, when all is as wanted).

Comparing first keeps a restarted operator silent: objects that already match are not written again.
"Matches" means every field the operator sets has the wanted value; fields the API server or other
controllers add (defaults, status, annotations) are not the operator's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Step:
    action: Literal["create", "update", "keep"]
    manifest: Manifest
    reason: str

    @property
    def name(self) -> str:
        return f"{self.manifest['kind']}/{self.manifest['metadata']['name']}"


def plan(desired: list[Manifest], existing: dict[str, Manifest | None]) -> list[Step]:
    """One step per desired object; `existing` is keyed by kind (None: absent)."""
    steps = []
    for manifest in desired:
        current = existing.get(manifest["kind"])
        if current is None:
            steps.append(Step("create", manifest, "absent"))
        elif not contains(current, manifest):
            steps.append(Step("update", manifest, f"differs at {first_difference(current, manifest)}"))
        else:
            steps.append(Step("keep", manifest, "as wanted"))
    return steps


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
