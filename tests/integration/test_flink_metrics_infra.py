"""tests/flink_metrics reads the metrics Python UDFs register, from real local jobs.

No Triton here: the probes of metrics_probe_udfs register, in group "triton", a counter
``requests`` (+1 a row), a counter ``failures`` (never incremented), a gauge
``sequenceCounter`` (rows seen) and a distribution ``latencyMs`` (``id % 10``). Each job reads
ids 1..1000 from a held ``datagen`` sequence at parallelism 2, dealt round robin: subtask 0
gets the odd ids (latencies 1, 3, .., 9), subtask 1 the even ones (0, 2, .., 8). The jobs keep
running until the metrics are read (they vanish when a job ends), then are cancelled.

Two jobs, run at the same time: a TableEnvironment one with a ScalarFunction, and a
StreamExecutionEnvironment one with a pandas UDF, two AsyncScalarFunctions and a DataStream
MapFunction side by side.
"""

from __future__ import annotations

import re
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from flink_metrics import (
    Distribution,
    MetricsSnapshot,
    expose_metrics,
    held_sequence,
    running_job,
)
from jobs import table_env

ROWS = 1000
NAMES = ["triton.requests", "triton.failures", "triton.sequenceCounter", "triton.latencyMs",
         "triton.inFlight"]
PROBES = str(Path(__file__).parents[1] / "metrics_probe_udfs.py")
ODD = Distribution(count=500, sum=2500, min=1, max=9)  # subtask 0: ids 1, 3, .., 999
EVEN = Distribution(count=500, sum=2000, min=0, max=8)  # subtask 1: ids 2, 4, .., 1000
NONE = Distribution(count=0, sum=0, min=0, max=0)


def _all_rows_reported(part: MetricsSnapshot, counters: bool = True) -> bool:
    if part.total("triton.sequenceCounter", missing=0) != ROWS:
        return False
    return not counters or (part.total("triton.requests", missing=0) == ROWS
                            and part.total("triton.latencyMs", missing=NONE).count == ROWS)


def _submit_table_job():
    """ScalarFunction probe in a TableEnvironment; returns (TableResult, done)."""
    import metrics_probe_udfs as probes

    t_env = expose_metrics(table_env(parallelism=2))
    t_env.add_python_file(PROBES)
    t_env.create_temporary_function("probe", probes.probe_scalar)
    held_sequence(t_env, "ids", ROWS)
    t_env.execute_sql("CREATE TEMPORARY TABLE out_ (v BIGINT) WITH ('connector' = 'blackhole')")
    return t_env.execute_sql("INSERT INTO out_ SELECT probe(id) FROM ids"), _all_rows_reported


def _submit_mixed_job():
    """Pandas UDF, two AsyncScalarFunctions and a MapFunction in one DataStream job."""
    from pyflink.common import Configuration
    from pyflink.common.typeinfo import Types
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    import metrics_probe_udfs as probes

    config = Configuration()
    config.set_string("python.executable", sys.executable)
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_parallelism(2)
    expose_metrics(env)
    env.add_python_file(PROBES)
    t_env = StreamTableEnvironment.create(env)
    statements = t_env.create_statement_set()
    for kind in ["pandas", "async", "async_flushed", "map"]:
        held_sequence(t_env, f"{kind}_ids", ROWS)
        t_env.execute_sql(
            f"CREATE TEMPORARY TABLE {kind}_out (v BIGINT) WITH ('connector' = 'blackhole')")
        if kind == "map":
            ids = t_env.to_data_stream(t_env.from_path("map_ids"))
            mapped = ids.map(probes.ProbeMap(), output_type=Types.LONG())
            statements.add_insert("map_out", t_env.from_data_stream(mapped))
        else:
            t_env.create_temporary_function(f"probe_{kind}", getattr(probes, f"probe_{kind}"))
            statements.add_insert_sql(
                f"INSERT INTO {kind}_out SELECT probe_{kind}(id) FROM {kind}_ids")
    statements.attach_as_datastream()

    def done(snapshot: MetricsSnapshot) -> bool:
        return (all(_all_rows_reported(snapshot.where(f"{k}_ids__held"))
                    for k in ["pandas", "async_flushed", "map"])
                and _all_rows_reported(snapshot.where("async_ids__held"), counters=False))

    return env.execute_async("metrics probes"), done


