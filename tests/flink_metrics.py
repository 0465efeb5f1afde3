"""Read the metrics a job's Python UDFs register, from a test, over the mini-cluster's REST API.

What was measured (PyFlink 2.3.0, local execution, Python workers in process mode):

- A local job runs on its own mini-cluster, which always serves Flink's REST API (on a random
  port unless ``rest.port`` is set; ``rest_url`` asks the JVM) and shuts down when the job
  ends. Its metric fetcher refreshes every 10 s by default
  (``metrics.fetcher.update-interval``); ``expose_metrics`` sets 200 ms.
- A Python metric reaches Java when its bundle ends (``python.fn-execution.bundle.time``,
  default 1000 ms, or ``bundle.size`` rows, or end of input); gauge callables are called then
  too, on the bundle's thread. Seen over REST about 0.2 s after the last row was processed;
  while rows flow, a new value about once a bundle.
- Metrics vanish with the job, and a bounded job's last bundle is flushed just before its task
  finishes: its final values are usually not seen. Keep the job running until they are read
  (``held_sequence``: ids 1..rows, then the source idles) and cancel it (``running_job``).
- A subtask metric's REST id is ``<operator name>.<group>.<metric>``:
  ``PythonCalc[3].triton.requests`` (ScalarFunction, pandas UDF),
  ``PythonAsyncCalc[3].triton.requests`` (AsyncScalarFunction), ``Map.triton.requests``
  (DataStream map); ``JobMetrics.read`` matches ids by a suffix such as ``triton.requests``.
  Counters and gauges are integers; a distribution is the text
  ``DistributionResult{sum=2500, count=500, min=1, max=9}`` (parsed into ``Distribution``),
  cumulative over the bundles.
- A metric has no value until Python reported it: a counter never incremented is absent, not 0
  (an ``inc(0)`` in eval makes it 0; one in ``open()`` does not, no metrics container there).
- AsyncScalarFunction: eval runs on an event-loop thread, where Beam has no metrics container:
  counter and distribution updates made there are silently dropped; gauges work (sampled
  after the bundle's in-flight calls have drained, so an in-flight gauge reads 0).
- Metric reporters: a local job does not load them from ``pyflink/plugins`` (its mini-cluster
  has no plugin manager), but does from ``pipeline.jars`` (PyFlink adds those jars to the
  JVM's class loader) or from the JVM's class path. They add nothing here: they also lose the
  values when the job ends, Prometheus shows a distribution as 0, slf4j writes to the shared
  JVM log.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

FETCH_INTERVAL_MS = 200

_DISTRIBUTION = re.compile(
    r"DistributionResult\{sum=(-?\d+), count=(\d+), min=(-?\d+), max=(-?\d+)\}")


def expose_metrics(env: Any, settings: dict[str, str] | None = None) -> Any:
    """Make the next jobs of a TableEnvironment or StreamExecutionEnvironment show metrics fast.

    Sets ``metrics.fetcher.update-interval`` to 200 ms, plus any other ``settings``, e.g.
    ``{"python.fn-execution.bundle.time": "100"}`` for fresher Python values. Returns ``env``.
    """
    options = {"metrics.fetcher.update-interval": str(FETCH_INTERVAL_MS), **(settings or {})}
    if hasattr(env, "get_config") and hasattr(env.get_config(), "set"):  # TableEnvironment
        config = env.get_config()
        for key, value in options.items():
            config.set(key, value)
    else:  # StreamExecutionEnvironment
        from pyflink.common import Configuration

        config = Configuration()
        for key, value in options.items():
            config.set_string(key, value)
        env.configure(config)
    return env


def held_sequence(t_env: Any, name: str, rows: int, rows_per_second: int = 2000,
                  keep_alive_s: int = 120) -> None:
    """A view ``name`` (id BIGINT) of ids 1..rows whose job keeps running afterwards.

    A ``datagen`` sequence runs on, ``rows_per_second`` in all, for about ``keep_alive_s``
    seconds after the last id, and a filter chained behind it drops the ids above ``rows``; so
    operators behind the view see exactly ``rows`` ids (round robin over the source's subtasks)
    and stay alive with their metrics until the test cancels the job. The source holds its
    whole range in memory (about 25 bytes an id: 2000/s x 120 s is 6 MB). The view's name
    appears in the job vertex's name (``Source: {name}__held[1] -> ...``), see ``where``.
    """
    end = rows + rows_per_second * keep_alive_s
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE {name}__held (id BIGINT) WITH (
          'connector' = 'datagen', 'rows-per-second' = '{rows_per_second}',
          'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '{end}')""")
    t_env.execute_sql(
        f"CREATE TEMPORARY VIEW {name} AS SELECT id FROM {name}__held WHERE id <= {rows}")


