"""Errors a user meets, against the real server: each names the model, endpoint or column."""

from __future__ import annotations

import pytest

from pyflink_triton import (
    TritonConfigError,
    TritonScalarFunction,
    create_model,
)
from pyflink_triton.server import free_port
from pyflink_triton.sessions.function import TritonInference

from jobs import sequence_source, stateful_options


def run_job_expecting_failure(t_env, function) -> str:
    t_env.create_temporary_function("f", function.as_udf())
    sequence_source(t_env, 3)
    with pytest.raises(Exception) as failure:  # PyFlink wraps it in a Java error
        list(t_env.sql_query("SELECT f(id) FROM src").execute().collect())
    return str(failure.value)


def test_wrong_model_name_at_registration_names_model_and_endpoint(triton):
    with pytest.raises(TritonConfigError) as failure:
        TritonScalarFunction({"endpoint": triton.http_endpoint, "model-name": "no_such_model"})
    message = str(failure.value)
    assert "'no_such_model'" in message and triton.http_endpoint in message
    assert "HTTP 404" in message and "model-name" in message


def test_wrong_model_name_in_a_job_names_model_and_endpoint(triton, t_env):
    function = TritonScalarFunction(
        {"endpoint": triton.http_endpoint, "model-name": "no_such_model"},
        inputs=[("INPUT0", "BIGINT")], output=("OUTPUT0", "STRING"))
    message = run_job_expecting_failure(t_env, function)
    assert "'no_such_model'" in message and triton.http_endpoint in message


def test_unreachable_endpoint_is_named_with_credentials_redacted(t_env):
    port = free_port()  # nothing listens there
    options = {"endpoint": f"http://alice:s3cret-pw@127.0.0.1:{port}/v2/models",
               "model-name": "add_one"}

    with pytest.raises(TritonConfigError) as at_registration:
        TritonScalarFunction(options)
    function = TritonScalarFunction(options, inputs=[("x", "DOUBLE")], output=("y", "DOUBLE"))
    in_job = run_job_expecting_failure(t_env, function)

    for message in (str(at_registration.value), in_job):
        assert f"http://***@127.0.0.1:{port}" in message
        assert "Cannot reach the Triton server" in message
        assert "s3cret-pw" not in message and "alice" not in message


def test_a_stateful_model_without_sequence_id_explains_the_400(triton, t_env):
    options = stateful_options(triton)
    for key in ("sequence-id", "sequence-id-auto-increment", "sequence-start", "sequence-end"):
        del options[key]
    message = run_job_expecting_failure(t_env, TritonScalarFunction(options))
    assert "HTTP 400" in message and "'my_stateful_model'" in message
    assert "set 'sequence-id'" in message


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"sequence-id": None}, "requires 'sequence-id'"),
    ({"sequence-start": "false"}, "requires 'sequence-start' = 'true'"),
    ({"sequence-end": "FALSE"}, "requires 'sequence-end' = 'true'"),
    ({"timeout": "3 parsecs"}, "Invalid value for option 'timeout'"),
    ({"priority": "-1"}, "Invalid value for option 'priority'"),
    ({"model-version": "latest"}, "Triton answers 404 to 'latest'"),
    ({"compression": "zstd"}, "Invalid value for option 'compression'"),
    ({"provider": "openai"}, "Invalid value for option 'provider'"),
    ({"sequence-idd": "x"}, "Unsupported options found for 'triton'"),
])
def test_invalid_configuration_fails_at_registration_without_a_job(triton, t_env, overrides,
                                                                   expected):
    options = {k: v for k, v in {**stateful_options(triton), **overrides}.items()
               if v is not None}
    with pytest.raises(TritonConfigError, match=expected):
        create_model(t_env, "m", options, inputs=[("INPUT0", "BIGINT")],
                     output=("OUTPUT0", "STRING"))
    assert "m" not in t_env.list_user_defined_functions()


def test_a_null_input_fails_naming_the_column(triton, t_env):
    function = TritonScalarFunction({"endpoint": triton.http_endpoint, "model-name": "add_one"})
    t_env.create_temporary_function("add_one", function.as_udf())
    with pytest.raises(Exception) as failure:  # PyFlink wraps it in a Java error
        list(t_env.sql_query("SELECT add_one(CAST(NULL AS DOUBLE))").execute().collect())
    assert "Column(s) ['x'] are NULL" in str(failure.value)
    assert "'null-input' = 'skip'" in str(failure.value)


def test_a_scalar_column_fills_a_variable_dimension(triton):
    scalar_for_array = TritonInference.create(
        {"endpoint": triton.http_endpoint, "model-name": "identity_fp32_array"},
        inputs=[("INPUT0", "FLOAT")], output=("OUTPUT0", "ARRAY<FLOAT>"))
    session = scalar_for_array.open(subtask_index=0)
    try:
        assert session.infer([2.5]) == [2.5]  # the model's [-1] dimension takes one value
    finally:
        session.close()
