# syntax=docker/dockerfile:1
# severa-connector: slim, non-root, hash-checked. Two images from this file:
#   production (the default, the last stage): the runtime lock and the wheel -- no fake, no demo,
#     no build tool. `docker build -t severa-connector .`
#   dev (`--target dev`): the source tree installed editable, the fakes and the demo included; for
#     docker-compose.yml's fake services and demos, never for production.
# The base image is pinned by digest (an index digest: every platform). To move it, read the new
# one with `docker buildx imagetools inspect python:3.11-slim` and change it here and in the label
# below, or pass --build-arg PYTHON_IMAGE=... for one build.
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    SEVERA_CONNECTOR_LOG__FORMAT=json \
    SEVERA_CONNECTOR_STATE_URL=sqlite:////var/lib/severa-connector/state.db
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin connector \
 && mkdir -p /var/lib/severa-connector && chown 10001:10001 /var/lib/severa-connector
# Every dependency from the lock (scripts/lock.sh), each file's hash checked; nothing resolved here.
COPY requirements/runtime.txt /tmp/requirements/runtime.txt
RUN pip install --require-hashes -r /tmp/requirements/runtime.txt && rm -rf /tmp/requirements

FROM base AS build
WORKDIR /src
COPY requirements/build.txt /tmp/requirements/build.txt
RUN pip install --require-hashes -r /tmp/requirements/build.txt
COPY pyproject.toml README.md ./
COPY build_support ./build_support
COPY connector ./connector
COPY adapters ./adapters
COPY schemas ./schemas
# The wheel leaves the fakes out (pyproject.toml, build_support/wheel_contents.py).
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

FROM build AS dev
LABEL org.opencontainers.image.title="severa-connector-dev" \
      org.opencontainers.image.description="severa-connector with the fake Severa, the fake Netvisor and the demo; not for production" \
      org.opencontainers.image.licenses="LicenseRef-Proprietary"
# Editable: the fakes' modules are imported from the source tree (/src), which the wheel leaves out.
RUN pip install --no-deps --no-build-isolation -e . \
 && python -c "import adapters.severa.fake.server, adapters.netvisor.fake.server, connector.demo"
USER 10001
EXPOSE 8080
ENTRYPOINT ["severa-connector"]
CMD ["run"]

FROM base AS production
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="severa-connector" \
      org.opencontainers.image.description="Event-driven bridge between RabbitMQ, the Visma Severa SOAP API and Visma Netvisor" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="LicenseRef-Proprietary" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim" \
      org.opencontainers.image.base.digest="sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7"
COPY --from=build /wheels /wheels
# --no-deps: the lock above already installed every dependency, at the versions CI tested. The
# check fails the build if a fake ever slips into the wheel.
RUN pip install --no-deps /wheels/*.whl && rm -rf /wheels \
 && python -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ('adapters.severa.fake', 'adapters.netvisor.fake', 'connector.fakes', 'connector.demo')))"
USER 10001
EXPOSE 8080
# Liveness of `run` on its health port (SEVERA_CONNECTOR_HTTP__PORT, 8080); slim has no curl. An
# answer other than 200 raises, and the check fails. Other commands (console, dlq ingest) set their
# own check in docker-compose.yml.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SEVERA_CONNECTOR_HTTP__PORT', '8080'), timeout=4)"]
ENTRYPOINT ["severa-connector"]
CMD ["run"]
