"""A fake of the part of PyFlink's metric group that ``InferenceMetrics`` uses: groups, counters,
gauges and distributions that record what they are given, for the tests to read."""

from __future__ import annotations

from collections.abc import Callable

from pyflink_triton.sessions.metrics import GROUP


class FakeCounter:
    def __init__(self) -> None:
        self.count = 0

    def inc(self, n: int = 1) -> None:
        self.count += n


class FakeDistribution:
    def __init__(self) -> None:
        self.values: list[int] = []

    def update(self, value: int) -> None:
        self.values.append(value)


class FakeMetricGroup:
    """The part of PyFlink's MetricGroup that InferenceMetrics uses."""

    def __init__(self) -> None:
        self.groups: dict[str, FakeMetricGroup] = {}
        self.counters: dict[str, FakeCounter] = {}
        self.gauges: dict[str, Callable[[], int]] = {}
        self.distributions: dict[str, FakeDistribution] = {}

    def add_group(self, name: str, extra: str | None = None) -> FakeMetricGroup:
        group = self.groups.setdefault(name, FakeMetricGroup())
        return group if extra is None else group.groups.setdefault(extra, FakeMetricGroup())

    def counter(self, name: str) -> FakeCounter:
        return self.counters.setdefault(name, FakeCounter())

    def gauge(self, name: str, value: Callable[[], int]) -> None:
        self.gauges[name] = value

    def distribution(self, name: str) -> FakeDistribution:
        return self.distributions.setdefault(name, FakeDistribution())

    def server(self, host_port: str) -> FakeMetricGroup:
        """The group of one server (``host:port``) of the function's group below this one."""
        return self.groups[GROUP].groups["server"].groups[host_port]

    def sampled(self) -> FakeMetricGroup:
        """As at the end of a PyFlink bundle: the gauges are sampled (which reports the
        counts and latencies to the counters and the distribution)."""
        for gauge in self.gauges.values():
            gauge()
        return self

    def counts(self) -> dict[str, int]:
        self.sampled()
        return {name: counter.count for name, counter in self.counters.items()}
