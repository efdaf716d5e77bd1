"""Every Kubernetes API call the operator makes (kubernetes_asyncio), in one place.

Writes are server-side applies with the operator's field manager, so the operator owns only the fields
it sets and never overwrites what others own; an object that does not exist yet is created.
"""

from __future__ import annotations

import os
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from localmodel.spec import API_GROUP

FIELD_MANAGER = "localmodel-operator"
VERSION, PLURAL = "v1alpha1", "localmodels"
Manifest = dict[str, Any]
# Passed as keyword dicts: the generated client takes `_content_type` but does not declare it.
SERVER_SIDE_APPLY: dict[str, Any] = {
    "field_manager": FIELD_MANAGER,
    "force": True,
    "_content_type": "application/apply-patch+yaml",
}
MERGE_PATCH: dict[str, Any] = {"_content_type": "application/merge-patch+json"}


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._apps = client.AppsV1Api(api)
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)

    @classmethod
    async def connect(cls) -> Kube:
        """In a pod: its service account; elsewhere: the kubeconfig (KUBECONFIG or ~/.kube/config)."""
        try:
            config.load_incluster_config()
        except config.ConfigException:
            # Read KUBECONFIG now: the client library reads it once, when it is imported.
            await config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
        return cls(client.ApiClient())

    async def close(self) -> None:
        await self._api.close()

    async def read(self, kind: str, namespace: str, name: str) -> Manifest | None:
        reader = {
            "Deployment": self._apps.read_namespaced_deployment,
            "Service": self._core.read_namespaced_service,
            "PersistentVolumeClaim": self._core.read_namespaced_persistent_volume_claim,
        }[kind]
        try:
            return self._plain(await reader(name, namespace))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def create(self, manifest: Manifest) -> None:
        namespace = manifest["metadata"]["namespace"]
        creator = {
            "Deployment": self._apps.create_namespaced_deployment,
            "Service": self._core.create_namespaced_service,
            "PersistentVolumeClaim": self._core.create_namespaced_persistent_volume_claim,
        }[manifest["kind"]]
        await creator(namespace, manifest, field_manager=FIELD_MANAGER)

    async def apply(self, manifest: Manifest) -> None:
        metadata = manifest["metadata"]
        patcher = {
            "Deployment": self._apps.patch_namespaced_deployment,
            "Service": self._core.patch_namespaced_service,
            "PersistentVolumeClaim": self._core.patch_namespaced_persistent_volume_claim,
        }[manifest["kind"]]
        await patcher(metadata["name"], metadata["namespace"], manifest, **SERVER_SIDE_APPLY)

    async def read_model(self, namespace: str, name: str) -> Manifest | None:
        try:
            found: Manifest = await self._custom.get_namespaced_custom_object(
                API_GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    async def patch_model_status(self, namespace: str, name: str, status: Manifest) -> None:
        await self._custom.patch_namespaced_custom_object_status(
            API_GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
            _content_type="application/merge-patch+json",
        )

    def _plain(self, typed: Any) -> Manifest:
        plain: Manifest = self._api.sanitize_for_serialization(typed)
        return plain
