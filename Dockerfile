# The Archipelago operator image: `docker build -t ghcr.io/archipelago-dev/archipelago:0.1.0 .`
#
# Two stages. `build` turns the project into a wheel and installs it, with its dependencies,
# into a virtual environment at /opt/venv. The runtime stage copies only that environment onto
# a fresh python:3.11-slim, so neither the sources, the wheels, pip's cache nor setuptools ship.
# Every dependency is published as a wheel for linux/amd64 and linux/arm64, so no compiler is
# needed in either stage. Pin the base by digest (python:3.11-slim@sha256:...) for builds
# that must be reproducible byte for byte.

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
# pyproject.toml names README.md as the package's readme: the wheel cannot be built without it.
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install /wheels/archipelago-*.whl \
    && /opt/venv/bin/pip uninstall --yes pip setuptools


FROM python:3.11-slim

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="archipelago" \
      org.opencontainers.image.description="Kubernetes-native, topology-aware scheduler for GPU/NPU clusters" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/archipelago-dev/archipelago" \
      org.opencontainers.image.licenses="Apache-2.0"

# No .pyc writes at run time (the root filesystem is read-only in deploy/operator.yaml; pip
# compiled the bytecode at install time), and logs reach `kubectl logs` unbuffered.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# A numeric, unprivileged user (65532, as distroless' "nonroot"), listed in /etc/passwd so that
# getpass and kopf's peer identity can name it; the Deployment's runAsUser matches it.
RUN groupadd --system --gid 65532 archipelago \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin archipelago

COPY --from=build /opt/venv /opt/venv

USER 65532:65532
# 9090: Prometheus metrics (`archipelago run --metrics-port`); 8080: kopf's /healthz.
EXPOSE 9090 8080
ENTRYPOINT ["archipelago"]
CMD ["run"]
