"""Unit tests of pyflink_triton.sessions.servers: Servers (routing, per-server breakers and
metrics, the served-model check over every server) and its pools, ServerPool and
AsyncServerPool. No server: fake transports per endpoint (``connect`` and ``connect_async``
monkeypatched), a fake clock."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from pyflink_triton.errors import (
    TritonCircuitOpenError,
    TritonConfigError,
    TritonConnectionError,
    TritonRequestError,
    TritonSequenceServerLostError,
    TritonServerError,
)
from pyflink_triton.options import TritonOptions
from pyflink_triton.options.endpoint import Endpoint
from pyflink_triton.policies.resilience import Admission, BreakerState
from pyflink_triton.policies.routing import rendezvous_order
from pyflink_triton.policies.sequence import SequenceParams
from pyflink_triton.sessions.metrics import GROUP, InferenceMetrics
from pyflink_triton.sessions.reliable import RequestGuard, call_with_retries
from pyflink_triton.sessions.servers import AsyncServerPool, ServerPool, Servers
from pyflink_triton.wire.request import InferRequest, ModelRef

from fake_clock import FakeClock
from fake_metrics import FakeMetricGroup
from fake_transports import hang_async_requests

SERVERS = "pyflink_triton.sessions.servers"
THREE = "http://a:8000,http://b:8000,http://c:8000"
URLS = ("http://a:8000", "http://b:8000", "http://c:8000")
MODEL = ModelRef("resnet")
METADATA = {"name": "resnet", "versions": ["1"], "platform": "onnxruntime_onnx",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}]}
CONFIG = {"name": "resnet", "max_batch_size": 8,
          "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [3]}],
          "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [1]}],
          "instance_group": [{"name": "resnet_0", "kind": "KIND_GPU", "count": 1,
                              "gpus": [0]}]}


# --- fakes ---------------------------------------------------------------------------------------

class Response:
    def as_numpy(self, name: str) -> None:
        return None


RESPONSE = Response()


class FakeServer:
    """One server's transport: infer() takes the next step of ``script`` (an error to raise,
    or None to answer; answers once the script is out); the metadata and config calls answer
    ``metadata`` and ``config``, or raise ``down`` when set."""

    def __init__(self, url: str, script: Iterable[Exception | None] = (),
                 metadata: dict[str, Any] | None = None,
                 config: dict[str, Any] | None = None) -> None:
        self.url = url
        self.script = list(script)
        self.metadata = METADATA if metadata is None else metadata
        self.config = CONFIG if config is None else config
        self.down: Exception | None = None
        self.requests: list[InferRequest] = []
        self.during: Callable[[], None] | None = None
        self.fetches = 0
        self.closed = False

    def infer(self, request: InferRequest) -> Response:
        self.requests.append(request)
        if self.during is not None:
            self.during()
        step = self.script.pop(0) if self.script else None
        if step is not None:
            raise step
        return RESPONSE

    def model_metadata(self, model: ModelRef, timeout: float | None = None) -> dict[str, Any]:
        self.fetches += 1
        if self.down is not None:
            raise self.down
        return self.metadata

    def model_config(self, model: ModelRef, timeout: float | None = None) -> dict[str, Any]:
        return self.config

    def close(self) -> None:
        self.closed = True


class AsyncFacade:
    def __init__(self, server: FakeServer) -> None:
        self.server = server

    async def infer(self, request: InferRequest) -> Response:
        return self.server.infer(request)

    async def close(self) -> None:
        self.server.closed = True


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeServer]:
    """The fake servers by URL, which ``connect`` and ``connect_async`` hand out."""
    servers = {url: FakeServer(url) for url in URLS}

    def connect(options: TritonOptions, endpoint: Endpoint) -> FakeServer:
        return servers[str(endpoint)]

    def connect_async(options: TritonOptions, endpoint: Endpoint, bound: int) -> AsyncFacade:
        return AsyncFacade(servers[str(endpoint)])

    monkeypatch.setattr(f"{SERVERS}.connect", connect)
    monkeypatch.setattr(f"{SERVERS}.connect_async", connect_async)
    return servers


def make_options(extra: dict[str, str] | None = None, endpoint: str = THREE) -> TritonOptions:
    return TritonOptions.from_dict({"endpoint": endpoint, "model-name": MODEL.name,
                                    **(extra or {})})


def make_request(sequence: SequenceParams | None = None) -> InferRequest:
    return InferRequest(MODEL, (), ("y",), sequence, 3)


def sequence_id_with_order(order: list[int]) -> str:
    for n in range(10_000):
        if rendezvous_order(f"key-{n}", URLS)[:len(order)] == order:
            return f"key-{n}"
    raise AssertionError(order)


def url_of(fleet: dict[str, FakeServer], request: InferRequest) -> list[str]:
    """The servers that got ``request`` (the very object), in the order of the fleet."""
    return [url for url, server in fleet.items()
            if any(sent is request for sent in server.requests)]


# --- sending through the pools ---------------------------------------------------------------

@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
         clock: FakeClock) -> str:
    def sleep(seconds: float) -> None:
        clock.advance(seconds)

    async def async_sleep(seconds: float) -> None:
        clock.advance(seconds)

    monkeypatch.setattr("pyflink_triton.sessions.reliable.time.sleep", sleep)
    monkeypatch.setattr("pyflink_triton.sessions.reliable.asyncio.sleep", async_sleep)
    return request.param


def guarded_send(mode: str, guard: RequestGuard, servers: Servers,
                 request: InferRequest) -> Any:
    """guard.send through a ServerPool, or guard.send_async through an AsyncServerPool."""
    if mode == "sync":
        return guard.send(ServerPool(servers), request)

    async def send_async() -> Any:
        pool = AsyncServerPool(servers, 4)
        try:
            return await guard.send_async(pool, request)  # type: ignore[arg-type]
        finally:
            await pool.close()

    return asyncio.run(send_async())


def make_guarded(clock: FakeClock, extra: dict[str, str] | None = None,
                 group: FakeMetricGroup | None = None) -> tuple[RequestGuard, Servers]:
    options = make_options({"max-retries": "3", **(extra or {})})
    metrics = InferenceMetrics(group)
    return (RequestGuard(options, metrics, clock=clock, uniform=lambda: 0.0),
            Servers(options, metrics, clock=clock))


@pytest.mark.parametrize("sequence", [
    None,
    SequenceParams("auto-7", True, True),  # a one-request sequence ('sequence-id-auto-increment')
], ids=["stateless", "one-request-sequence"])
def test_a_transient_failure_is_retried_on_another_server_as_the_same_request(
        mode, clock, fleet, sequence):
    guard, servers = make_guarded(clock)
    fleet[URLS[0]].script = [TritonServerError("HTTP 503: unavailable", 503)]
    request = make_request(sequence)
    assert guarded_send(mode, guard, servers, request) is RESPONSE
    assert url_of(fleet, request) == [URLS[0], URLS[1]]
    assert fleet[URLS[1]].requests[0] is request  # the same object, sequence ID and all
    assert not servers.router.available(0)  # marked down for a while


@pytest.mark.parametrize("sequence", [None, SequenceParams("auto-7", True, True)],
                         ids=["stateless", "one-request-sequence"])
def test_without_retries_a_reset_request_fails_over_once_to_each_other_server(
        mode, clock, fleet, sequence):
    guard, servers = make_guarded(clock, {"max-retries": "0"})
    reset = TritonConnectionError("reset")  # (it may have reached the model)
    fleet[URLS[0]].script = [reset]
    fleet[URLS[1]].script = [reset]
    request = make_request(sequence)
    assert guarded_send(mode, guard, servers, request) is RESPONSE
    assert len(url_of(fleet, request)) == 3  # a, b, then c: not a retry, a failover
    clock.advance(10.0)  # (a and b no longer marked down)
    for server in fleet.values():
        server.script = [reset]
    with pytest.raises(TritonRequestError, match=r"\('max-retries' = 0\)"):
        guarded_send(mode, guard, servers, make_request(sequence))
    assert sum(len(server.requests) for server in fleet.values()) == 3 + 3  # each once


def test_a_start_that_may_have_arrived_does_not_fail_over(mode, clock, fleet):
    # A START that may have reached its server may have opened the sequence there: it is
    # not sent elsewhere (a keyed function restarts the key's sequence under a new ID).
    guard, servers = make_guarded(clock, {"max-retries": "0"})
    sequence_id = sequence_id_with_order([1])
    fleet[URLS[1]].script = [TritonConnectionError("reset")]
    begin = make_request(SequenceParams(sequence_id, True, False))
    with pytest.raises(TritonRequestError, match="Last cause: reset"):
        guarded_send(mode, guard, servers, begin)
    assert url_of(fleet, begin) == [URLS[1]]


def test_a_retried_start_goes_to_the_next_server_in_its_order_and_stays(mode, clock, fleet):
    guard, servers = make_guarded(clock)
    sequence_id = sequence_id_with_order([2, 0])
    fleet[URLS[2]].script = [TritonConnectionError("refused", maybe_delivered=False)]
    begin = make_request(SequenceParams(sequence_id, True, False))
    assert guarded_send(mode, guard, servers, begin) is RESPONSE
    assert url_of(fleet, begin) == [URLS[0], URLS[2]]  # (the fleet's order: c first, then a)
    assert fleet[URLS[2]].requests == [begin] and fleet[URLS[0]].requests == [begin]
    clock.advance(10.0)  # server c is back: the sequence stays on a
    follow = make_request(SequenceParams(sequence_id, False, True))
    assert guarded_send(mode, guard, servers, follow) is RESPONSE
    assert url_of(fleet, follow) == [URLS[0]]


def test_a_non_retryable_answer_is_not_sent_elsewhere(mode, clock, fleet):
    guard, servers = make_guarded(clock)
    fleet[URLS[0]].script = [TritonServerError("HTTP 400: bad shape", 400)]
    request = make_request()
    with pytest.raises(TritonServerError):
        guarded_send(mode, guard, servers, request)
    assert url_of(fleet, request) == [URLS[0]]
    assert servers.router.available(0)  # it answered: it is up


def test_requests_spread_over_the_servers(clock, fleet):
    servers = Servers(make_options(), InferenceMetrics(), clock=clock)
    pool = ServerPool(servers)
    for _ in range(6):
        pool.infer(make_request())
    assert [len(server.requests) for server in fleet.values()] == [2, 2, 2]


def test_each_server_is_connected_on_first_use_and_closed_with_the_pool(clock, monkeypatch):
    made: list[str] = []

    def connect(options: TritonOptions, endpoint: Endpoint) -> FakeServer:
        made.append(str(endpoint))
        return FakeServer(str(endpoint))

    monkeypatch.setattr(f"{SERVERS}.connect", connect)
    pool = ServerPool(Servers(make_options(), InferenceMetrics(), clock=clock))
    assert made == []
    first = pool.transport(1)
    assert pool.transport(1) is first and made == [URLS[1]]
    pool.infer(make_request())  # (server 0 by the turn)
    assert made == [URLS[1], URLS[0]]
    pool.close()
    assert first.closed  # type: ignore[attr-defined]


# --- per-server metrics ----------------------------------------------------------------------

def test_per_server_metrics_count_attempts_failures_and_in_flight(mode, clock, fleet):
    group = FakeMetricGroup()
    guard, servers = make_guarded(clock, group=group)
    in_flight: list[tuple[int, ...]] = []
    fleet[URLS[0]].during = lambda: in_flight.append(
        tuple(group.server(h).gauges["inFlight"]() for h in ("a:8000", "b:8000", "c:8000")))
    fleet[URLS[0]].script = [TritonConnectionError("reset")]
    guarded_send(mode, guard, servers, make_request())  # a fails, b answers
    guarded_send(mode, guard, servers, make_request())  # c (a is down)
    assert group.server("a:8000").counts() == {"requests": 1, "failures": 1}
    assert group.server("b:8000").counts() == {"requests": 1, "failures": 0}
    assert group.server("c:8000").counts() == {"requests": 1, "failures": 0}
    assert in_flight == [(1, 0, 0)]
    assert all(group.server(h).gauges["inFlight"]() == 0 for h in ("a:8000", "b:8000"))
    triton = group.groups[GROUP]
    triton.gauges["inFlight"]()
    assert triton.counters["requests"].count == 2  # records
    assert triton.counters["retries"].count == 0  # (moving to b is a failover, not a retry)


def test_breaker_gauges_per_server_and_the_best_for_the_function(clock, fleet):
    group = FakeMetricGroup()
    servers = Servers(make_options({"circuit-breaker-enabled": "true"}),
                      InferenceMetrics(group), clock=clock)
    state = group.groups[GROUP].gauges["circuitBreakerState"]
    for breaker in servers.breakers[:2]:
        assert breaker is not None
        for _ in range(10):
            breaker.record(False, Admission.REQUEST)
    assert [group.server(h).gauges["circuitBreakerState"]()
            for h in ("a:8000", "b:8000", "c:8000")] == [2, 2, 0]
    assert state() == 0  # c still takes requests
    breaker = servers.breakers[2]
    assert breaker is not None
    for _ in range(10):
        breaker.record(False, Admission.REQUEST)
    assert state() == 2


def test_an_open_breaker_sends_the_requests_to_the_other_servers(clock, fleet):
    servers = Servers(make_options({"circuit-breaker-enabled": "true"}), InferenceMetrics(),
                      clock=clock)
    breaker = servers.breakers[0]
    assert breaker is not None
    for _ in range(10):
        breaker.record(False, Admission.REQUEST)
    pool = ServerPool(servers)
    for _ in range(4):
        assert pool.infer(make_request()) is RESPONSE
    assert fleet[URLS[0]].requests == []
    assert breaker.state is BreakerState.OPEN


def test_all_breakers_open_refuse_the_request(clock, fleet):
    servers = Servers(make_options({"circuit-breaker-enabled": "true"}), InferenceMetrics(),
                      clock=clock)
    for breaker in servers.breakers:
        assert breaker is not None
        for _ in range(10):
            breaker.record(False, Admission.REQUEST)
    clock.advance(15.0)
    with pytest.raises(TritonCircuitOpenError) as info:
        ServerPool(servers).infer(make_request())
    message = str(info.value)
    assert "is open" in message and "45.0 s" in message and "not sent" in message
    assert all(server.requests == [] for server in fleet.values())


# --- a continuation whose server is lost -----------------------------------------------------

def test_a_continuation_whose_server_is_down_is_not_sent_elsewhere(clock, fleet):
    group = FakeMetricGroup()
    options = make_options()
    metrics = InferenceMetrics(group)
    guard = RequestGuard(options, metrics, clock=clock)
    servers = Servers(options, metrics, clock=clock)
    pool = ServerPool(servers)
    sequence_id = sequence_id_with_order([1])
    pool.infer(make_request(SequenceParams(sequence_id, True, False)))
    assert len(fleet[URLS[1]].requests) == 1
    servers.router.mark_down(1)
    with pytest.raises(TritonSequenceServerLostError) as info:
        guard.send(pool, make_request(SequenceParams(sequence_id, False, False)))
    message = str(info.value)
    assert f"Sequence {sequence_id}" in message
    assert "model 'resnet'" in message
    assert URLS[1] in message
    assert "not sent" in message
    assert info.value.retryable is False and info.value.maybe_delivered is False
    assert len(fleet[URLS[1]].requests) == 1
    assert all(fleet[url].requests == [] for url in (URLS[0], URLS[2]))
    assert group.server("b:8000").counts() == {"requests": 1, "failures": 0}


# --- the served model, checked on every server -----------------------------------------------

@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoffs open()'s retries would sleep (recorded instead)."""
    recorded: list[float] = []
    monkeypatch.setattr(f"{SERVERS}.call_with_retries",
                        functools.partial(call_with_retries, sleep=recorded.append,
                                          uniform=lambda: 0.0))
    return recorded


