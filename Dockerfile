# The Python control plane: one image per component, each a target of this file.
#   router:   the OpenAI-compatible API in front of the backends, finding them through the cluster's
#             LocalModels and EndpointSlices
#   operator: kopf; turns LocalModels into backend Deployments and Services, and scales them
# Build from the repository root:
#   docker build --target router -t localmodel/router .
#   docker build --target operator -t localmodel/operator .
# The llama.cpp backend images are built by backend-images/llama-cpp/Dockerfile{,.cuda}.

# ---- builder: a self-contained venv; each component's builder stage fills it ----
FROM python:3.11.13-slim-bookworm AS builder

# The same path in every stage, so the venv's interpreter links stay valid after COPY --from.
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python -m venv "$VIRTUAL_ENV"
# Enough of the project for pip to resolve its dependencies: pyproject.toml is the one list of versions.
COPY pyproject.toml README.md ./

# Each component's builder installs the core's dependencies and its own extra of pyproject.toml (only
# the backend's extra names llama-cpp-python) in a layer of their own, before any source is copied, so
# editing the code does not reinstall them: pip reads them from the project built without packages.
# DL3013: the versions are pyproject.toml's, not repeated here. Then the packages the image runs, over
# that empty install: --no-deps, the dependencies are in; not editable, since /src stays behind.
FROM builder AS router-builder
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[router]"
COPY localmodel/ localmodel/
COPY server/localmodel_router/ server/localmodel_router/
RUN pip install --no-cache-dir --no-deps --force-reinstall .

FROM builder AS operator-builder
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[operator]"
COPY localmodel/ localmodel/
COPY operator/localmodel_operator/ operator/localmodel_operator/
RUN pip install --no-cache-dir --no-deps --force-reinstall .

# ---- runtime: what both images are, on the same base, nothing to build with ----
FROM python:3.11.13-slim-bookworm AS runtime

LABEL org.opencontainers.image.licenses="Apache-2.0"

# Runs under a read-only root filesystem: anything that writes (HOME, caches) points at /tmp, which the
# pod mounts as an emptyDir; bytecode was compiled at install time.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Numeric, so Kubernetes can verify runAsNonRoot without a passwd entry.
USER 65532:65532
WORKDIR /tmp

# ---- operator: the Kubernetes API comes from the pod's service account ----
FROM runtime AS operator

LABEL org.opencontainers.image.title="localmodel-operator" \
      org.opencontainers.image.description="Kubernetes operator turning LocalModel resources into gRPC llama.cpp backends"

COPY --from=operator-builder /opt/venv /opt/venv

# No HEALTHCHECK: Kubernetes probes kopf's liveness endpoint, GET :8081/healthz. Prometheus metrics
# are served on a port of their own when the settings name one (metrics_port).
EXPOSE 8081
ENTRYPOINT ["localmodel", "operator"]
CMD ["--liveness", "http://0.0.0.0:8081/healthz"]

# ---- router (last: also what a build without --target makes) ----
FROM runtime AS router

LABEL org.opencontainers.image.title="localmodel-router" \
      org.opencontainers.image.description="OpenAI-compatible router over localmodel gRPC backends"

COPY --from=router-builder /opt/venv /opt/venv

# No HEALTHCHECK: Kubernetes probes GET /healthz (the chart does; /readyz says whether a model is routable).
EXPOSE 8080
ENTRYPOINT ["localmodel", "router"]
CMD ["--discovery", "kubernetes", "--host", "0.0.0.0", "--port", "8080"]
