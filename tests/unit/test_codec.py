"""Unit tests of pyflink_triton.codec: Flink types and values <-> Triton datatypes and tensors."""

from __future__ import annotations

import numpy as np
import pytest
from pyflink.table import DataTypes
from tritonclient.http import InferInput
from tritonclient.utils import deserialize_bytes_tensor, triton_to_np_dtype

from pyflink_triton.codec import TensorColumn, flink_type_for, parse_data_type
from pyflink_triton.errors import TritonConfigError, TritonRequestError

D = DataTypes

SCALAR_TYPES = [
    # (Flink type, Triton datatype, is text)
    (D.BOOLEAN(), "BOOL", False),
    (D.TINYINT(), "INT8", False),
    (D.SMALLINT(), "INT16", False),
    (D.INT(), "INT32", False),
    (D.BIGINT(), "INT64", False),
    (D.FLOAT(), "FP32", False),
    (D.DOUBLE(), "FP64", False),
    (D.STRING(), "BYTES", True),
    (D.VARCHAR(10), "BYTES", True),
    (D.CHAR(3), "BYTES", True),
    (D.BYTES(), "BYTES", False),
    (D.VARBINARY(8), "BYTES", False),
    (D.BINARY(4), "BYTES", False),
    (D.INT(False), "INT32", False),
    (D.STRING(False), "BYTES", True),
]
SCALAR_IDS = [f"{t}-{'nn' if not t._nullable else 'n'}" for t, _, _ in SCALAR_TYPES]

# A sample value of each Triton datatype, and the Flink type used for it.
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


def tensor_array(tensor: InferInput) -> np.ndarray:
    """The values an InferInput carries, as the server would read them."""
    data = tensor._get_binary_data() or b""
    if tensor.datatype() == "BYTES":
        values = deserialize_bytes_tensor(data) if data else np.empty(0, dtype=np.object_)
    else:
        values = np.frombuffer(data, dtype=triton_to_np_dtype(tensor.datatype()))
    return values.reshape(tensor.shape())


def assert_plain_python(value) -> None:
    """Nested lists of plain Python values, nothing from numpy."""
    if isinstance(value, list):
        for item in value:
            assert_plain_python(item)
    else:
        assert type(value) in (bool, int, float, str, bytes), type(value)


def column(data_type, name: str = "x") -> TensorColumn:
    return TensorColumn(name, data_type)


# --- column types --------------------------------------------------------------------------------

@pytest.mark.parametrize("data_type, datatype, is_text", SCALAR_TYPES, ids=SCALAR_IDS)
def test_scalar_column(data_type, datatype, is_text):
    col = column(data_type)
    assert col.triton_datatype == datatype
    assert col.rank == 0
    assert col.is_text is is_text


@pytest.mark.parametrize("data_type, datatype, is_text", SCALAR_TYPES, ids=SCALAR_IDS)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_array_column(data_type, datatype, is_text, depth):
    array_type = data_type
    for _ in range(depth):
        array_type = D.ARRAY(array_type)
    col = column(array_type)
    assert col.triton_datatype == datatype
    assert col.rank == depth
    assert col.is_text is is_text


def test_column_name_case_preserved():
    col = TensorColumn("INPUT__0", D.FLOAT())
    assert col.name == "INPUT__0"
    assert col.encode(1.0, [1], False).name() == "INPUT__0"


def test_describe():
    text = column(D.ARRAY(D.STRING()), "tokens").describe()
    assert "'tokens'" in text
    assert "BYTES" in text
    assert "ARRAY" in text


