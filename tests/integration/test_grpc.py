"""gRPC-specific behaviour against the real server: options carried as over HTTP, errors."""

from __future__ import annotations

import asyncio
import json

import pytest

from pyflink_triton import TritonConfigError, TritonConnectionError, TritonServerError
from pyflink_triton.server import free_port
from pyflink_triton.sessions.function import TritonInference

from jobs import BASE_ID, open_session, stateful_options


def test_grpc_carries_string_sequence_ids_and_flags(triton):
    options = stateful_options(triton, endpoint=triton.grpc_endpoint)
    with open_session(triton, "my_stateful_model", **options) as session:
        reports = [json.loads(session.infer([i])) for i in (5, 6)]
    assert [r["sequence_id"] for r in reports] == [f"{BASE_ID}-0-0", f"{BASE_ID}-0-1"]
    assert all(r["start"] and r["end"] for r in reports)
    assert [r["total"] for r in reports] == [5, 6]


def test_grpc_with_gzip_headers_token_and_priority(triton):
    with open_session(triton, "add_one", endpoint=triton.grpc_endpoint, compression="gzip",
                      **{"custom-headers": "X-Trace-Id:abc", "auth-token": "t0ken",
                         "priority": "1"}) as session:
        assert session.infer([1.25]) == 2.25


def test_grpc_async_session_returns_results_in_order(triton):
    inference = TritonInference.create({"endpoint": triton.grpc_endpoint,
                                        "model-name": "add_one"})
    session = inference.open(0, mode="async")

    async def run() -> list[float]:
        try:
            return await asyncio.gather(*(session.infer([float(i)]) for i in range(500)))
        finally:
            await session.close()

    assert asyncio.run(run()) == [i + 1.0 for i in range(500)]


def test_grpc_unknown_model_names_model_and_endpoint(triton):
    with pytest.raises(TritonConfigError) as info:
        TritonInference.create({"endpoint": triton.grpc_endpoint, "model-name": "nope"})
    message = str(info.value)
    assert "'nope'" in message and triton.grpc_endpoint in message
    assert "check 'model-name'" in message


def test_grpc_unreachable_server_is_a_connection_error_without_credentials(triton):
    port = free_port()
    inference = TritonInference.create(
        {"endpoint": f"grpc://alice:s3cret@127.0.0.1:{port}", "model-name": "add_one",
         "timeout": "3 s"}, inputs=[("x", "DOUBLE")], output=("y", "DOUBLE"))
    with pytest.raises(TritonConnectionError) as info:
        inference.open(0)
    message = str(info.value)
    assert f"grpc://***@127.0.0.1:{port}" in message and "(option 'endpoint')" in message
    assert "alice" not in message and "s3cret" not in message


def test_grpc_server_error_names_the_model(triton):
    # my_stateful_model refuses a request without a sequence (correlation) ID.
    with pytest.raises(TritonServerError) as info, open_session(
            triton, "my_stateful_model", endpoint=triton.grpc_endpoint) as session:
        session.infer([1])
    assert "'my_stateful_model'" in str(info.value) and "gRPC" in str(info.value)

