"""The DataStream MapFunction against the real Triton server."""

from __future__ import annotations

import json

import pytest
from pyflink.common import Row
from pyflink.common.typeinfo import Types

from pyflink_triton import TritonConfigError, TritonMapFunction

from jobs import assert_one_shot_sequences_per_subtask, stateful_options


def test_map_function_with_parallelism_3_over_300_elements(triton, stream_env):
    stream_env.set_parallelism(3)
    model = TritonMapFunction(stateful_options(triton))
    assert model.output_type == Types.STRING()
    ids = stream_env.from_collection(list(range(1, 301)), type_info=Types.LONG())

    outputs = list(ids.map(model, output_type=model.output_type).execute_and_collect())

    reports = [json.loads(o) for o in outputs]
    assert_one_shot_sequences_per_subtask([(r["input"], r) for r in reports], 300, 3)


def test_map_function_takes_named_rows_and_tuples(triton, stream_env):
    stream_env.set_parallelism(1)
    model = TritonMapFunction({"endpoint": triton.http_endpoint, "model-name": "add_one"},
                              inputs=["x"], output="y")
    rows = stream_env.from_collection(
        [Row(x=1.0, label="a"), Row(x=2.0, label="b")],
        type_info=Types.ROW_NAMED(["x", "label"], [Types.DOUBLE(), Types.STRING()]))

    outputs = list(rows.map(model, output_type=model.output_type).execute_and_collect())

    assert sorted(outputs) == [2.0, 3.0]


def test_null_input_skip_is_refused_for_a_datastream(triton):
    with pytest.raises(TritonConfigError, match="a DataStream element cannot be null"):
        TritonMapFunction({"endpoint": triton.http_endpoint, "model-name": "add_one",
                           "null-input": "skip"})


def test_tinyint_arrays_are_lists_of_ints(triton, stream_env):
    stream_env.set_parallelism(1)
    model = TritonMapFunction({"endpoint": triton.http_endpoint,
                               "model-name": "identity_int8_array"})
    assert model.output_type == Types.BASIC_ARRAY(Types.BYTE())
    values = [[-128, 0, 127], [], [5]]
    elements = stream_env.from_collection(values, type_info=Types.BASIC_ARRAY(Types.BYTE()))

    outputs = list(elements.map(model, output_type=model.output_type).execute_and_collect())

    assert sorted(outputs) == sorted(values)
