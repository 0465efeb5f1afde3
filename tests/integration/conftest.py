"""Fixtures of the fault-injection tests: a tritonserver of their own, which tests kill and
restart (on the same ports), serving the generated echo_log models, and a counting proxy; and
a real standalone Flink cluster (tests/flink_cluster.py) whose TaskManagers tests may kill."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pyflink_triton.server import LocalTritonServer, free_port

from faults import CountingProxy, FaultRepository, make_fault_repository
from flink_cluster import FlinkCluster


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


@pytest.fixture(scope="session")
def flink_cluster_session(tmp_path_factory) -> Iterator[FlinkCluster]:
    """One JobManager and two TaskManagers (2 slots each) for the session; ~10 s to start."""
    with FlinkCluster(tmp_path_factory.mktemp("flink-cluster")) as cluster:
        yield cluster


@pytest.fixture
def flink_cluster(flink_cluster_session: FlinkCluster) -> FlinkCluster:
    """The session's cluster, healed for this test: jobs left by earlier tests cancelled,
    killed TaskManagers replaced (new ids tm-3, tm-4...) and two registered."""
    flink_cluster_session.cancel_all_jobs()
    flink_cluster_session.ensure_taskmanagers(2)
    return flink_cluster_session


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """When a test that used a Flink cluster fails, attach the tail of its processes' logs."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or not hasattr(item, "funcargs"):
        return
    clusters = {id(c): c for c in item.funcargs.values() if isinstance(c, FlinkCluster)}
    for cluster in clusters.values():
        report.sections.append((f"Flink cluster logs (tail), {cluster.work_dir}",
                                cluster.log_tail()))
