"""The servers of one function instance: every server the 'endpoint' option lists, routed over.

:class:`Servers` holds what is shared by all the connections of a function instance: the
routing state (``policies.routing.Router``: in flight per server, down marks, the server of
each open sequence), each server's circuit breaker, health check and metrics. A session sends
through a pool made from it: :class:`ServerPool` (blocking; one per thread that sends, as a
blocking transport is not thread-safe) or :class:`AsyncServerPool` (asyncio). Both route each
attempt with :meth:`Servers.attempt`, so a retry of a request that failed transiently goes to
another server (at once when the request never left: :meth:`Servers.fails_over`), and differ
only in awaiting the transport. With one server, every request goes to it: routing changes
nothing.

open() checks the model on every server (:meth:`Servers.served_model`): all that answer must
serve the same model; those that cannot be reached are skipped with a warning, as long as one
answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import (
    TritonCircuitOpenError,
    TritonConfigError,
    TritonConnectionError,
    TritonRequestError,
    TritonSequenceServerLostError,
)
from ..options import TritonOptions
from ..options.endpoint import Endpoint
from ..policies.resilience import BreakerState, CircuitBreaker, RetryPolicy
from ..policies.routing import Lost, Outcome, Refused, Router, spans_requests
from ..policies.slots import SequenceSlots
from ..wire.loops import LoopState
from ..wire.request import AsyncTransport, InferRequest, InferResponse, ModelRef, Transport
from .connect import connect, connect_async
from .metrics import InferenceMetrics
from .reliable import HealthCheck, call_with_retries

log = logging.getLogger(__name__)


class Servers:
    """Routing, breakers, health checks and metrics of one function instance's servers."""

    def __init__(self, options: TritonOptions, metrics: InferenceMetrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self.endpoints: tuple[Endpoint, ...] = tuple(options.endpoint)
        self.breakers = [CircuitBreaker.from_options(options, clock) for _ in self.endpoints]
        self.router = Router([str(e) for e in self.endpoints], self.breakers, clock)
        self.metrics = metrics
        self.server_metrics = [metrics.server(e.address + e.base_path) for e in self.endpoints]
        self.health_checks: list[HealthCheck] = []
        for server, per_server in enumerate(self.server_metrics):
            per_server.gauge("inFlight", lambda s=server: self.router.in_flight[s])
            if (breaker := self.breakers[server]) is not None:
                per_server.gauge("circuitBreakerState", lambda b=breaker: int(b.state))
        if options.circuit_breaker_enabled:
            # The function's own: the best of its servers' (2 = open: no server takes requests).
            metrics.gauge("circuitBreakerState",
                          lambda: min(int(b.state) for b in self.breakers if b is not None))

    def __len__(self) -> int:
        return len(self.endpoints)

    def start_health_checks(self, name: str) -> None:
        """Probe every server from a daemon thread each ('health-check-enabled')."""
        for server, endpoint in enumerate(self.endpoints):
            def report(healthy: bool, server: int = server) -> None:
                self.router.probed(server, healthy)

            check = HealthCheck(self.options, endpoint, report, f"{name}-{server}")
            self.health_checks.append(check.start())
            self.server_metrics[server].gauge("healthy", check.gauge_value)
        checks = self.health_checks
        self.metrics.gauge("healthy", lambda: max(c.gauge_value() for c in checks))
        if not self.options.circuit_breaker_enabled and len(self.endpoints) == 1:
            log.warning("'health-check-enabled' without 'circuit-breaker-enabled': health "
                        "changes of %s are logged only.", self.endpoints[0])

    def close(self) -> None:
        checks, self.health_checks = self.health_checks, []
        for check in checks:  # (all told first: each may take a probe's time to end)
            check.stop(wait=False)
        for check in checks:
            check.stop()

    def describe(self) -> str:
        if len(self.endpoints) == 1:
            return str(self.endpoints[0])
        return (f"{len(self.endpoints)} servers ({self.options.endpoint}): least in flight "
                "without a sequence, each sequence on one server by rendezvous hash")

    @contextmanager
    def attempt(self, request: InferRequest, tried: list[int]) -> Iterator[int]:
        """Route one attempt at ``request``: yields the server to send it to (appending it to
        ``tried``, the servers this call of the pool tried, in order), and records how it
        ended (a transient failure marks the server down for a while)."""
        route = self.router.route(request.sequence, tried)
        if isinstance(route, Lost):
            raise self._lost(request, route)
        if isinstance(route, Refused):
            raise self._refused(request, route)
        tried.append(route.server)
        metrics = self.server_metrics[route.server]
        metrics.requests.inc()
        outcome = Outcome.CANCELLED
        try:
            yield route.server
            outcome = Outcome.ANSWERED
        except TritonRequestError as error:
            metrics.failures.inc()
            outcome = _outcome(error)
            raise
        except Exception:  # (a surprise from a library below: nothing said of the server)
            metrics.failures.inc()
            raise
        finally:
            self.router.finish(route, outcome)

    def fails_over(self, error: TritonRequestError, request: InferRequest,
                   tried: list[int]) -> bool:
        """Whether an attempt that failed transiently goes to another server at once, without
        a retry's backoff and whatever 'max-retries' says: that is what replicas are for.
        Each server is tried once, and only what cannot be applied twice to one sequence:
        a request without a sequence or a one-request sequence, or one that certainly reached
        no server (no connection). A continuation of a sequence is then routed as lost: it
        never goes elsewhere."""
        return (error.retryable and len(tried) < len(self.endpoints)
                and (not error.maybe_delivered or not spans_requests(request.sequence))
                and self.router.any_available(tried))

    def served_model(self, model: ModelRef, transports: Callable[[int], Transport]
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The model's metadata and config, as every server that answers serves them, fetched
        under the retry policy of the records (a job that starts while Triton (re)starts
        waits for it as records would). Servers that cannot be reached are skipped with a
        warning while one answers; one that serves another model fails, naming it. Of the
        servers' configs (which may differ in their instances), the one with the fewest
        sequence slots."""
        options = self.options
        Answers = list[tuple[int, tuple[dict[str, Any], dict[str, Any]]]]

        def fetch(timeout: float) -> tuple[Answers, list[tuple[int, TritonRequestError]]]:
            served: Answers = []
            unreachable: list[tuple[int, TritonRequestError]] = []
            for server in range(len(self.endpoints)):
                try:
                    served.append((server, _fetch(transports(server), model, timeout)))
                except TritonRequestError as error:
                    if not error.retryable:
                        raise
                    unreachable.append((server, error))
            if not served:
                raise unreachable[-1][1]
            return served, unreachable

        served, unreachable = call_with_retries(
            RetryPolicy.from_options(options), fetch,
            f"fetching the metadata and config of model {model}", options.endpoint, model)
        for server, error in unreachable:
            self.router.mark_down(server)
            log.warning("Triton server %s (option 'endpoint') cannot be reached now; model "
                        "%s goes to the other server(s) until it answers. Cause: %s",
                        self.endpoints[server], model, error)
        first, reference = served[0]
        for server, answer in served[1:]:
            _check_same(model, self.endpoints[first], reference, self.endpoints[server],
                        answer)
        # The one with the fewest sequence slots (instances may differ): a keyed function's
        # budget must fit each server it starts sequences on.
        return min((answer for _, answer in served),
                   key=lambda answer: SequenceSlots.of_model(answer[1]).count)

    def _lost(self, request: InferRequest, lost: Lost) -> TritonSequenceServerLostError:
        sequence = request.sequence
        assert sequence is not None
        return TritonSequenceServerLostError(
            f"Sequence {sequence.sequence_id} of model {request.model} was started on the "
            f"Triton server at {self.endpoints[lost.server]}, which is unavailable ({lost.why}),"
            " and Triton keeps a sequence on one server only: the request was not sent.")

    def _refused(self, request: InferRequest, refused: Refused) -> TritonCircuitOpenError:
        where = f"model {request.model} at {self.options.endpoint}"
        breakers = [b for b in self.breakers if b is not None]
        if refused.wait == 0 or all(b.state is BreakerState.HALF_OPEN for b in breakers):
            return TritonCircuitOpenError(
                f"The circuit breaker for {where} is half-open and its "
                f"{breakers[0].half_open_requests} trial request(s) "
                "('circuit-breaker-half-open-requests') are still in flight; the record was "
                "not sent.")
        return TritonCircuitOpenError(
            f"The circuit breaker for {where} is open ({breakers[0].describe_open()}); the "
            f"record was not sent. Trial requests go through in {refused.wait:.1f} s "
            "('circuit-breaker-timeout').")


class ServerPool:
    """Blocking: one connection per server, made on first use; for one thread at a time."""

    def __init__(self, servers: Servers) -> None:
        self._servers = servers
        self._transports: list[Transport | None] = [None] * len(servers)

    def transport(self, server: int) -> Transport:
        transport = self._transports[server]
        if transport is None:
            servers = self._servers
            transport = self._transports[server] = connect(servers.options,
                                                           servers.endpoints[server])
        return transport

    def infer(self, request: InferRequest) -> InferResponse:
        servers, tried = self._servers, list[int]()
        while True:
            try:
                with servers.attempt(request, tried) as server:
                    return self.transport(server).infer(request)
            except TritonRequestError as error:
                if not servers.fails_over(error, request, tried):
                    raise

    def close(self) -> None:
        transports, self._transports = self._transports, [None] * len(self._transports)
        for transport in transports:
            if transport is not None:
                transport.close()


class AsyncServerPool:
    """asyncio: at most ``max_in_flight`` requests in flight over all servers."""

    def __init__(self, servers: Servers, max_in_flight: int) -> None:
        self._servers = servers
        options = servers.options
        # (each server could take them all: which one gets them is the router's choice)
        self._transports: list[AsyncTransport] = [
            connect_async(options, endpoint, max_in_flight) for endpoint in servers.endpoints]
        self._bound = LoopState(max_in_flight, object, _nothing_to_close)

    async def infer(self, request: InferRequest) -> InferResponse:
        self._bound.enter()
        servers, tried = self._servers, list[int]()
        async with self._bound.slots:  # (taken before routing: in flight means in flight)
            while True:
                try:
                    with servers.attempt(request, tried) as server:
                        return await self._transports[server].infer(request)
                except TritonRequestError as error:
                    if not servers.fails_over(error, request, tried):
                        raise

    async def close(self) -> None:
        await self._bound.close()
        for transport in self._transports:
            await transport.close()


def _outcome(error: TritonRequestError) -> Outcome:
    """What a failed attempt says of its server."""
    if isinstance(error, TritonConnectionError) and not error.timed_out:
        return Outcome.UNREACHABLE
    return Outcome.FAILED if error.retryable else Outcome.ANSWERED


async def _nothing_to_close(_: object) -> None:
    return None


def _fetch(transport: Transport, model: ModelRef, timeout: float
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    deadline = time.monotonic() + timeout
    metadata = transport.model_metadata(model, timeout)
    return metadata, transport.model_config(model, max(deadline - time.monotonic(), 0.001))


# What a client depends on, compared across the servers of one 'endpoint' (the rest may
# differ by machine: instances and their GPUs, backend and platform, model parameters such as
# paths, the versions present during a rollout).
_COMPARED = {"metadata": ("inputs", "outputs"),
             "config": ("max_batch_size", "input", "output", "sequence_batching",
                        "batch_input", "batch_output")}


def _check_same(model: ModelRef, first: Endpoint, reference: tuple[dict[str, Any], ...],
                other: Endpoint, answer: tuple[dict[str, Any], ...]) -> None:
    """Replicas must serve one model: the same tensors, batching and sequence settings."""
    for (what, fields), mine, theirs in zip(_COMPARED.items(), reference, answer, strict=True):
        for field in fields:
            if mine.get(field) != theirs.get(field):
                raise TritonConfigError(
                    f"Model {model} differs between the servers of option 'endpoint': its "
                    f"{what} field '{field}' is {_shown(theirs.get(field))} at {other} but "
                    f"{_shown(mine.get(field))} at {first}. Replicas must serve the same "
                    "model (the same inputs, outputs, batching and sequence settings).")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."
