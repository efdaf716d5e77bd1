"""A simulated node for the end-to-end tests: what a cluster runs besides the API server.

There is no container runtime here, so this plays, against the API emulator, the three controllers a
LocalModel's pods go through after the operator wrote its Deployment:
- the Deployment controller (ReplicaSets folded in): pods per template hash, `spec.replicas` of the
  current template, rolling updates by the Deployment's `maxSurge`/`maxUnavailable`, status written back;
- the kubelet: each pod's init containers, then its container, run as local processes with the pod's
  real command, arguments and environment; gRPC readiness probes; restarts when the process dies, its
  exit (128+N for signal N) and log tail (`FallbackToLogsOnError`) reported in the container's status;
  SIGTERM, the grace period, then SIGKILL when the pod goes; Pod objects mirrored into the API;
- the EndpointSlice controller: one slice per pod and Service selecting it, ready as the pod is.

What is simulated, and how: each pod gets its own loopback address (127.0.x.y; Linux routes all of
127/8 to lo), which stands for the pod IP — `0.0.0.0` in a command means that address, as it means the
pod's own interfaces in its network namespace. Volumes are folders under the test's temporary folder,
and paths under a volume's mountPath in arguments are rewritten onto them (a kubelet bind-mounts them
instead). An image's ENTRYPOINT is read from the Dockerfile that builds it (every engine's of
localmodel/backend_types.py), run with this venv's interpreter and console scripts. Probes run every
0.2 s, not every periodSeconds: time is compressed. Liveness probes are not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from localmodel.backend_types import BACKENDS
from tests.support.api_server import NAMESPACE, ApiServer

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]


def _dockerfiles() -> dict[tuple[str, str], Path]:
    """(image repository, tag suffix) → the Dockerfile that builds it, for every engine's image that has
    one: `backend-images/<folder>/Dockerfile` for the `cpu` image, `Dockerfile.cuda` for `-cuda`, …"""
    found: dict[tuple[str, str], Path] = {}
    for kind in BACKENDS.values():
        for suffix in kind.image_suffixes.values():
            dockerfile = ROOT / "backend-images" / kind.folder / ("Dockerfile" + suffix.replace("-", ".", 1))
            if dockerfile.is_file():
                found[(kind.image_repository, suffix)] = dockerfile
    return found


# Their ENTRYPOINT is what a container without `command` runs.
DOCKERFILES = _dockerfiles()
PROBE_SECONDS = 0.2
RESTART_BACKOFF_SECONDS = 0.5
TERMINATION_LOG_LINES = 80  # what a kubelet keeps of a failed container's log (and at most 2048 bytes)
TERMINATION_LOG_BYTES = 2048
ENDPOINT_DRAIN_SECONDS = 1.0  # a terminating pod leaves the EndpointSlices this long before SIGTERM
_addresses = (f"127.0.{i // 250 + 1}.{i % 250 + 2}" for i in itertools.count())


def dockerfile_of(image: str) -> Path:
    """The Dockerfile that builds `image`, named as a release names it (`<repository>:<version><suffix>`:
    the engine table's defaults, the chart's values) or as skaffold does (`<repository><suffix>:<tag>`),
    under any registry."""
    reference = image.partition("@")[0]
    name, _, tag = reference.rpartition(":") if ":" in reference.rsplit("/", 1)[-1] else (reference, "", "")
    for kind in BACKENDS.values():
        repository = kind.image_repository
        for suffix in sorted(kind.image_suffixes.values(), key=len, reverse=True):  # "" matches every tag
            released = _names(name, repository) and tag.endswith(suffix)
            built = bool(suffix) and _names(name, repository + suffix)
            if released or built:
                dockerfile = DOCKERFILES.get((repository, suffix))
                if dockerfile is None:
                    break  # an image of the table (`-rocm`, say) that no Dockerfile here builds
                return dockerfile
    raise ValueError(f"no Dockerfile builds image {image!r} (these do: {sorted(DOCKERFILES)})")


def _names(name: str, repository: str) -> bool:
    return name == repository or name.endswith("/" + repository)


def entrypoint(image: str) -> list[str]:
    dockerfile = dockerfile_of(image)
    for line in dockerfile.read_text().splitlines():
        if line.startswith("ENTRYPOINT "):
            command: list[str] = json.loads(line.removeprefix("ENTRYPOINT "))
            return command
    raise ValueError(f"{dockerfile} has no ENTRYPOINT")


def executable(command: list[str]) -> list[str]:
    """`localmodel` is this venv's console script, `python` its interpreter (an image's venv is first
    on its PATH)."""
    match command:
        case ["localmodel", *rest]:
            return [str(Path(sys.executable).parent / "localmodel"), *rest]
        case ["python" | "python3", *rest]:
            return [sys.executable, *rest]
    return command


def template_hash(template: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class Pod:
    name: str
    deployment: str
    template_hash: str
    template: dict[str, Any]
    ip: str
    folder: Path
    ready: bool = False
    terminating: bool = False
    restarts: int = 0
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    starts: int = 0  # main container starts (1 + restarts)
    backing_off: bool = False  # the container died and waits to be started again
    last_termination: dict[str, Any] | None = None  # `lastState.terminated` of its container
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.template["spec"]
        return spec


class SimulatedNode:
    def __init__(self, server: ApiServer, folder: Path, env: dict[str, str] | None = None) -> None:
        self.server = server
        self.folder = folder
        self.env = env or {}  # what every container sees of the node (e.g. where "the Hub" is)
        self.pods: dict[str, Pod] = {}
        self._names = itertools.count(1)
        self._status_written: dict[str, dict[str, Any]] = {}
        self._slices: dict[str, dict[str, Any]] = {}
        self._publishing = asyncio.Lock()  # one writer of EndpointSlices at a time
        self._stopping: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ---

    async def __aenter__(self) -> SimulatedNode:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*self._stopping, return_exceptions=True)
        await asyncio.gather(*(self._stop(pod, grace=5.0) for pod in list(self.pods.values())))

    async def _run(self) -> None:
        while True:
            try:
                await self._sync()
            except Exception:
                log.exception("simulated node: sync failed")  # a test bug; keep the node going
            await asyncio.sleep(0.1)

    # --- what tests look at ---

    def pods_of(self, deployment: str) -> list[Pod]:
        return [pod for pod in self.pods.values() if pod.deployment == deployment and not pod.terminating]

    def claim(self, name: str) -> Path:
        """The folder standing for PersistentVolumeClaim `name`'s volume (bound, empty at first)."""
        return self.folder / "claims" / name

    def processes_alive(self) -> list[int]:
        return [
            pod.process.pid
            for pod in self.pods.values()
            if pod.process is not None and pod.process.returncode is None
        ]

    # --- the Deployment controller ---

    async def _sync(self) -> None:
        deployments = {d["metadata"]["name"]: d for d in self._live("deployments")}
        for pod in list(self.pods.values()):
            if pod.deployment not in deployments and not pod.terminating:
                self._remove(pod)  # its Deployment went (garbage-collected with its LocalModel)
        for name, deployment in deployments.items():
            self._roll(name, deployment)
            await self._write_status(name, deployment)
        await self._publish_endpoints()

    def _roll(self, name: str, deployment: dict[str, Any]) -> None:
        spec = deployment["spec"]
        wanted = spec.get("replicas", 1)
        current_hash = template_hash(spec["template"])
        rolling = spec.get("strategy", {}).get("rollingUpdate", {})
        surge, unavailable = int(rolling.get("maxSurge", 1)), int(rolling.get("maxUnavailable", 0))
        pods = self.pods_of(name)
        new = [pod for pod in pods if pod.template_hash == current_hash]
        old = [pod for pod in pods if pod.template_hash != current_hash]
        ready = sum(pod.ready for pod in pods)
        if len(new) < wanted and len(pods) < wanted + surge:
            self._create(name, spec["template"], current_hash)
        elif len(new) > wanted:
            # Scale down: not-ready pods first, then the newest.
            self._remove(sorted(new, key=lambda pod: (pod.ready, -pod.starts))[0])
        if old:
            # An old pod goes once the others ready keep at least wanted - maxUnavailable.
            candidate = sorted(old, key=lambda pod: pod.ready)[0]
            if not candidate.ready or ready - 1 >= wanted - unavailable:
                self._remove(candidate)

    async def _write_status(self, name: str, deployment: dict[str, Any]) -> None:
        pods = self.pods_of(name)
        current_hash = template_hash(deployment["spec"]["template"])
        ready = sum(pod.ready for pod in pods)
        status = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": len(pods),
            "updatedReplicas": sum(pod.template_hash == current_hash for pod in pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
        }
        if self._status_written.get(name) != status:
            self._status_written[name] = status
            await self.server.patch(
                f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}/status", json={"status": status}
            )

    # --- the kubelet ---

    def _create(self, deployment: str, template: dict[str, Any], hash_: str) -> None:
        name = f"{deployment}-{hash_[:5]}-{next(self._names)}"
        labels = {**template["metadata"].get("labels", {}), "pod-template-hash": hash_}
        pod = Pod(
            name, deployment, hash_, template, next(_addresses), self.folder / "pods" / name, labels=labels
        )
        pod.folder.mkdir(parents=True)
        self.pods[name] = pod
        pod.task = asyncio.create_task(self._run_pod(pod))
        log.info("node: pod %s (%s) created for %s", name, pod.ip, deployment)

    def _remove(self, pod: Pod) -> None:
        pod.terminating = True
        pod.ready = False
        grace = float(pod.spec.get("terminationGracePeriodSeconds", 30))
        task = asyncio.create_task(self._stop(pod, grace))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _stop(self, pod: Pod, grace: float) -> None:
        pod.terminating, pod.ready = True, False
        await self._publish_endpoints()
        await asyncio.sleep(ENDPOINT_DRAIN_SECONDS)  # clients see the endpoint go before the process does
        if pod.task is not None:
            pod.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pod.task
        if pod.process is not None and pod.process.returncode is None:
            pod.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(pod.process.wait(), grace)
            except TimeoutError:
                pod.process.kill()
                await pod.process.wait()
        self.pods.pop(pod.name, None)
        await self._publish_endpoints()
        with contextlib.suppress(Exception):
            await self.server.delete(f"/api/v1/namespaces/{NAMESPACE}/pods/{pod.name}")
        log.info("node: pod %s stopped", pod.name)

    async def _run_pod(self, pod: Pod) -> None:
        await self.server.post(
            f"/api/v1/namespaces/{NAMESPACE}/pods",
            json={
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod.name, "namespace": NAMESPACE, "labels": pod.labels},
                "spec": pod.spec,
            },
        )
        for init in pod.spec.get("initContainers", []):
            while await self._run_to_completion(pod, init) != 0:
                await asyncio.sleep(RESTART_BACKOFF_SECONDS)  # CrashLoopBackOff, compressed
        (container,) = pod.spec["containers"]
        while True:
            pod.process = await self._start(pod, container)
            pod.starts += 1
            pod.backing_off = False
            await self._write_pod_status(pod)
            probe = asyncio.create_task(self._probe(pod, container))
            code = await pod.process.wait()
            probe.cancel()
            pod.ready = False
            pod.restarts += 1
            pod.backing_off = True
            pod.last_termination = self._termination(pod, container, code)
            log.info("node: %s exited with %s; restarting", pod.name, code)
            await self._write_pod_status(pod)
            await asyncio.sleep(RESTART_BACKOFF_SECONDS)

    def _termination(self, pod: Pod, container: dict[str, Any], returncode: int) -> dict[str, Any]:
        """A died container's `terminated` state as the kubelet reports it."""
        exit_code = 128 - returncode if returncode < 0 else returncode  # killed by signal N: 128+N
        terminated: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": "Error" if exit_code else "Completed",
            "finishedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if exit_code and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = (pod.folder / f"{container['name']}.log").read_bytes().splitlines()
            tail = b"\n".join(lines[-TERMINATION_LOG_LINES:])[-TERMINATION_LOG_BYTES:]
            terminated["message"] = tail.decode(errors="replace")
        return terminated

    async def _run_to_completion(self, pod: Pod, container: dict[str, Any]) -> int:
        pod.process = await self._start(pod, container)
        return await pod.process.wait()

    async def _start(self, pod: Pod, container: dict[str, Any]) -> asyncio.subprocess.Process:
        command = executable(container.get("command") or entrypoint(container["image"]))
        args = [self._in_pod(pod, container, arg) for arg in container.get("args", [])]
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(pod.folder / "home"),
            "PYTHONUNBUFFERED": "1",
            **self.env,
            **{
                item["name"]: self._in_pod(pod, container, item.get("value", ""))
                for item in container.get("env", [])
            },
        }
        (pod.folder / "home").mkdir(exist_ok=True)
        log_file = (pod.folder / f"{container['name']}.log").open("ab")
        return await asyncio.create_subprocess_exec(
            *command, *args, env=env, stdout=log_file, stderr=asyncio.subprocess.STDOUT
        )

    def _in_pod(self, pod: Pod, container: dict[str, Any], value: str) -> str:
        """An argument as the process sees it on this node: pod IP for 0.0.0.0, volumes at their folders."""
        value = value.replace("0.0.0.0", pod.ip)
        mounts = sorted(container.get("volumeMounts", []), key=lambda m: -len(m["mountPath"]))
        for mount in mounts:
            path = mount["mountPath"].rstrip("/")
            if value == path or value.startswith(path + "/"):
                return str(self._volume(pod, mount["name"])) + value[len(path) :]
        return value

    def _volume(self, pod: Pod, name: str) -> Path:
        (volume,) = [v for v in pod.spec.get("volumes", []) if v["name"] == name]
        if "persistentVolumeClaim" in volume:
            folder = self.claim(volume["persistentVolumeClaim"]["claimName"])
        else:
            folder = pod.folder / "volumes" / name  # emptyDir: the pod's own
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    async def _probe(self, pod: Pod, container: dict[str, Any]) -> None:
        port = container["readinessProbe"]["grpc"]["port"]
        async with grpc.aio.insecure_channel(f"{pod.ip}:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    ready = answer.status == health_pb2.HealthCheckResponse.SERVING
                except grpc.aio.AioRpcError:
                    ready = False
                if ready != pod.ready and not pod.terminating:
                    pod.ready = ready
                    log.info("node: %s ready=%s", pod.name, ready)
                    await self._write_pod_status(pod)
                    await self._publish_endpoints()
                await asyncio.sleep(PROBE_SECONDS)

    async def _write_pod_status(self, pod: Pod) -> None:
        (container,) = pod.spec["containers"]
        state = {"waiting": {"reason": "CrashLoopBackOff"}} if pod.backing_off else {"running": {}}
        container_status = {
            "name": container["name"],
            "image": container["image"],
            "imageID": "",
            "ready": pod.ready,
            "started": not pod.backing_off,
            "restartCount": pod.restarts,
            "state": state,
            "lastState": {"terminated": pod.last_termination} if pod.last_termination else {},
        }
        status = {
            "phase": "Running",
            "podIP": pod.ip,
            "conditions": [{"type": "Ready", "status": str(pod.ready)}],
            "containerStatuses": [container_status],
        }
        with contextlib.suppress(Exception):  # the pod may be going
            await self.server.patch(
                f"/api/v1/namespaces/{NAMESPACE}/pods/{pod.name}/status", json={"status": status}
            )

    # --- the EndpointSlice controller ---

    async def _publish_endpoints(self) -> None:
        async with self._publishing:
            await self._publish_endpoints_now()

    async def _publish_endpoints_now(self) -> None:
        wanted: dict[str, dict[str, Any]] = {}
        for service in self._live("services"):
            selector = service["spec"].get("selector") or {}
            for pod in self.pods.values():
                if not selector or not selector.items() <= pod.labels.items():
                    continue
                slice_ = self._endpoint_slice(service, pod)
                wanted[slice_["metadata"]["name"]] = slice_
        path = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
        for name, slice_ in wanted.items():
            if name not in self._slices:
                await self.server.post(path, json=slice_)
            elif self._slices[name] != slice_:
                await self.server.patch(f"{path}/{name}", json=slice_)
        for name in set(self._slices) - set(wanted):
            with contextlib.suppress(Exception):
                await self.server.delete(f"{path}/{name}")
        self._slices = wanted

    def _endpoint_slice(self, service: dict[str, Any], pod: Pod) -> dict[str, Any]:
        service_name = service["metadata"]["name"]
        container_ports = {
            p.get("name"): p["containerPort"] for p in pod.spec["containers"][0].get("ports", [])
        }
        ports = []
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            number = container_ports.get(target) if isinstance(target, str) else target
            ports.append({"name": port.get("name"), "port": number, "protocol": "TCP"})
        serving = pod.ready and not pod.terminating
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{service_name}-{pod.name}"[:63],
                "namespace": NAMESPACE,
                "labels": {
                    **service["metadata"].get("labels", {}),
                    "kubernetes.io/service-name": service_name,
                },
            },
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": [
                {
                    "addresses": [pod.ip],
                    "conditions": {"ready": serving, "serving": serving, "terminating": pod.terminating},
                    "targetRef": {"kind": "Pod", "name": pod.name, "namespace": NAMESPACE},
                }
            ],
        }

    def _live(self, plural: str) -> list[dict[str, Any]]:
        return [
            dict(found.raw)
            for (resource, namespace, _), found in list(self.server.objects.items())
            if resource.plural == plural and namespace == NAMESPACE and not found.deleted
        ]
