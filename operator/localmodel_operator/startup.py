"""kopf startup and cleanup: tune kopf, connect the API client, keep both in `memo` for the handlers."""

from __future__ import annotations

import logging
from typing import Any

import kopf
import prometheus_client

from localmodel_operator.kube import Kube
from localmodel_operator.model_headers import ModelHeaders
from localmodel_operator.router_load import RouterLoad
from localmodel_operator.settings import AutoscalerSettings, OperatorSettings

log = logging.getLogger(__name__)
GLOB = "*?!,"  # kopf's namespace patterns: globs, negations, lists


def initial_memo(operator_settings: OperatorSettings) -> kopf.Memo:
    """What the entry point hands kopf: the settings it built (handlers read them from `memo`)."""
    return kopf.Memo(settings=operator_settings)


@kopf.on.login()
def operator_login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The pod's service account in a cluster, else the kubeconfig (`KUBECONFIG`, read at login time)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def operator_startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # Annotations, not status, keep kopf's bookkeeping: status belongs to the conditions users read.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="localmodel.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="localmodel.dev")
    # kopf's own log lines become Events from WARNING up; "handler succeeded" on every Deployment change
    # would double the API writes. The operator's steps are posted as Normal Events by the handlers.
    settings.posting.level = logging.WARNING
    # API errors: retry with backoff rather than give up (the API server may be restarting).
    settings.networking.error_backoffs = [1, 2, 5, 10, 30]
    if "settings" not in memo:
        memo.settings = OperatorSettings()
    operator_settings: OperatorSettings = memo.settings
    if operator_settings.namespaces and not any(set(GLOB) & set(ns) for ns in operator_settings.namespaces):
        # Named namespaces only: nothing to discover, and no cluster-wide permission needed. (Scanning
        # would list namespaces and watch CRDs cluster-wide; a namespaced install's Roles refuse both,
        # and kopf retries each refusal for most of a minute before it starts.)
        settings.scanning.disabled = True
    # What each model's last told crash was (handlers.py): made here, in the memo kopf copies for every
    # object (shallowly), so that the handlers of a model's pods and of its Deployment share it.
    memo.told_crashes = {}
    # Model file headers read for fit plans (model_headers.py), and each model's Fits condition as its
    # last reconcile found it (handlers.py): shared likewise.
    memo.model_headers = ModelHeaders()
    memo.fit_conditions = {}
    memo.kube = kube = await Kube.connect()
    memo.router_load = _router_load(operator_settings.autoscaler, kube)
    if operator_settings.metrics_port is not None:
        prometheus_client.start_http_server(operator_settings.metrics_port)


def _router_load(autoscaler: AutoscalerSettings, kube: Kube) -> RouterLoad | None:
    """Where the autoscaler reads load; None: no routers configured, so no autoscaling."""
    if not autoscaler.enabled or not autoscaler.has_routers:
        return None
    find_urls = None
    if autoscaler.router_service:
        namespace, name = autoscaler.router_service.split("/")

        async def find_urls() -> list[str]:
            return await kube.service_urls(namespace, name, autoscaler.router_port_name)

    # A read is shared by every model's daemon sampling in the same interval.
    return RouterLoad(autoscaler.router_urls, find_urls, max_age=autoscaler.interval_seconds / 2)


@kopf.on.cleanup()
async def operator_cleanup(memo: Any, **_: Any) -> None:
    kube: Kube | None = memo.get("kube")
    if kube is not None:
        await kube.close()
    router_load: RouterLoad | None = memo.get("router_load")
    if router_load is not None:
        await router_load.close()