@dataclass(frozen=True)
class Distribution:
    """A PyFlink distribution as Flink reports it: no percentiles, just these four."""

    count: int
    sum: int
    min: int
    max: int

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else float("nan")

    def __add__(self, other: Distribution) -> Distribution:
        return Distribution(self.count + other.count, self.sum + other.sum,
                            min(self.min, other.min), max(self.max, other.max))


def parse_value(text: str) -> int | float | Distribution | str:
    """A metric value from the REST API: int, float, Distribution, or the text itself."""
    match = _DISTRIBUTION.fullmatch(text)
    if match:
        total, count, low, high = (int(g) for g in match.groups())
        return Distribution(count=count, sum=total, min=low, max=high)
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class Sample:
    """One metric of one subtask; ``metric_id`` is its REST id: PythonCalc[3].triton.requests."""

    name: str  # the suffix it was asked for
    metric_id: str
    vertex: str  # the job vertex (task) name
    subtask: int
    value: Any


@dataclass
class MetricsSnapshot:
    """The values read at one moment, per asked name, one ``Sample`` per subtask."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def values(self, name: str) -> list[Any]:
        """The values of ``name``, one per reporting subtask, by vertex then subtask."""
        return [s.value for s in self.samples.get(name, [])]

    def total(self, name: str, missing: Any = None) -> Any:
        """Sum over the subtasks (numbers) or merge (distributions); ``missing`` if none."""
        values = self.values(name)
        if not values:
            if missing is None:
                raise KeyError(f"no subtask reported {name!r}; seen: {self.names()}")
            return missing
        result = values[0]
        for value in values[1:]:
            result = result + value
        return result

    def ids(self, name: str) -> set[str]:
        return {s.metric_id for s in self.samples.get(name, [])}

    def names(self) -> list[str]:
        return [n for n, s in self.samples.items() if s]

    def where(self, vertex: str) -> MetricsSnapshot:
        """Only the samples of job vertices whose name contains ``vertex`` (e.g. a source's)."""
        return MetricsSnapshot({n: [s for s in samples if vertex in s.vertex]
                                for n, samples in self.samples.items()})

    def __contains__(self, name: object) -> bool:
        return bool(self.samples.get(name))  # type: ignore[arg-type]


def rest_url(job_client: Any) -> str:
    """The REST address of the mini-cluster that runs a local job (read from the JVM).

    Raises AssertionError if the job has ended (its mini-cluster shuts down with it).
    """
    j_client = getattr(job_client, "_j_job_client", job_client)
    cls = j_client.getClass()
    if cls.getName() != "org.apache.flink.runtime.minicluster.MiniClusterJobClient":
        raise ValueError(f"not a local mini-cluster job: {cls.getName()}")
    mini_cluster_field = cls.getDeclaredField("miniCluster")
    mini_cluster_field.setAccessible(True)
    try:
        uri = mini_cluster_field.get(j_client).getRestAddress().get()
    except Exception as error:  # Py4JJavaError: "MiniCluster ... has already been shut down"
        raise AssertionError(
            "the job's mini-cluster is shut down: the job ended, and its metrics with it"
        ) from error
    return str(uri.toString()).rstrip("/")


def job_client_of(job: Any) -> Any:
    """A JobClient from a TableResult, a JobClient, or anything with ``get_job_client()``."""
    return job.get_job_client() if hasattr(job, "get_job_client") else job


class JobMetrics:
    """The metrics of one running job, read over its cluster's REST API.

    ``url``: the REST address, by default that of the job's local mini-cluster.
    """

    def __init__(self, job: Any, url: str | None = None) -> None:
        self.job_client = job_client_of(job)
        self.job_id = str(self.job_client.get_job_id())
        self.url = (url or rest_url(self.job_client)).rstrip("/")

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.load(response)

    def vertices(self) -> list[dict[str, Any]]:
        return self._get(f"/jobs/{self.job_id}")["vertices"]

    def state(self) -> str:
        return self._get(f"/jobs/{self.job_id}")["state"]

    def read(self, names: Iterable[str]) -> MetricsSnapshot:
        """One reading of every subtask metric whose id is ``name`` or ends with ``.name``."""
        names = list(names)
        snapshot = MetricsSnapshot({n: [] for n in names})
        for vertex in self.vertices():
            base = f"/jobs/{self.job_id}/vertices/{vertex['id']}/subtasks"
            available = [m["id"] for m in self._get(f"{base}/metrics")]
            wanted = {i: n for i in available for n in names if i == n or i.endswith("." + n)}
            if not wanted:
                continue
            query = urllib.parse.quote(",".join(sorted(wanted)), safe=",")
            for subtask in range(vertex["parallelism"]):
                for metric in self._get(f"{base}/{subtask}/metrics?get={query}"):
                    snapshot.samples[wanted[metric["id"]]].append(Sample(
                        wanted[metric["id"]], metric["id"], vertex["name"], subtask,
                        parse_value(metric["value"])))
        return snapshot

    def wait_for(self, names: Iterable[str],
                 until: Callable[[MetricsSnapshot], bool] | None = None,
                 timeout: float = 30.0, poll: float = 0.2) -> MetricsSnapshot:
        """Read ``names`` until ``until(snapshot)`` holds (default: each name has a value).

        A counter that was never incremented never gets a value, so for such names pass an
        ``until`` that does not need them. Raises AssertionError with the last reading after
        ``timeout`` seconds, or as soon as the job's mini-cluster is gone (the job ended, and
        its metrics with it).
        """
        names = list(names)
        done = until or (lambda snapshot: all(n in snapshot for n in names))
        deadline = time.monotonic() + timeout
        last: MetricsSnapshot | None = None
        problem = f"not there after {timeout} s"
        while True:
            try:
                last = self.read(names)
                if done(last):
                    return last
            except urllib.error.HTTPError as error:  # e.g. a vertex not known yet: retry
                problem = f"REST error {error}"
            except (urllib.error.URLError, ConnectionError) as error:
                problem = f"the job's REST API is gone ({error}); did the job end?"
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(poll)
        seen = ({n: [(s.metric_id, s.subtask, s.value) for s in last.samples[n]] for n in names}
                if last else None)
        raise AssertionError(f"metrics {names}: {problem}; last reading: {seen}")


@contextmanager
def running_job(job: Any, url: str | None = None) -> Iterator[JobMetrics]:
    """Metrics of a submitted job (TableResult or JobClient); cancels the job on exit."""
    job_client = job_client_of(job)
    try:
        yield JobMetrics(job_client, url)
    finally:
        with suppress(Exception):  # an ended job has nothing to cancel
            job_client.cancel().result()


def read_metrics(job: Any, names: Iterable[str],
                 until: Callable[[MetricsSnapshot], bool] | None = None,
                 timeout: float = 30.0) -> MetricsSnapshot:
    """The latest values of ``names`` for a running job, waited for as ``wait_for`` does.

    A job that has already ended has no metrics left: this raises AssertionError then.
    """
    return JobMetrics(job).wait_for(names, until=until, timeout=timeout)