@pytest.fixture(scope="module")
def jobs() -> dict[str, MetricsSnapshot]:
    """Both jobs run at the same time (each on its own mini-cluster) to save time."""
    with ExitStack() as stack:
        running = {}
        for kind, submit in [("table", _submit_table_job), ("mixed", _submit_mixed_job)]:
            job, done = submit()
            running[kind] = (stack.enter_context(running_job(job)), done)
        return {kind: job.wait_for(NAMES, until=done, timeout=90)
                for kind, (job, done) in running.items()}


@pytest.fixture
def table_job(jobs) -> MetricsSnapshot:
    return jobs["table"]


@pytest.fixture
def mixed_job(jobs) -> MetricsSnapshot:
    return jobs["mixed"]


def _assert_all_metrics(part: MetricsSnapshot, operator: str) -> None:
    assert part.values("triton.requests") == [500, 500]
    assert part.total("triton.requests") == ROWS
    assert part.values("triton.sequenceCounter") == [500, 500]
    assert part.values("triton.latencyMs") == [ODD, EVEN]
    assert part.total("triton.latencyMs") == Distribution(count=1000, sum=4500, min=0, max=9)
    assert part.total("triton.latencyMs").mean == 4.5
    # A counter that was never incremented has no value at all, not 0.
    assert "triton.failures" not in part
    assert part.total("triton.failures", missing=0) == 0
    for name in ["triton.requests", "triton.sequenceCounter", "triton.latencyMs"]:
        (metric_id,) = part.ids(name)
        assert re.fullmatch(operator + re.escape("." + name), metric_id), metric_id


def test_scalar_function_in_a_table_environment(table_job):
    _assert_all_metrics(table_job, r"PythonCalc\[\d+\]")


def test_pandas_udf(mixed_job):
    _assert_all_metrics(mixed_job.where("pandas_ids__held"), r"PythonCalc\[\d+\]")


def test_datastream_map_function(mixed_job):
    _assert_all_metrics(mixed_job.where("map_ids__held"), "Map")


def test_async_scalar_function_loses_counter_and_distribution_updates_made_in_eval(mixed_job):
    """PyFlink 2.3.0 runs async eval on an event-loop thread without Beam's metrics container.

    Gauges survive (they are read on the bundle's thread), counter and distribution updates
    made in the coroutine are dropped. If this test fails, PyFlink fixed it.
    """
    part = mixed_job.where("async_ids__held")
    assert part.values("triton.sequenceCounter") == [500, 500]
    assert "triton.requests" not in part
    assert "triton.latencyMs" not in part
    # Sampled when the bundle ends, after its in-flight calls have drained.
    assert part.values("triton.inFlight") == [0, 0]
    (metric_id,) = part.ids("triton.sequenceCounter")
    assert re.fullmatch(r"PythonAsyncCalc\[\d+\]\.triton\.sequenceCounter", metric_id)


def test_async_scalar_function_with_updates_replayed_on_the_bundle_thread(mixed_job):
    part = mixed_job.where("async_flushed_ids__held")
    assert part.values("triton.requests") == [500, 500]
    assert part.values("triton.sequenceCounter") == [500, 500]
    assert part.values("triton.inFlight") == [0, 0]
    # Only the count: PyFlink 2.3.0's async operator can hand eval another row's id (FLINK-39532).
    assert [d.count for d in part.values("triton.latencyMs")] == [500, 500]
    assert "triton.failures" not in part
