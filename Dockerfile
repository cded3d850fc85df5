# syntax=docker/dockerfile:1
#
# Proxilion GRC container image.
#   docker build -t proxilion:latest .
#   docker run --rm -p 8787:8787 -p 8788:8788 -e ADMIN_TOKEN=... --stop-timeout 35 proxilion:latest
#
# Stop timeout: SIGTERM starts the drain (DRAIN_GRACE 5 s + up to DRAIN_TIMEOUT
# 25 s + analytics flush), so give the container more than Docker's default
# 10 s: `docker run --stop-timeout 35`, `stop_grace_period: 35s` in compose
# (packaging/docker-compose.ha.yml does), terminationGracePeriodSeconds in k8s.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: wheels for the package and every dependency, in a venv ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/proxilion/venv
COPY setup.cfg pyproject.toml README.md* ./
COPY proxilion ./proxilion
COPY twisted ./twisted
RUN /opt/proxilion/venv/bin/pip install --no-cache-dir . \
 && /opt/proxilion/venv/bin/python -m compileall -q /opt/proxilion/venv

# ---- runtime ----
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="Proxilion GRC" \
      org.opencontainers.image.description="AI security proxy: inspects, redacts, rate-limits and audits traffic to AI providers" \
      org.opencontainers.image.licenses="Apache-2.0"

# wget: used by this HEALTHCHECK and by the Swarm healthcheck in the HA guide.
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget ca-certificates \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 proxilion \
 && useradd --system --uid 10001 --gid proxilion --home-dir /var/lib/proxilion --no-create-home --shell /usr/sbin/nologin proxilion \
 && install -d -o proxilion -g proxilion -m 0750 /var/lib/proxilion \
 && install -d -o root -g proxilion -m 0750 /etc/proxilion /etc/proxilion/ca

COPY --from=build /opt/proxilion/venv /opt/proxilion/venv

# Twisted's plugin cache (dropin.cache) written now, as root: at run time the
# image is read-only (k8s readOnlyRootFilesystem) and the user is not root.
# The second command fails the build if the proxilion plugin is not found.
RUN /opt/proxilion/venv/bin/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
 && /opt/proxilion/venv/bin/python -c "import sys; from twisted.plugin import getPlugins; from twisted.application.service import IServiceMaker; sys.exit(0 if any(p.tapname == 'proxilion' for p in getPlugins(IServiceMaker)) else 'proxilion twistd plugin not found')"

ENV PATH=/opt/proxilion/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PROXILION_DATA_DIR=/var/lib/proxilion \
    PORT=8787 \
    ADMIN_PORT=8788

WORKDIR /var/lib/proxilion
VOLUME ["/var/lib/proxilion"]
EXPOSE 8787 8788
USER 10001:10001

# 200 while serving, 503 while draining: Docker marks a draining container unhealthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["wget", "-q", "--spider", "http://localhost:8787/health"]

STOPSIGNAL SIGTERM
CMD ["twistd", "--nodaemon", "--pidfile=", "proxilion"]
