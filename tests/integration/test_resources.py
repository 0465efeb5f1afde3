"""Every socket and gRPC channel a function opens is closed when it closes, on real processes:
a real tritonserver behind a TCP proxy that counts the client connections open at a moment,
and PyFlink's own event-loop runner of async functions. The module turns ResourceWarnings
(an unclosed socket, transport or channel found by the garbage collector) into failures."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pyflink.fn_execution.datastream.process.async_function.operation import (
    AsyncFunctionRunner,
)
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext

from pyflink_triton import TritonAsyncScalarFunction
from pyflink_triton.errors import TritonRequestError
from pyflink_triton.sessions.batches import ColumnBatch
from pyflink_triton.sessions.function import TritonInference

from faults import ECHO_LOG, CountingProxy

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning",
                                        "error::pytest.PytestUnraisableExceptionWarning")

COLUMNS = {"inputs": [("X", DataTypes.BIGINT())], "output": ("Y", DataTypes.BIGINT())}


@pytest.fixture(autouse=True)
def garbage_of_earlier_tests_collected() -> None:
    """Only what a test leaks counts: what earlier ones left (PyFlink's gateway process, say)
    is collected first, its warnings ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()


@pytest.fixture
def proxy(server) -> Iterator[CountingProxy]:
    with CountingProxy("127.0.0.1", server.http_port) as http, \
            CountingProxy("127.0.0.1", server.grpc_port) as grpc:
        yield {"http": http, "grpc": grpc}  # type: ignore[misc]


def endpoint(proxies: Any, protocol: str) -> str:
    return proxies[protocol].http_endpoint if protocol == "http" else \
        proxies[protocol].grpc_endpoint


def wait_until_closed(proxy: CountingProxy, timeout: float = 3.0) -> int:
    """The client connections still open once they are closed, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while proxy.active and time.monotonic() < deadline:
        time.sleep(0.02)
    return proxy.active


def no_leak_found_by_the_collector() -> None:
    """(a leaked socket or transport warns as it is collected: an error in this module)"""
    gc.collect()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_async_function_closes_its_connections_when_pyflink_stops_it(proxy, protocol):
    """As PyFlink's AsyncScalarFunctionOperation does: open(), calls on the event loop of its
    AsyncFunctionRunner, the runner stopped (its loop closed), then close()."""
    function = TritonAsyncScalarFunction(
        {"endpoint": endpoint(proxy, protocol), "model-name": ECHO_LOG,
         "max-concurrent-requests": "8"}, **COLUMNS)
    function.open(FunctionContext(None, {}, number_of_parallel_subtasks=1,
                                  index_of_this_subtask=0, attempt_number=0))
    runner = AsyncFunctionRunner()
    runner.daemon = True
    runner.start()
    runner.wait_ready()

    async def calls() -> list[int]:
        return list(await asyncio.gather(*(function.eval(x) for x in range(40))))

    assert asyncio.run_coroutine_threadsafe(calls(), runner._loop).result(30) == list(
        range(1, 41))
    assert proxy[protocol].active >= 1
    session = function._session  # (held: closed by close(), not by the garbage collector)
    runner.stop()
    function.close()
    assert wait_until_closed(proxy[protocol]) == 0
    del session
    no_leak_found_by_the_collector()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_vectorized_session_closes_its_connections(proxy, protocol):
    session = TritonInference.create(
        {"endpoint": endpoint(proxy, protocol), "model-name": ECHO_LOG,
         "max-concurrent-requests": "8"}, **COLUMNS).open(0, mode="vectorized")
    rows = np.arange(32, dtype=np.int64)
    assert list(session.infer_many(ColumnBatch([rows]))[0]) == list(rows + 1)
    assert proxy[protocol].active >= 1
    session.close()
    assert wait_until_closed(proxy[protocol]) == 0
    no_leak_found_by_the_collector()


def test_a_failed_vectorized_request_stops_its_siblings(proxy, fault_repository, caplog):
    """One row of a batch cannot be sent (no fallback): the call fails at once, and the rows
    in flight beside it are cancelled with their connections, not left running into the
    loop's next run or its close."""
    fault_repository.set_delay(1.0)
    session = TritonInference.create(
        {"endpoint": proxy["http"].http_endpoint, "model-name": ECHO_LOG,
         "max-concurrent-requests": "8"}, **COLUMNS).open(0, mode="vectorized")
    try:
        started = time.monotonic()
        with pytest.raises(TritonRequestError, match="outside the INT64 range"):
            session.infer_many(ColumnBatch([[1, 2, 3, 4, 5, 6, 7, 2**70]]))
        assert time.monotonic() - started < 0.9  # (the failing row did not wait for the rest)
        assert wait_until_closed(proxy["http"]) == 0
    finally:
        fault_repository.set_delay(0)
        session.close()
    no_leak_found_by_the_collector()
    assert "Task was destroyed but it is pending" not in caplog.text


def test_a_session_used_on_two_loops_closes_the_first_loops_connections(proxy):
    """A direct user of the async session may call it from two event loops in turn (each
    asyncio.run its own): the first loop's connections are closed as that loop shuts down."""
    inference = TritonInference.create(
        {"endpoint": proxy["http"].http_endpoint, "model-name": ECHO_LOG}, **COLUMNS)
    session = inference.open(0, mode="async")

    async def calls() -> list[int]:
        return list(await asyncio.gather(*(session.infer([x]) for x in range(4))))

    assert asyncio.run(calls()) == [1, 2, 3, 4]
    assert wait_until_closed(proxy["http"]) == 0

    async def last_calls() -> list[int]:
        try:
            return await calls()
        finally:
            await session.close()

    assert asyncio.run(last_calls()) == [1, 2, 3, 4]
    assert wait_until_closed(proxy["http"]) == 0
    no_leak_found_by_the_collector()
