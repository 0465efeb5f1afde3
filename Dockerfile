# syntax=docker/dockerfile:1
# The Flink image of docker-compose.yml: Flink 2.3 (Java 17) with PyFlink and this package.
#
# The official image (github.com/apache/flink-docker) is Ubuntu 24.04 "noble"
# (eclipse-temurin:17-jre-noble), whose python3 is 3.12: within apache-flink 2.3's and this
# package's supported Pythons (3.10-3.12). PyFlink's Java side (/opt/flink, incl.
# opt/flink-python-2.3.0.jar) and Python side (apache-flink==2.3.0 below) must be the same version.
#
# Not built on the project's own machines (no Docker engine there); tests/test_compose.py
# checks this file statically.
FROM flink:2.3.0-scala_2.12-java17

USER root

# python3 + venv for PyFlink; curl for the compose health checks. apache-flink and
# grpcio<1.66 (apache-beam 2.61's bound) have cp312 wheels on PyPI for x86_64 only: elsewhere
# (arm64) pip builds them from source, which needs a compiler and the Python headers.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends python3 python3-venv curl; \
    if [ "$(dpkg --print-architecture)" != "amd64" ]; then \
        apt-get install -y --no-install-recommends build-essential python3-dev; \
    fi; \
    rm -rf /var/lib/apt/lists/*

# The Python of every Flink process here: the JobManager's and `flink run`'s client
# (python.client.executable) and the TaskManagers' UDF workers (python.executable), both set
# in docker-compose.yml's FLINK_PROPERTIES. On PATH first, so a bare `python` is this one too.
ENV PATH=/opt/pyflink-triton/venv/bin:$PATH

# The heavy dependencies first, in a layer of their own that code changes do not invalidate.
# The same pins as pyproject.toml: apache-flink == the Java side's version.
RUN set -eux; \
    python3 -m venv /opt/pyflink-triton/venv; \
    /opt/pyflink-triton/venv/bin/pip install --no-cache-dir \
        "apache-flink==2.3.0" "tritonclient[grpc,http]==2.49.0" "numpy>=1.22,<2"

# This package (`pip install .` from the build context, without copying it into a layer;
# the rw bind mount lets setuptools write its build files, which are then discarded).
RUN --mount=type=bind,source=.,target=/tmp/pyflink-triton-src,rw \
    set -eux; \
    /opt/pyflink-triton/venv/bin/pip install --no-cache-dir /tmp/pyflink-triton-src; \
    /opt/pyflink-triton/venv/bin/pip check; \
    /opt/pyflink-triton/venv/bin/python -c "import pyflink, pyflink_triton, tritonclient.grpc"

# The demo job and the seed's SQL, at the paths docker-compose.yml's commands use.
COPY examples/ /opt/pyflink-triton/examples/
COPY sql/ /opt/pyflink-triton/sql/

USER flink
