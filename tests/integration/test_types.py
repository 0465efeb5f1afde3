"""Every Triton datatype round-trips through an identity model of the real server.

Property-based (hypothesis) through the per-record core every adapter uses, in both wire forms
(binary tensor extension and JSON), then the extremes of every datatype through a real PyFlink
job, where Flink's own type conversions take part.
"""

from __future__ import annotations

import math
import struct
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyflink.table import DataTypes
from pyflink.table.expressions import col
from pyflink.table.types import ArrayType, FloatType

from pyflink_triton import TritonConfigError, TritonRequestError, TritonScalarFunction

from jobs import open_session, same_value


def bfloat16_values() -> st.SearchStrategy[float]:
    """Every bfloat16 (as the float32 with the same upper 16 bits): NaN, inf, subnormals."""
    return st.integers(0, 0xFFFF).map(
        lambda bits: struct.unpack("<f", struct.pack("<I", bits << 16))[0])


def nested(elements: st.SearchStrategy[Any], rank: int) -> st.SearchStrategy[Any]:
    """Rectangular nested lists of the given rank (ragged ones are an error, tested apart)."""
    shape = st.lists(st.integers(0, 4), min_size=rank, max_size=rank)

    def build(dims: list[int]) -> st.SearchStrategy[Any]:
        strategy = elements
        for size in reversed(dims):
            strategy = st.lists(strategy, min_size=size, max_size=size)
        return strategy
    return shape.flatmap(build)


# (model, Flink type of the column, values, the values JSON can carry (None: the same ones;
#  "no JSON": Triton takes no JSON form of the datatype), extra options)
CASES = [
    ("identity_bool", "BOOLEAN", st.booleans(), st.booleans(), {}),
    ("identity_int8", "TINYINT", st.integers(-(2**7), 2**7 - 1), None, {}),
    ("identity_int16", "SMALLINT", st.integers(-(2**15), 2**15 - 1), None, {}),
    ("identity_int32", "INT", st.integers(-(2**31), 2**31 - 1), None, {}),
    ("identity_int64", "BIGINT", st.integers(-(2**63), 2**63 - 1), None, {}),
    ("identity_uint8", "SMALLINT", st.integers(0, 2**8 - 1), None, {}),
    ("identity_uint16", "INT", st.integers(0, 2**16 - 1), None, {}),
    ("identity_uint32", "BIGINT", st.integers(0, 2**32 - 1), None, {}),
    ("identity_uint64", "DECIMAL(20, 0)", st.integers(0, 2**64 - 1).map(Decimal), None, {}),
    ("identity_fp16", "FLOAT", st.floats(width=16), "no JSON", {"half-precision-inputs": "true"}),
    ("identity_bf16", "FLOAT", bfloat16_values(), "no JSON", {"half-precision-inputs": "true"}),
    ("identity_fp32", "FLOAT", st.floats(width=32), None, {}),  # NaN and inf travel as JSON too
    ("identity_fp64", "DOUBLE", st.floats(), None, {}),
    ("identity_bytes", "STRING", st.text(), None, {}),
    ("identity_bytes", "BYTES", st.binary(), st.text().map(str.encode), {}),
    ("identity_bool_array", "ARRAY<BOOLEAN>", nested(st.booleans(), 1), None, {}),
    ("identity_bytes_array", "ARRAY<STRING>", nested(st.text(max_size=8), 1), None, {}),
    ("identity_fp32_array", "ARRAY<FLOAT>", nested(st.floats(width=32), 1), None, {}),
    ("identity_int64_matrix", "ARRAY<ARRAY<BIGINT>>",
     nested(st.integers(-(2**63), 2**63 - 1), 2), None, {}),
    ("identity_fp32_matrix", "ARRAY<ARRAY<FLOAT>>", nested(st.floats(width=32), 2), None, {}),
    ("identity_int32_cube", "ARRAY<ARRAY<ARRAY<INT>>>",
     nested(st.integers(-(2**31), 2**31 - 1), 3), None, {}),
]


# Each case in binary form, and in JSON form where it has one (FP16 and BF16 have none:
# test_half_precision_refuses_json checks the error).
PARAMETERS = [
    pytest.param(model, flink_type, values if binary or json_values is None else json_values,
                 options, binary, id=f"{model}-{flink_type}-{'binary' if binary else 'json'}")
    for model, flink_type, values, json_values, options in CASES
    for binary in (True, False) if binary or json_values != "no JSON"
]


def within_a_few_ulps(a: float, b: float) -> bool:
    return same_value(a, b) or abs(a - b) <= 4 * math.ulp(max(abs(a), abs(b)))


@pytest.mark.parametrize(("model", "flink_type", "values", "options", "binary"), PARAMETERS)
def test_every_datatype_round_trips(triton, model, flink_type, values, options, binary):
    # Triton's JSON parser is not exact for doubles (measured: 9.739343950317533e+20 came
    # back as 9.739343950317532e+20, 1.1798284427273377e+226 as 1.1798284427273375e+226: 1 and
    # 2 ulp); the binary form is exact, and the default.
    same = same_value if binary or flink_type != "DOUBLE" else within_a_few_ulps
    with open_session(triton, model, [("INPUT0", flink_type)], ("OUTPUT0", flink_type),
                      **{**options, "binary-data": str(binary).lower()}) as session:

        @settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(values)
        def round_trip(value: Any) -> None:
            result = session.infer([value])
            assert same(result, value), (value, result)

        round_trip()


