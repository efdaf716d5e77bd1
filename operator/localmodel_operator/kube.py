"""Every Kubernetes API call the operator makes (kubernetes_asyncio), in one place.

Writes are server-side applies with the operator's field manager, so the operator owns only the fields
it sets and never overwrites what others own; an object that does not exist yet is created.
"""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from localmodel import kubeclient
from localmodel.endpoint_slices import ready_addresses
from localmodel.spec import API_GROUP
from localmodel_operator.objects import KubeObject

FIELD_MANAGER = "localmodel-operator"
VERSION, PLURAL = "v1alpha1", "localmodels"
# Passed as keyword dicts: the generated client takes `_content_type` but does not declare it.
SERVER_SIDE_APPLY: dict[str, Any] = {
    "field_manager": FIELD_MANAGER,
    "force": True,
    "_content_type": "application/apply-patch+yaml",
}
MERGE_PATCH: dict[str, Any] = {"_content_type": "application/merge-patch+json"}
# The kinds the operator creates, as the generated client spells them in method names.
CHILD_KINDS = {
    "Deployment": "deployment",
    "Service": "service",
    "PersistentVolumeClaim": "persistent_volume_claim",
    "NetworkPolicy": "network_policy",
}


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._apps = client.AppsV1Api(api)
        self._core = client.CoreV1Api(api)
        self._networking = client.NetworkingV1Api(api)
        self._custom = client.CustomObjectsApi(api)

    @classmethod
    async def connect(cls) -> Kube:
        return cls(await kubeclient.connect())

    async def close(self) -> None:
        await self._api.close()

    def _method(self, verb: str, kind: str) -> Any:
        """The generated client's method for `verb` on a child kind, e.g. `read_namespaced_deployment`."""
        api = {"Deployment": self._apps, "NetworkPolicy": self._networking}.get(kind, self._core)
        return getattr(api, f"{verb}_namespaced_{CHILD_KINDS[kind]}")

    async def read(self, kind: str, namespace: str, name: str) -> KubeObject | None:
        try:
            return self._plain(await self._method("read", kind)(name, namespace))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def create(self, manifest: KubeObject) -> None:
        create = self._method("create", manifest["kind"])
        await create(manifest["metadata"]["namespace"], manifest, field_manager=FIELD_MANAGER)

    async def apply(self, manifest: KubeObject) -> None:
        metadata = manifest["metadata"]
        patch = self._method("patch", manifest["kind"])
        await patch(metadata["name"], metadata["namespace"], manifest, **SERVER_SIDE_APPLY)

    async def delete(self, manifest: KubeObject) -> None:
        """Delete a child; what it owns (a Deployment's ReplicaSets and pods) goes by garbage collection."""
        metadata = manifest["metadata"]
        delete = self._method("delete", manifest["kind"])
        try:
            await delete(metadata["name"], metadata["namespace"], propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:  # gone already: what was wanted
                raise

    async def list_pods(self, namespace: str, label_selector: str) -> list[KubeObject]:
        """The pods matching `label_selector` (e.g. a LocalModel's `status.selector`), as plain dicts."""
        pods = await self._core.list_namespaced_pod(namespace, label_selector=label_selector)
        return [self._plain(pod) for pod in pods.items]

    async def read_model(self, namespace: str, name: str) -> KubeObject | None:
        try:
            found: KubeObject = await self._custom.get_namespaced_custom_object(
                API_GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    async def patch_model_status(self, namespace: str, name: str, status: KubeObject) -> None:
        await self._custom.patch_namespaced_custom_object_status(
            API_GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
            _content_type="application/merge-patch+json",
        )

    async def scale_model(self, namespace: str, name: str, replicas: int) -> None:
        """Set `spec.replicas` (what the scale subresource sets; HPAs write the same field)."""
        await self._custom.patch_namespaced_custom_object(
            API_GROUP, VERSION, namespace, PLURAL, name, {"spec": {"replicas": replicas}}, **MERGE_PATCH
        )

    async def service_urls(self, namespace: str, service: str, port_name: str) -> list[str]:
        """`http://address:port` of each ready endpoint of a Service (every replica behind it)."""
        slices = await client.DiscoveryV1Api(self._api).list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={service}"
        )
        urls = []
        for endpoint_slice in slices.items:
            labels = endpoint_slice.metadata.labels or {}
            if labels.get("kubernetes.io/service-name") != service:
                continue  # selectors are filtered here too
            urls += [
                f"http://{address}" for address in ready_addresses(self._plain(endpoint_slice), port_name)
            ]
        return urls

    def _plain(self, typed: Any) -> KubeObject:
        plain: KubeObject = self._api.sanitize_for_serialization(typed)
        return plain