def served(fleet: dict[str, FakeServer], clock: FakeClock,
           extra: dict[str, str] | None = None) -> tuple[Servers, Any]:
    servers = Servers(make_options(extra), InferenceMetrics(), clock=clock)
    pool = ServerPool(servers)
    return servers, servers.served_model(MODEL, pool.transport)


def test_every_server_serving_the_model_gives_its_metadata_and_config(clock, fleet, waits):
    _, (metadata, config) = served(fleet, clock)
    assert metadata == METADATA and config == CONFIG
    assert [server.fetches for server in fleet.values()] == [1, 1, 1]
    assert waits == []


def test_an_unreachable_server_is_skipped_with_a_warning(clock, fleet, waits, caplog):
    fleet[URLS[1]].down = TritonConnectionError("Cannot reach b: connection refused")
    with caplog.at_level(logging.WARNING, logger=SERVERS):
        servers, (metadata, config) = served(fleet, clock)
    assert metadata == METADATA and config == CONFIG
    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING
    text = warning.getMessage()
    assert URLS[1] in text and "connection refused" in text and "model 'resnet'" in text
    assert URLS[0] not in text and URLS[2] not in text
    assert waits == []
    assert not servers.router.available(1)  # avoided until it answers
    assert servers.router.available(0) and servers.router.available(2)