@pytest.mark.parametrize("model", ["identity_fp16", "identity_bf16"])
def test_half_precision_refuses_json(triton, model):
    options = {"half-precision-inputs": "true", "binary-data": "false"}
    expected = r"Triton takes no [FB][PF]16 in JSON form"
    # Declared columns: found at open(); derived ones: already at registration.
    with pytest.raises(TritonRequestError, match=expected), open_session(
            triton, model, [("INPUT0", "FLOAT")], ("OUTPUT0", "FLOAT"), **options):
        pass
    with pytest.raises(TritonConfigError, match=expected), open_session(triton, model,
                                                                         **options):
        pass


def test_half_precision_inputs_are_rounded_to_nearest(triton):
    with open_session(triton, "identity_fp16", **{"half-precision-inputs": "true"}) as fp16:
        assert fp16.infer([0.1]) == float.fromhex("0x1.998p-4")  # nearest FP16 to 0.1
        assert fp16.infer([65520.0]) == math.inf  # beyond the largest FP16 (65504)
    with open_session(triton, "identity_bf16", **{"half-precision-inputs": "true"}) as bf16:
        assert bf16.infer([math.pi]) == 3.140625  # nearest, where truncation gives 3.140625 too
        assert bf16.infer([1.0 + 2**-8 + 2**-9]) == 1.0 + 2**-7  # rounds up, not truncated


# The extremes of every datatype, through a real PyFlink job: (model, Flink type, values).
EXTREMES = [
    ("identity_bool", DataTypes.BOOLEAN(), [True, False]),
    ("identity_int8", DataTypes.TINYINT(), [-(2**7), 2**7 - 1]),
    ("identity_int16", DataTypes.SMALLINT(), [-(2**15), 2**15 - 1]),
    ("identity_int32", DataTypes.INT(), [-(2**31), 2**31 - 1]),
    ("identity_int64", DataTypes.BIGINT(), [-(2**63), 2**63 - 1]),
    ("identity_uint8", DataTypes.SMALLINT(), [0, 2**8 - 1]),
    ("identity_uint16", DataTypes.INT(), [0, 2**16 - 1]),
    ("identity_uint32", DataTypes.BIGINT(), [0, 2**32 - 1]),
    ("identity_uint64", DataTypes.DECIMAL(20, 0), [Decimal(0), Decimal(2**64 - 1)]),
    ("identity_fp16", DataTypes.FLOAT(), [65504.0, -(2.0**-24), math.inf, math.nan]),
    ("identity_bf16", DataTypes.FLOAT(), [float.fromhex("0x1.fep127"), -(2.0**-133),
                                          -math.inf, math.nan]),
    ("identity_fp32", DataTypes.FLOAT(), [float.fromhex("0x1.fffffep127"), 2.0**-149, -0.0,
                                          math.nan, math.inf, -math.inf]),
    ("identity_fp64", DataTypes.DOUBLE(), [1.7976931348623157e308, 5e-324, -0.0, math.nan,
                                           -math.inf]),
    ("identity_bytes", DataTypes.STRING(), ["", "héllo wörld ✓ 日本 \U0001f600", "a\x00b"]),
    # from_elements takes VARBINARY values as bytearray
    ("identity_bytes", DataTypes.BYTES(), [bytearray(b""), bytearray(b"\x00\xff\x00"),
                                           bytearray("✓".encode())]),
    ("identity_fp32_matrix", DataTypes.ARRAY(DataTypes.ARRAY(DataTypes.FLOAT())),
     [[[1.5, -0.0], [math.inf, 2.0**-149]], [], [[]]]),
]


def test_extremes_of_every_datatype_round_trip_through_a_flink_job(triton, t_env):
    rows = max(len(values) for _, _, values in EXTREMES)
    columns = [f"c{i}" for i in range(len(EXTREMES))]
    # Each column cycles through its values, so every row is complete.
    table = t_env.from_elements(
        [tuple(values[r % len(values)] for _, _, values in EXTREMES) for r in range(rows)],
        DataTypes.ROW([DataTypes.FIELD(c, t) for c, (_, t, _) in zip(columns, EXTREMES,
                                                                    strict=True)]))
    sent, received = [], []
    for column, (model, data_type, _) in zip(columns, EXTREMES, strict=True):
        half = {"half-precision-inputs": "true"} if model in ("identity_fp16",
                                                             "identity_bf16") else {}
        function = TritonScalarFunction(
            {"endpoint": triton.http_endpoint, "model-name": model, **half},
            inputs=[("INPUT0", data_type)], output=("OUTPUT0", data_type))
        call = function.as_udf()(col(column))
        # PyFlink's collect() cannot read a FLOAT NaN or infinity (it literal_evals "NaN"),
        # so FLOAT results are widened to DOUBLE, which is exact, after the model call.
        widened = _with_double_for_float(data_type)
        sent.append(col(column).cast(widened) if widened != data_type else col(column))
        received.append(call.cast(widened) if widened != data_type else call)

    results = list(table.select(*sent, *received).execute().collect())

    assert len(results) == rows
    for result in results:
        sent, received = list(result)[:len(columns)], list(result)[len(columns):]
        for (model, _, _), before, after in zip(EXTREMES, sent, received, strict=True):
            if isinstance(before, bytearray):  # collect() gives VARBINARY as bytearray
                before, after = bytes(before), bytes(after)
            assert same_value(after, before), (model, before, after)


def _with_double_for_float(data_type: Any) -> Any:
    if isinstance(data_type, FloatType):
        return DataTypes.DOUBLE()
    if isinstance(data_type, ArrayType):
        return DataTypes.ARRAY(_with_double_for_float(data_type.element_type))
    return data_type
