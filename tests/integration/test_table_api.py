"""Table API and SQL jobs on the embedded mini-cluster against the real Triton server."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pyflink.table import DataTypes
from pyflink.table.expressions import col

from pyflink_triton import TritonScalarFunction, create_model
from pyflink_triton.codecs.columns import sql_type

from jobs import assert_one_shot_sequences_per_subtask, sequence_source, stateful_options


def test_auto_increment_with_parallelism_3_over_300_rows(triton, t_env):
    t_env.get_config().set("parallelism.default", "3")
    sequence_source(t_env, 300)
    model = TritonScalarFunction(stateful_options(triton))
    t_env.create_temporary_function("my_triton_model", model.as_udf())

    rows = list(t_env.sql_query("SELECT id, my_triton_model(id) FROM src").execute().collect())

    assert len(rows) == 300
    assert_one_shot_sequences_per_subtask([(r[0], json.loads(r[1])) for r in rows], 300, 3)


def test_table_api_expression_call_with_batched_lowercase_model(triton, t_env):
    add_one = TritonScalarFunction({"endpoint": triton.http_endpoint, "model-name": "add_one"})
    assert [sql_type(t) for t in add_one.input_types] == ["DOUBLE"]
    table = t_env.from_elements([(float(i),) for i in range(20)], ["x"])

    rows = list(table.select(col("x"), add_one.as_udf()(col("x"))).execute().collect())

    assert sorted((r[0], r[1]) for r in rows) == [(float(i), i + 1.0) for i in range(20)]


def test_fixed_sequence_id_as_string_and_as_uint64(triton, t_env):
    t_env.get_config().set("parallelism.default", "1")
    sequence_source(t_env, 5)
    create_model(t_env, "fixed_string", stateful_options(
        triton, **{"sequence-id": "42", "sequence-id-auto-increment": "false"}))
    create_model(t_env, "fixed_uint64", stateful_options(
        triton, **{"sequence-id": "42", "sequence-id-auto-increment": "false",
                   "sequence-id-type": "uint64"}))

    rows = list(t_env.sql_query(
        "SELECT fixed_string(id), fixed_uint64(id) FROM src").execute().collect())

    reports = [(json.loads(a), json.loads(b)) for a, b in rows]
    assert len(reports) == 5
    # Triton delivers "42" and 42 as different correlation IDs (a str and an int).
    assert {a["sequence_id"] for a, _ in reports} == {"42"}
    assert {b["sequence_id"] for _, b in reports} == {42}


def test_two_calls_of_one_model_never_share_a_sequence_id(triton, t_env):
    """SELECT m(a), m(b): two function instances per subtask with one base and subtask index
    in one Python worker. With 'zero' each counted from 0, and the second call's START ended
    the first's sequence of the same ID; they draw from one counter instead."""
    t_env.get_config().set("parallelism.default", "2")
    sequence_source(t_env, 100)
    create_model(t_env, "m", stateful_options(triton))

    rows = list(t_env.sql_query("SELECT id, m(id), m(id + 1000) FROM src").execute().collect())

    reports = [json.loads(r[i]) for r in rows for i in (1, 2)]
    assert sorted(r["input"] for r in reports) == [*range(1, 101), *range(1001, 1101)]
    assert all(r["total"] == r["input"] and r["start"] and r["end"] for r in reports), reports
    assert len({r["sequence_id"] for r in reports}) == 200, "an ID was issued twice"
    for subtask in ("0", "1"):
        counters = sorted(int(r["sequence_id"].rsplit("-", 1)[1]) for r in reports
                          if r["sequence_id"].rsplit("-", 2)[1] == subtask)
        assert counters == list(range(len(counters)))  # one counter, no gaps


