"""Failure handling proven on real processes: a real tritonserver that the tests kill (SIGKILL,
as a crash) and restart on the same ports, real PyFlink jobs, and a TCP proxy that counts the
connections the function opens. The echo_log models log every request they receive (its
sequence ID, X and the server's pid), which is how the tests see what reached Triton.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from pyflink_triton import create_model
from pyflink_triton.errors import TritonCircuitOpenError, TritonRequestError
from pyflink_triton.policies.resilience import BreakerState
from pyflink_triton.server import LocalTritonServer
from pyflink_triton.sessions.function import TritonInference

from faults import ECHO_LOG, ECHO_LOG_SEQ, RUNNING_TOTAL, CountingProxy, FaultRepository
from jobs import sequence_source, table_env
from sequence_checks import (
    assert_no_live_sequences,
    assert_running_totals,
    by_sequence,
    keyed_id_parts,
)

RETRY_BUDGET = {  # ~20 s of retries: a restart (~2 s) fits easily
    "max-retries": "30", "retry-initial-backoff": "50ms", "retry-max-backoff": "1s",
    "timeout": "5s",
}


def run_in_background(job: Callable[[], Any]) -> Callable[[float], Any]:
    """Start ``job`` in a thread; the returned function waits for it and returns its result
    (or raises its exception)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = job()
        except BaseException as e:  # (handed to the test thread)
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def wait(timeout: float) -> Any:
        thread.join(timeout)
        assert not thread.is_alive(), f"the job did not finish within {timeout:g} s"
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    return wait


def echo_job(endpoint: str, model: str, rows: int, parallelism: int, **options: str
             ) -> Callable[[], list[tuple[Any, ...]]]:
    """A job sending ids 1..rows through ``model``; returns (id, result) per output row."""
    def job() -> list[tuple[Any, ...]]:
        t_env = table_env(parallelism=parallelism)
        sequence_source(t_env, rows)
        create_model(t_env, "echo", {"endpoint": endpoint, "model-name": model, **options},
                     inputs=[("X", "BIGINT")], output=("Y", "BIGINT"))
        frame = t_env.sql_query("SELECT id, echo(id) AS r FROM src").to_pandas()
        return [(int(i), _plain(r)) for i, r in zip(frame["id"], frame["r"], strict=True)]
    return job


def _plain(value: Any) -> Any:
    if isinstance(value, dict):  # a ROW comes back from to_pandas() as a dict
        return {k: _plain(v) for k, v in value.items()}
    return value.item() if hasattr(value, "item") else value


def kill_after(repository: FaultRepository, server: LocalTritonServer, model: str,
               requests: int) -> set[int]:
    """Kill the server once ``requests`` more requests reached ``model``; returns the X values
    it received before it died."""
    before = len(repository.requests(model))
    repository.wait_for_requests(model, before + requests, timeout=120)
    server.kill()
    return {x for _, x, _ in repository.requests(model)[before:]}


@pytest.mark.parametrize("mode, protocol", [("sync", "http"), ("async", "grpc")])
def test_a_triton_killed_and_restarted_within_the_retry_budget_loses_no_row(
        server, fault_repository, mode, protocol):
    rows = 3000
    fault_repository.set_delay(0.002)  # ~500 requests/s: the job outlives the kill
    endpoint = server.http_endpoint if protocol == "http" else server.grpc_endpoint
    log_start = len(fault_repository.requests(ECHO_LOG_SEQ))
    wait = run_in_background(echo_job(
        endpoint, ECHO_LOG_SEQ, rows, parallelism=2, mode=mode, **RETRY_BUDGET,
        **{"sequence-id": "job-1", "sequence-id-auto-increment": "true",
           "sequence-start": "true", "sequence-end": "true"}))
    kill_after(fault_repository, server, ECHO_LOG_SEQ, 500)
    time.sleep(1.0)  # an outage: the subtasks retry
    server.start()
    results = wait(300)

    assert sorted(i for i, _ in results) == list(range(1, rows + 1)), "rows out != rows in"
    assert all(y == i + 1 for i, y in results), "an output does not belong to its input"
    received = fault_repository.requests(ECHO_LOG_SEQ)[log_start:]
    assert len({pid for _, _, pid in received}) == 2, "the server was not restarted mid-job"
    ids_of: dict[int, set[str]] = defaultdict(set)
    for corrid, x, _ in received:
        ids_of[x].add(corrid)
    assert sorted(ids_of) == list(range(1, rows + 1))
    resent = {x: ids for x, ids in ids_of.items() if len(ids) > 1}
    assert not resent, f"records sent under more than one sequence ID: {resent}"
    assert len({next(iter(ids)) for ids in ids_of.values()}) == rows  # one ID per record


