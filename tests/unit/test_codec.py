"""Unit tests of pyflink_triton.codecs.columns and .tensors: Flink types and values <-> Triton
datatypes and tensors.

Encoded tensors are checked as the server reads them: :func:`serve_identity` passes them
through tritonclient's own request serialisation, echoes each input back the way Triton
answers (binary tensor extension or JSON, as requested) and parses the answer with
tritonclient's ``InferResult``, so the codecs are tested against the real wire formats.
"""

from __future__ import annotations

import decimal
import json
import math
import struct
import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyflink.table import DataTypes
from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput, InferResult
from tritonclient.utils import np_to_triton_dtype

from pyflink_triton.codecs.columns import (
    TensorColumn,
    flink_type_for,
    parse_data_type,
    significant_dims,
    sql_type,
)
from pyflink_triton.codecs.tensors import InputCodec, OutputCodec
from pyflink_triton.errors import TritonConfigError, TritonRequestError
from pyflink_triton.wire.http import http_input

D = DataTypes
Dec = decimal.Decimal

ALL_DATATYPES = ["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32",
                 "UINT64", "FP16", "BF16", "FP32", "FP64", "BYTES"]

# The Triton datatype a Flink element type maps to by default (the first one in the docs' table).
NATURAL = {
    "BooleanType": "BOOL", "TinyIntType": "INT8", "SmallIntType": "INT16", "IntType": "INT32",
    "BigIntType": "INT64", "FloatType": "FP32", "DoubleType": "FP64", "DecimalType": "UINT64",
    "VarCharType": "BYTES", "CharType": "BYTES", "VarBinaryType": "BYTES",
    "BinaryType": "BYTES",
}

SCALAR_TYPES = [
    # (Flink type, Triton datatype, is text)
    (D.BOOLEAN(), "BOOL", False),
    (D.TINYINT(), "INT8", False),
    (D.SMALLINT(), "INT16", False),
    (D.INT(), "INT32", False),
    (D.BIGINT(), "INT64", False),
    (D.FLOAT(), "FP32", False),
    (D.DOUBLE(), "FP64", False),
    (D.DECIMAL(20, 0), "UINT64", False),
    (D.STRING(), "BYTES", True),
    (D.VARCHAR(10), "BYTES", True),
    (D.CHAR(3), "BYTES", True),
    (D.BYTES(), "BYTES", False),
    (D.VARBINARY(8), "BYTES", False),
    (D.BINARY(4), "BYTES", False),
    (D.INT(False), "INT32", False),
    (D.STRING(False), "BYTES", True),
]
SCALAR_IDS = [f"{sql_type(t)}" for t, _, _ in SCALAR_TYPES]

# A sample value per Flink type, encoded as the type's natural datatype.
SAMPLES = [
    (D.BOOLEAN(), True),
    (D.BOOLEAN(), False),
    (D.TINYINT(), -128),
    (D.TINYINT(), 127),
    (D.SMALLINT(), -32768),
    (D.SMALLINT(), 32767),
    (D.INT(), -(2**31)),
    (D.INT(), 2**31 - 1),
    (D.BIGINT(), -(2**63)),
    (D.BIGINT(), 2**63 - 1),
    (D.FLOAT(), 1.5),
    (D.FLOAT(), -0.25),
    (D.DOUBLE(), 0.1),
    (D.DOUBLE(), -1e300),
    (D.DECIMAL(20, 0), Dec(0)),
    (D.DECIMAL(20, 0), Dec(2**64 - 1)),
    (D.STRING(), "hello"),
    (D.STRING(), "héllo wörld ✓ 日本"),
    (D.STRING(), ""),
    (D.VARCHAR(10), "abc"),
    (D.CHAR(3), "xyz"),
    (D.BYTES(), b"\x00\x01\xff"),
    (D.BYTES(), b""),
    (D.VARBINARY(8), b"raw"),
    (D.BINARY(4), b"\xde\xad\xbe\xef"),
]

# Which Triton datatypes each Flink element type carries, per direction (the docs' table).
# FLOAT -> FP16/BF16 inputs need 'half-precision-inputs'; that case is tested separately.
ACCEPTED = [
    (D.BOOLEAN(), {"BOOL"}, {"BOOL"}),
    (D.TINYINT(), {"INT8"}, {"INT8"}),
    (D.SMALLINT(), {"INT16", "UINT8"}, {"INT16", "UINT8"}),
    (D.INT(), {"INT32", "UINT16"}, {"INT32", "UINT16"}),
    (D.BIGINT(), {"INT64", "UINT32", "UINT64"}, {"INT64", "UINT32"}),
    (D.FLOAT(), {"FP32"}, {"FP32", "FP16", "BF16"}),
    (D.DOUBLE(), {"FP64"}, {"FP64"}),
    (D.DECIMAL(1, 0), {"UINT64"}, set()),
    (D.DECIMAL(19, 0), {"UINT64"}, set()),
    (D.DECIMAL(20, 0), {"UINT64"}, {"UINT64"}),
    (D.DECIMAL(38, 0), {"UINT64"}, {"UINT64"}),
    (D.STRING(), {"BYTES"}, {"BYTES"}),
    (D.VARCHAR(3), {"BYTES"}, {"BYTES"}),
    (D.CHAR(3), {"BYTES"}, {"BYTES"}),
    (D.BYTES(), {"BYTES"}, {"BYTES"}),
    (D.VARBINARY(3), {"BYTES"}, {"BYTES"}),
    (D.BINARY(3), {"BYTES"}, {"BYTES"}),
]

INTEGER_RANGES = [
    # (Flink type feeding the datatype, datatype, min, max)
    (D.TINYINT(), "INT8", -(2**7), 2**7 - 1),
    (D.SMALLINT(), "INT16", -(2**15), 2**15 - 1),
    (D.INT(), "INT32", -(2**31), 2**31 - 1),
    (D.BIGINT(), "INT64", -(2**63), 2**63 - 1),
    (D.SMALLINT(), "UINT8", 0, 2**8 - 1),
    (D.INT(), "UINT16", 0, 2**16 - 1),
    (D.BIGINT(), "UINT32", 0, 2**32 - 1),
    (D.BIGINT(), "UINT64", 0, 2**64 - 1),
    (D.DECIMAL(20, 0), "UINT64", 0, 2**64 - 1),
]
RANGE_IDS = [f"{sql_type(t)}->{datatype}" for t, datatype, _, _ in INTEGER_RANGES]


# --- helpers -------------------------------------------------------------------------------------

def array_of(data_type, depth: int):
    for _ in range(depth):
        data_type = D.ARRAY(data_type)
    return data_type


def natural_datatype(data_type) -> str:
    return NATURAL[type(TensorColumn("c", data_type).element_type).__name__]


class HttpEncoder(InputCodec):
    """An InputCodec whose tensors come out as the HTTP transport sends them."""

    def encode(self, value) -> InferInput:
        return http_input(super().encode(value), self.binary)


def encoder(data_type, datatype: str | None = None, *, dims=None, leading_ones: int = 0,
            batched: bool = False, binary: bool = True, name: str = "x",
            tensor: str = "") -> InputCodec:
    column = TensorColumn(name, data_type, tensor)
    if dims is None:
        dims = (-1,) * column.rank if column.rank else (1,)
    return HttpEncoder(column, datatype or natural_datatype(data_type), leading_ones,
                       tuple(dims), batched, binary)


def decoder(data_type, datatype: str | None = None, *, batched: bool = False,
            binary: bool = True, name: str = "x", tensor: str = "") -> OutputCodec:
    return OutputCodec(TensorColumn(name, data_type, tensor),
                       datatype or natural_datatype(data_type), batched, binary)


def serve_identity(tensor: InferInput, output: InferRequestedOutput) -> InferResult:
    """What a Triton identity model answers: ``output`` holds ``tensor`` as the server got it.

    The request body is built by tritonclient (as the transport does) and read like the server
    reads it; the answer uses the form ``output`` asks for, and tritonclient parses it."""
    body, json_size = InferenceServerClient.generate_request_body([tensor], outputs=[output])
    header = json.loads(body[:json_size] if json_size is not None else body)
    (received,) = header["inputs"]
    (requested,) = header["outputs"]
    answer = {"name": requested["name"], "datatype": received["datatype"],
              "shape": received["shape"]}
    binary_in = "binary_data_size" in received.get("parameters", {})
    binary_out = requested.get("parameters", {}).get("binary_data", False)
    assert binary_in == binary_out, "the codecs use one form for both directions"
    if binary_out:
        raw = body[json_size:]
        assert len(raw) == received["parameters"]["binary_data_size"]
        answer["parameters"] = {"binary_data_size": len(raw)}
        head = json.dumps({"outputs": [answer]}).encode()
        return InferResult.from_response_body(head + raw, header_length=len(head))
    answer["data"] = received["data"]
    return InferResult.from_response_body(json.dumps({"outputs": [answer]}).encode())


def wire_array(tensor: InferInput) -> np.ndarray:
    """The values of an encoded tensor, as Triton receives them (through tritonclient)."""
    binary = tensor._get_binary_data() is not None
    result = serve_identity(tensor, InferRequestedOutput("ECHO", binary_data=binary))
    array = result.as_numpy("ECHO")
    if array.dtype == np.object_:  # JSON carries BYTES as text; the server reads UTF-8 bytes
        array = np.vectorize(lambda v: v.encode("utf-8") if isinstance(v, str) else v,
                             otypes=[np.object_])(array) if array.size else array
    return array


def round_trip(codec_in: InputCodec, value, codec_out: OutputCodec | None = None):
    """Encode ``value``, let an identity model echo it, decode the answer."""
    if codec_out is None:
        codec_out = OutputCodec(codec_in.column, codec_in.datatype, codec_in.batched,
                                codec_in.binary)
    tensor = codec_in.encode(value)
    result = serve_identity(tensor, InferRequestedOutput(codec_out.column.tensor,
                                                         binary_data=codec_out.binary))
    return codec_out.decode(result.as_numpy(codec_out.column.tensor), "mdl")


