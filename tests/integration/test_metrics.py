"""The functions' metrics, read from a real job on the mini-cluster over Flink's REST API while
the job runs (metrics vanish when it ends; see tests/flink_metrics.py for what was measured).

One job at parallelism 2, five functions side by side, each fed ids 1..ROWS from its own held
source: sync, async and vectorized calls of add_one; auto-incremented sequences on
my_stateful_model; and requests Triton refuses (no sequence ID for a stateful model: HTTP 400),
answered by 'default-value'. (A fixed ID never started would do too, but parallel subtasks
sending into one sequence are refused at open().)
"""

from __future__ import annotations

import re

from pyflink_triton import create_model

from flink_metrics import Distribution, MetricsSnapshot, expose_metrics, held_sequence, running_job
from jobs import stateful_options, table_env

ROWS = 600
COUNTERS = ["requests", "successes", "failures", "retries", "fallbacks"]
NAMES = [f"triton.{name}" for name in
         [*COUNTERS, "latencyMs", "inFlight", "sequenceCounter", "circuitBreakerState"]]
NONE = Distribution(count=0, sum=0, min=0, max=0)


def _function_metrics(snapshot: MetricsSnapshot, source: str) -> dict[str, object]:
    part = snapshot.where(source)
    values: dict[str, object] = {name: part.total(f"triton.{name}", missing=None)
                                 for name in COUNTERS}
    values["latencyCount"] = part.total("triton.latencyMs", missing=NONE).count
    values["sequenceCounter"] = part.total("triton.sequenceCounter", missing=None)
    values["circuitBreakerState"] = part.values("triton.circuitBreakerState")
    return values


def test_the_metrics_of_every_mode_are_visible_from_a_job(triton):
    # The server's own group (key "server", value host:port), as Flink's REST API names it
    # (it replaces '.' and ':' in a group's name).
    server = "triton.server." + re.sub(r"[.:]", "_", triton.http_endpoint.removeprefix("http://"))
    per_server = [f"{server}.requests", f"{server}.failures", f"{server}.inFlight"]
    t_env = expose_metrics(table_env(parallelism=2))
    add_one = {"endpoint": triton.http_endpoint, "model-name": "add_one"}
    create_model(t_env, "f_sync", add_one)
    create_model(t_env, "f_async", {**add_one, "mode": "async"})
    create_model(t_env, "f_vectorized", {**add_one, "mode": "vectorized"})
    create_model(t_env, "f_sequences", stateful_options(triton))
    create_model(t_env, "f_refused", {
        "endpoint": triton.http_endpoint, "model-name": "my_stateful_model",
        "default-value": "refused",
        "circuit-breaker-enabled": "true", "max-retries": "3"})
    statements = t_env.create_statement_set()
    for function, column in [("f_sync", "CAST(id AS DOUBLE)"), ("f_async", "CAST(id AS DOUBLE)"),
                             ("f_vectorized", "CAST(id AS DOUBLE)"), ("f_sequences", "id"),
                             ("f_refused", "id")]:
        held_sequence(t_env, f"{function}_ids", ROWS)
        t_env.execute_sql(f"CREATE TEMPORARY TABLE {function}_out (v STRING) "
                          "WITH ('connector' = 'blackhole')")
        statements.add_insert_sql(f"INSERT INTO {function}_out "
                                  f"SELECT CAST({function}({column}) AS STRING) "
                                  f"FROM {function}_ids")

    def all_reported(snapshot: MetricsSnapshot) -> bool:
        return all(snapshot.where(f"{f}_ids").total("triton.requests", missing=0) >= expected
                   for f, expected in [("f_sync", ROWS), ("f_async", ROWS),
                                       ("f_vectorized", 1), ("f_sequences", ROWS),
                                       ("f_refused", ROWS)])

    with running_job(statements.execute()) as job:
        snapshot = job.wait_for([*NAMES, *per_server], until=all_reported, timeout=120)

    one_per_row = {"requests": ROWS, "successes": ROWS, "failures": 0, "retries": 0,
                   "fallbacks": 0, "latencyCount": ROWS}
    for function in ("f_sync", "f_async"):
        metrics = _function_metrics(snapshot, f"{function}_ids")
        assert {k: metrics[k] for k in one_per_row} == one_per_row, (function, metrics)
    sequences = _function_metrics(snapshot, "f_sequences_ids")
    assert {k: sequences[k] for k in one_per_row} == one_per_row, sequences
    assert sequences["sequenceCounter"] == ROWS  # IDs drawn, summed over the subtasks
    vectorized = _function_metrics(snapshot, "f_vectorized_ids")
    assert 1 <= vectorized["requests"] < ROWS  # one request per batch, not per row
    assert vectorized["successes"] == vectorized["requests"] == vectorized["latencyCount"]
    # Each attempt counted at its server too: here the one server of each function.
    sync_server = snapshot.where("f_sync_ids")
    assert sync_server.total(f"{server}.requests") == ROWS
    assert sync_server.total(f"{server}.failures", missing=0) == 0
    assert sync_server.values(f"{server}.inFlight") == [0, 0]
    refused = _function_metrics(snapshot, "f_refused_ids")
    assert {k: refused[k] for k in COUNTERS} == {
        "requests": ROWS, "successes": 0, "failures": ROWS, "retries": 0, "fallbacks": ROWS}
    assert snapshot.where("f_refused_ids").total(f"{server}.failures") == ROWS
    # A 400 ("must specify a non-zero or non-empty correlation ID") is never retried; and it is
    # an answer, not an outage: the breaker stays closed.
    assert refused["circuitBreakerState"] == [0, 0]
