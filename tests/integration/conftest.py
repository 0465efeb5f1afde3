"""Fixtures of the fault-injection tests: a tritonserver of their own, which tests kill and
restart (on the same ports), serving the generated echo_log models, and a counting proxy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pyflink_triton.server import LocalTritonServer, free_port

from faults import CountingProxy, FaultRepository, make_fault_repository


@pytest.fixture(scope="module")
def fault_repository(tmp_path_factory) -> FaultRepository:
    return make_fault_repository(tmp_path_factory.mktemp("faults"))


@pytest.fixture(scope="module")
def module_server(fault_repository) -> Iterator[LocalTritonServer]:
    # Fixed ports: a restart must come back on them, as a proxy or a client expects.
    server = LocalTritonServer(fault_repository.path, http_port=free_port(),
                               grpc_port=free_port(), startup_timeout=60)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(module_server, fault_repository) -> LocalTritonServer:
    """The module's server, running and answering at once, whatever the last test did."""
    fault_repository.set_delay(0)
    if module_server.process is None:
        module_server.start()
    return module_server


@pytest.fixture
def http_proxy(server) -> Iterator[CountingProxy]:
    with CountingProxy("127.0.0.1", server.http_port) as proxy:
        yield proxy