@pytest.mark.parametrize("data_type", [
    D.DECIMAL(10, 2),
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


def test_column_is_immutable_and_comparable():
    col = column(D.INT())
    assert col == TensorColumn("x", D.INT())
    assert col != TensorColumn("y", D.INT())
    with pytest.raises(AttributeError):
        col.name = "z"  # type: ignore[misc]


def test_requested_output():
    output = column(D.ARRAY(D.FLOAT()), "OUTPUT0").requested_output()
    assert output.name() == "OUTPUT0"
    assert output._get_tensor()["parameters"]["binary_data"] is True


# --- encode: scalars -----------------------------------------------------------------------------

@pytest.mark.parametrize("data_type, value", SAMPLES, ids=repr)
@pytest.mark.parametrize("scalar_shape, batched, shape", [
    ([1], False, [1]),
    ([1], True, [1, 1]),
    ([], False, []),
    ([], True, [1]),
    ([1, 1], False, [1, 1]),
    ([1, 1], True, [1, 1, 1]),
])
def test_encode_scalar(data_type, value, scalar_shape, batched, shape):
    col = column(data_type, "in")
    tensor = col.encode(value, scalar_shape, batched)
    assert isinstance(tensor, InferInput)
    assert tensor.name() == "in"
    assert tensor.datatype() == col.triton_datatype
    assert tensor.shape() == shape
    values = tensor_array(tensor).reshape(-1)
    assert values.size == 1
    expected = value.encode("utf-8") if isinstance(value, str) else value
    if data_type == D.FLOAT():
        expected = np.float32(value)
    assert values[0] == expected


@pytest.mark.parametrize("value, expected", [
    (True, b"\x01"),
    (False, b"\x00"),
])
def test_encode_bool_bytes(value, expected):
    assert column(D.BOOLEAN()).encode(value, [1], False)._get_binary_data() == expected


@pytest.mark.parametrize("data_type, value, dtype", [
    (D.TINYINT(), -5, "<i1"),
    (D.SMALLINT(), 1234, "<i2"),
    (D.INT(), 123456, "<i4"),
    (D.BIGINT(), 2**40 + 3, "<i8"),
    (D.FLOAT(), 3.25, "<f4"),
    (D.DOUBLE(), 3.25, "<f8"),
])
def test_encode_numeric_little_endian(data_type, value, dtype):
    data = column(data_type).encode(value, [1], True)._get_binary_data()
    assert data == np.array([value], dtype=dtype).tobytes()


def test_encode_string_as_utf8_length_prefixed():
    tensor = column(D.STRING()).encode("héllo", [1], False)
    payload = "héllo".encode()
    assert tensor._get_binary_data() == len(payload).to_bytes(4, "little") + payload


def test_encode_bytes_raw():
    raw = bytes(range(256))
    tensor = column(D.BYTES()).encode(raw, [1], False)
    assert tensor.datatype() == "BYTES"
    assert tensor._get_binary_data() == len(raw).to_bytes(4, "little") + raw


@pytest.mark.parametrize("value", [bytearray(b"\x00ab"), memoryview(b"\x00ab")])
def test_encode_bytes_like(value):
    assert tensor_array(column(D.VARBINARY(3)).encode(value, [1], False))[0] == b"\x00ab"


def test_encode_str_into_bytes_column_is_utf8():
    assert tensor_array(column(D.BYTES()).encode("é", [1], False))[0] == "é".encode()


def test_encode_numpy_scalars():
    assert tensor_array(column(D.FLOAT()).encode(np.float32(2.5), [1], False))[0] == 2.5
    assert tensor_array(column(D.BIGINT()).encode(np.int64(7), [1], False))[0] == 7


def test_encode_bool_into_int_column():
    assert tensor_array(column(D.INT()).encode(True, [1], False))[0] == 1


def test_encode_int_into_float_column():
    tensor = column(D.DOUBLE()).encode(3, [1], False)
    assert tensor.datatype() == "FP64"
    assert tensor_array(tensor)[0] == 3.0


# --- encode: arrays ------------------------------------------------------------------------------

@pytest.mark.parametrize("data_type, value, shape", [
    (D.ARRAY(D.FLOAT()), [1.0, 2.0, 3.0], [3]),
    (D.ARRAY(D.FLOAT()), (1.0, 2.0), [2]),
    (D.ARRAY(D.FLOAT()), [0.5], [1]),
    (D.ARRAY(D.INT()), [1, 2, 3, 4], [4]),
    (D.ARRAY(D.BIGINT()), [2**62], [1]),
    (D.ARRAY(D.BOOLEAN()), [True, False, True], [3]),
    (D.ARRAY(D.DOUBLE()), np.arange(5, dtype=np.float64), [5]),
    (D.ARRAY(D.ARRAY(D.INT())), [[1, 2], [3, 4], [5, 6]], [3, 2]),
    (D.ARRAY(D.ARRAY(D.FLOAT())), [[1.0, 2.0, 3.0]], [1, 3]),
    (D.ARRAY(D.ARRAY(D.ARRAY(D.SMALLINT()))), [[[1], [2]], [[3], [4]]], [2, 2, 1]),
    (D.ARRAY(D.STRING()), ["a", "bc", "déf"], [3]),
    (D.ARRAY(D.BYTES()), [b"\x00", b"\x01\x02"], [2]),
    (D.ARRAY(D.ARRAY(D.STRING())), [["a", "b"], ["c", "d"], ["e", "f"]], [3, 2]),
    (D.ARRAY(D.ARRAY(D.BYTES())), [[b"a"], [b"b"]], [2, 1]),
])
@pytest.mark.parametrize("batched", [False, True])
def test_encode_array(data_type, value, shape, batched):
    col = column(data_type, "arr")
    tensor = col.encode(value, [1], batched)  # scalar_shape does not apply to arrays
    expected_shape = [1, *shape] if batched else shape
    assert tensor.name() == "arr"
    assert tensor.datatype() == col.triton_datatype
    assert tensor.shape() == expected_shape
    values = tensor_array(tensor)
    if batched:
        values = values[0]
    expected = np.array(value, dtype=np.object_ if col.triton_datatype == "BYTES" else None)
    if col.is_text:
        expected = np.vectorize(lambda s: s.encode("utf-8"), otypes=[np.object_])(expected)
    assert values.tolist() == expected.tolist()


@pytest.mark.parametrize("data_type", [D.ARRAY(D.FLOAT()), D.ARRAY(D.STRING())])
@pytest.mark.parametrize("batched, shape", [(False, [0]), (True, [1, 0])])
def test_encode_empty_array(data_type, batched, shape):
    tensor = column(data_type).encode([], [1], batched)
    assert tensor.shape() == shape
    assert not tensor._get_binary_data()


# --- encode: rejected values ---------------------------------------------------------------------

@pytest.mark.parametrize("data_type", [t for t, _, _ in SCALAR_TYPES] + [
    D.ARRAY(D.FLOAT()), D.ARRAY(D.STRING()), D.ARRAY(D.ARRAY(D.INT())),
], ids=str)
@pytest.mark.parametrize("batched", [False, True])
def test_encode_null_rejected(data_type, batched):
    with pytest.raises(TritonRequestError) as info:
        TensorColumn("my_column", data_type).encode(None, [1], batched)
    message = str(info.value)
    assert "'my_column'" in message
    assert "NULL" in message


@pytest.mark.parametrize("data_type, value", [
    (D.ARRAY(D.STRING()), ["a", None]),
    (D.ARRAY(D.BYTES()), [None]),
    (D.ARRAY(D.ARRAY(D.STRING())), [["a"], [None]]),
    (D.ARRAY(D.INT()), [1, None]),
    (D.ARRAY(D.FLOAT()), [None, 1.0]),
], ids=repr)
def test_encode_null_element_rejected(data_type, value):
    with pytest.raises(TritonRequestError) as info:
        TensorColumn("my_column", data_type).encode(value, [1], False)
    assert "'my_column'" in str(info.value)


@pytest.mark.parametrize("data_type, value", [
    (D.ARRAY(D.ARRAY(D.INT())), [[1, 2], [3]]),
    (D.ARRAY(D.ARRAY(D.FLOAT())), [[1.0], [2.0, 3.0], [4.0]]),
    (D.ARRAY(D.ARRAY(D.STRING())), [["a"], ["b", "c"]]),
    (D.ARRAY(D.ARRAY(D.BYTES())), [[b"a", b"b"], []]),
    (D.ARRAY(D.ARRAY(D.ARRAY(D.INT()))), [[[1, 2]], [[3]]]),
    (D.ARRAY(D.ARRAY(D.ARRAY(D.STRING()))), [[["a", "b"]], [["c"]]]),
])
@pytest.mark.parametrize("batched", [False, True])
def test_encode_ragged_rejected(data_type, value, batched):
    with pytest.raises(TritonRequestError) as info:
        TensorColumn("my_column", data_type).encode(value, [1], batched)
    assert "'my_column'" in str(info.value)


def test_ragged_string_message_explains():
    with pytest.raises(TritonRequestError, match="ragged"):
        column(D.ARRAY(D.ARRAY(D.STRING()))).encode([["a"], ["b", "c"]], [1], False)


@pytest.mark.parametrize("data_type, value", [
    (D.INT(), [1, 2]),
    (D.STRING(), ["a", "b"]),
    (D.ARRAY(D.INT()), [[1], [2]]),
    (D.ARRAY(D.STRING()), [["a"]]),
    (D.ARRAY(D.ARRAY(D.INT())), [1, 2]),
    (D.ARRAY(D.ARRAY(D.STRING())), ["a", "b"]),
    (D.ARRAY(D.INT()), 5),
])
def test_encode_wrong_rank_rejected(data_type, value):
    with pytest.raises(TritonRequestError) as info:
        TensorColumn("my_column", data_type).encode(value, [1], False)
    message = str(info.value)
    assert "'my_column'" in message
    assert "dimension" in message


@pytest.mark.parametrize("data_type, value", [
    (D.INT(), "abc"),
    (D.FLOAT(), "not a number"),
    (D.BIGINT(), object()),
    (D.ARRAY(D.DOUBLE()), ["x", "y"]),
])
def test_encode_unconvertible_rejected(data_type, value):
    with pytest.raises(TritonRequestError) as info:
        TensorColumn("my_column", data_type).encode(value, [1], False)
    message = str(info.value)
    assert "'my_column'" in message
    assert column(data_type).triton_datatype in message


@pytest.mark.parametrize("data_type, value", [
    (D.INT(), 2**40),
    (D.TINYINT(), 300),
    (D.SMALLINT(), -40000),
    (D.BIGINT(), 2**64),
    (D.ARRAY(D.INT()), [1, 2**33]),
], ids=repr)
def test_encode_out_of_range_integer_rejected(data_type, value):
    """An integer that does not fit the tensor datatype must not be silently wrapped."""
    with pytest.raises(TritonRequestError) as info:
        TensorColumn("my_column", data_type).encode(value, [1], False)
    assert "'my_column'" in str(info.value)


# --- decode --------------------------------------------------------------------------------------

@pytest.mark.parametrize("data_type, array, expected", [
    (D.FLOAT(), np.array([1.5], dtype=np.float32), 1.5),
    (D.FLOAT(), np.array(1.5, dtype=np.float32), 1.5),
    (D.FLOAT(), np.array([[1.5]], dtype=np.float32), 1.5),
    (D.DOUBLE(), np.array([0.1], dtype=np.float64), 0.1),
    (D.INT(), np.array([-7], dtype=np.int32), -7),
    (D.BIGINT(), np.array([2**62], dtype=np.int64), 2**62),
    (D.TINYINT(), np.array([-128], dtype=np.int8), -128),
    (D.SMALLINT(), np.array([300], dtype=np.int16), 300),
    (D.BOOLEAN(), np.array([True]), True),
    (D.BOOLEAN(), np.array([False]), False),
    (D.STRING(), np.array([b"h\xc3\xa9"], dtype=np.object_), "hé"),
    (D.VARCHAR(5), np.array([b"abc"], dtype=np.object_), "abc"),
    (D.CHAR(2), np.array([b"ab"], dtype=np.object_), "ab"),
    (D.BYTES(), np.array([b"h\xc3\xa9"], dtype=np.object_), b"h\xc3\xa9"),
    (D.VARBINARY(4), np.array([b"\xff\x00"], dtype=np.object_), b"\xff\x00"),
    (D.BINARY(2), np.array([b"\xff\x00"], dtype=np.object_), b"\xff\x00"),
    (D.STRING(), np.array([b""], dtype=np.object_), ""),
])
def test_decode_scalar_unbatched(data_type, array, expected):
    value = column(data_type).decode(array, False, "mdl")
    assert value == expected
    assert type(value) is type(expected)
    assert_plain_python(value)


@pytest.mark.parametrize("data_type, array, expected", [
    (D.FLOAT(), np.array([[1.5]], dtype=np.float32), 1.5),
    (D.FLOAT(), np.array([1.5], dtype=np.float32), 1.5),
    (D.BIGINT(), np.array([[7], [8]], dtype=np.int64), 7),  # first batch entry only
    (D.BOOLEAN(), np.array([[True]]), True),
    (D.STRING(), np.array([[b"a"]], dtype=np.object_), "a"),
    (D.BYTES(), np.array([[b"a"]], dtype=np.object_), b"a"),
    (D.DOUBLE(), np.array([[[2.0]]], dtype=np.float64), 2.0),
])
def test_decode_scalar_batched(data_type, array, expected):
    value = column(data_type).decode(array, True, "mdl")
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("data_type, array, batched, expected", [
    (D.ARRAY(D.FLOAT()), np.array([1, 2, 3], dtype=np.float32), False, [1.0, 2.0, 3.0]),
    (D.ARRAY(D.FLOAT()), np.array([[1, 2, 3]], dtype=np.float32), True, [1.0, 2.0, 3.0]),
    (D.ARRAY(D.FLOAT()), np.array([[1, 2, 3]], dtype=np.float32), False, [1.0, 2.0, 3.0]),
    (D.ARRAY(D.INT()), np.array([[[4, 5]]], dtype=np.int32), True, [4, 5]),
    (D.ARRAY(D.INT()), np.array([], dtype=np.int32), False, []),
    (D.ARRAY(D.BOOLEAN()), np.array([True, False]), False, [True, False]),
    (D.ARRAY(D.ARRAY(D.INT())), np.array([[1, 2], [3, 4]], dtype=np.int32), False,
     [[1, 2], [3, 4]]),
    (D.ARRAY(D.ARRAY(D.INT())), np.array([[[1, 2], [3, 4]]], dtype=np.int32), True,
     [[1, 2], [3, 4]]),
    (D.ARRAY(D.STRING()), np.array([b"a", b"\xc3\xa9"], dtype=np.object_), False, ["a", "é"]),
    (D.ARRAY(D.STRING()), np.array([[b"a", b"b"]], dtype=np.object_), True, ["a", "b"]),
    (D.ARRAY(D.BYTES()), np.array([b"a", b"\xff"], dtype=np.object_), False, [b"a", b"\xff"]),
    (D.ARRAY(D.ARRAY(D.STRING())), np.array([[b"a", b"b"], [b"c", b"d"]], dtype=np.object_),
     False, [["a", "b"], ["c", "d"]]),
    (D.ARRAY(D.ARRAY(D.BYTES())), np.array([[[b"a"], [b"b"]]], dtype=np.object_), True,
     [[b"a"], [b"b"]]),
])
def test_decode_array(data_type, array, batched, expected):
    value = column(data_type).decode(array, batched, "mdl")
    assert value == expected  # also tells str from bytes
    assert_plain_python(value)


def test_decode_returns_python_values_not_numpy():
    value = column(D.ARRAY(D.FLOAT())).decode(np.array([0.5], dtype=np.float32), False, "m")
    assert type(value) is list
    assert type(value[0]) is float
    scalar = column(D.INT()).decode(np.array([3], dtype=np.int32), False, "m")
    assert type(scalar) is int


def test_decode_missing_output():
    with pytest.raises(TritonRequestError) as info:
        column(D.FLOAT(), "OUT").decode(None, True, "my_model")
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
        column(D.FLOAT(), "OUT").decode(array, batched, "my_model")
    message = str(info.value)
    assert "'my_model'" in message
    assert "'OUT'" in message
    assert shape in message
    assert "ARRAY" in message


@pytest.mark.parametrize("data_type, array, batched", [
    (D.ARRAY(D.ARRAY(D.INT())), np.array([1, 2], dtype=np.int32), False),
    (D.ARRAY(D.ARRAY(D.INT())), np.array([[1, 2]], dtype=np.int32), True),
    (D.ARRAY(D.ARRAY(D.INT())), np.zeros((2, 2, 2), dtype=np.int32), False),
    (D.ARRAY(D.ARRAY(D.ARRAY(D.FLOAT()))), np.zeros((2, 2), dtype=np.float32), False),
])
def test_decode_array_shape_error(data_type, array, batched):
    with pytest.raises(TritonRequestError) as info:
        column(data_type, "OUT").decode(array, batched, "my_model")
    message = str(info.value)
    assert "'my_model'" in message
    assert "'OUT'" in message
    assert str(list(array[0].shape if batched else array.shape)) in message


@pytest.mark.parametrize("data_type", [D.STRING(), D.ARRAY(D.STRING())])
def test_decode_invalid_utf8(data_type):
    col = TensorColumn("OUT", data_type)
    array = np.array([b"\xff\xfe"], dtype=np.object_)
    with pytest.raises(TritonRequestError) as info:
        col.decode(array, False, "my_model")
    message = str(info.value)
    assert "'OUT'" in message
    assert "UTF-8" in message
    assert "BYTES" in message


def test_decode_invalid_utf8_fine_for_bytes_column():
    array = np.array([b"\xff\xfe"], dtype=np.object_)
    assert column(D.BYTES()).decode(array, False, "m") == b"\xff\xfe"


# --- encode/decode round trip --------------------------------------------------------------------

@pytest.mark.parametrize("data_type, value", [
    *SAMPLES,
    (D.ARRAY(D.FLOAT()), [1.5, -2.0, 0.0]),
    (D.ARRAY(D.ARRAY(D.BIGINT())), [[1, 2, 3], [4, 5, 6]]),
    (D.ARRAY(D.STRING()), ["x", "ÿ", ""]),
    (D.ARRAY(D.ARRAY(D.BYTES())), [[b"\x00", b"\x01"]]),
    (D.ARRAY(D.BOOLEAN()), [False, True]),
], ids=repr)
@pytest.mark.parametrize("batched", [False, True])
def test_round_trip(data_type, value, batched):
    col = column(data_type)
    array = tensor_array(col.encode(value, [1], batched))
    decoded = col.decode(array, batched, "mdl")
    if data_type == D.FLOAT():
        value = float(np.float32(value))
    assert decoded == value
    assert_plain_python(decoded)


# --- flink_type_for ------------------------------------------------------------------------------

@pytest.mark.parametrize("datatype, expected", [
    ("BOOL", D.BOOLEAN()),
    ("INT8", D.TINYINT()),
    ("INT16", D.SMALLINT()),
    ("INT32", D.INT()),
    ("INT64", D.BIGINT()),
    ("FP32", D.FLOAT()),
    ("FP64", D.DOUBLE()),
    ("BYTES", D.STRING()),
])
@pytest.mark.parametrize("dims, depth", [
    ([], 0), ([1], 0), ([1, 1], 0), ([1, 1, 1], 0),
    ([-1], 1), ([3], 1), ([1, 16], 1), ([-1, 1], 1), ([224, 1], 1),
    ([2, 3], 2), ([-1, -1], 2), ([3, 224, 224], 3), ([1, 3, 1, 4], 2),
])
def test_flink_type_for(datatype, expected, dims, depth):
    for _ in range(depth):
        expected = D.ARRAY(expected)
    result = flink_type_for(datatype, dims)
    assert result == expected
    col = TensorColumn("c", result)
    assert col.triton_datatype == datatype
    assert col.rank == depth


@pytest.mark.parametrize("datatype", ["FP16", "BF16", "UINT8", "UINT16", "UINT32", "UINT64",
                                      "STRING", "fp32", ""])
def test_flink_type_for_unsupported(datatype):
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
])
def test_parse_data_type_supported(text, datatype, rank, is_text):
    col = TensorColumn("c", parse_data_type(text, "c"))
    assert col.triton_datatype == datatype
    assert col.rank == rank
    assert col.is_text is is_text


def test_parse_data_type_nullability():
    assert parse_data_type("INT NOT NULL", "c")._nullable is False
    assert parse_data_type("INT", "c")._nullable is True


@pytest.mark.parametrize("text", [
    "DECIMAL(10, 2)", "MAP<STRING, INT>", "ROW<a INT, b STRING>", "TIMESTAMP(3)", "DATE",
    "ARRAY<DECIMAL(10, 2)>",
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
