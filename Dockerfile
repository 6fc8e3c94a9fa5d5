# One image for connector_feed, strategy_engine and context (docker-compose.yml picks the command).
#   docker build -t hftfeed:latest .
#   docker run --rm -e NATS_URL=nats://host:4222 -e DATA_SOURCE=hft_connector -e CONNECTOR_NAME=stub hftfeed:latest
# Lint: hadolint Dockerfile (tests/test_compose.py runs it).

# --- builder: the project and its dependencies in a venv (pure Python + wheels: no compiler) ---
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# No pip or setuptools inside the venv (nothing needs them at run time): the base image's pip
# installs into it.
RUN python -m venv --without-pip /opt/venv

WORKDIR /src
# Only what setuptools needs: pyproject (readme = "README.md"), and the packages it finds
# (schemas*, services*, with schemas/json/*.json as package data).
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY services/ services/
# Versions come from pyproject.toml's dependency ranges; pip compiles the .pyc files here.
RUN pip install --no-cache-dir --python /opt/venv/bin/python .

# --- runtime: the venv only, as a non-root user ---
FROM python:3.11-slim

RUN groupadd --system --gid 10001 hftfeed \
    && useradd --system --uid 10001 --gid hftfeed --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin hftfeed

COPY --from=builder /opt/venv /opt/venv

# HFTFEED_SERVICE: whose health the image's HEALTHCHECK asks for; set it to the service the
# container runs (docker-compose.yml sets it, and its own healthchecks take precedence anyway).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HFTFEED_SERVICE=connector_feed

WORKDIR /app
# Numeric, so that runtimes can check it is not root without reading /etc/passwd.
USER 10001:10001

# `hftfeed health` exits 1 (down / no answer) or 2 (bad settings); Docker wants 0 or 1. A shell
# expands $HFTFEED_SERVICE and maps the exit code.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/bin/sh", "-c", "hftfeed health \"$HFTFEED_SERVICE\" --timeout 2 || exit 1"]

CMD ["hftfeed", "connector-feed"]