@pytest.mark.parametrize("error_fields", [False, True])
def test_an_outage_longer_than_the_budget_gives_exactly_the_affected_rows_the_fallback(
        server, fault_repository, error_fields):
    rows = 1500
    fault_repository.set_delay(0.002)
    log_start = len(fault_repository.requests(ECHO_LOG))
    options = {"max-retries": "2", "retry-initial-backoff": "20ms", "retry-max-backoff": "50ms",
               "default-value": "-1", "circuit-breaker-enabled": "true",
               "circuit-breaker-timeout": "1h"}
    if error_fields:
        options["error-fields"] = "true"
    wait = run_in_background(echo_job(server.http_endpoint, ECHO_LOG, rows, parallelism=1,
                                      **options))
    kill_after(fault_repository, server, ECHO_LOG, 300)
    results = wait(300)  # the server stays down

    assert sorted(i for i, _ in results) == list(range(1, rows + 1)), "rows out != rows in"
    received = {x for _, x, _ in fault_repository.requests(ECHO_LOG)[log_start:]}
    answered, fell_back = set(), set()
    for i, result in results:
        if error_fields:
            y, ok, error = result["Y"], result["ok"], result["error"]
            assert ok is (y == i + 1), result
            if not ok:
                assert y == -1 and ECHO_LOG in error and server.http_endpoint in error, result
            else:
                assert error is None
        else:
            y = result
            assert y in (i + 1, -1), (i, result)
        (answered if y == i + 1 else fell_back).add(i)
    assert answered <= received, "a row has a prediction the server never computed"
    # Exactly the rows the server did not answer got the fallback: at most the one request in
    # flight at the kill reached the model without its answer coming back.
    assert fell_back == set(range(1, rows + 1)) - answered
    assert len(received - answered) <= 1
    assert len(fell_back) >= rows - 300 - 10  # the job went on after the kill


def test_an_outage_longer_than_the_budget_without_fallback_fails_the_job(
        server, fault_repository):
    fault_repository.set_delay(0.002)
    wait = run_in_background(echo_job(
        server.http_endpoint, ECHO_LOG, 1500, parallelism=1, **{
            "max-retries": "2", "retry-initial-backoff": "20ms", "retry-max-backoff": "50ms"}))
    kill_after(fault_repository, server, ECHO_LOG, 100)
    with pytest.raises(Exception) as failure:  # (PyFlink wraps it: check the text)
        wait(300)
    message = str(failure.value)
    assert "Gave up on the request to model 'echo_log'" in message
    assert f"at {server.http_endpoint} after 3 attempt(s) ('max-retries' = 2)" in message
    assert "Last cause: Cannot reach the Triton server" in message
    assert "Connection" in message  # refused or reset


def breaker_session(endpoint: str, **options: str):
    return TritonInference.create(
        {"endpoint": endpoint, "model-name": ECHO_LOG, "circuit-breaker-enabled": "true",
         "circuit-breaker-timeout": "2s", "circuit-breaker-half-open-requests": "3",
         **options}, [("X", "BIGINT")], ("Y", "BIGINT")).open(subtask_index=0)


def test_the_breaker_stops_connection_attempts_during_an_outage_and_closes_after_it(
        server, http_proxy):
    session = breaker_session(http_proxy.http_endpoint)
    breaker = session.context.servers.breakers[0]
    try:
        assert [session.infer([x]) for x in range(20)] == list(range(1, 21))
        server.kill()
        failures = 0
        while breaker.state is BreakerState.CLOSED:
            with pytest.raises(TritonRequestError, match="Cannot reach"):
                session.infer([failures])
            failures += 1
        assert failures == 20  # 20 failed of 40 counted: the threshold of 0.5
        before = http_proxy.snapshot()
        for x in range(200):
            with pytest.raises(TritonCircuitOpenError, match=r"circuit breaker .* is open"):
                session.infer([x])
        assert (http_proxy.snapshot() - before).connections == 0, \
            "records reached the dead port while the breaker was open"

        server.start()
        time.sleep(2.1)  # circuit-breaker-timeout
        before = http_proxy.snapshot()
        assert [session.infer([x]) for x in range(3)] == [1, 2, 3]  # the 3 trials
        assert breaker.state is BreakerState.CLOSED
        assert (http_proxy.snapshot() - before).connections >= 1
        assert [session.infer([x]) for x in range(100)] == list(range(1, 101))
    finally:
        session.close()


