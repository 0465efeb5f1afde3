"""Unit tests of pyflink_triton.codecs.fallback: 'default-value' parsed against the output
types, and results with 'error-fields'."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from pyflink.common import Row
from pyflink.table import DataTypes
from pyflink.table.types import DataType

from pyflink_triton.codecs.columns import TensorColumn, sql_type
from pyflink_triton.codecs.fallback import ResultPolicy
from pyflink_triton.errors import (
    TritonCircuitOpenError,
    TritonConfigError,
    TritonConnectionError,
    TritonRequestError,
)

D = DataTypes
FAILURE = TritonConnectionError("Cannot reach http://triton:8000 for model 'm': refused")

def single(data_type: DataType, default_value: str | None = None,
           error_fields: bool = False, name: str = "y") -> ResultPolicy:
    return ResultPolicy.from_options(default_value, error_fields,
                                     [TensorColumn(name, data_type)], False)


def row_policy(columns: list[tuple[str, DataType]], default_value: str | None = None,
               error_fields: bool = False) -> ResultPolicy:
    return ResultPolicy.from_options(default_value, error_fields,
                                     [TensorColumn(n, t) for n, t in columns], True)


def default_of(data_type: DataType, text: str) -> Any:
    policy = single(data_type, text)
    assert policy.default is not None
    (value,) = policy.default
    return value


def config_error(data_type: DataType, text: str) -> str:
    with pytest.raises(TritonConfigError) as info:
        single(data_type, text)
    message = str(info.value)
    assert "'default-value'" in message
    assert repr(text) in message
    assert sql_type(data_type) in message
    return message


# --- single outputs: accepted values -------------------------------------------------------------

@pytest.mark.parametrize("data_type, text, expected", [
    # text types take the text itself
    (D.STRING(), "FAILED", "FAILED"),
    (D.STRING(), "", ""),
    (D.STRING(), "  padded  ", "  padded  "),
    (D.STRING(), '"quoted"', '"quoted"'),
    (D.STRING(), "-1", "-1"),
    (D.STRING(), "[1, 2]", "[1, 2]"),
    (D.STRING(), "NULL", "NULL"),  # only 'null' means SQL NULL
    (D.STRING(), "n/a é ✓", "n/a é ✓"),
    (D.VARCHAR(20), "unknown", "unknown"),
    (D.CHAR(6), "failed", "failed"),
    # binary types take the text's UTF-8 bytes
    (D.BYTES(), "FAILED", b"FAILED"),
    (D.BYTES(), "", b""),
    (D.BYTES(), "é✓", "é✓".encode()),
    (D.VARBINARY(10), "[1]", b"[1]"),
    (D.BINARY(3), "abc", b"abc"),
    # the rest is JSON
    (D.BOOLEAN(), "true", True),
    (D.BOOLEAN(), "false", False),
    (D.BOOLEAN(), " true ", True),
    (D.TINYINT(), "-128", -128),
    (D.TINYINT(), "127", 127),
    (D.SMALLINT(), "-32768", -32768),
    (D.SMALLINT(), "32767", 32767),
    (D.INT(), "-2147483648", -2**31),
    (D.INT(), "2147483647", 2**31 - 1),
    (D.INT(), "-1", -1),
    (D.BIGINT(), "-9223372036854775808", -2**63),
    (D.BIGINT(), "9223372036854775807", 2**63 - 1),
    (D.DECIMAL(20, 0), "18446744073709551615", Decimal(2**64 - 1)),
    (D.DECIMAL(20, 0), "0", Decimal(0)),
    (D.DECIMAL(20, 0), "-5", Decimal(-5)),
    (D.FLOAT(), "0.5", 0.5),
    (D.FLOAT(), "-1", -1.0),
    (D.FLOAT(), "3.4028234663852886e38", 3.4028234663852886e38),
    (D.FLOAT(), "Infinity", math.inf),
    (D.DOUBLE(), "1e300", 1e300),
    (D.DOUBLE(), "0", 0.0),
    (D.DOUBLE(), "-Infinity", -math.inf),
    (D.ARRAY(D.FLOAT()), "[0.0, 1]", [0.0, 1.0]),
    (D.ARRAY(D.FLOAT()), "[]", []),
    (D.ARRAY(D.DOUBLE()), "[null, 2.5]", [None, 2.5]),
    (D.ARRAY(D.ARRAY(D.INT())), "[[1, 2], [3], []]", [[1, 2], [3], []]),
    (D.ARRAY(D.ARRAY(D.ARRAY(D.BOOLEAN()))), "[[[true]], [[false, true]]]",
     [[[True]], [[False, True]]]),
    pytest.param(D.ARRAY(D.STRING()), '["a", ""]', ["a", ""]),
    pytest.param(D.ARRAY(D.ARRAY(D.VARCHAR(5))), '[["a"]]', [["a"]]),
    (D.ARRAY(D.BYTES()), '["a", "é"]', [b"a", "é".encode()]),
    (D.ARRAY(D.DECIMAL(20, 0)), "[1, 2]", [Decimal(1), Decimal(2)]),
    (D.ARRAY(D.TINYINT()), "[-128, 127]", [-128, 127]),
])
def test_default_value_of_each_type(data_type, text, expected):
    value = default_of(data_type, text)
    assert value == expected
    assert type(value) is type(expected)
    if isinstance(expected, list) and expected and isinstance(expected[0], list):
        assert [type(v) for v in value] == [list] * len(expected)


@pytest.mark.parametrize("data_type", [
    D.STRING(), D.BYTES(), D.BOOLEAN(), D.TINYINT(), D.INT(), D.BIGINT(), D.DECIMAL(20, 0),
    D.FLOAT(), D.DOUBLE(), D.ARRAY(D.FLOAT()), D.ARRAY(D.ARRAY(D.STRING())),
])
@pytest.mark.parametrize("text", ["null", " null "])
def test_null_means_sql_null(data_type, text):
    assert default_of(data_type, text) is None


def test_float_nan_is_accepted():
    assert math.isnan(default_of(D.FLOAT(), "NaN"))
    assert math.isnan(default_of(D.DOUBLE(), "NaN"))


def test_integers_are_ints_and_floats_are_floats():
    assert type(default_of(D.DOUBLE(), "2")) is float
    assert type(default_of(D.BIGINT(), "2")) is int
    assert type(default_of(D.DECIMAL(20, 0), "2")) is Decimal


# --- single outputs: refused values --------------------------------------------------------------

@pytest.mark.parametrize("data_type, text, reason", [
    (D.BOOLEAN(), "yes", "not valid JSON"),
    (D.BOOLEAN(), "True", "not valid JSON"),
    (D.BOOLEAN(), "1", "takes true or false"),
    (D.BOOLEAN(), '"true"', "takes true or false"),
    (D.TINYINT(), "128", "out of the range"),
    (D.TINYINT(), "-129", "out of the range"),
    (D.SMALLINT(), "32768", "out of the range"),
    (D.SMALLINT(), "-32769", "out of the range"),
    (D.INT(), "2147483648", "out of the range"),
    (D.INT(), "-2147483649", "out of the range"),
    (D.BIGINT(), "9223372036854775808", "out of the range"),
    (D.BIGINT(), "-9223372036854775809", "out of the range"),
    (D.INT(), "1.5", "takes an integer"),
    (D.INT(), "1.0", "takes an integer"),
    (D.INT(), "1e2", "takes an integer"),
    (D.INT(), "true", "takes an integer"),
    (D.INT(), '"1"', "takes an integer"),
    (D.INT(), "[1]", "takes an integer"),
    (D.INT(), "", "not valid JSON"),
    (D.INT(), "one", "not valid JSON"),
    (D.DECIMAL(20, 0), "1.5", "takes an integer"),
    (D.DECIMAL(20, 0), "true", "takes an integer"),
    (D.DECIMAL(20, 0), str(10**20), "more digits"),
    (D.DECIMAL(20, 0), str(-(10**20)), "more digits"),
    (D.FLOAT(), "3.5e38", "out of the range"),
    (D.FLOAT(), "-3.5e38", "out of the range"),
    (D.FLOAT(), "true", "takes a number"),
    (D.FLOAT(), '"0.5"', "takes a number"),
    (D.DOUBLE(), "abc", "not valid JSON"),
    (D.DOUBLE(), "false", "takes a number"),
    (D.DOUBLE(), "[]", "takes a number"),
    (D.ARRAY(D.FLOAT()), "1.0", "takes a JSON array"),
    (D.ARRAY(D.FLOAT()), '{"a": 1}', "takes a JSON array"),
    (D.ARRAY(D.FLOAT()), '[1, "a"]', "takes a number"),
    (D.ARRAY(D.FLOAT()), "[0.0, 0.0", "not valid JSON"),
    (D.ARRAY(D.ARRAY(D.INT())), "[1, 2]", "takes a JSON array"),
    (D.ARRAY(D.ARRAY(D.INT())), "[[1.5]]", "takes an integer"),
    (D.ARRAY(D.TINYINT()), "[1, 300]", "out of the range"),
    pytest.param(D.ARRAY(D.STRING()), "[1]", "takes a JSON string"),
    pytest.param(D.ARRAY(D.STRING()), "a,b", "not valid JSON"),
    (D.ARRAY(D.BYTES()), "[1]", "takes a JSON string"),
    (D.ARRAY(D.BOOLEAN()), "[true, 0]", "takes true or false"),
])
def test_invalid_default_value(data_type, text, reason):
    message = config_error(data_type, text)
    assert message.startswith("Invalid value for option 'default-value': ")
    assert reason in message
    assert "Expected formats" in message


def test_error_names_the_element_type_of_an_array():
    message = config_error(D.ARRAY(D.ARRAY(D.INT())), "[[1, true]]")
    assert "field 'y' (INT)" in message
    assert "ARRAY<ARRAY<INT>>" in message


@pytest.mark.parametrize("data_type", [D.FLOAT(), D.DOUBLE()])
def test_a_huge_integer_for_a_floating_point_output_is_a_config_error(data_type):
    # A JSON integer too large for a float: e.g. 1 followed by 400 zeros.
    message = config_error(data_type, "1" + "0" * 400)
    assert "out of the range" in message or "takes a number" in message


@pytest.mark.parametrize("data_type", [D.INT(), D.DECIMAL(20, 0)])
def test_a_huge_integer_for_an_integer_output_is_a_config_error(data_type):
    config_error(data_type, "9" * 400)


# --- ROW results ---------------------------------------------------------------------------------

ROW_COLUMNS = [("label", D.STRING()), ("score", D.DOUBLE()), ("ids", D.ARRAY(D.INT())),
               ("raw", D.BYTES())]


def test_row_default_from_a_json_object():
    policy = row_policy(ROW_COLUMNS, '{"label": "unknown", "score": 0, "ids": [1, 2], '
                                     '"raw": "x"}')
    assert policy.default == ("unknown", 0.0, [1, 2], b"x")
    result = policy.failed(FAILURE)
    assert isinstance(result, Row)
    assert result.as_dict() == {"label": "unknown", "score": 0.0, "ids": [1, 2], "raw": b"x"}


def test_row_default_missing_fields_are_null():
    policy = row_policy(ROW_COLUMNS, '{"score": -1}')
    assert policy.default == (None, -1.0, None, None)
    assert row_policy(ROW_COLUMNS, "{}").default == (None, None, None, None)


def test_row_default_null_is_all_nulls():
    assert row_policy(ROW_COLUMNS, "null").default == (None, None, None, None)


@pytest.mark.parametrize("text, reason", [
    ('{"label": "x", "bogus": 1}', "no field(s) ['bogus']"),
    ('{"Label": "x"}', "no field(s) ['Label']"),
    ('{"label": 5}', "field 'label' (STRING) takes a JSON string"),
    ('{"score": "high"}', "field 'score' (DOUBLE) takes a number"),
    ('{"ids": [1.5]}', "field 'ids' (INT) takes an integer"),
    ('{"ids": 1}', "takes a JSON array"),
    ('{"raw": 1}', "field 'raw' (BYTES) takes a JSON string"),
    ("[1, 2]", "takes a JSON object"),
    ('"unknown"', "takes a JSON object"),
    ("unknown", "not valid JSON"),
    ("", "not valid JSON"),
])
def test_invalid_row_default(text, reason):
    with pytest.raises(TritonConfigError) as info:
        row_policy(ROW_COLUMNS, text)
    message = str(info.value)
    assert "'default-value'" in message
    assert repr(text) in message
    assert "ROW" in message
    assert reason in message


def test_a_one_field_row_takes_an_object_too():
    policy = row_policy([("y", D.STRING())], '{"y": "none"}')
    assert policy.default == ("none",)
    with pytest.raises(TritonConfigError):
        row_policy([("y", D.STRING())], "none")


# --- results -------------------------------------------------------------------------------------

def test_result_of_a_single_output():
    policy = single(D.DOUBLE())
    assert policy.result_type == D.DOUBLE()
    assert policy.field_names is None
    assert policy.succeeded([2.5]) == 2.5
    assert policy.handles_failures is False


def test_result_of_a_row_output():
    policy = row_policy([("a", D.INT()), ("b", D.STRING())])
    assert policy.result_type == D.ROW([D.FIELD("a", D.INT()), D.FIELD("b", D.STRING())])
    assert policy.field_names == ["a", "b"]
    result = policy.succeeded([1, "x"])
    assert isinstance(result, Row)
    assert result.as_dict() == {"a": 1, "b": "x"}


def test_failed_without_a_fallback_reraises():
    for policy in (single(D.DOUBLE()), row_policy([("a", D.INT()), ("b", D.STRING())])):
        with pytest.raises(TritonConnectionError) as info:
            policy.failed(FAILURE)
        assert info.value is FAILURE


def test_failed_with_a_default_value():
    policy = single(D.DOUBLE(), "-1")
    assert policy.handles_failures is True
    assert policy.failed(FAILURE) == -1.0
    assert policy.failed(TritonCircuitOpenError("open")) == -1.0
    assert policy.failed_values() == [-1.0]


def test_failed_with_a_null_default_value():
    policy = single(D.DOUBLE(), "null")
    assert policy.handles_failures is True
    assert policy.failed(FAILURE) is None


@pytest.mark.parametrize("default_value, values", [(None, [None]), ("7", [7])])
def test_error_fields_with_a_single_output(default_value, values):
    policy = single(D.INT(), default_value, error_fields=True)
    assert policy.handles_failures is True
    assert policy.result_type == D.ROW([D.FIELD("y", D.INT()), D.FIELD("ok", D.BOOLEAN()),
                                        D.FIELD("error", D.STRING())])
    assert policy.field_names == ["y", "ok", "error"]
    good = policy.succeeded([3])
    assert isinstance(good, Row)
    assert good.as_dict() == {"y": 3, "ok": True, "error": None}
    bad = policy.failed(FAILURE)
    assert isinstance(bad, Row)
    assert bad.as_dict() == {"y": values[0], "ok": False, "error": str(FAILURE)}


def test_error_fields_with_a_row_output():
    policy = row_policy([("label", D.STRING()), ("score", D.FLOAT())], '{"label": "?"}',
                        error_fields=True)
    assert policy.result_type == D.ROW([
        D.FIELD("label", D.STRING()), D.FIELD("score", D.FLOAT()),
        D.FIELD("ok", D.BOOLEAN()), D.FIELD("error", D.STRING())])
    assert policy.succeeded(["cat", 0.5]).as_dict() == {
        "label": "cat", "score": 0.5, "ok": True, "error": None}
    error = TritonRequestError("Gave up on the request to model 'm' after 3 attempt(s)")
    assert policy.failed(error).as_dict() == {
        "label": "?", "score": None, "ok": False,
        "error": "Gave up on the request to model 'm' after 3 attempt(s)"}


def test_error_fields_with_a_single_output_row_default_is_the_value():
    # With one output and 'error-fields', 'default-value' is still that output's value.
    policy = single(D.STRING(), "none", error_fields=True)
    assert policy.failed(FAILURE).as_dict() == {"y": "none", "ok": False,
                                                "error": str(FAILURE)}


@pytest.mark.parametrize("names, taken", [
    (["ok"], "['ok']"),
    (["error"], "['error']"),
    (["score", "ok"], "['ok']"),
    (["ok", "error", "x"], "['error', 'ok']"),
])
def test_error_fields_refuse_outputs_named_ok_or_error(names, taken):
    columns = [TensorColumn(name, D.DOUBLE()) for name in names]
    with pytest.raises(TritonConfigError) as info:
        ResultPolicy.from_options(None, True, columns, len(columns) > 1)
    message = str(info.value)
    assert "'error-fields'" in message
    assert taken in message
    assert "'output-names'" in message


def test_outputs_named_ok_or_error_are_fine_without_error_fields():
    policy = row_policy([("ok", D.BOOLEAN()), ("error", D.STRING())])
    assert policy.field_names == ["ok", "error"]


@pytest.mark.parametrize("error_fields", [False, True])
def test_each_failed_result_is_a_fresh_object(error_fields):
    policy = single(D.ARRAY(D.ARRAY(D.FLOAT())), "[[0.0, 0.0]]", error_fields=error_fields)
    first = policy.failed(FAILURE)
    values = first[0] if error_fields else first
    values.append([9.0])
    values[0][0] = 5.0
    second = policy.failed(FAILURE)
    assert (second[0] if error_fields else second) == [[0.0, 0.0]]
    assert policy.default == ([[0.0, 0.0]],)
    assert policy.failed_values() == [[[0.0, 0.0]]]


def test_each_failed_row_is_a_fresh_object():
    policy = row_policy([("ids", D.ARRAY(D.INT())), ("n", D.INT())], '{"ids": [1]}')
    first = policy.failed(FAILURE)
    first[0].append(2)
    second = policy.failed(FAILURE)
    assert first is not second
    assert second.as_dict() == {"ids": [1], "n": None}


def test_failed_values_without_a_default_are_nulls():
    policy = row_policy([("a", D.INT()), ("b", D.STRING())], error_fields=True)
    assert policy.failed_values() == [None, None]
    values = policy.failed_values()
    values[0] = 1
    assert policy.failed_values() == [None, None]
