"""What a function instance reports in its Flink metric group (under the group ``triton``).

Counters: ``requests`` (records to send, however many attempts each took), ``successes``,
``failures`` (records whose request failed for good, or was refused by the open circuit
breaker), ``retries`` (attempts after the first),
``fallbacks`` (failed records answered by 'default-value' / 'error-fields').
Gauges: ``circuitBreakerState`` (0 closed, 1 half-open, 2 open), ``inFlight`` (requests being
sent), ``sequenceCounter`` (auto-incremented sequence IDs drawn), ``healthy`` (1 when the last
health probe passed, 0 when it failed, -1 without health checks).
Distribution: ``latencyMs``, the time of each attempt.

Without a metric group (a session opened outside Flink) the same calls count nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

GROUP = "triton"


class Counter(Protocol):
    def inc(self, n: int = 1) -> None: ...


class Distribution(Protocol):
    def update(self, value: int) -> None: ...


class _Nothing:
    def inc(self, n: int = 1) -> None:
        pass

    def update(self, value: int) -> None:
        pass


class InferenceMetrics:
    def __init__(self, metric_group: Any | None = None) -> None:
        self._group = None if metric_group is None else metric_group.add_group(GROUP)
        self.requests = self._counter("requests")
        self.successes = self._counter("successes")
        self.failures = self._counter("failures")
        self.retries = self._counter("retries")
        self.fallbacks = self._counter("fallbacks")
        self.latency_ms: Distribution = (
            _Nothing() if self._group is None else self._group.distribution("latencyMs"))
        self.in_flight = 0  # requests being sent; read by the gauge
        self.gauge("inFlight", lambda: self.in_flight)

    def _counter(self, name: str) -> Counter:
        return _Nothing() if self._group is None else self._group.counter(name)

    def gauge(self, name: str, value: Callable[[], int]) -> None:
        if self._group is not None:
            self._group.gauge(name, value)