def assert_plain_python(value) -> None:
    """Nested lists of plain Python values, nothing from numpy."""
    if isinstance(value, list):
        for item in value:
            assert_plain_python(item)
    else:
        assert type(value) in (bool, int, float, str, bytes, Dec), type(value)


def flatten(value) -> list:
    if isinstance(value, list):
        return [item for inner in value for item in flatten(inner)]
    return [value]


def is_utf8(value) -> bool:
    """Whether JSON can carry the value: every bytes item in it is valid UTF-8."""
    for item in flatten(list(value) if isinstance(value, tuple) else value):
        if isinstance(item, bytes):
            try:
                item.decode("utf-8")
            except UnicodeDecodeError:
                return False
    return True


def f32(value: float) -> float:
    return float(np.float32(value))


def f16(value: float) -> float:
    return float(np.float16(value))


def bits_of(value: float) -> int:
    return struct.unpack("<I", struct.pack("<f", value))[0]


def float_of(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def _grid_value(bits: int) -> Fraction:
    """Exact magnitude of a non-negative float32 bit pattern; the pattern of infinity counts
    as 2**128, the next step of the grid (IEEE rounding overflows to it)."""
    exponent, mantissa = bits >> 23, bits & 0x7FFFFF
    if exponent == 0:
        return Fraction(mantissa, 2**149)
    return (1 + Fraction(mantissa, 2**23)) * Fraction(2) ** (exponent - 127)


def bfloat16_reference(value: float) -> int:
    """Bits (as float32) of the bfloat16 nearest to a float32 ``value``, ties to even, computed
    with exact fractions: an oracle independent of the codec's bit arithmetic."""
    bits = bits_of(value)
    sign, magnitude = bits & 0x80000000, bits & 0x7FFFFFFF
    if magnitude >= 0x7F800000:  # infinity or NaN
        return bits
    low = magnitude & 0xFFFF0000
    high = low + 0x10000
    exact = _grid_value(magnitude)
    below, above = exact - _grid_value(low), _grid_value(high) - exact
    if below < above or (below == above and not low & 0x10000):
        return sign | low
    return sign | high


# --- column types --------------------------------------------------------------------------------

@pytest.mark.parametrize("data_type, datatype, is_text", SCALAR_TYPES, ids=SCALAR_IDS)
def test_scalar_column(data_type, datatype, is_text):
    col = TensorColumn("x", data_type)
    assert col.rank == 0
    assert col.is_text is is_text
    assert col.is_decimal is (datatype == "UINT64")
    assert col.element_type == data_type
    for direction in ("input", "output"):
        assert col.accepts(datatype, direction, False)


@pytest.mark.parametrize("data_type, datatype, is_text", SCALAR_TYPES, ids=SCALAR_IDS)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_array_column(data_type, datatype, is_text, depth):
    col = TensorColumn("x", array_of(data_type, depth))
    assert col.rank == depth
    assert col.element_type == data_type
    assert col.is_text is is_text
    for direction in ("input", "output"):
        assert col.accepts(datatype, direction, False)


@pytest.mark.parametrize("data_type, inputs, outputs", ACCEPTED,
                         ids=[sql_type(t) for t, _, _ in ACCEPTED])
@pytest.mark.parametrize("depth", [0, 2])
def test_accepted_datatypes(data_type, inputs, outputs, depth):
    """Exactly the datatypes of the docs' table, for scalars and ARRAYs alike."""
    col = TensorColumn("x", array_of(data_type, depth))
    assert {d for d in ALL_DATATYPES if col.accepts(d, "input", False)} == inputs
    assert {d for d in ALL_DATATYPES if col.accepts(d, "output", False)} == outputs
    # 'half-precision-inputs' adds FP16 and BF16 inputs to FLOAT columns, nothing else.
    extra = {"FP16", "BF16"} if natural_datatype(data_type) == "FP32" else set()
    assert {d for d in ALL_DATATYPES if col.accepts(d, "input", True)} == inputs | extra
    assert {d for d in ALL_DATATYPES if col.accepts(d, "output", True)} == outputs


@pytest.mark.parametrize("datatype", ["fp32", "STRING", "TYPE_FP32", "", "FLOAT"])
def test_unknown_datatypes_never_accepted(datatype):
    for data_type, _, _ in SCALAR_TYPES:
        for direction in ("input", "output"):
            assert not TensorColumn("x", data_type).accepts(datatype, direction, True)


@pytest.mark.parametrize("data_type, direction, expected", [
    (D.FLOAT(), "input", "FP32, or FP16/BF16 with 'half-precision-inputs' = 'true'"),
    (D.FLOAT(), "output", "FP16, or BF16, or FP32"),
    (D.ARRAY(D.FLOAT()), "input", "FP32, or FP16/BF16 with 'half-precision-inputs' = 'true'"),
    (D.BIGINT(), "input", "INT64, or UINT32, or UINT64"),
    (D.BIGINT(), "output", "INT64, or UINT32"),
    (D.SMALLINT(), "input", "INT16, or UINT8"),
    (D.INT(), "output", "INT32, or UINT16"),
    (D.DECIMAL(20, 0), "output", "UINT64"),
    (D.DECIMAL(19, 0), "output", "UINT64 into DECIMAL(20, 0) or wider"),
    (D.ARRAY(D.DECIMAL(5, 0)), "output", "UINT64 into DECIMAL(20, 0) or wider"),
    (D.DECIMAL(5, 0), "input", "UINT64"),
    (D.STRING(), "input", "BYTES"),
    (D.BOOLEAN(), "output", "BOOL"),
])
def test_expected_datatypes(data_type, direction, expected):
    assert TensorColumn("x", data_type).expected_datatypes(direction) == expected


def test_tensor_defaults_to_the_column_name_case_preserved():
    col = TensorColumn("INPUT__0", D.FLOAT())
    assert col.name == col.tensor == "INPUT__0"
    assert encoder(D.FLOAT(), name="INPUT__0").encode(1.0).name() == "INPUT__0"


def test_tensor_differs_from_column():
    col = TensorColumn("score", D.FLOAT(), "OUTPUT__0")
    assert (col.name, col.tensor) == ("score", "OUTPUT__0")
    assert encoder(D.FLOAT(), name="score", tensor="INPUT__0").encode(1.0).name() == "INPUT__0"


@pytest.mark.parametrize("col, expected", [
    (TensorColumn("tokens", D.ARRAY(D.STRING())), "'tokens' ARRAY<STRING>"),
    (TensorColumn("x", D.INT(False)), "'x' INT NOT NULL"),
    (TensorColumn("x", D.DECIMAL(20, 0), "IN"), "'x' DECIMAL(20, 0) -> tensor 'IN'"),
    (TensorColumn("Score", D.FLOAT(), "score"), "'Score' FLOAT -> tensor 'score'"),
    (TensorColumn("x", D.BYTES(), "x"), "'x' BYTES"),
])
def test_describe(col, expected):
    assert col.describe() == expected


@pytest.mark.parametrize("data_type", [
    D.DECIMAL(10, 2),
    D.DECIMAL(20, 1),
    D.DECIMAL(38, 18),
    D.DATE(),
    D.TIME(),
    D.TIMESTAMP(3),
    D.TIMESTAMP_LTZ(3),
    D.MAP(D.STRING(), D.INT()),
    D.ROW([D.FIELD("a", D.INT())]),
    D.MULTISET(D.INT()),
    D.NULL(),
    D.ARRAY(D.DECIMAL(10, 2)),
    D.ARRAY(D.ARRAY(D.DATE())),
    D.ARRAY(D.MAP(D.INT(), D.INT())),
    D.ARRAY(D.ROW([D.FIELD("a", D.FLOAT())])),
], ids=str)
def test_unsupported_types_rejected_at_construction(data_type):
    with pytest.raises(TritonConfigError) as info:
        TensorColumn("my_column", data_type)
    message = str(info.value)
    assert "'my_column'" in message
    assert "no Triton tensor datatype" in message
    assert "Supported:" in message
    assert "ARRAY" in message
    assert "DECIMAL(p, 0)" in message


@pytest.mark.parametrize("precision", [1, 10, 19, 20, 38])
def test_decimal_with_scale_zero_supported(precision):
    col = TensorColumn("x", D.ARRAY(D.DECIMAL(precision, 0)))
    assert col.is_decimal
    assert col.rank == 1


def test_column_is_immutable_and_comparable():
    col = TensorColumn("x", D.INT())
    assert col == TensorColumn("x", D.INT())
    assert col == TensorColumn("x", D.INT(), "x")
    assert col != TensorColumn("y", D.INT())
    assert col != TensorColumn("x", D.INT(), "X")
    with pytest.raises(AttributeError):
        col.name = "z"  # type: ignore[misc]


@pytest.mark.parametrize("data_type, text", [
    (D.BOOLEAN(), "BOOLEAN"),
    (D.TINYINT(), "TINYINT"),
    (D.SMALLINT(), "SMALLINT"),
    (D.INT(), "INT"),
    (D.BIGINT(), "BIGINT"),
    (D.FLOAT(), "FLOAT"),
    (D.DOUBLE(), "DOUBLE"),
    (D.DECIMAL(20, 0), "DECIMAL(20, 0)"),
    (D.STRING(), "STRING"),
    (D.VARCHAR(10), "VARCHAR(10)"),
    (D.CHAR(3), "CHAR(3)"),
    (D.BYTES(), "BYTES"),
    (D.VARBINARY(8), "VARBINARY(8)"),
    (D.BINARY(4), "BINARY(4)"),
    (D.INT(False), "INT NOT NULL"),
    (D.ARRAY(D.FLOAT()), "ARRAY<FLOAT>"),
    (D.ARRAY(D.ARRAY(D.STRING(False)), False), "ARRAY<ARRAY<STRING NOT NULL>> NOT NULL"),
])
def test_sql_type(data_type, text):
    assert sql_type(data_type) == text


# --- encode: scalars -----------------------------------------------------------------------------

@pytest.mark.parametrize("data_type, value, binary", [
    (t, v, binary) for t, v in SAMPLES for binary in (True, False) if binary or is_utf8(v)],
    ids=repr)
@pytest.mark.parametrize("dims, batched, shape", [
    ((1,), False, [1]),
    ((1,), True, [1, 1]),
    ((), False, []),
    ((), True, [1]),
    ((1, 1), False, [1, 1]),
    ((1, 1), True, [1, 1, 1]),
])
def test_encode_scalar(data_type, value, binary, dims, batched, shape):
    codec = encoder(data_type, dims=dims, batched=batched, binary=binary, name="in")
    tensor = codec.encode(value)
    assert isinstance(tensor, InferInput)
    assert tensor.name() == "in"
    assert tensor.datatype() == codec.datatype
    assert tensor.shape() == shape
    values = wire_array(tensor)
    assert list(values.shape) == shape
    expected = value.encode("utf-8") if isinstance(value, str) else value
    if data_type == D.FLOAT():
        expected = np.float32(value)
    assert values.reshape(-1).tolist() == [expected]


@pytest.mark.parametrize("dims, batched, shape", [
    ((-1,), False, [1]),  # a variable dim takes the scalar as one element
    ((-1,), True, [1, 1]),
    ((1, -1), True, [1, 1, 1]),
    ((-1, -1, 1), False, [1, 1, 1]),
])
def test_encode_scalar_variable_dims_sent_as_one(dims, batched, shape):
    codec = HttpEncoder(TensorColumn("x", D.FLOAT()), "FP32", 0, tuple(1 for _ in dims),
                       batched, True)
    assert codec.encode(2.5).shape() == shape


@pytest.mark.parametrize("value, expected", [
    (True, b"\x01"),
    (False, b"\x00"),
])
def test_encode_bool_bytes(value, expected):
    assert encoder(D.BOOLEAN()).encode(value)._get_binary_data() == expected


@pytest.mark.parametrize("data_type, datatype, value, dtype", [
    (D.TINYINT(), "INT8", -5, "<i1"),
    (D.SMALLINT(), "INT16", 1234, "<i2"),
    (D.INT(), "INT32", 123456, "<i4"),
    (D.BIGINT(), "INT64", 2**40 + 3, "<i8"),
    (D.SMALLINT(), "UINT8", 200, "<u1"),
    (D.INT(), "UINT16", 60000, "<u2"),
    (D.BIGINT(), "UINT32", 4_000_000_000, "<u4"),
    (D.BIGINT(), "UINT64", 2**63 - 1, "<u8"),
    (D.DECIMAL(20, 0), "UINT64", Dec(2**64 - 2), "<u8"),
    (D.FLOAT(), "FP32", 3.25, "<f4"),
    (D.DOUBLE(), "FP64", 3.25, "<f8"),
    (D.FLOAT(), "FP16", 3.25, "<f2"),
])
def test_encode_numeric_little_endian(data_type, datatype, value, dtype):
    tensor = encoder(data_type, datatype, batched=True).encode(value)
    assert tensor.datatype() == datatype
    assert tensor._get_binary_data() == np.array([int(value) if isinstance(value, Dec) else value],
                                                 dtype=dtype).tobytes()
    assert tensor._get_tensor()["parameters"] == {"binary_data_size": np.dtype(dtype).itemsize}
    assert "data" not in tensor._get_tensor()


def test_encode_bf16_sends_the_upper_half_of_the_float32():
    tensor = encoder(D.FLOAT(), "BF16").encode(3.25)
    assert tensor.datatype() == "BF16"
    assert tensor._get_binary_data() == struct.pack("<f", 3.25)[2:]


def test_encode_string_as_utf8_length_prefixed():
    tensor = encoder(D.STRING()).encode("héllo")
    payload = "héllo".encode()
    assert tensor._get_binary_data() == len(payload).to_bytes(4, "little") + payload


def test_encode_bytes_raw():
    raw = bytes(range(256))
    tensor = encoder(D.BYTES()).encode(raw)
    assert tensor.datatype() == "BYTES"
    assert tensor._get_binary_data() == len(raw).to_bytes(4, "little") + raw


@pytest.mark.parametrize("value", [bytearray(b"\x00ab"), memoryview(b"\x00ab")])
def test_encode_bytes_like(value):
    assert wire_array(encoder(D.VARBINARY(3)).encode(value))[0] == b"\x00ab"


def test_encode_str_into_bytes_column_is_utf8():
    assert wire_array(encoder(D.BYTES()).encode("é"))[0] == "é".encode()


def test_encode_numpy_scalars():
    assert wire_array(encoder(D.FLOAT()).encode(np.float32(2.5)))[0] == 2.5
    assert wire_array(encoder(D.BIGINT()).encode(np.int64(7)))[0] == 7
    assert wire_array(encoder(D.SMALLINT(), "UINT8").encode(np.int16(255)))[0] == 255


def test_encode_bool_into_int_column():
    assert wire_array(encoder(D.INT()).encode(True))[0] == 1


def test_encode_int_into_float_column():
    tensor = encoder(D.DOUBLE()).encode(3)
    assert tensor.datatype() == "FP64"
    assert wire_array(tensor)[0] == 3.0


@pytest.mark.parametrize("value, expected", [
    (Dec(0), 0),
    (Dec(2**64 - 1), 2**64 - 1),
    (Dec("1E+2"), 100),
    (Dec("2.000"), 2),
    (Dec("-0"), 0),
    (2**63, 2**63),  # a plain int is fine too
])
def test_encode_decimal(value, expected):
    tensor = encoder(D.DECIMAL(20, 0)).encode(value)
    assert tensor.datatype() == "UINT64"
    assert wire_array(tensor).tolist() == [expected]


# --- encode: JSON form ('binary-data' = 'false') -------------------------------------------------

@pytest.mark.parametrize("data_type, datatype, value, data", [
    (D.BOOLEAN(), "BOOL", True, [True]),
    (D.TINYINT(), "INT8", -5, [-5]),
    (D.SMALLINT(), "INT16", -300, [-300]),
    (D.SMALLINT(), "UINT8", 255, [255]),
    (D.INT(), "INT32", -(2**31), [-(2**31)]),
    (D.INT(), "UINT16", 65535, [65535]),
    (D.BIGINT(), "INT64", 2**63 - 1, [2**63 - 1]),
    (D.BIGINT(), "UINT32", 2**32 - 1, [2**32 - 1]),
    (D.BIGINT(), "UINT64", 7, [7]),
    (D.DECIMAL(20, 0), "UINT64", Dec(2**64 - 1), [2**64 - 1]),
    (D.FLOAT(), "FP32", 0.1, [f32(0.1)]),
    (D.DOUBLE(), "FP64", 0.1, [0.1]),
    (D.STRING(), "BYTES", "héllo", ["héllo"]),
    (D.BYTES(), "BYTES", b"raw", ["raw"]),
    (D.ARRAY(D.INT()), "INT32", [1, 2, 3], [1, 2, 3]),
    (D.ARRAY(D.ARRAY(D.STRING())), "BYTES", [["a", "b"], ["c", "d"]], ["a", "b", "c", "d"]),
    (D.ARRAY(D.ARRAY(D.BOOLEAN())), "BOOL", [[True], [False]], [True, False]),
    (D.ARRAY(D.FLOAT()), "FP32", [], []),
], ids=repr)
def test_encode_json(data_type, datatype, value, data):
    tensor = encoder(data_type, datatype, binary=False, batched=True).encode(value)
    assert tensor._get_binary_data() is None
    sent = tensor._get_tensor()
    assert "parameters" not in sent  # no binary_data_size
    assert sent["datatype"] == datatype
    assert sent["data"] == data
    assert [type(v) for v in sent["data"]] == [type(v) for v in data]  # plain Python values
    json.dumps(sent)  # serialisable as is


def test_encode_json_reaches_the_server_as_the_same_values():
    tensor = encoder(D.ARRAY(D.ARRAY(D.INT())), binary=False, leading_ones=1).encode(
        [[1, 2], [3, 4]])
    assert tensor.shape() == [1, 2, 2]
    assert wire_array(tensor).tolist() == [[[1, 2], [3, 4]]]


@pytest.mark.parametrize("data_type, value", [
    (D.BYTES(), b"\xff\xfe"),
    (D.VARBINARY(4), b"ok\x80"),
    (D.ARRAY(D.BYTES()), [b"fine", b"\xc3"]),
])
def test_encode_json_rejects_non_utf8_bytes(data_type, value):
    codec = encoder(data_type, binary=False, name="blob")
    with pytest.raises(TritonRequestError) as info:
        codec.encode(value)
    message = str(info.value)
    assert "'blob'" in message
    assert "BYTES" in message
    assert "'binary-data' = 'false'" in message
    assert "UTF-8" in message
    assert "\\x" not in message and repr(value) not in message  # the value is not repeated
    assert encoder(data_type, binary=True).encode(value)._get_binary_data()  # binary is fine


def test_encode_json_bf16_rejected():
    with pytest.raises(TritonRequestError) as info:
        encoder(D.FLOAT(), "BF16", binary=False, name="h").encode(1.0)
    message = str(info.value)
    assert "'h'" in message
    assert "BF16" in message
    assert "'binary-data' = 'false'" in message


# --- encode: arrays ------------------------------------------------------------------------------

ARRAY_VALUES = [
    (D.ARRAY(D.FLOAT()), [1.0, 2.0, 3.0], [3]),
    (D.ARRAY(D.FLOAT()), (1.0, 2.0), [2]),
    (D.ARRAY(D.FLOAT()), [0.5], [1]),
    (D.ARRAY(D.INT()), [1, 2, 3, 4], [4]),
    (D.ARRAY(D.BIGINT()), [2**62], [1]),
    (D.ARRAY(D.BOOLEAN()), [True, False, True], [3]),
    (D.ARRAY(D.DOUBLE()), np.arange(5, dtype=np.float64), [5]),
    (D.ARRAY(D.DECIMAL(20, 0)), [Dec(1), Dec(2)], [2]),
    (D.ARRAY(D.ARRAY(D.INT())), [[1, 2], [3, 4], [5, 6]], [3, 2]),
    (D.ARRAY(D.ARRAY(D.FLOAT())), [[1.0, 2.0, 3.0]], [1, 3]),
    (D.ARRAY(D.ARRAY(D.ARRAY(D.SMALLINT()))), [[[1], [2]], [[3], [4]]], [2, 2, 1]),
    (D.ARRAY(D.STRING()), ["a", "bc", "déf"], [3]),
    (D.ARRAY(D.BYTES()), [b"\x00", b"\x01\x02"], [2]),
    (D.ARRAY(D.STRING()), ("a", "b"), [2]),
    (D.ARRAY(D.ARRAY(D.STRING())), [["a", "b"], ["c", "d"], ["e", "f"]], [3, 2]),
    (D.ARRAY(D.ARRAY(D.BYTES())), [[b"a"], [b"b"]], [2, 1]),
]


@pytest.mark.parametrize("data_type, value, shape", ARRAY_VALUES, ids=repr)
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("leading_ones", [0, 2])
def test_encode_array(data_type, value, shape, batched, leading_ones):
    codec = encoder(data_type, batched=batched, leading_ones=leading_ones, name="arr")
    tensor = codec.encode(value)
    prefix = [1] * (int(batched) + leading_ones)
    assert tensor.name() == "arr"
    assert tensor.datatype() == codec.datatype
    assert tensor.shape() == [*prefix, *shape]
    values = wire_array(tensor)
    assert list(values.shape) == [*prefix, *shape]
    values = values.reshape(shape)
    expected = np.array(value, dtype=np.object_ if codec.datatype == "BYTES" else None)
    if codec.column.is_text:
        expected = np.vectorize(lambda s: s.encode("utf-8"), otypes=[np.object_])(expected)
    if codec.column.is_decimal:
        expected = expected.astype(np.uint64)
    assert values.tolist() == expected.tolist()


@pytest.mark.parametrize("data_type", [D.ARRAY(D.FLOAT()), D.ARRAY(D.STRING()),
                                       D.ARRAY(D.SMALLINT())])
@pytest.mark.parametrize("batched, leading_ones, shape", [
    (False, 0, [0]), (True, 0, [1, 0]), (True, 1, [1, 1, 0]),
])
@pytest.mark.parametrize("binary", [True, False])
def test_encode_empty_array(data_type, batched, leading_ones, shape, binary):
    tensor = encoder(data_type, batched=batched, leading_ones=leading_ones,
                     binary=binary).encode([])
    assert tensor.shape() == shape
    if binary:
        assert tensor._get_binary_data() == b""
    else:
        assert tensor._get_tensor()["data"] == []
    assert wire_array(tensor).size == 0


@pytest.mark.parametrize("data_type, value, dims, shape", [
    (D.ARRAY(D.ARRAY(D.INT())), [], (-1, -1), [0, 0]),
    (D.ARRAY(D.ARRAY(D.INT())), [], (-1, 3), [0, 3]),
    (D.ARRAY(D.ARRAY(D.STRING())), [], (-1, 4), [0, 4]),
    (D.ARRAY(D.ARRAY(D.INT())), [[]], (-1, -1), [1, 0]),
    (D.ARRAY(D.ARRAY(D.ARRAY(D.FLOAT()))), [[]], (-1, -1, 2), [1, 0, 2]),
    (D.ARRAY(D.ARRAY(D.ARRAY(D.FLOAT()))), [], (-1, 5, 2), [0, 5, 2]),
])
def test_encode_empty_nested_array_takes_the_model_dims(data_type, value, dims, shape):
    tensor = encoder(data_type, dims=dims, batched=True).encode(value)
    assert tensor.shape() == [1, *shape]


@pytest.mark.parametrize("data_type, value, dims", [
    (D.ARRAY(D.FLOAT()), [1.0, 2.0, 3.0], (3,)),
    (D.ARRAY(D.ARRAY(D.INT())), [[1, 2], [3, 4]], (2, -1)),
    (D.ARRAY(D.ARRAY(D.INT())), [[1, 2], [3, 4]], (-1, 2)),
    (D.ARRAY(D.ARRAY(D.INT())), [[1, 2], [3, 4]], (2, 2)),
    (D.ARRAY(D.STRING()), ["a"], (1,)),
    (D.ARRAY(D.ARRAY(D.STRING())), [["a", "b", "c"]], (-1, 3)),
])
def test_encode_matching_fixed_dims(data_type, value, dims):
    assert encoder(data_type, dims=dims).encode(value).shape() == list(np.shape(value))


@pytest.mark.parametrize("data_type, value, dims, shape", [
    (D.ARRAY(D.FLOAT()), [1.0, 2.0], (3,), "[2]"),
    (D.ARRAY(D.FLOAT()), [], (3,), "[0]"),
    (D.ARRAY(D.ARRAY(D.INT())), [[1, 2], [3, 4]], (-1, 3), "[2, 2]"),
    (D.ARRAY(D.ARRAY(D.INT())), [[1, 2]], (2, -1), "[1, 2]"),
    (D.ARRAY(D.STRING()), ["a", "b"], (1,), "[2]"),
    (D.ARRAY(D.ARRAY(D.ARRAY(D.BOOLEAN()))), [[[True]]], (1, 1, 2), "[1, 1, 1]"),
])
def test_encode_value_shape_must_match_fixed_dims(data_type, value, dims, shape):
    with pytest.raises(TritonRequestError) as info:
        encoder(data_type, dims=dims, name="my_column").encode(value)
    message = str(info.value)
    assert "'my_column'" in message
    assert f"dims {list(dims)}" in message
    assert "-1 is any size" in message
    assert f"shape {shape}" in message


# --- encode: rejected values ---------------------------------------------------------------------

@pytest.mark.parametrize("data_type", [t for t, _, _ in SCALAR_TYPES] + [
    D.ARRAY(D.FLOAT()), D.ARRAY(D.STRING()), D.ARRAY(D.ARRAY(D.INT())),
    D.ARRAY(D.DECIMAL(20, 0)),
], ids=str)
@pytest.mark.parametrize("batched", [False, True])
def test_encode_null_rejected(data_type, batched):
    with pytest.raises(TritonRequestError) as info:
        encoder(data_type, batched=batched, name="my_column").encode(None)
    message = str(info.value)
    assert "'my_column'" in message
    assert "NULL" in message


@pytest.mark.parametrize("data_type, value", [
    (D.ARRAY(D.STRING()), ["a", None]),
    (D.ARRAY(D.BYTES()), [None]),
    (D.ARRAY(D.ARRAY(D.STRING())), [["a"], [None]]),
    (D.ARRAY(D.INT()), [1, None]),
    (D.ARRAY(D.FLOAT()), [None, 1.0]),
    (D.ARRAY(D.ARRAY(D.DOUBLE())), [[1.0, None]]),
    (D.ARRAY(D.DECIMAL(20, 0)), [Dec(1), None]),
    (D.ARRAY(D.BOOLEAN()), [None]),
], ids=repr)
@pytest.mark.parametrize("binary", [True, False])
def test_encode_null_element_rejected(data_type, value, binary):
    with pytest.raises(TritonRequestError) as info:
        encoder(data_type, binary=binary, name="my_column").encode(value)
    message = str(info.value)
    assert "'my_column'" in message
    assert "NULL" in message


RAGGED = [
    (D.ARRAY(D.ARRAY(D.INT())), [[1, 2], [3]]),
    (D.ARRAY(D.ARRAY(D.FLOAT())), [[1.0], [2.0, 3.0], [4.0]]),
    (D.ARRAY(D.ARRAY(D.STRING())), [["a"], ["b", "c"]]),
    (D.ARRAY(D.ARRAY(D.BYTES())), [[b"a", b"b"], []]),
    (D.ARRAY(D.ARRAY(D.ARRAY(D.INT()))), [[[1, 2]], [[3]]]),
    (D.ARRAY(D.ARRAY(D.ARRAY(D.STRING()))), [[["a", "b"]], [["c"]]]),
    (D.ARRAY(D.ARRAY(D.INT())), [[1, 2], 3]),
    (D.ARRAY(D.ARRAY(D.DECIMAL(20, 0))), [[Dec(1)], []]),
]


@pytest.mark.parametrize("data_type, value", RAGGED, ids=repr)
@pytest.mark.parametrize("batched", [False, True])
def test_encode_ragged_rejected(data_type, value, batched):
    with pytest.raises(TritonRequestError) as info:
        encoder(data_type, batched=batched, name="my_column").encode(value)
    assert "'my_column'" in str(info.value)


@pytest.mark.parametrize("data_type, value", [
    (D.ARRAY(D.ARRAY(D.INT())), [[1, 2], None]),
    (D.ARRAY(D.ARRAY(D.INT())), [None]),
    (D.ARRAY(D.ARRAY(D.ARRAY(D.INT()))), [[[1]], [None]]),
    (D.ARRAY(D.ARRAY(D.STRING())), [["a"], None]),
])
def test_null_inner_array_is_named_as_null(data_type, value):
    with pytest.raises(TritonRequestError, match="Column 'x' holds a NULL array element"):
        encoder(data_type).encode(value)


@pytest.mark.parametrize("data_type", [D.ARRAY(D.ARRAY(D.STRING())),
                                       D.ARRAY(D.ARRAY(D.INT()))])
def test_ragged_message_explains(data_type):
    with pytest.raises(TritonRequestError, match="ragged"):
        encoder(data_type).encode([["a"], ["b", "c"]] if natural_datatype(
            data_type.element_type.element_type) == "BYTES" else [[1], [2, 3]])


@pytest.mark.parametrize("value", [
    ((1, 2), (3,)),
    [(1, 2), (3,)],
    [np.array([1, 2]), np.array([3])],
], ids=["tuples", "list of tuples", "list of arrays"])
def test_encode_ragged_tuples_rejected(value):
    with pytest.raises(TritonRequestError, match="ragged"):
        encoder(D.ARRAY(D.ARRAY(D.INT()))).encode(value)


@pytest.mark.parametrize("data_type, value", [
    (D.INT(), [1, 2]),
    (D.STRING(), ["a", "b"]),
    (D.DECIMAL(20, 0), [Dec(1)]),
    (D.ARRAY(D.INT()), [[1], [2]]),
    (D.ARRAY(D.STRING()), [["a"]]),
    (D.ARRAY(D.ARRAY(D.INT())), [1, 2]),
    (D.ARRAY(D.ARRAY(D.STRING())), ["a", "b"]),
    (D.ARRAY(D.INT()), 5),
    (D.ARRAY(D.STRING()), "abc"),
    (D.ARRAY(D.BYTES()), b"abc"),
])
def test_encode_wrong_rank_rejected(data_type, value):
    with pytest.raises(TritonRequestError) as info:
        encoder(data_type, name="my_column").encode(value)
    message = str(info.value)
    assert "'my_column'" in message
    assert "dimension" in message


@pytest.mark.parametrize("data_type, value", [
    (D.INT(), "abc"),
    (D.INT(), 1.5),
    (D.BIGINT(), 2.0),
    (D.FLOAT(), "not a number"),
    (D.BIGINT(), object()),
    (D.ARRAY(D.DOUBLE()), ["x", "y"]),
    (D.ARRAY(D.INT()), [1, 2.5]),
    (D.STRING(), 5),
    (D.ARRAY(D.BYTES()), [b"a", 1.0]),
    (D.DECIMAL(20, 0), 1.0),
])
def test_encode_unconvertible_rejected(data_type, value):
    codec = encoder(data_type, name="my_column")
    with pytest.raises(TritonRequestError) as info:
        codec.encode(value)
    message = str(info.value)
    assert "'my_column'" in message
    assert codec.datatype in message


@pytest.mark.parametrize("data_type, datatype, low, high", INTEGER_RANGES, ids=RANGE_IDS)
@pytest.mark.parametrize("batched", [False, True])
def test_encode_integer_range_limits_accepted(data_type, datatype, low, high, batched):
    convert = Dec if natural_datatype(data_type) == "UINT64" else int
    for value in (low, high):
        tensor = encoder(data_type, datatype, batched=batched).encode(convert(value))
        assert wire_array(tensor).reshape(-1).tolist() == [value]
        tensor = encoder(D.ARRAY(data_type), datatype, batched=batched).encode([convert(value)])
        assert wire_array(tensor).reshape(-1).tolist() == [value]
    if high < 2**63:  # an array from low to high beyond 2**63: test_..._spanning_2_63 (bug)
        tensor = encoder(D.ARRAY(data_type), datatype).encode([convert(low), convert(high)])
        assert wire_array(tensor).tolist() == [low, high]


@pytest.mark.parametrize("data_type, datatype, low, high", INTEGER_RANGES, ids=RANGE_IDS)
@pytest.mark.parametrize("which", ["below", "above"])
@pytest.mark.parametrize("binary", [True, False])
def test_encode_integer_out_of_range_rejected(data_type, datatype, low, high, which, binary):
    """An integer outside the tensor datatype's range is refused, never wrapped."""
    bad = low - 1 if which == "below" else high + 1
    convert = Dec if natural_datatype(data_type) == "UINT64" else int
    values = [(data_type, convert(bad)), (D.ARRAY(data_type), [convert(bad)]),
              (D.ARRAY(D.ARRAY(data_type)), [[convert(bad)]])]
    if (low, bad) != (-(2**63), 2**63):  # that pair: test_..._spanning_2_63 (bug)
        values.append((D.ARRAY(data_type), [convert(low), convert(bad)]))
    for column_type, value in values:
        with pytest.raises(TritonRequestError) as info:
            encoder(column_type, datatype, binary=binary, name="my_column").encode(value)
        message = str(info.value)
        assert "'my_column'" in message
        assert f"{bad} is outside the {datatype} range [{low}, {high}]" in message


@pytest.mark.parametrize("value", [1, 2**63 - 1])
def test_encode_uint64_array_below_2_63(value):
    tensor = encoder(D.ARRAY(D.DECIMAL(20, 0))).encode([Dec(0), Dec(value)])
    assert wire_array(tensor).tolist() == [0, value]


@pytest.mark.parametrize("value", [[2**63, 2**64 - 1], [2**64 - 1, 2**64 - 1]])
def test_encode_uint64_array_above_2_63(value):
    tensor = encoder(D.ARRAY(D.DECIMAL(20, 0))).encode([Dec(v) for v in value])
    assert wire_array(tensor).tolist() == value



# numpy 1.x turns Python ints on both sides of 2**63 into float64; they must stay exact.
@pytest.mark.parametrize("data_type, datatype, value, expected", [
    (D.ARRAY(D.DECIMAL(20, 0)), "UINT64", [Dec(0), Dec(2**63)], [0, 2**63]),
    (D.ARRAY(D.DECIMAL(20, 0)), "UINT64", [Dec(2**64 - 1), Dec(0)], [2**64 - 1, 0]),
    (D.ARRAY(D.ARRAY(D.DECIMAL(20, 0))), "UINT64", [[Dec(1)], [Dec(2**64 - 1)]],
     [[1], [2**64 - 1]]),
    (D.ARRAY(D.DECIMAL(38, 0)), "UINT64", [0, 2**63], [0, 2**63]),  # plain ints, too
], ids=["0 and 2**63", "max and 0", "nested", "ints"])
def test_encode_uint64_array_spanning_2_63(data_type, datatype, value, expected):
    tensor = encoder(data_type, datatype, batched=True).encode(value)
    assert wire_array(tensor)[0].tolist() == expected
    assert round_trip(encoder(data_type, datatype), value) == [
        Dec(v) if not isinstance(v, list) else [Dec(i) for i in v] for v in expected]


@pytest.mark.parametrize("data_type, datatype, value, bad", [
    (D.ARRAY(D.BIGINT()), "INT64", [-(2**63), 2**63], 2**63),
    (D.ARRAY(D.DECIMAL(20, 0)), "UINT64", [Dec(-1), Dec(2**63)], -1),
    (D.ARRAY(D.BIGINT()), "UINT64", [-1, 2**63], -1),
], ids=["INT64", "DECIMAL->UINT64", "BIGINT->UINT64"])
def test_encode_out_of_range_spanning_2_63_names_the_value(data_type, datatype, value, bad):
    with pytest.raises(TritonRequestError) as info:
        encoder(data_type, datatype).encode(value)
    assert f"{bad} is outside the {datatype} range" in str(info.value)


@pytest.mark.parametrize("value", [Dec("1.5"), Dec("-0.5"), Dec("NaN"), Dec("Infinity"),
                                   Dec("-Infinity"), Dec("sNaN"), Dec("1E-30")])
def test_encode_non_integral_decimal_rejected(value):
    with pytest.raises(TritonRequestError) as info:
        encoder(D.DECIMAL(20, 0), name="my_column").encode(value)
    message = str(info.value)
    assert "'my_column'" in message
    assert "is not an integer" in message
    with pytest.raises(TritonRequestError):
        encoder(D.ARRAY(D.DECIMAL(20, 0))).encode([Dec(1), value])


# --- encode: half precision ----------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (1.0, 1.0),
    (0.1, f16(0.1)),
    (65504.0, 65504.0),  # the largest finite FP16
    (65519.0, 65504.0),  # rounds down to it
    (65520.0, math.inf),  # rounds up to infinity
    (1e6, math.inf),
    (-1e6, -math.inf),
    (3.4e38, math.inf),
    (1e-8, 0.0),  # below the smallest subnormal
    (6e-8, f16(6e-8)),  # subnormal
    (-0.0, -0.0),
])
def test_encode_fp16_rounds_and_overflows_to_inf(value, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "overflow encountered in cast"
        tensor = encoder(D.FLOAT(), "FP16").encode(value)
    (sent,) = wire_array(tensor).tolist()
    assert sent == expected
    assert math.copysign(1, sent) == math.copysign(1, expected)


def test_encode_fp16_nan():
    assert math.isnan(wire_array(encoder(D.FLOAT(), "FP16").encode(math.nan))[0])


@pytest.mark.parametrize("value, expected_bits", [
    (1.0, 0x3F800000),  # on the bfloat16 grid: unchanged
    (float_of(0x3F808000), 0x3F800000),  # tie: to the even mantissa (down)
    (float_of(0x3F818000), 0x3F820000),  # tie: to the even mantissa (up)
    (float_of(0x3F808001), 0x3F810000),  # just above the tie: up
    (float_of(0x3F807FFF), 0x3F800000),  # just below the tie: down
    (float_of(0xBF808000), 0xBF800000),  # negative tie, down in magnitude
    (float_of(0xBF818000), 0xBF820000),  # negative tie, up in magnitude
    (float_of(0xBF80C000), 0xBF810000),  # negative, nearest
    (float_of(0x7F7FFFFF), 0x7F800000),  # the largest float32 rounds to infinity
    (float_of(0x7F7F7FFF), 0x7F7F0000),  # the largest bfloat16 stays
    (float_of(0x7F7F8000), 0x7F800000),  # tie above the largest bfloat16: odd, so up (inf)
    (math.inf, 0x7F800000),
    (-math.inf, 0xFF800000),
    (0.0, 0x00000000),
    (-0.0, 0x80000000),
    (float_of(0x00000001), 0x00000000),  # the smallest subnormal
    (float_of(0x00008000), 0x00000000),  # subnormal tie, even
    (float_of(0x00018000), 0x00020000),  # subnormal tie, odd: up
    (float_of(0x007FFFFF), 0x00800000),  # the largest subnormal rounds to the smallest normal
    (0.1, 0x3DCD0000),
    (3.14159, 0x40490000),
])
def test_encode_bf16_rounds_to_nearest_even(value, expected_bits):
    tensor = encoder(D.FLOAT(), "BF16").encode(value)
    assert tensor._get_binary_data() == struct.pack("<I", expected_bits)[2:]
    assert bits_of(wire_array(tensor)[0]) == expected_bits
    assert bfloat16_reference(value) == expected_bits  # the oracle agrees


@pytest.mark.parametrize("nan_bits", [
    0x7FC00000,  # quiet NaN
    0xFFC00000,  # negative quiet NaN
    0x7F800001,  # signalling NaN, payload only in the low 16 bits: truncation would give inf
    0xFF800001,
    0x7FFFFFFF,  # all-ones payload: + 0x7FFF would carry into the sign
    0xFFFFFFFF,
    0x7F810000,
])
def test_encode_bf16_nan_stays_nan(nan_bits):
    value = np.array([nan_bits], dtype=np.uint32).view(np.float32)
    tensor = encoder(D.ARRAY(D.FLOAT()), "BF16").encode(value)
    sent = struct.unpack("<H", tensor._get_binary_data())[0]
    assert sent & 0x7F80 == 0x7F80 and sent & 0x007F, hex(sent)  # a bfloat16 NaN
    assert sent & 0x8000 == (nan_bits >> 16) & 0x8000  # sign kept
    assert math.isnan(wire_array(tensor)[0])


def test_encode_bf16_array():
    values = [1.0, float_of(0x3F808000), float_of(0x3F818000), math.inf]
    tensor = encoder(D.ARRAY(D.FLOAT()), "BF16", batched=True).encode(values)
    assert tensor.shape() == [1, 4]
    assert [bits_of(v) for v in wire_array(tensor)[0]] == [
        0x3F800000, 0x3F800000, 0x3F820000, 0x7F800000]


@settings(max_examples=300, deadline=None)
@given(st.floats(width=32))
def test_bf16_rounding_matches_exact_arithmetic(value):
    tensor = encoder(D.FLOAT(), "BF16").encode(value)
    sent = struct.unpack("<H", tensor._get_binary_data())[0] << 16
    if math.isnan(value):
        assert math.isnan(float_of(sent))
    else:
        assert sent == bfloat16_reference(value)


@settings(max_examples=200, deadline=None)
@given(st.floats(width=32, allow_nan=False))
def test_fp16_rounding_matches_numpy(value):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = encoder(D.FLOAT(), "FP16").encode(value)
    with np.errstate(over="ignore"):
        expected = np.float16(value)
    assert tensor._get_binary_data() == expected.tobytes()


# --- decode ----------------------------------------------------------------

@pytest.mark.parametrize("data_type, datatype, array, expected", [
    (D.FLOAT(), "FP32", np.array([1.5], dtype=np.float32), 1.5),
    (D.FLOAT(), "FP32", np.array(1.5, dtype=np.float32), 1.5),
    (D.FLOAT(), "FP32", np.array([[1.5]], dtype=np.float32), 1.5),
    (D.FLOAT(), "FP32", np.array([0.1], dtype=np.float32), f32(0.1)),
    (D.FLOAT(), "FP16", np.array([0.1], dtype=np.float16), f16(0.1)),
    (D.FLOAT(), "FP16", np.array([65504], dtype=np.float16), 65504.0),
    (D.FLOAT(), "BF16", np.array([1.5], dtype=np.float32), 1.5),
    (D.DOUBLE(), "FP64", np.array([0.1], dtype=np.float64), 0.1),
    (D.INT(), "INT32", np.array([-7], dtype=np.int32), -7),
    (D.BIGINT(), "INT64", np.array([2**62], dtype=np.int64), 2**62),
    (D.TINYINT(), "INT8", np.array([-128], dtype=np.int8), -128),
    (D.SMALLINT(), "INT16", np.array([300], dtype=np.int16), 300),
    (D.SMALLINT(), "UINT8", np.array([255], dtype=np.uint8), 255),
    (D.INT(), "UINT16", np.array([65535], dtype=np.uint16), 65535),
    (D.BIGINT(), "UINT32", np.array([2**32 - 1], dtype=np.uint32), 2**32 - 1),
    (D.DECIMAL(20, 0), "UINT64", np.array([2**64 - 1], dtype=np.uint64), Dec(2**64 - 1)),
    (D.DECIMAL(38, 0), "UINT64", np.array([0], dtype=np.uint64), Dec(0)),
    (D.BOOLEAN(), "BOOL", np.array([True]), True),
    (D.BOOLEAN(), "BOOL", np.array([False]), False),
    (D.STRING(), "BYTES", np.array([b"h\xc3\xa9"], dtype=np.object_), "hé"),
    (D.VARCHAR(5), "BYTES", np.array([b"abc"], dtype=np.object_), "abc"),
    (D.CHAR(2), "BYTES", np.array([b"ab"], dtype=np.object_), "ab"),
    (D.BYTES(), "BYTES", np.array([b"h\xc3\xa9"], dtype=np.object_), b"h\xc3\xa9"),
    (D.VARBINARY(4), "BYTES", np.array([b"\xff\x00"], dtype=np.object_), b"\xff\x00"),
    (D.BINARY(2), "BYTES", np.array([b"\xff\x00"], dtype=np.object_), b"\xff\x00"),
    (D.STRING(), "BYTES", np.array([b""], dtype=np.object_), ""),
    # JSON answers carry BYTES as text
    (D.STRING(), "BYTES", np.array(["hé"], dtype=np.object_), "hé"),
    (D.BYTES(), "BYTES", np.array(["hé"], dtype=np.object_), "hé".encode()),
    (D.VARBINARY(9), "BYTES", np.array([""], dtype=np.object_), b""),
])
def test_decode_scalar_unbatched(data_type, datatype, array, expected):
    value = decoder(data_type, datatype).decode(array, "mdl")
    assert value == expected
    assert type(value) is type(expected)
    assert_plain_python(value)


@pytest.mark.parametrize("data_type, array, expected", [
    (D.FLOAT(), np.array([[1.5]], dtype=np.float32), 1.5),
    (D.FLOAT(), np.array([1.5], dtype=np.float32), 1.5),
    (D.BOOLEAN(), np.array([[True]]), True),
    (D.STRING(), np.array([[b"a"]], dtype=np.object_), "a"),
    (D.BYTES(), np.array([[b"a"]], dtype=np.object_), b"a"),
    (D.DOUBLE(), np.array([[[2.0]]], dtype=np.float64), 2.0),
    (D.DECIMAL(20, 0), np.array([[2**63]], dtype=np.uint64), Dec(2**63)),
])
def test_decode_scalar_batched(data_type, array, expected):
    value = decoder(data_type, batched=True).decode(array, "mdl")
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("data_type, array, batched, expected", [
    (D.ARRAY(D.FLOAT()), np.array([1, 2, 3], dtype=np.float32), False, [1.0, 2.0, 3.0]),
    (D.ARRAY(D.FLOAT()), np.array([[1, 2, 3]], dtype=np.float32), True, [1.0, 2.0, 3.0]),
    (D.ARRAY(D.FLOAT()), np.array([[1, 2, 3]], dtype=np.float32), False, [1.0, 2.0, 3.0]),
    (D.ARRAY(D.INT()), np.array([[[4, 5]]], dtype=np.int32), True, [4, 5]),
    (D.ARRAY(D.INT()), np.array([], dtype=np.int32), False, []),
    (D.ARRAY(D.INT()), np.zeros((1, 0), dtype=np.int32), True, []),
    (D.ARRAY(D.BOOLEAN()), np.array([True, False]), False, [True, False]),
    (D.ARRAY(D.ARRAY(D.INT())), np.array([[1, 2], [3, 4]], dtype=np.int32), False,
     [[1, 2], [3, 4]]),
    (D.ARRAY(D.ARRAY(D.INT())), np.array([[[1, 2], [3, 4]]], dtype=np.int32), True,
     [[1, 2], [3, 4]]),
    (D.ARRAY(D.ARRAY(D.INT())), np.zeros((1, 0), dtype=np.int32), False, [[]]),
    (D.ARRAY(D.STRING()), np.array([b"a", b"\xc3\xa9"], dtype=np.object_), False, ["a", "é"]),
    (D.ARRAY(D.STRING()), np.array([[b"a", b"b"]], dtype=np.object_), True, ["a", "b"]),
    (D.ARRAY(D.BYTES()), np.array([b"a", b"\xff"], dtype=np.object_), False, [b"a", b"\xff"]),
    (D.ARRAY(D.BYTES()), np.array(["a", "é"], dtype=np.object_), False, [b"a", "é".encode()]),
    (D.ARRAY(D.ARRAY(D.STRING())), np.array([[b"a", b"b"], [b"c", b"d"]], dtype=np.object_),
     False, [["a", "b"], ["c", "d"]]),
    (D.ARRAY(D.ARRAY(D.BYTES())), np.array([[[b"a"], [b"b"]]], dtype=np.object_), True,
     [[b"a"], [b"b"]]),
    (D.ARRAY(D.ARRAY(D.BYTES())), np.array([["x"], ["y"]], dtype=np.object_), False,
     [[b"x"], [b"y"]]),
    (D.ARRAY(D.FLOAT()), np.array([0.1, 65504], dtype=np.float16), False, [f16(0.1), 65504.0]),
    (D.ARRAY(D.ARRAY(D.FLOAT())), np.array([[0.5]], dtype=np.float16), False, [[0.5]]),
    (D.ARRAY(D.DECIMAL(20, 0)), np.array([0, 2**64 - 1], dtype=np.uint64), False,
     [Dec(0), Dec(2**64 - 1)]),
    (D.ARRAY(D.ARRAY(D.DECIMAL(20, 0))), np.array([[[7]]], dtype=np.uint64), True,
     [[Dec(7)]]),
    (D.ARRAY(D.SMALLINT()), np.array([0, 255], dtype=np.uint8), False, [0, 255]),
    (D.ARRAY(D.BIGINT()), np.array([2**32 - 1], dtype=np.uint32), False, [2**32 - 1]),
])
def test_decode_array(data_type, array, batched, expected):
    codec = decoder(data_type, np_to_triton_dtype(array.dtype), batched=batched)
    value = codec.decode(array, "mdl")
    assert value == expected  # also tells str from bytes
    assert_plain_python(value)
    assert [type(v) for v in flatten(value)] == [type(v) for v in flatten(expected)]


@pytest.mark.parametrize("array, batched, expected", [
    (np.arange(6, dtype=np.int32).reshape(2, 3), False, [0, 1, 2, 3, 4, 5]),
    (np.arange(6, dtype=np.int32).reshape(1, 2, 3), True, [0, 1, 2, 3, 4, 5]),
    (np.arange(8, dtype=np.int32).reshape(2, 2, 2), False, list(range(8))),
    (np.array([[[7]]], dtype=np.int32), False, [7]),
    (np.array(7, dtype=np.int32), False, [7]),
])
def test_decode_rank_one_flattens_any_shape(array, batched, expected):
    """As Flink's Java provider: an ARRAY<T> output takes the tensor's elements in order."""
    assert decoder(D.ARRAY(D.INT()), batched=batched).decode(array, "mdl") == expected


@pytest.mark.parametrize("shape, batched, result_shape", [
    ((1, 1, 2, 3), False, (2, 3)),
    ((1, 1, 1, 2, 3), True, (2, 3)),
    ((1, 2, 3), False, (2, 3)),
    ((1, 1, 3), False, (1, 3)),  # stops at the column's rank
    ((1, 1), False, (1, 1)),
])
def test_decode_higher_rank_squeezes_leading_ones(shape, batched, result_shape):
    array = np.arange(math.prod(shape), dtype=np.int64).reshape(shape)
    value = decoder(D.ARRAY(D.ARRAY(D.BIGINT())), batched=batched).decode(array, "mdl")
    assert value == array.reshape(result_shape).tolist()


def test_decode_returns_python_values_not_numpy():
    value = decoder(D.ARRAY(D.FLOAT())).decode(np.array([0.5], dtype=np.float32), "m")
    assert type(value) is list
    assert type(value[0]) is float
    scalar = decoder(D.INT()).decode(np.array([3], dtype=np.int32), "m")
    assert type(scalar) is int
    half = decoder(D.FLOAT(), "FP16").decode(np.array([0.5], dtype=np.float16), "m")
    assert type(half) is float


@pytest.mark.parametrize("batched", [False, True])
def test_decode_missing_output(batched):
    with pytest.raises(TritonRequestError) as info:
        decoder(D.FLOAT(), name="score", tensor="OUT", batched=batched).decode(None, "my_model")
    message = str(info.value)
    assert "'my_model'" in message
    assert "'OUT'" in message


@pytest.mark.parametrize("array, batched, shape", [
    (np.array([1.0, 2.0], dtype=np.float32), False, "[2]"),
    (np.array([[1.0, 2.0]], dtype=np.float32), True, "[2]"),
    (np.array([[1.0], [2.0]], dtype=np.float32), False, "[2, 1]"),
    (np.array([], dtype=np.float32), False, "[0]"),
])
def test_decode_scalar_shape_error(array, batched, shape):
    with pytest.raises(TritonRequestError) as info:
        decoder(D.FLOAT(), name="score", tensor="OUT", batched=batched).decode(array,
                                                                               "my_model")
    message = str(info.value)
    assert "'my_model'" in message
    assert "'OUT'" in message
    assert "'score'" in message
    assert shape in message
    assert "ARRAY" in message


@pytest.mark.parametrize("data_type, array", [
    (D.BIGINT(), np.array([[7], [8]], dtype=np.int64)),
    (D.ARRAY(D.FLOAT()), np.zeros((2, 3), dtype=np.float32)),
    (D.ARRAY(D.FLOAT()), np.zeros((0, 3), dtype=np.float32)),
    (D.STRING(), np.array(b"a", dtype=np.object_)),  # no batch dimension at all
])
def test_decode_batch_must_be_one(data_type, array):
    with pytest.raises(TritonRequestError) as info:
        decoder(data_type, batched=True, tensor="OUT").decode(array, "my_model")
    message = str(info.value)
    assert "'my_model'" in message
    assert "'OUT'" in message
    assert f"shape {list(array.shape)}" in message
    assert "a batch of 1" in message


@pytest.mark.parametrize("data_type, array, batched", [
    (D.ARRAY(D.ARRAY(D.INT())), np.array([1, 2], dtype=np.int32), False),
    (D.ARRAY(D.ARRAY(D.INT())), np.array([[1, 2]], dtype=np.int32), True),
    (D.ARRAY(D.ARRAY(D.INT())), np.zeros((2, 2, 2), dtype=np.int32), False),
    (D.ARRAY(D.ARRAY(D.ARRAY(D.FLOAT()))), np.zeros((2, 2), dtype=np.float32), False),
    (D.ARRAY(D.ARRAY(D.STRING())), np.array([b"a"], dtype=np.object_), False),
])
def test_decode_array_shape_error(data_type, array, batched):
    with pytest.raises(TritonRequestError) as info:
        decoder(data_type, name="col", tensor="OUT", batched=batched).decode(array, "my_model")
    message = str(info.value)
    assert "'my_model'" in message
    assert "'OUT'" in message
    assert "'col'" in message
    assert str(list(array[0].shape if batched else array.shape)) in message
    assert "dimension" in message


@pytest.mark.parametrize("data_type", [D.STRING(), D.ARRAY(D.STRING()), D.CHAR(2)])
def test_decode_invalid_utf8(data_type):
    codec = decoder(data_type, name="text", tensor="OUT")
    array = np.array([b"\xff\xfe"], dtype=np.object_)
    with pytest.raises(TritonRequestError) as info:
        codec.decode(array, "my_model")
    message = str(info.value)
    assert "'OUT'" in message
    assert "'text'" in message
    assert "UTF-8" in message
    assert "BYTES" in message


def test_decode_invalid_utf8_fine_for_bytes_column():
    array = np.array([b"\xff\xfe"], dtype=np.object_)
    assert decoder(D.BYTES()).decode(array, "m") == b"\xff\xfe"


# --- encode -> identity model -> decode ----------------------------------------------------------

ROUND_TRIP_VALUES = [
    *SAMPLES,
    (D.ARRAY(D.FLOAT()), [1.5, -2.0, 0.0]),
    (D.ARRAY(D.ARRAY(D.BIGINT())), [[1, 2, 3], [4, 5, 6]]),
    (D.ARRAY(D.STRING()), ["x", "ÿ", ""]),
    (D.ARRAY(D.ARRAY(D.BYTES())), [[b"\x00", b"\x01"]]),
    (D.ARRAY(D.BOOLEAN()), [False, True]),
    (D.ARRAY(D.DECIMAL(20, 0)), [Dec(2**64 - 1), Dec(2**63)]),
    (D.ARRAY(D.DECIMAL(20, 0)), [Dec(2**63 - 1), Dec(0)]),
    (D.ARRAY(D.ARRAY(D.INT())), []),
    (D.ARRAY(D.ARRAY(D.INT())), [[]]),
]


@pytest.mark.parametrize("data_type, value, binary", [
    (t, v, binary) for t, v in ROUND_TRIP_VALUES for binary in (True, False)
    if binary or is_utf8(v)], ids=repr)
@pytest.mark.parametrize("batched", [False, True])
def test_round_trip(data_type, value, binary, batched):
    codec = encoder(data_type, batched=batched, binary=binary)
    decoded = round_trip(codec, value)
    if data_type == D.FLOAT():
        value = f32(value)
    assert decoded == value
    assert_plain_python(decoded)


@pytest.mark.parametrize("datatype, value, expected", [
    ("FP16", 0.1, f16(0.1)),
    ("FP16", 1e6, math.inf),
    ("BF16", 0.1, float_of(0x3DCD0000)),
    ("BF16", float_of(0x3F808000), 1.0),
])
def test_round_trip_half_precision(datatype, value, expected):
    """FLOAT -> FP16/BF16 input ('half-precision-inputs') -> FLOAT output, exactly."""
    decoded = round_trip(encoder(D.FLOAT(), datatype, batched=True), value)
    assert decoded == expected
    assert type(decoded) is float


@pytest.mark.parametrize("value", [0, 1, 2**63 - 1])
def test_round_trip_bigint_into_uint64_out_as_decimal(value):
    codec_in = encoder(D.BIGINT(), "UINT64", tensor="IN")
    codec_out = decoder(D.DECIMAL(20, 0), "UINT64", tensor="OUT")
    assert round_trip(codec_in, value, codec_out) == Dec(value)


def test_round_trip_keeps_output_column_apart_from_its_tensor():
    codec_in = encoder(D.STRING(), name="text", tensor="INPUT0")
    codec_out = decoder(D.BYTES(), name="raw", tensor="OUTPUT0")
    assert round_trip(codec_in, "é", codec_out) == "é".encode()


# Per datatype: the Flink type feeding it, the Flink type it is returned as, and its values.
ELEMENTS = {
    "BOOL": (D.BOOLEAN(), D.BOOLEAN(), st.booleans()),
    "INT8": (D.TINYINT(), D.TINYINT(), st.integers(-(2**7), 2**7 - 1)),
    "INT16": (D.SMALLINT(), D.SMALLINT(), st.integers(-(2**15), 2**15 - 1)),
    "INT32": (D.INT(), D.INT(), st.integers(-(2**31), 2**31 - 1)),
    "INT64": (D.BIGINT(), D.BIGINT(), st.integers(-(2**63), 2**63 - 1)),
    "UINT8": (D.SMALLINT(), D.SMALLINT(), st.integers(0, 2**8 - 1)),
    "UINT16": (D.INT(), D.INT(), st.integers(0, 2**16 - 1)),
    "UINT32": (D.BIGINT(), D.BIGINT(), st.integers(0, 2**32 - 1)),
    "UINT64": (D.DECIMAL(20, 0), D.DECIMAL(20, 0), st.integers(0, 2**64 - 1).map(Dec)),
    "UINT64 from BIGINT": (D.BIGINT(), D.DECIMAL(20, 0), st.integers(0, 2**63 - 1)),
    "FP16": (D.FLOAT(), D.FLOAT(), st.floats(width=16, allow_nan=False)),
    "BF16": (D.FLOAT(), D.FLOAT(), st.floats(width=32, allow_nan=False)),
    "FP32": (D.FLOAT(), D.FLOAT(), st.floats(width=32, allow_nan=False)),
    "FP64": (D.DOUBLE(), D.DOUBLE(), st.floats(allow_nan=False)),
    "BYTES text": (D.STRING(), D.STRING(), st.text()),
    "BYTES raw": (D.BYTES(), D.BYTES(), st.binary()),
    "BYTES text as raw": (D.STRING(), D.BYTES(), st.text()),
}
# Triton takes no FP16/BF16 in JSON; raw bytes need not be UTF-8.
JSON_FORM = ["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
             "UINT64 from BIGINT", "FP32", "FP64", "BYTES text", "BYTES text as raw"]



def expected_after_trip(kind: str, value):
    if kind == "UINT64 from BIGINT":
        return Dec(value)
    if kind == "BF16":
        return float_of(bfloat16_reference(value))
    if kind == "BYTES text as raw":
        return value.encode("utf-8")
    return value


@st.composite
def nested_values(draw, elements, rank: int):
    """A rectangular nested list of rank ``rank`` (a scalar for rank 0)."""
    if rank == 0:
        return draw(elements)
    shape = draw(st.lists(st.integers(0, 3), min_size=rank, max_size=rank))
    flat = draw(st.lists(elements, min_size=math.prod(shape), max_size=math.prod(shape)))

    def build(items, dims):
        if len(dims) == 1:
            return list(items)
        step = math.prod(dims[1:])
        return [build(items[i * step:(i + 1) * step], dims[1:]) for i in range(dims[0])]
    return build(flat, shape)


def map_nested(value, convert):
    if isinstance(value, list):
        return [map_nested(v, convert) for v in value]
    return convert(value)


@pytest.mark.parametrize(("kind", "binary"), [(kind, True) for kind in ELEMENTS]
                         + [(kind, False) for kind in JSON_FORM])
@pytest.mark.parametrize("rank", [0, 1, 2])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_property(kind, binary, rank, data):
    """Any value of any datatype survives encode -> Triton identity -> decode, in the binary
    form and (for the datatypes Triton takes as JSON) the JSON form."""
    in_type, out_type, elements = ELEMENTS[kind]
    datatype = kind.split()[0]
    value = data.draw(nested_values(elements, rank), label="value")
    batched = data.draw(st.booleans(), label="batched")
    leading_ones = data.draw(st.integers(0, 2), label="leading_ones") if rank else 0
    codec_in = encoder(array_of(in_type, rank), datatype, batched=batched,
                       leading_ones=leading_ones, binary=binary)
    codec_out = decoder(array_of(out_type, rank), datatype, batched=batched, binary=binary)
    decoded = round_trip(codec_in, value, codec_out)
    expected = map_nested(value, lambda v: expected_after_trip(kind, v))
    assert decoded == expected
    assert_plain_python(decoded)


# --- significant_dims and flink_type_for ---------------------------------------------------------

@pytest.mark.parametrize("dims, expected", [
    ([], []), ([1], []), ([1, 1], []), ([-1], [-1]), ([1, -1], [-1]), ([1, 1, 3], [3]),
    ([-1, 1], [-1, 1]), ([3, 1, 4], [3, 1, 4]), ([1, 3, 1, 4], [3, 1, 4]), ((1, 2), [2]),
])
def test_significant_dims(dims, expected):
    assert significant_dims(dims) == expected


DERIVED = [
    ("BOOL", D.BOOLEAN()),
    ("INT8", D.TINYINT()),
    ("INT16", D.SMALLINT()),
    ("INT32", D.INT()),
    ("INT64", D.BIGINT()),
    ("UINT8", D.SMALLINT()),
    ("UINT16", D.INT()),
    ("UINT32", D.BIGINT()),
    ("UINT64", D.DECIMAL(20, 0)),
    ("FP16", D.FLOAT()),
    ("BF16", D.FLOAT()),
    ("FP32", D.FLOAT()),
    ("FP64", D.DOUBLE()),
    ("BYTES", D.STRING()),
]


@pytest.mark.parametrize("datatype, expected", DERIVED)
@pytest.mark.parametrize("dims, depth", [
    ([], 0), ([1], 0), ([1, 1], 0), ([1, 1, 1], 0),
    ([-1], 1), ([3], 1), ([1, 16], 1), ([1, 1, -1], 1),
    ([-1, 1], 2), ([224, 1], 2), ([2, 3], 2), ([-1, -1], 2), ([1, 2, 3], 2),
    ([3, 224, 224], 3), ([1, 3, 1, 4], 3),
])
def test_flink_type_for(datatype, expected, dims, depth):
    result = flink_type_for(datatype, dims)
    assert result == array_of(expected, depth)
    col = TensorColumn("c", result)
    assert col.rank == depth == len(significant_dims(dims))
    assert col.accepts(datatype, "output", False)  # a derived column always fits its tensor
    assert col.accepts(datatype, "input", True)


@pytest.mark.parametrize("datatype", ["STRING", "fp32", "", "TYPE_FP32", "FLOAT", "INT"])
def test_flink_type_for_unknown(datatype):
    assert flink_type_for(datatype, [1]) is None


# --- parse_data_type (uses Flink's parser in the JVM) --------------------------------------------

@pytest.mark.parametrize("text, datatype, rank, is_text", [
    ("BOOLEAN", "BOOL", 0, False),
    ("TINYINT", "INT8", 0, False),
    ("SMALLINT", "INT16", 0, False),
    ("INT", "INT32", 0, False),
    ("INTEGER", "INT32", 0, False),
    ("BIGINT", "INT64", 0, False),
    ("FLOAT", "FP32", 0, False),
    ("DOUBLE", "FP64", 0, False),
    ("DECIMAL(20, 0)", "UINT64", 0, False),
    ("DECIMAL(20)", "UINT64", 0, False),
    ("STRING", "BYTES", 0, True),
    ("VARCHAR(10)", "BYTES", 0, True),
    ("CHAR(3)", "BYTES", 0, True),
    ("BYTES", "BYTES", 0, False),
    ("VARBINARY(8)", "BYTES", 0, False),
    ("BINARY(4)", "BYTES", 0, False),
    ("INT NOT NULL", "INT32", 0, False),
    ("ARRAY<FLOAT>", "FP32", 1, False),
    ("array<float>", "FP32", 1, False),
    ("ARRAY<STRING> NOT NULL", "BYTES", 1, True),
    ("ARRAY<ARRAY<BIGINT>>", "INT64", 2, False),
    ("ARRAY < ARRAY < DOUBLE > >", "FP64", 2, False),
    ("ARRAY<ARRAY<ARRAY<BYTES>>>", "BYTES", 3, False),
    ("ARRAY<DECIMAL(38, 0)>", "UINT64", 1, False),
])
def test_parse_data_type_supported(text, datatype, rank, is_text):
    col = TensorColumn("c", parse_data_type(text, "c"))
    assert natural_datatype(col.element_type) == datatype
    assert col.accepts(datatype, "input", False)
    assert col.rank == rank
    assert col.is_text is is_text


def test_parse_data_type_nullability():
    assert parse_data_type("INT NOT NULL", "c")._nullable is False
    assert parse_data_type("INT", "c")._nullable is True


@pytest.mark.parametrize("text, expected", [
    ("STRING", "STRING"), ("BYTES", "BYTES"), ("VARCHAR(10)", "VARCHAR(10)"),
    ("DECIMAL(20, 0)", "DECIMAL(20, 0)"), ("ARRAY<INT NOT NULL>", "ARRAY<INT NOT NULL>"),
])
def test_parse_data_type_then_sql_type(text, expected):
    assert sql_type(parse_data_type(text, "c")) == expected


@pytest.mark.parametrize("text", [
    "DECIMAL(10, 2)", "MAP<STRING, INT>", "ROW<a INT, b STRING>", "TIMESTAMP(3)", "DATE",
    "ARRAY<DECIMAL(10, 2)>", "DECIMAL(20, 1)",
])
def test_parse_data_type_valid_but_unsupported(text):
    data_type = parse_data_type(text, "my_column")
    with pytest.raises(TritonConfigError) as info:
        TensorColumn("my_column", data_type)
    assert "'my_column'" in str(info.value)


@pytest.mark.parametrize("text", ["FLOT", "", "ARRAY<", "VARCHAR(abc)", "INT,", "FLOAT)",
                                  "ARRAY<FLOAT", "NOT A TYPE"])
def test_parse_data_type_invalid(text):
    with pytest.raises(TritonConfigError) as info:
        parse_data_type(text, "my_column")
    message = str(info.value)
    assert "'my_column'" in message
    assert f"'{text}'" in message
    assert "not a Flink SQL type" in message
