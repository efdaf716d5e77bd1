"""A Kubernetes API client for whichever component runs: in a pod its service account, else a kubeconfig."""

from __future__ import annotations

import os

from kubernetes_asyncio import client, config


async def connect() -> client.ApiClient:
    """In a pod: its service account; elsewhere: the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        # Read KUBECONFIG now: the client library reads it once, when it is imported.
        await config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    return client.ApiClient()
