"""Columns that do not fit the served model fail at open() (or at the record, for what only a
value can show), with a message naming model, column and tensor, what was expected and found,
and the model's own signature."""

from __future__ import annotations

import json

import pytest

from pyflink_triton import TritonConfigError, TritonRequestError, TritonScalarFunction, create_model
from pyflink_triton.sessions.function import TritonInference

from jobs import open_session, sequence_source, stateful_options

IDENTITY_FP32 = ("The model's signature (max_batch_size 0: no batch dimension): "
                 "inputs [INPUT0 FP32 [1]], outputs [OUTPUT0 FP32 [1]].")
MULTI_IO = ("The model's signature (max_batch_size 8: the first dim (-1) is the batch): inputs "
            "[values FP32 [-1, -1], Label BYTES [-1, 1]], outputs [TOTAL FP64 [-1, 1], "
            "label_Upper BYTES [-1, 1], Count INT64 [-1, 1]].")


def open_error(triton, model: str, inputs, output, **options: str) -> str:
    inference = TritonInference.create(
        {"endpoint": triton.http_endpoint, "model-name": model, **options}, inputs, output)
    with pytest.raises(TritonRequestError) as failure:
        inference.open(subtask_index=0)
    return str(failure.value)


@pytest.mark.parametrize(("model", "inputs", "output", "options", "expected", "signature"), [
    pytest.param(
        "identity_fp32", [("input0", "FLOAT")], ("OUTPUT0", "FLOAT"), {},
        "Model 'identity_fp32': Column 'input0' (FLOAT) is bound to input tensor 'input0', "
        "which the model does not have (names are case-sensitive; map other names with "
        "'input-names').", IDENTITY_FP32, id="unknown input tensor"),
    pytest.param(
        "identity_fp32", [("x", "FLOAT")], ("OUTPUT0", "FLOAT"), {"input-names": "x:INPUT_0"},
        "Column 'x' (FLOAT) is bound to input tensor 'INPUT_0', which the model does not have",
        IDENTITY_FP32, id="unknown mapped tensor"),
    pytest.param(
        "identity_fp32", [("INPUT0", "FLOAT")], ("output0", "FLOAT"), {},
        "Column 'output0' (FLOAT) is bound to output tensor 'output0', which the model does "
        "not have (names are case-sensitive; map other names with 'output-names').",
        IDENTITY_FP32, id="unknown output tensor"),
    pytest.param(
        "identity_fp32", [("INPUT0", "DOUBLE")], ("OUTPUT0", "FLOAT"), {},
        "Model 'identity_fp32': Column 'INPUT0' (DOUBLE) does not fit input tensor 'INPUT0': "
        "expected FP64, found FP32.", IDENTITY_FP32, id="wrong input datatype"),
    pytest.param(
        "identity_fp32", [("INPUT0", "FLOAT")], ("OUTPUT0", "STRING"), {},
        "Column 'OUTPUT0' (STRING) does not fit output tensor 'OUTPUT0': expected BYTES, found "
        "FP32.", IDENTITY_FP32, id="wrong output datatype"),
    pytest.param(
        "identity_fp16", [("INPUT0", "FLOAT")], ("OUTPUT0", "FLOAT"), {},
        "Column 'INPUT0' (FLOAT) does not fit input tensor 'INPUT0': expected FP32, or "
        "FP16/BF16 with 'half-precision-inputs' = 'true', found FP16. FLOAT values would be "
        "rounded to FP16: set 'half-precision-inputs' = 'true' to allow it.",
        "inputs [INPUT0 FP16 [1]]", id="half precision needs the option"),
    pytest.param(
        "identity_fp32_array", [("INPUT0", "ARRAY<ARRAY<FLOAT>>")], ("OUTPUT0", "ARRAY<FLOAT>"),
        {}, "Column 'INPUT0' (ARRAY<ARRAY<FLOAT>>) does not fit input tensor 'INPUT0': expected "
        "a tensor of 2 dimension(s) (plus leading dims of 1), found dims [-1].",
        "inputs [INPUT0 FP32 [-1]]", id="input rank too high"),
    pytest.param(
        "identity_fp32_array", [("INPUT0", "ARRAY<FLOAT>")], ("OUTPUT0", "ARRAY<ARRAY<FLOAT>>"),
        {}, "Column 'OUTPUT0' (ARRAY<ARRAY<FLOAT>>) does not fit output tensor 'OUTPUT0': "
        "expected a tensor of 2 dimension(s) (plus leading dims of 1), found dims [-1].",
        "outputs [OUTPUT0 FP32 [-1]]", id="output rank too high"),
    pytest.param(
        "multi_io", [("values", "ARRAY<FLOAT>")], ("TOTAL", "DOUBLE"), {},
        "Model 'multi_io': No column feeds its required input(s) ['Label']; the function's "
        "input columns are: 'values' ARRAY<FLOAT>.", MULTI_IO, id="missing input"),
    pytest.param(
        "add_one", [("x", "DOUBLE")], ("y", "DOUBLE"), {"flatten-batch-dim": "true"},
        "'flatten-batch-dim' = 'true' asserts that the model takes no batch dimension, but its "
        "config has max_batch_size 64", "inputs [x FP64 [-1, 1]]",
        id="flatten-batch-dim on a batched model"),
])
def test_mismatch_at_open(triton, model, inputs, output, options, expected, signature):
    message = open_error(triton, model, inputs, output, **options)
    assert expected in message
    assert signature in message


