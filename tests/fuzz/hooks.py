"""Schemathesis hooks of the fuzz stage, loaded by `schemathesis run` (`hooks` in schemathesis.toml).

A generated `model` is almost never a served name, so nearly every generated body would stop at the
router's 404 and no backend would see fuzzed input. This hook gives most bodies (and `GET
/v1/models/{model_id}`) a served name instead, and changes two more fields where noted below. Each choice
is a hash of the generated value, not a draw, so a run repeats exactly; the rest of each case is left as
schemathesis generated it.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import schemathesis

from localmodel_router.protocol.common import MOST_CHOICES
from tests.fuzz import served


def _pick(names: list[str], generated: Any) -> str:
    digest = zlib.crc32(json.dumps(generated, sort_keys=True, default=repr).encode())
    return names[digest % len(names)]


@schemathesis.hook
def map_case(_: schemathesis.HookContext, case: schemathesis.Case[Any]) -> schemathesis.Case[Any]:
    body = case.body
    model = body.get("model") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(model, str):
        names = served.NAMES_BY_PATH.get(case.operation.path, served.GENERATION_NAMES)
        steered = {**body, "model": _pick([*names, model], body)}
        # The router refuses any `dimensions` (400: the model's own size is returned); without this,
        # hardly any generated embeddings request would reach the backend with its `input`.
        if case.operation.path == "/v1/embeddings" and _pick(["keep", "drop"], body) == "drop":
            steered.pop("dimensions", None)
        # A chat's answers are generated one after another, and its `n` (valid up to MOST_CHOICES) is not
        # bounded by the router's max_inputs_per_request as completions' is: a valid n above that bound
        # is lowered to it, so no case takes minutes. Invalid values (below 1, above MOST_CHOICES, not
        # integers) stay as generated.
        n = body.get("n")
        valid_and_costly = (
            isinstance(n, int) and not isinstance(n, bool) and served.MAX_INPUTS < n <= MOST_CHOICES
        )
        if case.operation.path == "/v1/chat/completions" and valid_and_costly:
            steered["n"] = served.MAX_INPUTS
        case.body = steered
    model_id = (case.path_parameters or {}).get("model_id")
    if isinstance(model_id, str):
        names = [served.CHAT, served.ALIAS, served.EMBEDDING, model_id]
        case.path_parameters = {**case.path_parameters, "model_id": _pick(names, model_id)}
    return case
