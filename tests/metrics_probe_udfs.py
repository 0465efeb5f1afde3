"""Functions that register the kinds of metrics our UDFs use, for the tests of flink_metrics.

Shipped to the Python workers with ``add_python_file`` (process mode imports them there). Each
registers in group "triton": counter ``requests`` (+1 per row), counter ``failures`` (never
incremented), gauge ``sequenceCounter`` (rows seen by this instance) and distribution
``latencyMs`` (updated with ``id % 10``). The async ones also have gauge ``inFlight``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pyflink.datastream import MapFunction, RuntimeContext
from pyflink.table import DataTypes
from pyflink.table.udf import AsyncScalarFunction, FunctionContext, ScalarFunction, udf


class _Probe:
    def _register(self, group: Any) -> Any:
        triton = group.add_group("triton")
        self.requests = triton.counter("requests")
        self.failures = triton.counter("failures")
        self.latency = triton.distribution("latencyMs")
        self.seen = 0
        triton.gauge("sequenceCounter", lambda: self.seen)
        return triton

    def _record(self, value: int) -> None:
        self.requests.inc()
        self.seen += 1
        self.latency.update(int(value) % 10)


class ProbeScalar(ScalarFunction, _Probe):
    def open(self, function_context: FunctionContext) -> None:
        self._register(function_context.get_metric_group())

    def eval(self, value: int) -> int:
        self._record(value)
        return value


class ProbePandas(ScalarFunction, _Probe):
    def open(self, function_context: FunctionContext) -> None:
        self._register(function_context.get_metric_group())

    def eval(self, values: Any) -> Any:
        for value in values:
            self._record(value)
        return values


class ProbeMap(MapFunction, _Probe):
    def open(self, runtime_context: RuntimeContext) -> None:
        self._register(runtime_context.get_metrics_group())

    def map(self, value: Any) -> int:
        self._record(value[0])
        return value[0]


class ProbeAsync(AsyncScalarFunction, _Probe):
    """Updates its counter and distribution inside the coroutine, as a sync UDF would."""

    def open(self, function_context: FunctionContext) -> None:
        triton = self._register(function_context.get_metric_group())
        self.in_flight = 0
        triton.gauge("inFlight", lambda: self.in_flight)

    async def eval(self, value: int) -> int:
        self.in_flight += 1
        try:
            await asyncio.sleep(0.001)
            self._record(value)
            return value
        finally:
            self.in_flight -= 1


class ProbeAsyncFlushed(ProbeAsync):
    """ProbeAsync, but its counter and distribution are updated on the bundle's thread.

    PyFlink runs an async eval on an event-loop thread, where Beam has no metrics container,
    so counter and distribution updates made there are dropped. Gauges are read on the
    bundle's thread when a bundle finishes (after the in-flight calls have drained); this
    one's gauge callable replays the updates queued since.
    """

    def open(self, function_context: FunctionContext) -> None:
        triton = function_context.get_metric_group().add_group("triton")
        self.requests = triton.counter("requests")
        self.failures = triton.counter("failures")
        self.latency = triton.distribution("latencyMs")
        self.seen = 0
        self.in_flight = 0
        self.pending: list[int] = []
        triton.gauge("sequenceCounter", self._flush)
        triton.gauge("inFlight", lambda: self.in_flight)

    def _flush(self) -> int:
        pending, self.pending = self.pending, []  # no eval runs now: the bundle has drained
        if pending:
            self.requests.inc(len(pending))
            for value in pending:
                self.latency.update(value)
        return self.seen

    def _record(self, value: int) -> None:
        self.seen += 1
        self.pending.append(int(value) % 10)


probe_scalar = udf(ProbeScalar(), result_type=DataTypes.BIGINT())
probe_pandas = udf(ProbePandas(), result_type=DataTypes.BIGINT(), func_type="pandas")
probe_async = udf(ProbeAsync(), result_type=DataTypes.BIGINT())
probe_async_flushed = udf(ProbeAsyncFlushed(), result_type=DataTypes.BIGINT())