def test_a_server_serving_another_config_fails_naming_both_and_the_field(clock, fleet, waits):
    fleet[URLS[2]].config = {**CONFIG, "max_batch_size": 4}
    with pytest.raises(TritonConfigError) as info:
        served(fleet, clock)
    message = str(info.value)
    assert "'max_batch_size'" in message
    assert "4 at http://c:8000" in message and "8 at http://a:8000" in message
    assert "Model 'resnet'" in message


def test_a_server_serving_other_inputs_fails_naming_the_metadata_field(clock, fleet, waits):
    fleet[URLS[1]].metadata = {**METADATA, "inputs": [{"name": "x", "datatype": "FP16",
                                                       "shape": [-1, 3]}]}
    with pytest.raises(TritonConfigError, match="metadata field 'inputs'") as info:
        served(fleet, clock)
    assert URLS[1] in str(info.value) and URLS[0] in str(info.value)


def test_what_differs_by_machine_is_not_compared(clock, fleet, waits):
    fleet[URLS[1]].config = {**CONFIG, "instance_group": [
        {"name": "resnet_1", "kind": "KIND_GPU", "count": 2, "gpus": [1, 2]}]}
    fleet[URLS[2]].metadata = {**METADATA, "versions": ["1", "2"], "platform": "onnx"}
    _, (metadata, config) = served(fleet, clock)
    assert config == CONFIG and metadata == METADATA  # the first server's


