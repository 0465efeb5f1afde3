"""The fault-injection tools themselves (tests/faults.py, LocalTritonServer.kill and restart),
on a real tritonserver serving the generated echo_log models."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from faults import (
    ECHO_LOG,
    ECHO_LOG_SEQ,
    CountingProxy,
    ProxyCounts,
    read_request_records,
)


def _http_input(value: int) -> httpclient.InferInput:
    tensor = httpclient.InferInput("X", [1], "INT64")
    tensor.set_data_from_numpy(np.array([value], dtype=np.int64))
    return tensor


def _json_infer(address: str, value: int, model: str = ECHO_LOG) -> int:
    """One inference over a new HTTP connection (urllib does not keep connections alive)."""
    body = json.dumps({"inputs": [{"name": "X", "shape": [1], "datatype": "INT64",
                                   "data": [value]}]}).encode()
    request = urllib.request.Request(f"http://{address}/v2/models/{model}/infer", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)["outputs"][0]["data"][0]
    except urllib.error.URLError as e:  # urllib wraps errors raised while sending
        if isinstance(e.reason, OSError):
            raise e.reason from e
        raise


def test_proxy_forwards_http_and_counts_each_connection_once(server, http_proxy,
                                                             fault_repository):
    client = httpclient.InferenceServerClient(http_proxy.address)
    try:
        start = http_proxy.snapshot()
        outputs = [client.infer(ECHO_LOG, [_http_input(100 + i)]).as_numpy("Y").tolist()
                   for i in range(3)]
        assert outputs == [[101], [102], [103]]
        # tritonclient.http keeps its one connection alive: three requests, one connection
        assert http_proxy.snapshot() - start == ProxyCounts(connections=1)
    finally:
        client.close()
    assert _json_infer(http_proxy.address, 110) == 111
    assert http_proxy.snapshot() - start == ProxyCounts(connections=2)
    pid = server.process.pid
    assert [line for line in fault_repository.requests(ECHO_LOG) if 100 <= line[1] <= 110] == [
        (0, 100, pid), (0, 101, pid), (0, 102, pid), (0, 110, pid)]


def test_proxy_forwards_grpc(server, fault_repository):
    with CountingProxy("127.0.0.1", server.grpc_port) as proxy:
        client = grpcclient.InferenceServerClient(proxy.address)
        try:
            for value in (200, 201):
                tensor = grpcclient.InferInput("X", [1], "INT64")
                tensor.set_data_from_numpy(np.array([value], dtype=np.int64))
                assert client.infer(ECHO_LOG, [tensor]).as_numpy("Y").tolist() == [value + 1]
        finally:
            client.close()
        assert proxy.snapshot() == ProxyCounts(connections=1)  # one HTTP/2 connection
    assert [x for _, x, _ in fault_repository.requests(ECHO_LOG) if x in (200, 201)] == [200,
                                                                                         201]


def test_the_sequence_model_logs_the_string_sequence_id(server, fault_repository):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    try:
        result = client.infer(ECHO_LOG_SEQ, [_http_input(300)], sequence_id="abc-0-1",
                              sequence_start=True, sequence_end=True)
    finally:
        client.close()
    assert result.as_numpy("Y").tolist() == [301]
    [record] = [r for r in read_request_records(fault_repository.request_log(ECHO_LOG_SEQ))
                if r["x"] == 300]
    assert (record["corrid"], record["pid"]) == ("abc-0-1", server.process.pid)
    assert record["start"] is True and record["end"] is True


def test_after_kill_the_proxy_resets_and_counts_then_a_restart_serves_the_same_ports(
        server, http_proxy, fault_repository):
    assert _json_infer(http_proxy.address, 400) == 401
    old_pid, ports = server.process.pid, (server.http_port, server.grpc_port)
    server.kill()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.http_port), timeout=5)
    before = http_proxy.snapshot()
    # Accepted by the proxy, then reset: the client sees it in connect() or in its first recv().
    with (pytest.raises(ConnectionResetError),
          socket.create_connection(("127.0.0.1", http_proxy.port), timeout=5) as client):
        client.recv(1)
    assert http_proxy.snapshot() - before == ProxyCounts(connections=1, upstream_refused=1)
    with pytest.raises(ConnectionError):
        _json_infer(http_proxy.address, 401)

    server.start()
    assert (server.http_port, server.grpc_port) == ports
    assert _json_infer(http_proxy.address, 402) == 403
    assert [(x, pid) for _, x, pid in fault_repository.requests(ECHO_LOG) if x >= 400] == [
        (400, old_pid), (402, server.process.pid)]
    assert server.process.pid != old_pid
    log = server.log_text()  # the killed server's log is kept, the restart marked
    assert "===== pyflink_triton: restarting tritonserver" in log
    assert log.count("Started HTTPService") >= 2


def test_a_request_in_flight_when_the_server_is_killed_fails_with_a_connection_error(
        server, http_proxy, fault_repository):
    fault_repository.set_delay(60)
    logged = len(fault_repository.requests(ECHO_LOG))
    outcome: list[BaseException | None] = []

    def call() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", http_proxy.port, timeout=30)
        body = json.dumps({"inputs": [{"name": "X", "shape": [1], "datatype": "INT64",
                                       "data": [500]}]})
        try:
            connection.request("POST", f"/v2/models/{ECHO_LOG}/infer", body=body)
            connection.getresponse().read()
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)
        finally:
            connection.close()

    caller = threading.Thread(target=call)
    caller.start()
    [*_, (_, x, pid)] = fault_repository.wait_for_requests(ECHO_LOG, logged + 1)
    assert (x, pid) == (500, server.process.pid)  # the model has it, and now the server dies
    killed = time.monotonic()
    server.kill()
    caller.join(10)
    # The server had read the whole request, so its kernel closes with FIN: an HTTP client
    # sees the connection closed without a response.
    [error] = outcome
    assert isinstance(error, http.client.RemoteDisconnected), repr(error)
    assert time.monotonic() - killed < 5


def test_proxy_can_play_a_dead_upstream_without_killing_the_server(server, http_proxy):
    client = httpclient.InferenceServerClient(http_proxy.address)
    try:
        assert client.is_server_live()
        http_proxy.set_upstream_down(True)  # also resets client's kept-alive connection
        before = http_proxy.snapshot()
        for _ in range(3):
            with pytest.raises(ConnectionError):
                _json_infer(http_proxy.address, 600)
        assert http_proxy.snapshot() - before == ProxyCounts(connections=3, upstream_refused=3)
        http_proxy.set_upstream_down(False)
        assert _json_infer(http_proxy.address, 601) == 602
    finally:
        client.close()


def test_a_restart_waits_until_its_ports_are_free(server):
    server.kill()
    squatter = socket.create_server(("127.0.0.1", server.grpc_port))
    threading.Timer(1.0, squatter.close).start()
    started = time.monotonic()
    server.start()
    assert time.monotonic() - started >= 1.0
    assert _json_infer(f"127.0.0.1:{server.http_port}", 700) == 701
