"""Shared fixtures: the real Triton server and PyFlink environments.

PyFlink runs Python UDFs in one Python worker process per subtask ("process" mode, as on a
cluster) rather than as threads of this process, so per-subtask behaviour is tested as it runs
in production. The variable must be set before the first job starts the JVM.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from jobs import table_env
from servers import TritonUnderTest, start_triton

os.environ.setdefault("_python_worker_execution_mode", "process")


@pytest.fixture(scope="session")
def triton() -> Iterator[TritonUnderTest]:
    server = start_triton()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def t_env():
    return table_env()


@pytest.fixture
def stream_env():
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    config = Configuration()
    # A DataStream job does not default to this interpreter (see pyflink-facts).
    config.set_string("python.executable", sys.executable)
    return StreamExecutionEnvironment.get_execution_environment(config)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """When a test that used the server fails, attach the tail of the server's log."""
    outcome = yield
    report = outcome.get_result()
    server = item.funcargs.get("triton") if hasattr(item, "funcargs") else None
    # (a test module may give its own "triton" fixture, which is no server)
    if report.failed and hasattr(server, "log_text"):
        tail = "\n".join(server.log_text().splitlines()[-80:])
        report.sections.append(("Triton server log (tail)", tail))