@pytest.mark.parametrize("parallelism, query, refusal", [
    (2, "SELECT m(id) FROM src", "is used by all 2 parallel instances"),
    (1, "SELECT m(id), m(id + 1) FROM src", "is already used by another function instance"),
])
def test_a_fixed_sequence_id_with_two_senders_fails_at_open(triton, t_env, parallelism, query,
                                                            refusal):
    """Two parallel instances, or two calls in one worker, would interleave one sequence."""
    t_env.get_config().set("parallelism.default", str(parallelism))
    sequence_source(t_env, 10)
    create_model(t_env, "m", stateful_options(
        triton, **{"sequence-id": "one-id", "sequence-id-auto-increment": "false"}))

    with pytest.raises(Exception) as failure:  # (PyFlink wraps it: check the text)
        list(t_env.sql_query(query).execute().collect())
    message = str(failure.value)
    assert f"The fixed 'sequence-id' = 'one-id' {refusal}" in message
    assert "'sequence-id-auto-increment'" in message


IDENTITY_CASES = [
    # (model, Flink type, values)
    ("identity_bool", DataTypes.BOOLEAN(), [True, False]),
    ("identity_int32", DataTypes.INT(), [0, -(2**31), 2**31 - 1]),
    ("identity_int64", DataTypes.BIGINT(), [0, -(2**63), 2**63 - 1]),
    ("identity_fp32", DataTypes.FLOAT(), [0.0, 1.5, -3.25e38]),
    ("identity_fp64", DataTypes.DOUBLE(), [0.0, 1e-300, -1.7976931348623157e308]),
    ("identity_bytes", DataTypes.STRING(), ["", "plain", "Grüße, 世界 🚀"]),
    ("identity_fp32_array", DataTypes.ARRAY(DataTypes.FLOAT()), [[1.5, -2.0], [0.25]]),
    ("identity_fp64_array", DataTypes.ARRAY(DataTypes.DOUBLE()), [[1e-300, 2.0, 3.0], [7.0]]),
    ("identity_int32_array", DataTypes.ARRAY(DataTypes.INT()), [[1, -2, 2**31 - 1], [0]]),
    ("identity_int64_array", DataTypes.ARRAY(DataTypes.BIGINT()), [[2**63 - 1, -1], [5]]),
]


@pytest.mark.parametrize(("model", "data_type", "values"), IDENTITY_CASES,
                         ids=[c[0] for c in IDENTITY_CASES])
def test_each_basic_type_round_trips_through_an_identity_model(triton, t_env, model, data_type,
                                                                values):
    function = TritonScalarFunction(
        {"endpoint": triton.http_endpoint, "model-name": model},
        inputs=[("INPUT0", data_type)], output=("OUTPUT0", data_type))
    table = t_env.from_elements([(v,) for v in values],
                                DataTypes.ROW([DataTypes.FIELD("v", data_type)]))

    rows = list(table.select(col("v"), function.as_udf()(col("v"))).execute().collect())

    assert len(rows) == len(values)
    for sent, received in ((r[0], r[1]) for r in rows):
        if "FLOAT" in sql_type(data_type):  # FP32 holds what float32 can hold
            assert np.float32(sent).tolist() == np.float32(received).tolist()
        else:
            assert received == sent


def test_types_are_derived_from_the_model_metadata(triton):
    derived = TritonScalarFunction({"endpoint": triton.http_endpoint,
                                    "model-name": "identity_fp32_array"})
    assert [sql_type(t) for t in derived.input_types] == ["ARRAY<FLOAT>"]
    assert sql_type(derived.result_type) == "ARRAY<FLOAT>"
    stateful = TritonScalarFunction(stateful_options(triton))
    assert [c.name for c in stateful.inference.signature.inputs] == ["INPUT0"]
    assert sql_type(stateful.result_type) == "STRING"


def test_gzip_compression_and_priority_reach_a_real_server(triton, t_env):
    add_one = TritonScalarFunction({"endpoint": triton.http_endpoint, "model-name": "add_one",
                                    "compression": "GZIP", "priority": "0",
                                    "custom-headers": "X-Team:search,'X-Trace:\"a:b\"'"})
    table = t_env.from_elements([(1.0,), (2.0,)], ["x"])
    rows = list(table.select(add_one.as_udf()(col("x"))).execute().collect())
    assert sorted(r[0] for r in rows) == [2.0, 3.0]
