"""kopf startup and cleanup: tune kopf, connect the API client, keep both in `memo` for the handlers."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from localmodel_operator.kube import Kube
from localmodel_operator.settings import OperatorSettings

log = logging.getLogger(__name__)


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
    memo.kube = await Kube.connect()


@kopf.on.cleanup()
async def operator_cleanup(memo: Any, **_: Any) -> None:
    kube: Kube | None = memo.get("kube")
    if kube is not None:
        await kube.close()