def test_failed_health_probes_open_the_breaker_without_any_record(server, http_proxy):
    session = breaker_session(http_proxy.http_endpoint, **{
        "health-check-enabled": "true", "health-check-interval": "50ms"})
    records = session.context
    try:
        assert session.infer([1]) == 2
        server.kill()
        deadline = time.monotonic() + 10
        while records.servers.breakers[0].state is not BreakerState.OPEN:
            assert time.monotonic() < deadline, "probes did not open the breaker"
            time.sleep(0.05)
        assert records.servers.health_checks[0].healthy is False
        with pytest.raises(TritonCircuitOpenError):
            session.infer([2])
        server.start()
        deadline = time.monotonic() + 10
        while not records.servers.health_checks[0].healthy:
            assert time.monotonic() < deadline, "probes did not see the server back"
            time.sleep(0.05)
        time.sleep(2.1)  # probes alone never close it: trials do
        assert records.servers.breakers[0].state is not BreakerState.CLOSED
        assert [session.infer([x]) for x in range(3)] == [1, 2, 3]
        assert records.servers.breakers[0].state is BreakerState.CLOSED
    finally:
        session.close()


def test_a_job_with_the_breaker_stops_reaching_the_dead_port(server, fault_repository,
                                                             http_proxy):
    """In a real job: after the kill, the breaker opens after 50 failed records (half of the
    last 100), and the 1000+ records after them make no connection attempt."""
    fault_repository.set_delay(0.002)
    wait = run_in_background(echo_job(http_proxy.http_endpoint, ECHO_LOG, 1500, parallelism=1,
                                      **{"circuit-breaker-enabled": "true",
                                         "circuit-breaker-timeout": "1h",
                                         "default-value": "-1"}))
    kill_after(fault_repository, server, ECHO_LOG, 300)
    at_kill = http_proxy.snapshot()
    results = wait(300)
    during_outage = http_proxy.snapshot() - at_kill
    fell_back = sum(1 for _, y in results if y == -1)
    assert len(results) == 1500 and fell_back >= 1000
    # At most one connection attempt per failed record until the breaker opens (50 records;
    # the first failures may come on the connection open at the kill).
    assert during_outage.connections <= 50, during_outage


def test_record_timeout_bounds_a_record_with_all_its_attempts(server, fault_repository):
    """A server that answers after 2 s, 'timeout' 300 ms, 'max-retries' 100: without a bound
    the record would take ~30 s; 'record-timeout' = 1 s ends it after about 1 s."""
    session = TritonInference.create(
        {"endpoint": server.http_endpoint, "model-name": ECHO_LOG, "timeout": "300ms",
         "max-retries": "100", "retry-initial-backoff": "50ms", "retry-max-backoff": "100ms",
         "record-timeout": "1s"}, [("X", "BIGINT")], ("Y", "BIGINT")).open(subtask_index=0)
    try:
        fault_repository.set_delay(2.0)
        started = time.monotonic()
        with pytest.raises(TritonRequestError) as failure:
            session.infer([1])
        elapsed = time.monotonic() - started
        fault_repository.set_delay(0)
        assert 0.9 <= elapsed <= 1.5, elapsed
        message = str(failure.value)
        assert "Gave up on the request to model 'echo_log'" in message
        assert "'record-timeout'" in message
        assert "no answer within the timeout of" in message  # each attempt's own bound
    finally:
        fault_repository.set_delay(0)
        session.close()


# --- a Triton that (re)starts with the job (issue 15) -------------------------------------------

@pytest.mark.parametrize("mode, protocol", [("sync", "http"), ("async", "grpc")])
def test_a_job_started_while_triton_is_down_delivers_every_row_once_it_is_up(
        server, fault_repository, mode, protocol):
    """A Kubernetes rollout restarts Triton and the job together: open() waits for the server
    under the records' retry policy instead of failing the job at once. (The proxy shows when
    both subtasks' open() have found it down; Triton comes back 6 s after that.)"""
    rows = 300
    server.kill()
    log_start = len(fault_repository.requests(ECHO_LOG))
    port = server.http_port if protocol == "http" else server.grpc_port
    with CountingProxy("127.0.0.1", port) as proxy:
        endpoint = proxy.http_endpoint if protocol == "http" else proxy.grpc_endpoint
        wait = run_in_background(echo_job(endpoint, ECHO_LOG, rows, parallelism=2, mode=mode,
                                          **{"max-retries": "10"}))
        deadline = time.monotonic() + 120
        while proxy.upstream_refused < 2:
            assert time.monotonic() < deadline, "the job's open() never tried the server"
            time.sleep(0.05)
        time.sleep(6.0)
        server.start()
        results = wait(300)

    assert sorted(results) == [(i, i + 1) for i in range(1, rows + 1)]
    assert sorted(x for _, x, _ in fault_repository.requests(ECHO_LOG)[log_start:]) == list(
        range(1, rows + 1)), "a row was sent twice or not at all"


