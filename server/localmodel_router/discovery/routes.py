"""Pure: a LocalModel → its route. The one mapping, for the cluster's discovery and for local mode alike,
so a manifest routes the same in both (load balancing, names, scaling from zero)."""

from __future__ import annotations

from datetime import datetime

from localmodel.spec import BackendType, LocalModel
from localmodel_router.discovery import ModelRoute


def route_for(
    model: LocalModel,
    endpoints: tuple[str, ...] = (),
    *,
    created: int | None = None,
    servable: bool = True,
    crash: str | None = None,
) -> ModelRoute:
    """`endpoints`: its ready backends (an external backend's address replaces them); `created`: unix
    seconds for /v1/models (default: the LocalModel's creationTimestamp); `servable`: False when the
    operator found the spec unservable (it starts nothing: never hold); `crash`: why the model's pods
    crash (CrashLoopBackOff: held requests fail at once)."""
    spec = model.spec
    external = spec.backend.address
    crashing = crash is not None and not endpoints and not external
    namespace, name = model.metadata.namespace, model.metadata.name
    return ModelRoute(
        name=model.served_name,
        endpoints=(external,) if external else endpoints,
        aliases=tuple(spec.aliases),
        max_tokens=spec.max_tokens,
        tasks=frozenset(str(task) for task in spec.tasks),
        shares_prefill=spec.backend.type == BackendType.LLAMA_CPP and not external and not spec.backend.image,
        created=int(created_at(model)) if created is None else created,
        owned_by=namespace or "localmodel",
        # No ready endpoint: wait if replicas are wanted (pods starting), or ask for one (minReplicas 0).
        starting=servable and not external and spec.initial_replicas > 0,
        scales_from_zero=servable and not external and spec.min_replicas == 0,
        load_balancing=spec.load_balancing,
        resource=f"{namespace}/{name}" if namespace else None,
        failure=crash if crashing else None,
        failing_to_start=crashing,
    )


def created_at(model: LocalModel) -> float:
    """The LocalModel's creationTimestamp in unix seconds (0 when it has none, as a local manifest)."""
    stamp = (model.metadata.model_extra or {}).get("creationTimestamp")
    try:
        return datetime.fromisoformat(str(stamp)).timestamp() if stamp else 0.0
    except ValueError:
        return 0.0
