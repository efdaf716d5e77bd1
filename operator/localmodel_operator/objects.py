"""The operator's one name for a Kubernetes object as the API takes and returns it: a plain dict.

(Not `localmodel.manifests.Manifest`, which is a parsed LocalModel and the file it came from.)
"""

from __future__ import annotations

from typing import Any

KubeObject = dict[str, Any]
