"""Sending requests under the reliability policy: retries, the health check, and the metrics
that count them. The policy itself (pure) is ``resilience``.

A :class:`RequestGuard` belongs to one function instance. It wraps each logical request:
attempts follow the retry policy with the same :class:`InferRequest` (so a retried record
keeps its sequence ID), each attempt routed by the pool it is sent on (``servers``: which
server, whether its circuit breaker admits it). :class:`HealthCheck` probes one server from a
daemon thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from ..options import TritonOptions
from ..options.endpoint import Endpoint, Endpoints
from ..policies.resilience import Attempts, RetryPolicy
from ..wire.failures import as_request_error
from ..wire.request import (
    AsyncTransport,
    InferRequest,
    InferResponse,
    ModelRef,
    Sender,
    Transport,
)
from .connect import connect
from .metrics import InferenceMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")


class RequestGuard:
    """Retries and metrics around the requests of one function instance."""

    def __init__(self, options: TritonOptions, metrics: InferenceMetrics,
                 clock: Callable[[], float] = time.monotonic,
                 uniform: Callable[[], float] = random.random,
                 breakers_open: Callable[[], bool] = lambda: False) -> None:
        """``breakers_open``: whether every server's circuit breaker is open now (a record
        stops retrying then, rather than wait a backoff to be refused)."""
        self.policy = RetryPolicy.from_options(options)
        self.breakers_open = breakers_open
        self.breaker_enabled = options.circuit_breaker_enabled
        self.endpoint = options.endpoint
        self.metrics = metrics
        self.clock = clock
        self.uniform = uniform

    def describe(self) -> str:
        breaker = "circuit breaker on" if self.breaker_enabled else "no circuit breaker"
        return f"{self.policy.describe()}, {breaker}"

    def send(self, transport: Sender, request: InferRequest, *,
             resend_delivered: bool = True, within: float | None = None) -> InferResponse:
        """Send ``request`` under the policy. ``resend_delivered`` False: retry only failures
        that prove the request never reached the server (for the steps of a long-lived
        sequence, which a model would apply twice). ``within``: one attempt only, of at most
        that many seconds (what a function sends as it closes)."""
        run = _Run(self, request, resend_delivered, within)
        with run:
            while True:
                try:
                    response = transport.infer(run.next_attempt())
                except Exception as error:
                    time.sleep(run.failed(error))  # (raises when the record gives up)
                    continue
                run.succeeded()
                return response

    async def send_async(self, transport: AsyncTransport,
                         request: InferRequest) -> InferResponse:
        run = _Run(self, request)
        with run:
            while True:
                try:
                    response = await transport.infer(run.next_attempt())
                except Exception as error:
                    await asyncio.sleep(run.failed(error))
                    continue
                run.succeeded()
                return response


def call_with_retries(policy: RetryPolicy, call: Callable[[float], T], what: str,
                      endpoint: Endpoint | Endpoints, model: ModelRef,
                      clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep,
                      uniform: Callable[[], float] = random.random) -> T:
    """``call(timeout)`` (``what`` it does, for messages) under the retry policy of the
    records: transient failures are retried with the same backoff, within the same bound
    (``timeout``: the seconds the attempt may take), each wait logged as a warning; when the
    policy gives up, the last error is raised. For what a function does before its first
    record (open(): a server that restarts with the job must not fail it)."""
    attempts = Attempts(policy, clock(), uniform)
    while True:
        timeout = attempts.start(clock())
        try:
            return call(timeout)
        except Exception as failure:
            error = as_request_error(failure, endpoint, model)
            wait = attempts.wait_before_retry(error, clock())
            if wait is None:  # (after one attempt: its error as is, as without retries)
                final = error if attempts.made == 1 else attempts.gave_up(
                    error, f"{what} at {endpoint}")
                # (chained to a surprise from below, whose traceback tells where it came from)
                raise final from (None if failure is error else failure)
        log.warning("%s at %s failed (attempt %d of at most %d); trying again in %.2f s. "
                    "Cause: %s", what[0].upper() + what[1:], endpoint, attempts.made,
                    policy.max_retries + 1, wait, error)
        sleep(wait)


class _Run:
    """One logical request going through its attempts; what both send loops share. As a
    context manager, it closes an attempt cut short (cancelled)."""

    def __init__(self, guard: RequestGuard, request: InferRequest,
                 resend_delivered: bool = True, within: float | None = None) -> None:
        self.guard = guard
        self.request = request
        metrics = guard.metrics
        metrics.requests.inc()
        policy = guard.policy if within is None else dataclasses.replace(
            guard.policy, max_retries=0, record_timeout=within)
        self.attempts = Attempts(policy, guard.clock(), guard.uniform, resend_delivered)
        self._started: float | None = None  # while an attempt is out

    def __enter__(self) -> _Run:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._started is not None:
            self._attempt_done()

    def next_attempt(self) -> InferRequest:
        now = self.guard.clock()
        timeout = self.attempts.start(now)
        self._started = now
        self.guard.metrics.in_flight.inc()
        if timeout < self.guard.policy.attempt_timeout:  # the record's time is running out
            return dataclasses.replace(self.request, timeout=timeout)
        return self.request

    def _attempt_done(self, attempted: bool = True) -> None:
        assert self._started is not None
        metrics = self.guard.metrics
        metrics.in_flight.inc(-1)
        if attempted:  # (not a request refused before any server was tried)
            metrics.latency_ms.update(int((self.guard.clock() - self._started) * 1000))
        self._started = None

    def succeeded(self) -> None:
        self._attempt_done()
        self.guard.metrics.successes.inc()

    def failed(self, failure: Exception) -> float:
        """The wait before the next attempt; raises the record's error when it gives up."""
        guard, attempts = self.guard, self.attempts
        error = as_request_error(failure, guard.endpoint, self.request.model)
        self._attempt_done(error.attempted)
        wait = attempts.wait_before_retry(error, guard.clock())
        if wait is not None and guard.breakers_open():
            wait, attempts.gave_up_because = None, "the circuit breaker opened meanwhile"
        if wait is not None:
            guard.metrics.retries.inc()
            return wait
        guard.metrics.failures.inc()
        raise attempts.gave_up(error, f"the request to model {self.request.model} at "
                                      f"{guard.endpoint}")


