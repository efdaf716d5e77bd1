"""kopf startup and cleanup: tune kopf, connect the API client, keep both in `memo` for the handlers."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from localmodel_operator.kube import Kube
from localmodel_operator.settings import OperatorSettings

log = logging.getLogger(__name__)


def configure(operator_settings: OperatorSettings) -> None:
    """Register the startup handler with the settings the entry point built."""

    @kopf.on.startup()
    async def operator_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        # Annotations, not status, keep kopf's bookkeeping: status belongs to conditions users read.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="localmodel.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="localmodel.dev")
        settings.posting.level = logging.INFO  # Events for every step, not only warnings
        # API errors: retry with backoff rather than give up (the API server may be restarting).
        settings.networking.error_backoffs = [1, 2, 5, 10, 30]
        memo.settings = operator_settings
        memo.kube = await Kube.connect()

    @kopf.on.cleanup()
    async def operator_cleanup(memo: kopf.Memo, **_: Any) -> None:
        kube: Kube | None = memo.get("kube")
        if kube is not None:
            await kube.close()
