# severa-connector: slim, non-root, one image for the connector and the fake Severa.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY connector ./connector
COPY adapters ./adapters
COPY schemas ./schemas
RUN pip install --no-cache-dir --upgrade pip build \
 && python -m build --wheel --outdir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    SEVERA_CONNECTOR_LOG__FORMAT=json \
    SEVERA_CONNECTOR_STATE_URL=sqlite:////var/lib/severa-connector/state.db
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin connector \
 && mkdir -p /var/lib/severa-connector && chown 10001:10001 /var/lib/severa-connector
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
EXPOSE 8080
ENTRYPOINT ["severa-connector"]
CMD ["run"]