class HealthCheck:
    """Probes one server every 'health-check-interval' from a daemon thread: live, and if not
    live, ready. Each result goes to ``report`` (the router and the server's breaker) and the
    ``healthy`` gauges; changes are logged. One transport serves all the probes (it
    reconnects after a failure by itself), so a probe costs no new channel, TLS handshake or
    certificate file read."""

    def __init__(self, options: TritonOptions, endpoint: Endpoint,
                 report: Callable[[bool], None], name: str) -> None:
        self.interval = options.health_check_interval.total_seconds()
        # A probe must not outlive its period, nor take the request 'timeout' (30 s default).
        probe_timeout = min(options.timeout.total_seconds(), self.interval, 5.0)
        self._options = dataclasses.replace(options, timeout=timedelta(seconds=probe_timeout))
        self._endpoint = endpoint
        self._report = report
        self._model = ModelRef(options.model_name, options.model_version)
        self._transport: Transport | None = None  # made by the first probe
        self.healthy: bool | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"triton-health-{name}",
                                        daemon=True)

    def gauge_value(self) -> int:
        """1 when the last probe passed, 0 when it failed, -1 before the first."""
        return -1 if self.healthy is None else int(self.healthy)

    def start(self) -> HealthCheck:
        self._thread.start()
        return self

    def stop(self, wait: bool = True) -> None:
        """Stop probing; ``wait``: until the thread has ended (at most 10 s)."""
        self._stopped.set()
        if not wait:
            return
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if not self._thread.is_alive():  # (else the thread closes it as it ends)
            self._close_transport()

    def probe(self) -> bool:
        """One probe; True when the server is live (or, failing that, ready)."""
        try:
            if self._transport is None:
                self._transport = connect(self._options, self._endpoint)
            transport = self._transport
            return transport.server_live(self._model) or transport.server_ready(self._model)
        except Exception as e:  # (a probe thread that died would report nothing any more)
            log.debug("Health probe of %s failed: %s", self._endpoint, e)
            return False

    def _close_transport(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def _run(self) -> None:
        try:
            self._probe_until_stopped()
        finally:
            self._close_transport()

    def _probe_until_stopped(self) -> None:
        while not self._stopped.wait(self.interval):
            healthy = self.probe()
            if healthy != self.healthy:
                if healthy:
                    log.info("Triton server at %s is healthy.", self._endpoint)
                else:
                    log.warning("Triton server at %s failed its health probe "
                                "(/v2/health/live and /v2/health/ready).", self._endpoint)
            self.healthy = healthy
            self._report(healthy)
