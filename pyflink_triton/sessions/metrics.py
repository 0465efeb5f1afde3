"""What a function instance reports in its Flink metric group (under the group ``triton``).

Counters: ``requests`` (records to send, however many attempts each took), ``successes``,
``failures`` (records whose request failed for good, or was refused by the open circuit
breaker), ``retries`` (attempts after the first), ``fallbacks`` (failed records answered by
'default-value' / 'error-fields').
Gauges: ``inFlight`` (requests being sent), ``sequenceCounter`` (auto-incremented sequence IDs
drawn), ``sequencesStarted``, ``sequencesRestarted``, ``replayedInputs`` and ``idleEnds`` (keyed
sequences), ``circuitBreakerState`` (0 closed, 1 half-open, 2 open; with the breaker on),
``healthy`` (1 when the last health probe passed, 0 when it failed, -1 before the first; with
health checks on).
Distribution: ``latencyMs``, the time of each attempt (count, sum, min, max).
Per server, in the subgroup ``server`` = ``<host>:<port>[<path>]`` of each server in 'endpoint':
counters ``requests`` (attempts sent there) and ``failures`` (attempts that failed there),
gauges ``inFlight``, ``circuitBreakerState`` and ``healthy`` (the function's own are then:
the best state of its servers', and 1 when any server passed its last probe).

Counts are kept here and handed to Flink when PyFlink samples the gauges, at the end of each
bundle, on the bundle's thread. That is the only thread where PyFlink records Python metrics:
updates made on an async function's event loop are dropped (measured on PyFlink 2.3), and a
plain integer per record costs less than a Flink counter call. Without a metric group (a session
opened outside Flink) nothing is reported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

GROUP = "triton"


class Count:
    """A counter kept here; :meth:`report` hands what is new to the Flink counter."""

    def __init__(self, flink_counter: Any | None) -> None:
        self.value = 0
        self._reported = 0
        self._flink = flink_counter
        self._lock = threading.Lock()  # (keyed sessions count from several threads)

    def inc(self, n: int = 1) -> None:
        with self._lock:
            self.value += n

    def report(self) -> None:
        value = self.value  # (the event loop may add to it meanwhile: reported next time)
        if self._flink is not None:
            # Also when nothing is new: a Flink counter never incremented is not shown at all.
            self._flink.inc(value - self._reported)
        self._reported = value


class Latencies:
    """Attempt times in ms, kept until :meth:`report` hands them to the Flink distribution."""

    def __init__(self, flink_distribution: Any | None) -> None:
        self._pending: list[int] = []
        self._flink = flink_distribution

    def update(self, milliseconds: int) -> None:
        if self._flink is not None:
            self._pending.append(milliseconds)

    def report(self) -> None:
        pending, self._pending = self._pending, []
        if self._flink is not None:
            for value in pending:
                self._flink.update(value)


class ServerMetrics:
    """One server's counts, in the function's group ``server`` = its ``host:port[path]``."""

    def __init__(self, group: Any | None,
                 reported: Callable[[Callable[[], int]], int]) -> None:
        self._group = group
        self._reported = reported  # (sampling any gauge reports every count)
        self.requests = Count(None if group is None else group.counter("requests"))
        self.failures = Count(None if group is None else group.counter("failures"))

    def gauge(self, name: str, value: Callable[[], int]) -> None:
        if self._group is not None:
            self._group.gauge(name, lambda: self._reported(value))

    def report(self) -> None:
        self.requests.report()
        self.failures.report()


class InferenceMetrics:
    def __init__(self, metric_group: Any | None = None) -> None:
        group = self._group = None if metric_group is None else metric_group.add_group(GROUP)
        self._servers: list[ServerMetrics] = []
        self.counts = {name: Count(None if group is None else group.counter(name))
                       for name in ("requests", "successes", "failures", "retries",
                                    "fallbacks")}
        self.requests, self.successes, self.failures, self.retries, self.fallbacks = (
            self.counts.values())
        self.latency_ms = Latencies(None if group is None else group.distribution("latencyMs"))
        self.in_flight = Count(None)  # requests being sent (a gauge, not a Flink counter)
        self.gauge("inFlight", lambda: self.in_flight.value)

    def gauge(self, name: str, value: Callable[[], int]) -> None:
        if self._group is not None:
            self._group.gauge(name, lambda: self._reported(value))

    def server(self, name: str) -> ServerMetrics:
        """The metrics of the server ``name`` (host:port and any gateway path), reported with
        these."""
        server = ServerMetrics(None if self._group is None
                               else self._group.add_group("server", name), self._reported)
        self._servers.append(server)
        return server

    def report(self) -> None:
        """Hand the counts and latencies gathered since the last call to Flink."""
        for count in self.counts.values():
            count.report()
        self.latency_ms.report()
        for server in self._servers:
            server.report()

    def _reported(self, value: Callable[[], int]) -> int:
        self.report()  # (each gauge reports: which one PyFlink samples first is not said)
        return value()
