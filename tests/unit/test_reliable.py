"""Unit tests of pyflink_triton.sessions.reliable: RequestGuard (retries and metrics around a
transport, or around the pool of a :class:`Servers`, whose per-server circuit breaker admits
each attempt) and HealthCheck. No server: scripted fake transports, a fake clock, and sleeps
that record their waits (and advance the fake clock) instead of sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, ClassVar

import numpy as np
import pytest

from pyflink_triton.errors import (
    TritonCircuitOpenError,
    TritonConnectionError,
    TritonRequestError,
    TritonServerError,
    TritonTlsError,
)
from pyflink_triton.options import TritonOptions
from pyflink_triton.options.endpoint import Endpoint
from pyflink_triton.policies.resilience import Admission, BreakerState, CircuitBreaker, RetryPolicy
from pyflink_triton.policies.sequence import SequenceParams
from pyflink_triton.sessions.metrics import GROUP, InferenceMetrics
from pyflink_triton.sessions.reliable import HealthCheck, RequestGuard, call_with_retries
from pyflink_triton.sessions.servers import AsyncServerPool, ServerPool, Servers
from pyflink_triton.wire.request import InferRequest, ModelRef

from fake_clock import FakeClock
from fake_metrics import FakeMetricGroup
from fake_transports import hang_async_requests

ENDPOINT = "http://triton:8000"
SERVERS = "pyflink_triton.sessions.servers"
MODEL = ModelRef("resnet")
ALMOST_ONE = math.nextafter(1.0, 0.0)

RETRIES = {"max-retries": "3"}
BREAKER = {"circuit-breaker-enabled": "true"}


# --- fakes ---------------------------------------------------------------------------------------

class Response:
    def as_numpy(self, name: str) -> np.ndarray | None:
        return np.array([1.0]) if name == "OUT" else None


RESPONSE = Response()
Step = Exception | None  # an error to raise, or None to answer


class ScriptedTransport:
    """Each infer() call takes the next step of the script: raise its error, or answer. A call
    takes ``takes`` seconds of the fake clock (at most the request's timeout); ``during`` is
    called with the call number while the call is in flight."""

    def __init__(self, script: Iterable[Step], clock: FakeClock | None = None,
                 takes: float = 0.0, during: Callable[[int], None] | None = None) -> None:
        self.script = list(script)
        self.requests: list[InferRequest] = []
        self.clock = clock
        self.takes = takes
        self.during = during

    def infer(self, request: InferRequest) -> Response:
        self.requests.append(request)
        if self.during is not None:
            self.during(len(self.requests))
        if self.clock is not None:
            self.clock.advance(self.takes if request.timeout is None
                               else min(self.takes, request.timeout))
        step = self.script.pop(0)
        if step is None:
            return RESPONSE
        raise step

    def close(self) -> None:
        pass


class AsyncFacade:
    """The same script, behind the asyncio transport interface."""

    def __init__(self, transport: ScriptedTransport) -> None:
        self.transport = transport

    async def infer(self, request: InferRequest) -> Response:
        return self.transport.infer(request)

    async def close(self) -> None:
        pass


def make_options(extra: dict[str, str] | None = None,
                 endpoint: str = ENDPOINT) -> TritonOptions:
    return TritonOptions.from_dict({"endpoint": endpoint, "model-name": MODEL.name,
                                    **(extra or {})})


def make_guard(clock: FakeClock, extra: dict[str, str] | None = None,
               metrics: InferenceMetrics | None = None, uniform: float = 0.0,
               endpoint: str = ENDPOINT) -> RequestGuard:
    return RequestGuard(make_options(extra, endpoint), metrics or InferenceMetrics(),
                        clock=clock, uniform=lambda: uniform)


@dataclasses.dataclass
class Routed:
    """A guard and the Servers it sends through (routing, each server's breaker), as open()
    makes them: they share the metrics."""

    guard: RequestGuard
    servers: Servers

    @property
    def breaker(self) -> CircuitBreaker:
        breaker = self.servers.breakers[0]
        assert breaker is not None
        return breaker


def make_routed(clock: FakeClock, extra: dict[str, str] | None = None,
                metrics: InferenceMetrics | None = None) -> Routed:
    options = make_options(extra)
    metrics = metrics or InferenceMetrics()
    servers = Servers(options, metrics, clock=clock)
    return Routed(RequestGuard(options, metrics, clock=clock, uniform=lambda: 0.0,
                               breakers_open=servers.router.breakers_open), servers)


def make_request() -> InferRequest:
    return InferRequest(MODEL, (), ("OUT",), SequenceParams("job-0-7", True, True), 3)


def transient(text: str = "HTTP 503: model 'resnet' is unavailable") -> TritonServerError:
    return TritonServerError(text, 503)


# --- sending, sync and async alike ---------------------------------------------------------------

@dataclasses.dataclass
class Sender:
    """guard.send or guard.send_async (under asyncio.run), whose waits are recorded. Given a
    :class:`Routed`, through its servers' pool of the mode (ServerPool, AsyncServerPool),
    whose connection is ``transport``."""

    mode: str
    waits: list[float]
    monkeypatch: pytest.MonkeyPatch

    def __call__(self, guard: RequestGuard | Routed, transport: ScriptedTransport,
                 request: InferRequest) -> Any:
        if isinstance(guard, Routed):
            return self._routed(guard, transport, request)
        if self.mode == "sync":
            return guard.send(transport, request)
        return asyncio.run(guard.send_async(AsyncFacade(transport), request))

    def _routed(self, routed: Routed, transport: ScriptedTransport,
                request: InferRequest) -> Any:
        self.monkeypatch.setattr(f"{SERVERS}.connect", lambda options, endpoint: transport)
        self.monkeypatch.setattr(f"{SERVERS}.connect_async",
                                 lambda options, endpoint, bound: AsyncFacade(transport))
        if self.mode == "sync":
            return routed.guard.send(ServerPool(routed.servers), request)

        async def send_async() -> Any:
            pool = AsyncServerPool(routed.servers, 4)
            try:
                return await routed.guard.send_async(pool, request)  # type: ignore[arg-type]
            finally:
                await pool.close()

        return asyncio.run(send_async())

    def sends(self, guard: RequestGuard | Routed, transport: ScriptedTransport,
              request: InferRequest, records: int) -> list[TritonRequestError]:
        """Send ``records`` records that fail; their errors."""
        errors = []
        for _ in range(records):
            with pytest.raises(TritonRequestError) as info:
                self(guard, transport, request)
            errors.append(info.value)
        return errors


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sync", "async"])
def send(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
         clock: FakeClock) -> Sender:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    async def async_sleep(seconds: float) -> None:
        sleep(seconds)

    if request.param == "sync":
        monkeypatch.setattr("pyflink_triton.sessions.reliable.time.sleep", sleep)
    else:
        monkeypatch.setattr("pyflink_triton.sessions.reliable.asyncio.sleep", async_sleep)
    return Sender(request.param, waits, monkeypatch)


def test_an_answer_is_returned_after_one_attempt(send, clock):
    transport = ScriptedTransport([None])
    request = make_request()
    assert send(make_guard(clock, RETRIES), transport, request) is RESPONSE
    assert transport.requests == [request]
    assert transport.requests[0] is request
    assert send.waits == []


def test_a_retried_request_is_the_same_object(send, clock):
    transport = ScriptedTransport([TritonConnectionError("refused"), transient(),
                                   TritonServerError("gRPC UNAVAILABLE", "UNAVAILABLE"), None])
    request = make_request()
    assert send(make_guard(clock, RETRIES), transport, request) is RESPONSE
    assert len(transport.requests) == 4
    assert all(sent is request for sent in transport.requests)
    assert {sent.sequence.sequence_id for sent in transport.requests} == {"job-0-7"}
    assert send.waits == pytest.approx([0.05, 0.1, 0.2])  # d/2 with uniform() = 0


@pytest.mark.parametrize("uniform", [0.0, 0.5, ALMOST_ONE])
def test_retry_waits_follow_the_policy(send, clock, uniform):
    guard = make_guard(clock, {"max-retries": "5", "retry-initial-backoff": "100ms",
                               "retry-max-backoff": "250ms"}, uniform=uniform)
    transport = ScriptedTransport([transient()] * 5 + [None])
    assert send(guard, transport, make_request()) is RESPONSE
    nominal = [0.1, 0.2, 0.25, 0.25, 0.25]
    assert send.waits == pytest.approx([d / 2 + uniform * d / 2 for d in nominal])
    assert send.waits == pytest.approx(
        [guard.policy.backoff(n, lambda: uniform) for n in range(1, 6)])


def test_a_record_short_of_time_sends_a_copy_with_a_smaller_timeout(send, clock):
    guard = make_guard(clock, {"max-retries": "5", "timeout": "1s", "record-timeout": "2500ms"})
    # Every attempt times out (takes its whole timeout); waits are 0.05 s, then 0.1 s, ...
    transport = ScriptedTransport([TritonConnectionError("timed out")] * 6, clock, takes=1.0)
    request = make_request()
    with pytest.raises(TritonRequestError) as info:
        send(guard, transport, request)
    first, second, third = transport.requests
    assert first is request and second is request
    assert third is not request  # at 2.15 s only 0.35 s are left
    assert third.timeout == pytest.approx(0.35)
    assert dataclasses.replace(third, timeout=None) == request
    assert third.sequence is request.sequence
    assert send.waits == pytest.approx([0.05, 0.1])
    message = str(info.value)
    assert "3 attempt(s)" in message
    assert "'record-timeout'" in message
    assert "2.5 s" in message


@pytest.mark.parametrize("error", [
    TritonServerError("HTTP 400: unexpected shape for input 'x'", 400),
    TritonServerError("HTTP 404: unknown model 'resnet'", 404),
    TritonServerError("gRPC INVALID_ARGUMENT: bad input", "INVALID_ARGUMENT"),
    TritonTlsError("certificate verify failed"),
    TritonRequestError("cannot decode the response"),
], ids=["400", "404", "INVALID_ARGUMENT", "tls", "request"])
def test_non_retryable_errors_are_raised_as_is(send, clock, error):
    transport = ScriptedTransport([error, None])
    with pytest.raises(TritonRequestError) as info:
        send(make_guard(clock, RETRIES), transport, make_request())
    assert info.value is error
    assert len(transport.requests) == 1
    assert send.waits == []


@pytest.mark.parametrize("error", [
    TritonServerError("HTTP 500", 500),
    TritonServerError("HTTP 503", 503),
    TritonServerError("gRPC UNAVAILABLE", "UNAVAILABLE"),
    TritonConnectionError("connection reset by peer"),
], ids=["500", "503", "UNAVAILABLE", "connection"])
def test_transient_errors_are_retried(send, clock, error):
    transport = ScriptedTransport([error, None])
    assert send(make_guard(clock, {"max-retries": "1"}), transport, make_request()) is RESPONSE
    assert len(transport.requests) == 2
    assert len(send.waits) == 1


def test_without_max_retries_a_transient_error_fails_at_once(send, clock):
    transport = ScriptedTransport([transient("HTTP 503: busy"), None])
    with pytest.raises(TritonRequestError) as info:
        send(make_guard(clock), transport, make_request())
    assert len(transport.requests) == 1
    assert "1 attempt(s)" in str(info.value)
    assert "'max-retries' = 0" in str(info.value)
    assert "HTTP 503: busy" in str(info.value)


def test_exhausted_retries_name_model_endpoint_attempts_and_last_cause(send, clock):
    transport = ScriptedTransport([TritonConnectionError("refused (first)"),
                                   transient("HTTP 503 (second)"),
                                   transient("HTTP 503: overloaded (third)")])
    with pytest.raises(TritonRequestError) as info:
        send(make_guard(clock, {"max-retries": "2"}), transport, make_request())
    error = info.value
    assert type(error) is TritonRequestError
    message = str(error)
    assert "model 'resnet'" in message
    assert ENDPOINT in message
    assert "after 3 attempt(s)" in message
    assert "'max-retries' = 2" in message
    assert message.endswith("Last cause: HTTP 503: overloaded (third)")
    assert "(first)" not in message
    assert error.__cause__ is None
    assert error.retryable is False


def test_a_non_retryable_error_after_retries_names_the_attempts(send, clock):
    transport = ScriptedTransport([transient(), TritonServerError("HTTP 400: bad shape", 400)])
    with pytest.raises(TritonRequestError) as info:
        send(make_guard(clock, RETRIES), transport, make_request())
    message = str(info.value)
    assert "after 2 attempt(s) (not retryable)" in message
    assert "HTTP 400: bad shape" in message
    assert len(transport.requests) == 2


def test_endpoint_credentials_never_appear_in_the_message(send, clock):
    guard = make_guard(clock, {"max-retries": "1"},
                       endpoint="http://alice:pw-SECRET@triton:8000")
    transport = ScriptedTransport([transient(), transient()])
    with pytest.raises(TritonRequestError) as info:
        send(guard, transport, make_request())
    assert "pw-SECRET" not in str(info.value)
    assert "triton:8000" in str(info.value)


# --- the circuit breaker (each server's, admitting every attempt) ------------------------------

def test_the_breaker_counts_each_attempt(send, clock):
    routed = make_routed(clock, {**BREAKER, "max-retries": "2"})
    states: list[BreakerState] = []
    transport = ScriptedTransport([transient()] * 10,
                                  during=lambda _: states.append(routed.breaker.state))
    errors = send.sends(routed, transport, make_request(), 4)
    assert len(transport.requests) == 10  # 3 records of 3 attempts, then the 4th's first
    assert set(states) == {BreakerState.CLOSED}
    assert routed.breaker.state is BreakerState.OPEN  # opened by the 10th failed attempt
    assert all("3 attempt(s)" in str(error) for error in errors[:3])
    # The 4th record stopped retrying: its first attempt opened the breaker.
    assert "after 1 attempt(s) (the circuit breaker opened meanwhile)" in str(errors[3])


def test_client_errors_count_as_successes_for_the_breaker(send, clock):
    routed = make_routed(clock, BREAKER)
    transport = ScriptedTransport([TritonServerError("HTTP 400", 400)] * 20 + [transient()] * 20)
    send.sends(routed, transport, make_request(), 20)
    assert routed.breaker.state is BreakerState.CLOSED
    send.sends(routed, transport, make_request(), 19)
    assert routed.breaker.state is BreakerState.CLOSED  # 19 failures of 39
    send.sends(routed, transport, make_request(), 1)
    assert routed.breaker.state is BreakerState.OPEN  # 20 of 40


def open_the_breaker(send: Sender, routed: Routed) -> None:
    """Send failing records until the breaker opens (on its 10th failed attempt)."""
    transport = ScriptedTransport([transient()] * 10)
    while routed.breaker.state is not BreakerState.OPEN:
        send.sends(routed, transport, make_request(), 1)
    assert len(transport.requests) == 10


def test_a_rejected_record_is_not_sent(send, clock):
    group = FakeMetricGroup()
    routed = make_routed(clock, {**BREAKER, **RETRIES}, InferenceMetrics(group))
    open_the_breaker(send, routed)
    triton = group.groups[GROUP]
    before = triton.counts()
    server_before = group.server("triton:8000").counts()
    latencies = list(triton.sampled().distributions["latencyMs"].values)
    clock.advance(20.0)
    remaining = routed.breaker.open_for()
    assert remaining is not None and 39.0 < remaining <= 40.0
    transport = ScriptedTransport([None])
    with pytest.raises(TritonCircuitOpenError) as info:
        send(routed, transport, make_request())
    assert transport.requests == []
    message = str(info.value)
    assert "model 'resnet'" in message
    assert ENDPOINT in message
    assert "is open" in message
    assert "'circuit-breaker-failure-threshold'" in message
    assert f"{remaining:.1f} s" in message
    assert "'circuit-breaker-timeout'" in message
    assert "not sent" in message
    assert info.value.retryable is False
    after = triton.counts()
    assert after["requests"] == before["requests"] + 1
    assert after["failures"] == before["failures"] + 1
    assert after["retries"] == before["retries"]
    assert triton.sampled().distributions["latencyMs"].values == latencies  # nothing timed
    assert triton.gauges["inFlight"]() == 0
    assert group.server("triton:8000").counts() == server_before  # the server never saw it


def test_a_half_open_breaker_with_its_trials_in_flight_rejects(send, clock):
    routed = make_routed(clock, {**BREAKER, "circuit-breaker-half-open-requests": "1"})
    open_the_breaker(send, routed)
    clock.advance(60.0)
    rejections: list[TritonCircuitOpenError] = []

    def another_record(_: int) -> None:  # sent (from another pool) while the trial is in flight
        with pytest.raises(TritonCircuitOpenError) as info:
            routed.guard.send(ServerPool(routed.servers), make_request())
        rejections.append(info.value)

    trial = ScriptedTransport([None], during=another_record)
    assert send(routed, trial, make_request()) is RESPONSE
    assert len(trial.requests) == 1  # the other record was not sent
    (rejection,) = rejections
    assert "half-open" in str(rejection)
    assert "'circuit-breaker-half-open-requests'" in str(rejection)
    assert routed.breaker.state is BreakerState.CLOSED


def test_retries_stop_when_the_breaker_opened_meanwhile(send, clock):
    routed = make_routed(clock, {**BREAKER, **RETRIES})

    def others_fail(call: int) -> None:
        for _ in range(10):  # e.g. failed health probes, or other records in flight
            routed.breaker.record_probe(False)

    transport = ScriptedTransport([transient(), None], during=others_fail)
    with pytest.raises(TritonRequestError) as info:
        send(routed, transport, make_request())
    assert "the circuit breaker opened meanwhile" in str(info.value)
    assert "1 attempt(s)" in str(info.value)
    assert len(transport.requests) == 1
    assert send.waits == []  # (no backoff waited out only to be refused)


def test_a_failed_trial_reopens_the_breaker_and_stops_its_retries(send, clock):
    routed = make_routed(clock, {**BREAKER, "max-retries": "2",
                                 "circuit-breaker-half-open-requests": "1"})
    open_the_breaker(send, routed)
    clock.advance(60.0)
    transport = ScriptedTransport([transient(), None])
    with pytest.raises(TritonRequestError) as info:
        send(routed, transport, make_request())
    assert len(transport.requests) == 1
    assert "the circuit breaker opened meanwhile" in str(info.value)
    assert routed.breaker.state is BreakerState.OPEN
    assert routed.breaker.admit() == pytest.approx(60.0, abs=0.5)


def test_each_successful_trial_attempt_counts_and_the_last_closes_the_breaker(send, clock):
    routed = make_routed(clock, {**BREAKER, "circuit-breaker-half-open-requests": "2"})
    open_the_breaker(send, routed)
    clock.advance(60.0)
    transport = ScriptedTransport([None, None])
    assert send(routed, transport, make_request()) is RESPONSE
    assert routed.breaker.state is BreakerState.HALF_OPEN
    assert send(routed, transport, make_request()) is RESPONSE
    assert routed.breaker.state is BreakerState.CLOSED


def test_describe(clock):
    assert make_guard(clock).describe() == "no retries, 31 s per record, no circuit breaker"
    text = make_guard(clock, {**BREAKER, "max-retries": "2", "timeout": "1s"}).describe()
    assert text.startswith("up to 2 retries, backoff 0.1-30 s, 4.3 s per record")
    assert text.endswith("circuit breaker on")


# --- metrics -------------------------------------------------------------------------------------

def test_metrics_are_registered_in_the_triton_group(clock):
    group = FakeMetricGroup()
    make_routed(clock, BREAKER, InferenceMetrics(group))
    assert set(group.groups) == {GROUP}
    triton = group.groups[GROUP]
    assert set(triton.counters) == {"requests", "successes", "failures", "retries", "fallbacks"}
    assert set(triton.distributions) == {"latencyMs"}
    assert set(triton.gauges) == {"inFlight", "circuitBreakerState"}
    assert triton.gauges["inFlight"]() == 0
    assert triton.gauges["circuitBreakerState"]() == 0
    assert set(triton.groups) == {"server"}
    assert set(triton.groups["server"].groups) == {"triton:8000"}
    server = group.server("triton:8000")
    assert set(server.counters) == {"requests", "failures"}
    assert set(server.gauges) == {"inFlight", "circuitBreakerState"}
    assert server.gauges["inFlight"]() == 0
    assert server.gauges["circuitBreakerState"]() == 0


def test_no_breaker_gauge_without_a_breaker(clock):
    group = FakeMetricGroup()
    make_routed(clock, None, InferenceMetrics(group))
    assert set(group.groups[GROUP].gauges) == {"inFlight"}
    assert set(group.server("triton:8000").gauges) == {"inFlight"}


def test_metrics_of_a_record_that_succeeds_after_retries(send, clock):
    group = FakeMetricGroup()
    routed = make_routed(clock, {**BREAKER, **RETRIES, "retry-initial-backoff": "125ms"},
                         InferenceMetrics(group))
    triton, server = group.groups[GROUP], group.server("triton:8000")
    in_flight: list[tuple[int, int]] = []
    transport = ScriptedTransport(
        [transient(), TritonConnectionError("reset"), None], clock, takes=0.25,
        during=lambda _: in_flight.append((triton.gauges["inFlight"](),
                                           server.gauges["inFlight"]())))
    assert send(routed, transport, make_request()) is RESPONSE
    assert triton.counts() == {"requests": 1, "successes": 1, "failures": 0, "retries": 2,
                               "fallbacks": 0}
    assert server.counts() == {"requests": 3, "failures": 2}  # per attempt
    assert in_flight == [(1, 1)] * 3
    assert triton.gauges["inFlight"]() == 0
    assert server.gauges["inFlight"]() == 0
    latencies = triton.sampled().distributions["latencyMs"].values
    assert len(latencies) == 3  # one per attempt
    assert all(latency >= 250 for latency in latencies)
    assert latencies[-1] == 250


def test_metrics_of_a_record_that_fails_after_retries(send, clock):
    group = FakeMetricGroup()
    guard = make_guard(clock, {"max-retries": "1"}, InferenceMetrics(group))
    triton = group.groups[GROUP]
    send.sends(guard, ScriptedTransport([transient(), transient()], clock, takes=0.5),
               make_request(), 1)
    assert triton.counts() == {"requests": 1, "successes": 0, "failures": 1, "retries": 1,
                               "fallbacks": 0}
    assert triton.gauges["inFlight"]() == 0
    assert len(triton.sampled().distributions["latencyMs"].values) == 2


def test_metrics_of_a_non_retryable_failure(send, clock):
    group = FakeMetricGroup()
    guard = make_guard(clock, RETRIES, InferenceMetrics(group))
    triton = group.groups[GROUP]
    send.sends(guard, ScriptedTransport([TritonServerError("HTTP 400", 400)], clock, takes=0.125),
               make_request(), 1)
    assert triton.counts() == {"requests": 1, "successes": 0, "failures": 1, "retries": 0,
                               "fallbacks": 0}
    assert triton.sampled().distributions["latencyMs"].values == [125]
    assert triton.gauges["inFlight"]() == 0


def test_metrics_over_many_records(send, clock):
    group = FakeMetricGroup()
    guard = make_guard(clock, {"max-retries": "1"}, InferenceMetrics(group))
    triton = group.groups[GROUP]
    transport = ScriptedTransport([None, transient(), None, transient(), transient(), None],
                                  clock, takes=0.5)
    for _ in range(2):
        send(guard, transport, make_request())
    send.sends(guard, transport, make_request(), 1)
    send(guard, transport, make_request())
    assert triton.counts() == {"requests": 4, "successes": 3, "failures": 1, "retries": 2,
                               "fallbacks": 0}
    assert len(triton.sampled().distributions["latencyMs"].values) == 6


def test_breaker_state_gauge_follows_the_breaker(send, clock):
    group = FakeMetricGroup()
    routed = make_routed(clock, {**BREAKER, "circuit-breaker-half-open-requests": "1"},
                         InferenceMetrics(group))
    state = group.groups[GROUP].gauges["circuitBreakerState"]
    server_state = group.server("triton:8000").gauges["circuitBreakerState"]
    assert state() == server_state() == 0
    open_the_breaker(send, routed)
    assert state() == server_state() == 2
    clock.advance(60.0)
    observed: list[tuple[int, int]] = []
    trial = ScriptedTransport([None], during=lambda _: observed.append((state(), server_state())))
    send(routed, trial, make_request())
    assert observed == [(1, 1)]
    assert state() == server_state() == 0


def test_metrics_without_a_metric_group_count_nothing(send, clock):
    metrics = InferenceMetrics()
    routed = make_routed(clock, {**BREAKER, "max-retries": "1"}, metrics)
    assert send(routed, ScriptedTransport([transient(), None]), make_request()) is RESPONSE
    metrics.fallbacks.inc(3)
    metrics.latency_ms.update(5)
    metrics.gauge("anything", lambda: 1)
    assert metrics.in_flight.value == 0


def test_a_failed_attempt_ends_before_the_backoff(send, clock):
    group = FakeMetricGroup()
    guard = make_guard(clock, {"max-retries": "2", "retry-initial-backoff": "1s",
                               "retry-max-backoff": "1s"}, InferenceMetrics(group))
    triton = group.groups[GROUP]
    in_flight_while_waiting: list[int] = []
    transport = ScriptedTransport([transient(), transient(), None], clock, takes=0.25)
    original_advance = clock.advance

    def advance(seconds: float) -> None:  # the fake sleeps advance the clock
        if seconds >= 0.5:
            in_flight_while_waiting.append(triton.gauges["inFlight"]())
        original_advance(seconds)

    clock.advance = advance  # type: ignore[method-assign]
    assert send(guard, transport, make_request()) is RESPONSE
    assert send.waits == [0.5, 0.5]
    assert triton.sampled().distributions["latencyMs"].values == [250, 250, 250]
    assert in_flight_while_waiting == [0, 0]



def test_a_cancelled_trial_does_not_wedge_the_breaker(clock, monkeypatch):
    routed = make_routed(clock, {**BREAKER, "circuit-breaker-half-open-requests": "1"})
    for _ in range(10):
        routed.breaker.record(False, Admission.REQUEST)
    clock.advance(60.0)

    hang_async_requests(monkeypatch)

    async def cancelled_trial() -> None:
        pool = AsyncServerPool(routed.servers, 4)
        task = asyncio.ensure_future(routed.guard.send_async(pool, make_request()))
        await asyncio.sleep(0)  # the trial is admitted and in flight
        assert routed.breaker.state is BreakerState.HALF_OPEN
        assert routed.servers.router.in_flight == [1]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.close()

    asyncio.run(cancelled_trial())
    assert routed.servers.router.in_flight == [0]
    assert routed.breaker.state is BreakerState.HALF_OPEN  # the trial said nothing
    clock.advance(3600.0)
    transport = ScriptedTransport([None])
    monkeypatch.setattr(f"{SERVERS}.connect", lambda options, endpoint: transport)
    assert routed.guard.send(ServerPool(routed.servers), make_request()) is RESPONSE
    assert routed.breaker.state is BreakerState.CLOSED


# --- HealthCheck: one server's probes -----------------------------------------------------------

Answers = Callable[[], tuple[bool | Exception, bool | Exception]]


class ProbeTransport:
    """Answers each probe (live, then maybe ready) with the next pair of ``answers()``."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.ready: bool | Exception = False
        self.calls: list[str] = []
        self.probes = 0
        self.closed = False

    def _answer(self, name: str, answer: bool | Exception) -> bool:
        self.calls.append(name)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def server_live(self, model: ModelRef) -> bool:
        self.probes += 1
        live, self.ready = self.answers()
        return self._answer("live", live)

    def server_ready(self, model: ModelRef) -> bool:
        return self._answer("ready", self.ready)

    def close(self) -> None:
        self.closed = True


class FakeConnect:
    """Stands for connect(options, endpoint): records both, hands out ProbeTransports."""

    def __init__(self, answers: Answers | Exception) -> None:
        self.answers = answers
        self.options: list[TritonOptions] = []
        self.endpoints: list[Endpoint] = []
        self.transports: list[ProbeTransport] = []

    def __call__(self, options: TritonOptions, endpoint: Endpoint) -> ProbeTransport:
        self.options.append(options)
        self.endpoints.append(endpoint)
        if isinstance(self.answers, Exception):
            raise self.answers
        transport = ProbeTransport(self.answers)
        self.transports.append(transport)
        return transport


HEALTH = {"health-check-enabled": "true"}


def health_check(monkeypatch: pytest.MonkeyPatch, connect: FakeConnect,
                 extra: dict[str, str] | None = None,
                 report: Callable[[bool], None] = lambda healthy: None,
                 endpoint: str = ENDPOINT, server: int = 0) -> HealthCheck:
    monkeypatch.setattr("pyflink_triton.sessions.reliable.connect", connect)
    options = make_options({**HEALTH, **(extra or {})}, endpoint)
    return HealthCheck(options, options.endpoint.servers[server], report, "resnet-0")


@pytest.mark.parametrize("live, ready, healthy, calls", [
    (True, False, True, ["live"]),
    (False, True, True, ["live", "ready"]),
    (False, False, False, ["live", "ready"]),
    (TritonConnectionError("refused"), True, False, ["live"]),
    (False, TritonServerError("HTTP 503", 503), False, ["live", "ready"]),
])
def test_probe(monkeypatch, live, ready, healthy, calls):
    connect = FakeConnect(lambda: (live, ready))
    check = health_check(monkeypatch, connect)
    assert check.probe() is healthy
    (transport,) = connect.transports
    assert transport.calls == calls
    assert check.probe() is healthy  # the same transport serves the next probe
    assert len(connect.transports) == 1 and transport.calls == calls * 2
    assert not transport.closed
    check.stop()
    assert transport.closed


@pytest.mark.parametrize("error", [TritonConnectionError("refused"), TritonTlsError("untrusted")])
def test_probe_that_cannot_connect_is_unhealthy(monkeypatch, error):
    connect = FakeConnect(error)
    assert health_check(monkeypatch, connect).probe() is False
    assert len(connect.options) == 1


@pytest.mark.parametrize("timeout, interval, interval_seconds, expected", [
    ("30s", "2s", 2.0, 2.0),
    ("30s", "60s", 60.0, 5.0),
    ("1s", "60s", 60.0, 1.0),
    ("500ms", "1s", 1.0, 0.5),
    ("30s", "250ms", 0.25, 0.25),
])
def test_probe_timeout_is_bounded_by_timeout_interval_and_5s(monkeypatch, timeout, interval,
                                                             interval_seconds, expected):
    connect = FakeConnect(lambda: (True, True))
    check = health_check(monkeypatch, connect,
                         {"timeout": timeout, "health-check-interval": interval})
    check.probe()
    (options,) = connect.options
    assert options.timeout == timedelta(seconds=expected)
    assert options.model_name == MODEL.name
    assert connect.endpoints == [make_options().endpoint.servers[0]]
    assert check.interval == interval_seconds


def test_a_check_probes_the_one_server_it_is_given(monkeypatch):
    connect = FakeConnect(lambda: (True, True))
    check = health_check(monkeypatch, connect, endpoint="http://a:8000,http://b:8000", server=1)
    assert check.probe() is True
    assert [str(endpoint) for endpoint in connect.endpoints] == ["http://b:8000"]


def test_health_gauge_value_before_and_after_probes(monkeypatch):
    check = health_check(monkeypatch, FakeConnect(lambda: (True, True)))
    assert check.healthy is None
    assert check.gauge_value() == -1
    check.healthy = True
    assert check.gauge_value() == 1
    check.healthy = False
    assert check.gauge_value() == 0


class FakeHealthCheck:
    """Stands for HealthCheck in Servers: no thread; the test sets ``healthy`` and calls
    ``report`` as the probes would."""

    made: ClassVar[list[FakeHealthCheck]] = []

    def __init__(self, options: TritonOptions, endpoint: Endpoint,
                 report: Callable[[bool], None], name: str) -> None:
        self.endpoint, self.report, self.name = endpoint, report, name
        self.healthy: bool | None = None
        self.started = self.stopped = False
        FakeHealthCheck.made.append(self)

    def gauge_value(self) -> int:
        return -1 if self.healthy is None else int(self.healthy)

    def start(self) -> FakeHealthCheck:
        self.started = True
        return self

    def stop(self, wait: bool = True) -> None:
        self.stopped = True

    def probed(self, healthy: bool) -> None:
        self.healthy = healthy
        self.report(healthy)


@pytest.fixture
def fake_health_checks(monkeypatch: pytest.MonkeyPatch) -> list[FakeHealthCheck]:
    made: list[FakeHealthCheck] = []
    monkeypatch.setattr(FakeHealthCheck, "made", made)
    monkeypatch.setattr(f"{SERVERS}.HealthCheck", FakeHealthCheck)
    return made


def test_servers_check_each_server_and_report_the_health_gauges(clock, fake_health_checks):
    group = FakeMetricGroup()
    options = make_options({**HEALTH, **BREAKER}, "http://a:8000,http://b:8000")
    servers = Servers(options, InferenceMetrics(group), clock=clock)
    servers.start_health_checks("resnet-0")
    first, second = fake_health_checks
    assert [str(c.endpoint) for c in fake_health_checks] == ["http://a:8000", "http://b:8000"]
    assert [c.name for c in fake_health_checks] == ["resnet-0-0", "resnet-0-1"]
    assert first.started and second.started
    healthy = group.groups[GROUP].gauges["healthy"]
    a, b = (group.server(name).gauges["healthy"] for name in ("a:8000", "b:8000"))
    assert (healthy(), a(), b()) == (-1, -1, -1)
    first.probed(False)
    assert (healthy(), a(), b()) == (0, 0, -1)
    assert not servers.router.available(0) and servers.router.available(1)
    second.probed(True)
    assert (healthy(), a(), b()) == (1, 0, 1)  # the best of its servers
    first.probed(True)
    assert servers.router.available(0)
    servers.close()
    assert first.stopped and second.stopped


def test_health_check_without_breaker_warns_for_one_server(clock, fake_health_checks, caplog):
    def start(extra: dict[str, str], endpoint: str = ENDPOINT) -> str:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=SERVERS):
            Servers(make_options({**HEALTH, **extra}, endpoint), InferenceMetrics(),
                    clock=clock).start_health_checks("resnet-0")
        return caplog.text

    assert "without 'circuit-breaker-enabled'" in start({})
    assert start(BREAKER) == ""
    # With several servers, the probes steer the routing: nothing to warn about.
    assert start({}, "http://a:8000,http://b:8000") == ""


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        threading.Event().wait(0.001)


def health_threads(name: str = "triton-health-resnet-0") -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_failed_probes_open_the_breaker_from_the_thread(monkeypatch):
    group = FakeMetricGroup()
    monkeypatch.setattr("pyflink_triton.sessions.reliable.connect",
                        FakeConnect(lambda: (False, False)))
    options = make_options({**HEALTH, **BREAKER, "health-check-interval": "1ms"})
    servers = Servers(options, InferenceMetrics(group))  # (the real clock: a real thread)
    servers.start_health_checks("resnet-0")
    breaker = servers.breakers[0]
    assert breaker is not None
    try:
        (thread,) = health_threads("triton-health-resnet-0-0")
        assert thread.daemon
        wait_for(lambda: breaker.state is BreakerState.OPEN)
        wait_for(lambda: group.groups[GROUP].gauges["healthy"]() == 0)
        assert group.server("triton:8000").gauges["healthy"]() == 0
        assert not servers.router.available(0)
    finally:
        servers.close()
    assert health_threads("triton-health-resnet-0-0") == []


def test_health_changes_are_logged_once_and_every_probe_reported(monkeypatch, caplog):
    answers = iter([(False, False), (False, False), (False, True)])
    exhausted = threading.Event()

    def next_answer() -> tuple[bool, bool]:
        answer = next(answers, None)
        if answer is None:
            exhausted.set()
            return (True, True)
        return answer

    connect = FakeConnect(next_answer)
    reports: list[bool] = []
    with caplog.at_level(logging.INFO, logger="pyflink_triton.sessions.reliable"):
        check = health_check(monkeypatch, connect, {"health-check-interval": "1ms"},
                             reports.append)
        check.start()
        try:
            assert exhausted.wait(10)
            wait_for(lambda: connect.transports[0].probes >= 8)
        finally:
            check.stop()
    failed = [r for r in caplog.records if "failed its health probe" in r.getMessage()]
    healthy = [r for r in caplog.records if "is healthy" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.WARNING
    assert len(healthy) == 1 and healthy[0].levelno == logging.INFO
    assert caplog.records.index(failed[0]) < caplog.records.index(healthy[0])
    assert "triton:8000" in failed[0].getMessage()
    assert check.healthy is True
    assert reports[:3] == [False, False, True]  # each probe, changed or not
    assert len(reports) >= 8 and set(reports[3:]) == {True}


def test_stop_without_start_and_twice(monkeypatch):
    check = health_check(monkeypatch, FakeConnect(lambda: (True, True)))
    check.stop()
    check.stop()
    assert health_threads() == []


# --- anything a transport raises goes through the failure policy (issue 15) -------------------

def test_a_surprise_from_below_becomes_a_request_error_naming_model_and_endpoint(send, clock):
    """e.g. protobuf's ValueError for a value a gRPC field cannot carry: not retried (sending
    it again cannot help), but a TritonRequestError, which fallbacks and error fields see."""
    surprise = ValueError("Value out of range: 18446744073709551616")
    transport = ScriptedTransport([surprise, None])
    with pytest.raises(TritonRequestError) as info:
        send(make_guard(clock, RETRIES), transport, make_request())
    message = str(info.value)
    assert "model 'resnet'" in message and ENDPOINT in message
    assert "ValueError: Value out of range" in message
    assert not info.value.retryable
    assert len(transport.requests) == 1


# --- steps of a sequence: resent only when they surely never left -------------------------------

def test_without_resending_delivered_a_failure_that_may_have_arrived_is_final(clock, monkeypatch):
    monkeypatch.setattr("pyflink_triton.sessions.reliable.time.sleep", lambda seconds: None)
    reset = TritonConnectionError("connection reset by peer")  # (after the request was written)
    transport = ScriptedTransport([reset, None])
    with pytest.raises(TritonRequestError) as info:
        make_guard(clock, RETRIES).send(transport, make_request(), resend_delivered=False)
    assert len(transport.requests) == 1
    assert "it may have reached the model" in str(info.value)
    assert info.value.last_attempt is reset
    assert info.value.maybe_delivered


def test_without_resending_delivered_a_request_that_never_left_is_retried(clock, monkeypatch):
    monkeypatch.setattr("pyflink_triton.sessions.reliable.time.sleep", lambda seconds: None)
    refused = TritonConnectionError("connection refused", maybe_delivered=False)
    transport = ScriptedTransport([refused, refused, None])
    guard = make_guard(clock, RETRIES)
    assert guard.send(transport, make_request(), resend_delivered=False) is RESPONSE
    assert len(transport.requests) == 3


def test_the_delivery_flag_survives_pickling():
    import pickle

    error = pickle.loads(pickle.dumps(TritonConnectionError("refused", maybe_delivered=False)))
    assert str(error) == "refused" and error.maybe_delivered is False


# --- call_with_retries: what open() fetches, under the records' policy ---------------------------

class Fetches:
    """Each call takes the next step: raise its error, or return ``"served"``."""

    def __init__(self, *steps: Exception | None) -> None:
        self.steps = list(steps)
        self.calls = 0

    def __call__(self, timeout: float) -> str:
        self.calls += 1
        step = self.steps.pop(0)
        if step is None:
            return "served"
        raise step


def fetch_with(steps: Fetches, clock: FakeClock, waits: list[float],
               **extra: str) -> str:
    options = make_options(extra)

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    return call_with_retries(RetryPolicy.from_options(options), steps, "fetching model X",
                             options.endpoint, MODEL, clock=clock, sleep=sleep,
                             uniform=lambda: 0.0)


def test_open_waits_for_a_server_that_is_not_up_yet(clock, caplog):
    refused = TritonConnectionError("Cannot reach the Triton server: connection refused")
    steps = Fetches(refused, refused, refused, None)
    waits: list[float] = []
    with caplog.at_level(logging.WARNING, logger="pyflink_triton.sessions.reliable"):
        assert fetch_with(steps, clock, waits, **{"max-retries": "10"}) == "served"
    assert steps.calls == 4
    assert waits == pytest.approx([0.05, 0.1, 0.2])  # the records' backoff (uniform() = 0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert all(ENDPOINT in r.getMessage() and "connection refused" in r.getMessage()
               for r in warnings)
    assert "attempt 1 of at most 11" in warnings[0].getMessage()


def test_open_without_retries_fails_at_once_as_before(clock):
    refused = TritonConnectionError("Cannot reach the Triton server: connection refused")
    waits: list[float] = []
    with pytest.raises(TritonRequestError) as info:
        fetch_with(Fetches(refused, None), clock, waits)
    assert waits == []
    assert info.value is refused


def test_open_does_not_retry_what_is_not_transient(clock):
    unknown = TritonServerError("HTTP 404: unknown model", 404)
    waits: list[float] = []
    with pytest.raises(TritonRequestError) as info:
        fetch_with(Fetches(unknown, None), clock, waits, **{"max-retries": "10"})
    assert info.value is unknown and waits == []


def test_open_gives_up_when_the_policy_does(clock):
    refused = TritonConnectionError("connection refused")
    waits: list[float] = []
    with pytest.raises(TritonRequestError) as info:
        fetch_with(Fetches(*[refused] * 4), clock, waits, **{"max-retries": "3"})
    message = str(info.value)
    assert f"Gave up on fetching model X at {ENDPOINT} after 4 attempt(s)" in message
    assert "'max-retries' = 3" in message and message.endswith("connection refused")


def test_open_is_bounded_by_record_timeout(clock):
    refused = TritonConnectionError("connection refused")
    waits: list[float] = []
    with pytest.raises(TritonRequestError, match="'record-timeout'"):
        fetch_with(Fetches(*[refused] * 50), clock, waits, **{
            "max-retries": "50", "retry-max-backoff": "1 s", "record-timeout": "3 s"})
    assert sum(waits) < 3.0