def test_all_servers_unreachable_are_retried_then_the_last_error_raised(clock, fleet, waits):
    for url, server in fleet.items():
        server.down = TritonConnectionError(f"Cannot reach {url}: connection refused")
    with pytest.raises(TritonRequestError) as info:
        served(fleet, clock, {"max-retries": "2"})
    assert waits == pytest.approx([0.05, 0.1])  # the records' backoff (uniform() = 0)
    assert [server.fetches for server in fleet.values()] == [3, 3, 3]
    message = str(info.value)
    assert "after 3 attempt(s)" in message
    assert message.endswith(f"Cannot reach {URLS[2]}: connection refused")


def test_servers_that_come_up_during_the_retries_serve_the_model(clock, fleet, monkeypatch,
                                                                  caplog):
    for server in fleet.values():
        server.down = TritonConnectionError("connection refused")
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # while open() waits, a and c come up; b stays down
        slept.append(seconds)
        fleet[URLS[0]].down = fleet[URLS[2]].down = None

    monkeypatch.setattr(f"{SERVERS}.call_with_retries", functools.partial(
        call_with_retries, sleep=sleep, uniform=lambda: 0.0))
    with caplog.at_level(logging.WARNING, logger=SERVERS):
        servers, (metadata, _) = served(fleet, clock, {"max-retries": "3"})
    assert metadata == METADATA
    assert slept == pytest.approx([0.05])
    (warning,) = [r for r in caplog.records if r.name == SERVERS]
    assert URLS[1] in warning.getMessage()
    assert not servers.router.available(1)


