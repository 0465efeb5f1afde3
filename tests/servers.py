"""The Triton server the integration tests talk to: a local process, or a Docker container.

``PYFLINK_TRITON_TEST_SERVER=local`` (the default) starts ``tritonserver`` from the
nvidia-pytriton wheel with ``pyflink_triton.server``; ``=docker`` starts the NGC image with
testcontainers (for machines with a Docker engine). Both serve the committed model repository
and expose the same interface, so every test runs against either.
"""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path
from typing import Protocol

from pyflink_triton.server import LocalTritonServer, TritonServerSetupError

MODEL_REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
# tritonserver 2.51 = NGC release 24.10, the version the nvidia-pytriton wheel ships.
TRITON_IMAGE = os.environ.get("PYFLINK_TRITON_IMAGE", "nvcr.io/nvidia/tritonserver:24.10-py3")


class TritonUnderTest(Protocol):
    @property
    def http_endpoint(self) -> str: ...

    @property
    def grpc_endpoint(self) -> str: ...

    def log_text(self) -> str: ...

    def stop(self) -> None: ...


class TritonContainer:
    """The NGC tritonserver image with the model repository mounted read-only."""

    def __init__(self, model_repository: Path = MODEL_REPOSITORY) -> None:
        from testcontainers.core.container import DockerContainer

        self._container = (
            DockerContainer(TRITON_IMAGE)
            .with_volume_mapping(str(model_repository), "/models", "ro")
            .with_exposed_ports(8000, 8001)
            .with_command("tritonserver --model-repository=/models --allow-metrics=false"))

    @property
    def http_endpoint(self) -> str:
        host = self._container.get_container_host_ip()
        return f"http://{host}:{self._container.get_exposed_port(8000)}"

    @property
    def grpc_endpoint(self) -> str:
        host = self._container.get_container_host_ip()
        return f"grpc://{host}:{self._container.get_exposed_port(8001)}"

    def start(self, timeout: float = 300.0) -> TritonContainer:
        self._container.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.http_endpoint}/v2/health/ready", timeout=2):
                    return self
            except OSError:
                time.sleep(1)
        raise TritonServerSetupError(f"Triton container not ready:\n{self.log_text()[-5000:]}")

    def log_text(self) -> str:
        stdout, stderr = self._container.get_logs()
        return (stdout + stderr).decode(errors="replace")

    def stop(self) -> None:
        self._container.stop()


def start_triton() -> TritonUnderTest:
    kind = os.environ.get("PYFLINK_TRITON_TEST_SERVER", "local")
    if kind == "local":
        return LocalTritonServer(MODEL_REPOSITORY).start()
    if kind == "docker":
        return TritonContainer().start()
    raise TritonServerSetupError(
        f"PYFLINK_TRITON_TEST_SERVER={kind!r}: expected 'local' or 'docker'.")
