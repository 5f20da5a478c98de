# syntax=docker.io/docker/dockerfile:1
#
# Container image for the cdc daemon (MySQL/MariaDB binlog -> Elasticsearch).
#
#   docker build -t cdc:0.1.0 .
#   docker run --rm \
#       -v "$PWD/cdc.yml:/etc/cdc/cdc.yml:ro" \
#       -v "$PWD/rules:/etc/cdc/rules:ro" \
#       -v cdc-state:/var/lib/cdc \
#       -e CDC_MYSQL_PASSWORD=... \
#       cdc:0.1.0
#
# Layout inside the image:
#   /etc/cdc/cdc.yml  the configuration; mount it read-only. ${VAR} in it is read from
#                     the container's environment, so pass secrets with -e / env_file.
#   /etc/cdc/rules/   the rule files (*.yml); mount read-only.
#   /var/lib/cdc/     the checkpoint and dead letters (a volume, owned by the cdc user).
#                     Keep it across container restarts, or the daemon starts again from
#                     start.position.
# STATE_DIRECTORY=/var/lib/cdc (below) is cdc's state_dir: relative checkpoint.path and
# dead_letter.path resolve there, not against /etc/cdc, which the daemon cannot write to
# (cdc checks at start that it can write them: exit 2 if not). Other relative paths
# (rules, TLS and password files) resolve against the config's directory: rules: rules
# is /etc/cdc/rules.
# See deploy/docker/cdc.yml for a complete example.
#
# Exit codes (cdc/cli.py): 0 stopped, 1 fatal runtime error (a restart may help),
# 2 configuration/set-up error and 3 binlog purged (a restart cannot help).
#
# HEALTHCHECK asks cdc's /readyz, which is served only when cdc.yml enables it:
#   metrics: {enabled: true, host: 0.0.0.0, port: 9108}
# (0.0.0.0 so Prometheus in another container can scrape /metrics too). Without it
# the container reports "unhealthy". Another port: set CDC_HEALTHCHECK_URL.
#
# Base image: docker.io/library/python:3.11-slim. Any Debian-like image with python and pip on PATH
# works: `--build-arg BASE=...` (the tests build on a local Debian base, see
# scripts/container.py).

# Image names are fully qualified: podman (and buildah) refuse short names such as
# python:3.11-slim unless a registries.conf alias or search list covers them.
ARG BASE=docker.io/library/python:3.11-slim
# The Rust toolchain that compiles the native row path (native/). Any image with cargo
# and a C linker works; without cargo there the image runs the Python row path.
ARG RUST=docker.io/library/rust:1-slim-bookworm

# ---------------------------------------------------------------- build: the native row path
# One abi3 extension for every CPython >= 3.11 (so no Python is needed here:
# PYO3_NO_PYTHON). extension-module: the module takes the interpreter's symbols
# from the process that imports it instead of linking a libpython of its own.
FROM ${RUST} AS native
WORKDIR /src
COPY native/ native/
# The charset tables the crate compiles in (native/src/charset.rs), from the Python package.
COPY cdc/mysql/charsets.bin cdc/mysql/charsets.bin
ENV PYO3_NO_PYTHON=1 PATH=/usr/local/cargo/bin:/opt/rust/bin:$PATH
# cargo's target directory is a cache mount (in no layer): a change to native/ recompiles
# the crate, not its dependencies.
RUN --mount=type=cache,target=/src/native/target \
    mkdir /out \
 && if command -v cargo >/dev/null 2>&1; then \
        cargo build --release --locked --features pyo3/extension-module --manifest-path native/Cargo.toml \
        && cp native/target/release/libcdc_native.so /out/_native.abi3.so; \
    else echo "no cargo in ${RUST}: the image will run the Python row path"; fi

# ---------------------------------------------------------------- build: cdc installed in a venv
FROM ${BASE} AS build
WORKDIR /src
# .dockerignore keeps .venv, .git, tests, checkpoints and build output out of the context.
COPY . .
# cdc and its dependencies (all of them ship binary wheels for CPython 3.11 on Linux, so
# no compiler is needed) in a venv that the runtime stage copies whole. pip's download
# cache is kept between builds (a cache mount: in no layer), so a change to the source
# does not download every dependency again.
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/cdc \
 && /opt/cdc/bin/pip install --disable-pip-version-check --root-user-action=ignore .
# The native row path, if the native stage built it, beside the installed package (-I:
# not the source tree in the working directory).
COPY --from=native /out/ /native/
RUN if [ -f /native/_native.abi3.so ]; then \
        cp /native/_native.abi3.so "$(/opt/cdc/bin/python -I -c 'import os, cdc; print(os.path.dirname(cdc.__file__))')/"; \
    fi

# ---------------------------------------------------------------- runtime
FROM ${BASE}

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="cdc" \
      org.opencontainers.image.description="Loss-proof change-data-capture from MySQL/MariaDB binlogs into Elasticsearch" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STATE_DIRECTORY=/var/lib/cdc

# The venv from the build stage, by COPY and not `RUN --mount=from=build`: podman 4.3's
# buildah reuses a cached `RUN --mount=...,from=<stage>` layer when that stage changed
# (containers/buildah#4522, fixed much later by #6845), which kept the cdc of an older
# build in the image; COPY's cache key is the content.
COPY --from=build /opt/cdc /opt/cdc
ENV PATH=/opt/cdc/bin:$PATH

# A fixed, non-root uid/gid so volume ownership is predictable across rebuilds.
RUN groupadd --system --gid 10001 cdc \
 && useradd --system --no-log-init --uid 10001 --gid cdc \
        --home-dir /var/lib/cdc --no-create-home --shell /usr/sbin/nologin cdc \
 && install -d -m 0755 /etc/cdc /etc/cdc/rules \
 && install -d -o cdc -g cdc -m 0750 /var/lib/cdc

# Config (/etc/cdc/cdc.yml) and rules (/etc/cdc/rules) are bind-mounted read-only;
# they are deliberately not a VOLUME (that would add an empty anonymous volume on
# every `docker run`). The checkpoint directory is a volume: a new named volume is
# initialised from this directory, so it starts out owned by cdc.
WORKDIR /var/lib/cdc
VOLUME ["/var/lib/cdc"]

# Numeric (= cdc:cdc) so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# SIGTERM makes cdc finish the batch and save the position, then exit 0. Allow it
# time: `docker stop -t 90` / compose stop_grace_period (the default 10 s may cut
# a slow Elasticsearch flush short; nothing is lost, it only means more replay).
STOPSIGNAL SIGTERM

# The container's health is "the index is in sync" (/readyz): streaming, the source
# heard from, the last bulk request accepted, lag under metrics.max_lag_seconds. So an
# unreachable Elasticsearch or a long snapshot shows as unhealthy, which is what
# `docker ps` and compose's `service_healthy` should tell. For a restart policy
# (a Kubernetes livenessProbe) use /healthz instead: it fails only when the main
# loop is stuck, since a restart cannot cure an outage. The slim image has no curl,
# hence Python; urlopen raises on a refused connection or a 503 (exit status 1).
ENV CDC_HEALTHCHECK_URL=http://127.0.0.1:9108/readyz
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['CDC_HEALTHCHECK_URL'], timeout=5)"]

ENTRYPOINT ["cdc"]
CMD ["run", "--config", "/etc/cdc/cdc.yml"]