def test_a_server_that_does_not_know_the_model_fails_at_once(clock, fleet, waits):
    unknown = TritonServerError("HTTP 404: unknown model 'resnet' at http://b:8000", 404)
    fleet[URLS[1]].down = unknown
    with pytest.raises(TritonServerError) as info:
        served(fleet, clock, {"max-retries": "3"})
    assert info.value is unknown and waits == []


# --- the asyncio pool ------------------------------------------------------------------------

def test_the_async_pool_bounds_requests_in_flight_over_all_servers(clock, monkeypatch):
    in_flight, peak = [0], [0]

    class Slow:
        async def infer(self, request: InferRequest) -> Response:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            for _ in range(3):
                await asyncio.sleep(0)
            in_flight[0] -= 1
            return RESPONSE

        async def close(self) -> None:
            pass

    monkeypatch.setattr(f"{SERVERS}.connect_async", lambda options, endpoint, bound: Slow())
    servers = Servers(make_options(), InferenceMetrics(), clock=clock)
    routed_peak = [0]

    async def run() -> list[Any]:
        pool = AsyncServerPool(servers, 2)

        async def one() -> Any:
            response = await pool.infer(make_request())
            routed_peak[0] = max(routed_peak[0], sum(servers.router.in_flight))
            return response

        async def watch() -> None:
            for _ in range(50):
                routed_peak[0] = max(routed_peak[0], sum(servers.router.in_flight))
                await asyncio.sleep(0)

        try:
            results = await asyncio.gather(watch(), *(one() for _ in range(7)))
        finally:
            await pool.close()
        return results[1:]

    assert asyncio.run(run()) == [RESPONSE] * 7
    assert peak[0] == 2
    assert routed_peak[0] == 2
    assert servers.router.in_flight == [0, 0, 0]


def test_a_cancelled_async_request_frees_its_server(clock, monkeypatch):
    hang_async_requests(monkeypatch)
    servers = Servers(make_options(), InferenceMetrics(), clock=clock)

    async def run() -> None:
        pool = AsyncServerPool(servers, 2)
        task = asyncio.ensure_future(pool.infer(make_request()))
        await asyncio.sleep(0)
        assert sum(servers.router.in_flight) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await pool.close()

    asyncio.run(run())
    assert servers.router.in_flight == [0, 0, 0]
    assert all(servers.router.available(s) for s in range(3))  # (a cancel says nothing)


# --- describe --------------------------------------------------------------------------------

def test_describe(clock):
    one = Servers(make_options(endpoint="http://a:8000"), InferenceMetrics(), clock=clock)
    assert "http://a:8000" in one.describe() and "servers" not in one.describe()
    three = Servers(make_options(), InferenceMetrics(), clock=clock)
    assert three.describe().startswith("3 servers (http://a:8000, http://b:8000, "
                                       "http://c:8000): least in flight")