# --- keyed sequences that Triton no longer holds (issue 15) ---------------------------------------

def keyed_session(endpoint: str, base: str, **options: str):
    return TritonInference.create(
        {"endpoint": endpoint, "model-name": RUNNING_TOTAL, "sequence-id": base,
         "input-names": "x:X", "output-names": "total:TOTAL", **options},
        [("x", "BIGINT")], ("total", "BIGINT"), mode="keyed").open(0, mode="keyed")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_keyed_sequences_restart_with_their_replay_after_a_triton_restart(
        server, fault_repository, protocol):
    """The restarted Triton knows none of the keys' sequences: each key's next record is
    refused at first (connection refused, retried where it stands), then answered 400 "must
    specify the START flag"; the key's sequence restarts once, warmed up with its last inputs,
    and the totals go on as if nothing happened."""
    base = f"restart-{protocol}"
    endpoint = server.http_endpoint if protocol == "http" else server.grpc_endpoint
    session = keyed_session(endpoint, base, **{
        "sequence-replay-records": "2", "max-retries": "40", "retry-initial-backoff": "50ms",
        "retry-max-backoff": "500ms"})
    states: dict[str, Any] = {}

    def record(key: str, x: int) -> int:
        total, states[key] = session.infer(states.get(key), key, [x], False, 1000)
        return total

    try:
        assert [record(k, x) for x in (1, 2, 3) for k in ("a", "b")] == [1, 1, 3, 3, 6, 6]
        server.kill()
        during_restart = run_in_background(lambda: record("a", 10))
        time.sleep(1.0)
        server.start()
        assert during_restart(120) == 2 + 3 + 10  # the replay of 2 and 3, then 10
        assert record("b", 10) == 15
        assert record("a", 20) == 35
    finally:
        session.close()
    sequences = by_sequence(fault_repository.records(RUNNING_TOTAL), base)
    restarted = {sid: lines for sid, lines in sequences.items()
                 if keyed_id_parts(sid, base)[2] == 1}
    assert len(restarted) == 2
    for lines in restarted.values():
        assert [(line["x"], line["replay"]) for line in lines[:3]] == [
            (2, True), (3, True), (10, False)]
        assert_running_totals(lines)
    assert session.restarted == 2


def test_a_key_idle_past_the_models_max_idle_starts_anew_without_a_refused_request(
        server, fault_repository):
    """running_total's max_sequence_idle_microseconds is 5 s; the key's idle END never came (a
    late timer): Triton reaped the sequence, so the next record starts a new one with the
    replay, and no request meets Triton's 400."""
    base = "reaped"
    session = keyed_session(server.http_endpoint, base, **{"sequence-replay-records": "1"})
    try:
        total, state = session.infer(None, "k", [1], False, 1_000)
        total, state = session.infer(state, "k", [2], False, 1_001)
        time.sleep(5.5)
        total, state = session.infer(state, "k", [4], False, 6_600)
        assert total == 2 + 4
        assert session.context.guard.metrics.failures.value == 0
        sequences = by_sequence(fault_repository.records(RUNNING_TOTAL), base)
        assert [keyed_id_parts(s, base)[2] for s in sequences] == [0, 1]
        old = next(iter(sequences))
        assert not any(line["end"] for line in sequences[old])  # never ended: reaped
        assert_no_live_sequences(server.http_port, RUNNING_TOTAL, [old])
    finally:
        session.close()


def test_a_keyed_close_against_a_dead_server_is_bounded(server, caplog):
    """ENDing 20 open sequences through the full retry policy ('max-retries' 10, 'timeout' 30 s)
    against a dead server would take minutes, past Flink's task cancellation; close() makes one
    attempt, stops at the first refusal and says what it left open."""
    session = keyed_session(server.http_endpoint, "close", **{
        "max-retries": "10", "retry-initial-backoff": "1 s", "timeout": "30 s"})
    states = {}
    for key in range(20):
        _, states[key] = session.infer(None, f"k{key}", [key], False, 1000)
    server.kill()
    started = time.monotonic()
    session.close()
    assert time.monotonic() - started < 6.0
    assert "20 of 20 open sequence(s) of model 'running_total' were not ended" in caplog.text