def test_mismatch_fails_a_flink_job_at_open_before_any_record(triton, t_env):
    function = TritonScalarFunction(
        {"endpoint": triton.http_endpoint, "model-name": "identity_fp32"},
        inputs=[("INPUT0", "DOUBLE")], output=("OUTPUT0", "FLOAT"))
    t_env.create_temporary_function("f", function.as_udf())
    sequence_source(t_env, 3)

    with pytest.raises(Exception) as failure:  # PyFlink wraps it in a Java error
        list(t_env.sql_query("SELECT f(CAST(id AS DOUBLE)) FROM src").execute().collect())

    message = str(failure.value)
    assert "does not fit input tensor 'INPUT0': expected FP64, found FP32." in message
    assert IDENTITY_FP32 in message


def test_flatten_batch_dim_is_accepted_for_a_model_without_batching(triton):
    with open_session(triton, "identity_fp32_array", **{"flatten-batch-dim": "true"}) as session:
        assert session.infer([[1.0, 2.0]]) == [1.0, 2.0]


@pytest.mark.parametrize(("model", "value", "expected"), [
    ("identity_fp32_matrix", [[1.0], [2.0, 3.0]], "Column 'INPUT0' holds a ragged nested array "
     "(inner lengths differ); a tensor needs every inner array of one value to have the same "
     "length."),
    ("identity_fp32_array", [1.0, None], "Column 'INPUT0' holds a NULL array element."),
    ("identity_uint8", 256, "Column 'INPUT0' (SMALLINT) for input 'INPUT0' UINT8: 256 is outside "
     "the UINT8 range [0, 255]."),
    ("identity_uint8", -1, "-1 is outside the UINT8 range [0, 255]."),
    ("identity_bytes", None, "Column(s) ['INPUT0'] are NULL, and a Triton tensor cannot hold "
     "NULL (model 'identity_bytes'). Filter NULLs out or replace them with COALESCE, or set "
     "'null-input' = 'skip'"),
])
def test_mismatch_at_the_record(triton, model, value, expected):
    with open_session(triton, model) as session, pytest.raises(TritonRequestError) as failure:
        session.infer([value])
    assert expected in str(failure.value)
    assert f"'{model}'" in str(failure.value)  # a job may call several models


def test_ragged_array_fails_a_flink_job_naming_the_column(triton, t_env):
    function = TritonScalarFunction(
        {"endpoint": triton.http_endpoint, "model-name": "identity_int64_matrix"})
    t_env.create_temporary_function("f", function.as_udf())

    with pytest.raises(Exception) as failure:
        list(t_env.sql_query("SELECT f(ARRAY[ARRAY[CAST(1 AS BIGINT)], ARRAY[CAST(2 AS BIGINT), "
                             "CAST(3 AS BIGINT)]])").execute().collect())

    assert "Column 'INPUT0' holds a ragged nested array" in str(failure.value)


def test_null_input_skip_returns_null_and_draws_no_sequence_id(triton, t_env):
    t_env.get_config().set("parallelism.default", "1")
    function = TritonScalarFunction(stateful_options(triton, **{"null-input": "skip"}),
                                    inputs=[("INPUT0", "BIGINT")], output=("OUTPUT0", "STRING"))
    t_env.create_temporary_function("f", function.as_udf())
    sequence_source(t_env, 10)

    rows = list(t_env.sql_query(
        "SELECT id, f(CASE WHEN MOD(id, 3) = 0 THEN NULL ELSE id END) FROM src")
        .execute().collect())

    assert sorted(r[0] for r in rows) == list(range(1, 11))  # no row lost
    skipped = [r[0] for r in rows if r[1] is None]
    assert sorted(skipped) == [3, 6, 9]
    reports = sorted((json.loads(r[1]) for r in rows if r[1] is not None),
                     key=lambda report: report["input"])
    assert [r["input"] for r in reports] == [1, 2, 4, 5, 7, 8, 10]
    # IDs are drawn only for records that were sent: the counter has no gaps.
    assert sorted(int(r["sequence_id"].rsplit("-", 1)[1]) for r in reports) == list(range(7))


def test_derived_columns_are_checked_at_registration(triton, t_env):
    """When registration fetched the model's metadata anyway, a mismatch fails there."""
    with pytest.raises(TritonConfigError) as failure:
        create_model(t_env, "half", {"endpoint": triton.http_endpoint,
                                     "model-name": "identity_fp16"})
    assert "set 'half-precision-inputs' = 'true' to allow it" in str(failure.value)
    assert "inputs [INPUT0 FP16 [1]]" in str(failure.value)
    assert "half" not in t_env.list_user_defined_functions()
