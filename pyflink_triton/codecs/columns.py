"""Tensor codec: Flink column types and values <-> Triton datatypes and tensors.

Two steps, matching the two moments of a function's life:

- At registration a :class:`TensorColumn` names a Flink column (or ROW field), the tensor it is
  bound to, and its Flink type. Any type made of the types below is accepted; which Triton
  datatypes it can carry is :meth:`TensorColumn.accepts`.
- At ``open()``, once the model's metadata and config are known, ``signature`` builds an
  :class:`InputCodec` or :class:`OutputCodec` per tensor: the served datatype and shape are
  fixed, and ``encode``/``decode`` convert one record's values.

| Triton datatype | Flink type (derived) | other Flink types accepted                       |
|-----------------|----------------------|--------------------------------------------------|
| BOOL            | BOOLEAN              |                                                  |
| INT8 / INT16    | TINYINT / SMALLINT   |                                                  |
| INT32 / INT64   | INT / BIGINT         |                                                  |
| UINT8 / UINT16  | SMALLINT / INT       | (the next wider signed type)                     |
| UINT32          | BIGINT               |                                                  |
| UINT64          | DECIMAL(20, 0)       | inputs: BIGINT, DECIMAL(p, 0)                    |
| FP16 / BF16     | FLOAT                | inputs only with 'half-precision-inputs' = true  |
| FP32 / FP64     | FLOAT / DOUBLE       |                                                  |
| BYTES           | STRING (UTF-8)       | VARCHAR, CHAR; BYTES/VARBINARY/BINARY (raw)      |

``ARRAY<T>`` is a tensor of T's datatype with one dimension per ARRAY level.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
from pyflink.table import DataTypes
from pyflink.table.types import (
    ArrayType,
    BigIntType,
    BinaryType,
    BooleanType,
    CharType,
    DataType,
    DecimalType,
    DoubleType,
    FloatType,
    IntType,
    SmallIntType,
    TinyIntType,
    VarBinaryType,
    VarCharType,
)

from ..errors import TritonConfigError, TritonRequestError
from ..wire.transport import InputTensor

Direction = Literal["input", "output"]

# Triton datatype -> the numpy dtype tritonclient reads and writes for it (numpy has no
# bfloat16: tritonclient carries BF16 as float32).
NUMPY_DTYPES: dict[str, Any] = {
    "BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "FP16": np.float16, "BF16": np.float32, "FP32": np.float32,
    "FP64": np.float64, "BYTES": np.object_,
}

# Triton datatype -> the Flink type of a column derived from model metadata.
_DERIVED_FLINK_TYPES: dict[str, DataType] = {
    "BOOL": DataTypes.BOOLEAN(), "INT8": DataTypes.TINYINT(), "INT16": DataTypes.SMALLINT(),
    "INT32": DataTypes.INT(), "INT64": DataTypes.BIGINT(), "UINT8": DataTypes.SMALLINT(),
    "UINT16": DataTypes.INT(), "UINT32": DataTypes.BIGINT(), "UINT64": DataTypes.DECIMAL(20, 0),
    "FP16": DataTypes.FLOAT(), "BF16": DataTypes.FLOAT(), "FP32": DataTypes.FLOAT(),
    "FP64": DataTypes.DOUBLE(), "BYTES": DataTypes.STRING(),
}

# Flink element type -> Triton datatypes it carries in both directions.
_DATATYPES_OF: dict[type, tuple[str, ...]] = {
    BooleanType: ("BOOL",),
    TinyIntType: ("INT8",),
    SmallIntType: ("INT16", "UINT8"),
    IntType: ("INT32", "UINT16"),
    BigIntType: ("INT64", "UINT32"),
    FloatType: ("FP32",),
    DoubleType: ("FP64",),
    VarCharType: ("BYTES",),
    CharType: ("BYTES",),
    VarBinaryType: ("BYTES",),
    BinaryType: ("BYTES",),
    DecimalType: ("UINT64",),
}
_TEXT_TYPES = (VarCharType, CharType)
HALF_PRECISION = ("FP16", "BF16")  # Triton takes neither in JSON form
_UINT64_DIGITS = 20  # 2**64 - 1 has 20 digits

SUPPORTED_FLINK_TYPES = ("BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, DECIMAL(p, 0), FLOAT, DOUBLE, "
                         "STRING/VARCHAR/CHAR, BYTES/VARBINARY/BINARY, and (nested) ARRAYs of "
                         "these")

_MAX_LENGTH = 0x7FFFFFFF


def sql_type(data_type: DataType) -> str:
    """How Flink SQL writes a type (``ARRAY<FLOAT>``, ``STRING``), for messages; no JVM needed."""
    if isinstance(data_type, ArrayType):
        text = f"ARRAY<{sql_type(data_type.element_type)}>"
    elif isinstance(data_type, VarCharType) and data_type.length == _MAX_LENGTH:
        text = "STRING"
    elif isinstance(data_type, VarBinaryType) and data_type.length == _MAX_LENGTH:
        text = "BYTES"
    elif hasattr(data_type, "length"):
        text = f"{data_type.type_name()}({data_type.length})"
    elif isinstance(data_type, DecimalType):
        text = f"DECIMAL({data_type.precision}, {data_type.scale})"
    else:
        text = data_type.type_name()
    return text if data_type._nullable else f"{text} NOT NULL"


def _element_type(data_type: DataType) -> tuple[DataType, int]:
    """The innermost element type of a (possibly nested) ARRAY, and the nesting depth."""
    rank = 0
    while isinstance(data_type, ArrayType):
        data_type, rank = data_type.element_type, rank + 1
    return data_type, rank


@dataclass(frozen=True)
class TensorColumn:
    """A Flink column (or ROW field) ``name`` bound to the Triton tensor ``tensor``."""

    name: str
    data_type: DataType
    tensor: str = ""  # defaults to the column's own (case-preserved) name

    def __post_init__(self) -> None:
        if not self.tensor:
            object.__setattr__(self, "tensor", self.name)
        element = self.element_type
        if type(element) not in _DATATYPES_OF or (
                isinstance(element, DecimalType) and element.scale != 0):
            raise TritonConfigError(
                f"Column '{self.name}' has type {sql_type(self.data_type)}, which has no Triton "
                f"tensor datatype. Supported: {SUPPORTED_FLINK_TYPES}.")

    # Cached: some are read for every record.
    @cached_property
    def element_type(self) -> DataType:
        return _element_type(self.data_type)[0]

    @cached_property
    def rank(self) -> int:
        """Number of ARRAY levels: 0 for a scalar column."""
        return _element_type(self.data_type)[1]

    @cached_property
    def is_text(self) -> bool:
        return isinstance(self.element_type, _TEXT_TYPES)

    @cached_property
    def is_decimal(self) -> bool:
        return isinstance(self.element_type, DecimalType)

    def accepts(self, datatype: str, direction: Direction, half_precision_inputs: bool) -> bool:
        """Whether this column can carry a tensor of ``datatype`` in ``direction``."""
        element = self.element_type
        if isinstance(element, FloatType) and datatype in HALF_PRECISION:
            return direction == "output" or half_precision_inputs
        if isinstance(element, BigIntType) and datatype == "UINT64":
            return direction == "input"  # values are range-checked; outputs could overflow
        if isinstance(element, DecimalType) and direction == "output" and (
                element.precision < _UINT64_DIGITS):
            return False
        return datatype in _DATATYPES_OF[type(element)]

    def expected_datatypes(self, direction: Direction) -> str:
        """For messages: the datatypes this column carries, in the wording of the docs."""
        names = [d for d in NUMPY_DTYPES if self.accepts(d, direction, False)]
        if isinstance(self.element_type, FloatType) and direction == "input":
            names.append("FP16/BF16 with 'half-precision-inputs' = 'true'")
        if not names:  # a DECIMAL output narrower than UINT64's 20 digits
            names.append(f"UINT64 into DECIMAL({_UINT64_DIGITS}, 0) or wider")
        return ", or ".join(names)

    def describe(self) -> str:
        target = "" if self.tensor == self.name else f" -> tensor '{self.tensor}'"
        return f"'{self.name}' {sql_type(self.data_type)}{target}"


@dataclass(frozen=True)
class InputCodec:
    """Turns one record's value of a column into the input tensor the served model takes."""

    column: TensorColumn
    datatype: str
    leading_ones: int  # dims of size 1 added before the value's own dims
    dims: tuple[int, ...]  # the model's dims for the value itself; -1 is variable
    batched: bool  # add the batch dimension (max_batch_size > 0)
    binary: bool  # KServe binary tensor extension, or JSON

    @cached_property
    def _numpy_dtype(self) -> Any:
        return NUMPY_DTYPES[self.datatype]

    @cached_property
    def _is_integer(self) -> bool:
        return bool(np.issubdtype(self._numpy_dtype, np.integer))

    @cached_property
    def _prefix(self) -> list[int]:
        return [1] * (int(self.batched) + self.leading_ones)

    @cached_property
    def _scalar_shape(self) -> list[int]:
        return [*self._prefix, *self.dims]

    def encode(self, value: Any) -> InputTensor:
        """One record's value (not NULL) as an input tensor."""
        array = self._to_numpy(value if self.column.rank else [value], max(self.column.rank, 1))
        shape = [*self._prefix, *array.shape] if self.column.rank else self._scalar_shape
        return InputTensor(self.column.tensor, self.datatype, array.reshape(shape))

    def encode_batch(self, values: Sequence[Any]) -> InputTensor:
        """Several records' values (none NULL) as one tensor whose first dimension is the
        batch. The values of an ARRAY column must share one shape (see :meth:`value_shape`)."""
        assert self.batched, "only a model with a batch dimension takes several records"
        prefix = [len(values), *self._prefix[1:]]
        if self.column.rank == 0:  # one vectorised conversion for the whole column
            if self.datatype == "BYTES" or self.column.is_decimal:
                values = list(values)  # (numeric columns may stay a numpy array)
            array = self._to_numpy(values, 1)
            return InputTensor(self.column.tensor, self.datatype,
                               array.reshape([*prefix, *self._scalar_shape[len(prefix):]]))
        arrays = [self._to_numpy(value, self.column.rank) for value in values]
        if len({a.shape for a in arrays}) > 1:
            raise self._error("the values of one batch have different shapes.")
        stacked = np.stack(arrays) if arrays else np.empty((0,), dtype=self._numpy_dtype)
        return InputTensor(self.column.tensor, self.datatype,
                           stacked.reshape([*prefix, *stacked.shape[1:]]))

    def value_shape(self, value: Any) -> tuple[int, ...]:
        """The shape of one value: only rows of equal shapes can share a batch."""
        return _shape_of(value, self.column.name) if self.column.rank else ()

    def _error(self, text: str) -> TritonRequestError:
        column = self.column
        return TritonRequestError(
            f"Column '{column.name}' ({sql_type(column.data_type)}) for input "
            f"'{column.tensor}' {self.datatype}: {text}")

    def _to_numpy(self, value: Any, rank: int) -> np.ndarray:
        """``value``, a (nested) list, as an array of ``rank`` dims."""
        column = self.column
        if not self.binary and self.datatype in HALF_PRECISION:  # (open() refuses it first)
            raise self._error("Triton takes half-precision tensors in binary form only, not "
                              "as JSON ('binary-data' = 'false').")
        if self.datatype == "BYTES":
            return self._check_shape(self._bytes_array(value), rank)
        if column.is_decimal:
            value = _map_nested(value, self._decimal_to_int)
        try:
            raw = np.asarray(value)
        except ValueError:  # numpy's "inhomogeneous shape" for ragged nesting
            _shape_of(value, column.name)
            raise
        if raw.dtype == np.object_ and any(item is None for item in raw.flat):
            raise _null_element(column.name)
        if self._is_integer:
            if raw.dtype.kind == "f":
                # numpy 1.x turns Python ints on both sides of 2**63 into float64: keep them
                # exact (floats stay floats, and the range check refuses them).
                exact = np.array(value, dtype=np.object_)
                raw = exact if exact.shape == raw.shape else raw
            self._check_integer_range(raw)
        try:
            if self.datatype in ("FP16", "BF16", "FP32"):  # (errstate costs ~5 µs a call)
                with np.errstate(over="ignore"):  # overflow gives inf, as documented
                    array = raw.astype(self._numpy_dtype)
            else:
                array = raw.astype(self._numpy_dtype)
        except (TypeError, ValueError) as e:
            raise self._error(f"cannot convert the value to a tensor: {e}") from None
        if self.datatype == "BF16":
            array = _round_to_bfloat16(array)
        return self._check_shape(array, rank)

    def _decimal_to_int(self, item: Any) -> Any:
        if isinstance(item, decimal.Decimal):
            if not item.is_finite() or item != item.to_integral_value():
                raise self._error(f"{item} is not an integer.")
            return int(item)
        return item

    def _check_integer_range(self, raw: np.ndarray) -> None:
        """numpy 1.x wraps out-of-range integers silently; refuse them instead."""
        if raw.size == 0 or np.can_cast(raw.dtype, self._numpy_dtype):
            return
        if raw.dtype.kind in "iu":
            low, high = int(raw.min()), int(raw.max())
        else:
            bad = next((i for i in raw.flat if not isinstance(i, int | np.integer)), None)
            if bad is not None:
                raise self._error(f"needs integers, got {type(bad).__name__} {bad!r}.")
            low, high = min(raw.flat), max(raw.flat)
        limits = np.iinfo(self._numpy_dtype)
        if low < limits.min or high > limits.max:
            bad = low if low < limits.min else high
            raise self._error(f"{bad} is outside the {self.datatype} range "
                              f"[{limits.min}, {limits.max}].")

    def _bytes_array(self, value: Any) -> np.ndarray:
        def to_bytes(item: Any) -> Any:
            if isinstance(item, list | tuple):
                return [to_bytes(i) for i in item]
            if item is None:
                raise _null_element(self.column.name)
            if isinstance(item, str):
                return item.encode("utf-8")
            if isinstance(item, bytes | bytearray | memoryview):
                if not self.binary:
                    self._check_utf8(item)
                return bytes(item)
            raise self._error(f"needs str or bytes values, got {type(item).__name__}.")

        encoded = to_bytes(value)
        array = np.empty(_shape_of(encoded, self.column.name), dtype=np.object_)
        array[...] = encoded
        return array

    def _check_utf8(self, item: bytes | bytearray | memoryview) -> None:
        try:
            bytes(item).decode("utf-8")
        except UnicodeDecodeError:  # (the value itself is not repeated: it may be large)
            raise self._error("a value is not valid UTF-8, so it cannot be sent as JSON "
                              "('binary-data' = 'false').") from None

    def _check_shape(self, array: np.ndarray, rank: int) -> np.ndarray:
        column = self.column
        if array.size == 0 and array.ndim < column.rank:
            # An empty array ([] or [[]] for a 3-D column) leaves its inner sizes open: take
            # the model's fixed sizes, 0 where the model allows any.
            inner = [max(d, 0) for d in self.dims[array.ndim:]]
            array = array.reshape([*array.shape, *inner])
        if array.ndim != rank:
            raise self._error(
                f"expected {rank} dimension(s), got an array of shape "
                f"{list(array.shape)}; nested arrays must not be ragged (every inner array "
                "of one value needs the same length).")
        if column.rank and any(d not in (-1, n) for d, n in zip(self.dims, array.shape,
                                                              strict=True)):
            raise self._error(
                f"the model takes dims {list(self.dims)} (-1 is any size), got a value of "
                f"shape {list(array.shape)}.")
        return array


@dataclass(frozen=True)
class OutputCodec:
    """Turns an output tensor of one record's response into the column's value."""

    column: TensorColumn
    datatype: str
    batched: bool
    binary: bool

    def decode(self, array: np.ndarray | None, model: str) -> Any:
        """The Flink value of an output tensor (its only batch entry when ``batched``)."""
        column = self.column
        if array is None:
            raise TritonRequestError(
                f"Model '{model}' returned no output tensor '{column.tensor}'.")
        if self.batched:
            if array.ndim == 0 or array.shape[0] != 1:
                raise self._shape_error(array, model, "a batch of 1")
            array = array[0]
        if column.rank == 0:
            if array.size != 1:
                raise self._shape_error(array, model, "one element; declare the column as an "
                                        "ARRAY")
            return self._from_element(array.reshape(-1)[0])
        if column.rank == 1:
            array = array.reshape(-1)  # as Flink's Java provider, [1, N] -> [N]
        while array.ndim > column.rank and array.shape[0] == 1:
            array = array[0]
        if array.ndim != column.rank:
            raise self._shape_error(array, model, f"{column.rank} dimension(s)")
        if array.dtype == np.object_ or column.is_decimal:
            return _map_nested(array.tolist(), self._from_element)
        if array.dtype == np.float16:
            array = array.astype(np.float32)  # tolist() then gives Python floats
        return array.tolist()

    def decode_batch(self, array: np.ndarray | None, rows: int, model: str) -> Sequence[Any]:
        """The Flink values of a batched output tensor, one per record of the request."""
        if array is None:
            return [self.decode(array, model)]  # (raises)
        if array.ndim == 0 or array.shape[0] != rows:
            raise self._shape_error(array, model, f"a batch of {rows}")
        column = self.column
        if column.rank or array[0].size != 1:
            return [self.decode(array[i:i + 1], model) for i in range(rows)]
        flat = array.reshape(rows)  # one vectorised conversion for a scalar column
        if flat.dtype == np.object_ or column.is_decimal:
            return [self._from_element(item) for item in flat.tolist()]
        return flat.astype(np.float32) if flat.dtype == np.float16 else flat

    def _shape_error(self, array: np.ndarray, model: str, expected: str) -> TritonRequestError:
        column = self.column
        return TritonRequestError(
            f"Model '{model}' returned output '{column.tensor}' with shape "
            f"{list(array.shape)}, but column '{column.name}' ({sql_type(column.data_type)}) "
            f"needs {expected}.")

    def _from_element(self, item: Any) -> Any:
        if isinstance(item, np.generic):
            item = item.item()
        if self.column.is_decimal:
            return decimal.Decimal(int(item))
        if isinstance(item, str) and not self.column.is_text:  # JSON carries BYTES as text
            return item.encode("utf-8")
        if isinstance(item, bytes) and self.column.is_text:
            try:
                return item.decode("utf-8")
            except UnicodeDecodeError:
                raise TritonRequestError(
                    f"Output '{self.column.tensor}' is not valid UTF-8; declare column "
                    f"'{self.column.name}' as BYTES to receive raw bytes.") from None
        return item


def _round_to_bfloat16(array: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest bfloat16 (ties to even), still as float32.

    tritonclient sends BF16 by keeping the upper 16 bits of each float32, which truncates;
    values already on the bfloat16 grid survive that unchanged.
    """
    bits = array.astype(np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(
        0xFFFF0000)
    nan = np.isnan(array)
    rounded[nan] = (bits[nan] & np.uint32(0xFFFF0000)) | np.uint32(0x00400000)  # stay NaN
    return rounded.view(np.float32)


def _null_element(column: str) -> TritonRequestError:
    return TritonRequestError(f"Column '{column}' holds a NULL array element.")


def _shape_of(nested: Any, column: str) -> tuple[int, ...]:
    """Shape of a nested list (or tuple), or an error if it is ragged."""
    if isinstance(nested, np.ndarray):
        return nested.shape
    if not isinstance(nested, list | tuple):
        return ()
    if any(item is None for item in nested):
        raise _null_element(column)
    inner = {_shape_of(item, column) for item in nested}
    if len(inner) > 1:
        raise TritonRequestError(
            f"Column '{column}' holds a ragged nested array (inner lengths differ); a tensor "
            "needs every inner array of one value to have the same length.")
    return (len(nested), *(inner.pop() if inner else ()))


def _map_nested(items: Any, convert: Any) -> Any:
    if isinstance(items, list | tuple):
        return [_map_nested(i, convert) for i in items]
    return convert(items)


def significant_dims(dims: Sequence[int]) -> list[int]:
    """A tensor's (batch-free) dims without the leading dims of size 1 a column leaves out."""
    dims = list(dims)
    while dims and dims[0] == 1:
        dims.pop(0)
    return dims


def flink_type_for(datatype: str, dims: Sequence[int]) -> DataType | None:
    """The Flink type of a tensor with these (batch-free) dims, or None if there is none.

    Leading dims of 1 are left out (``[1]`` and ``[1, 1]`` give a scalar, ``[1, -1]`` an
    ARRAY); every other dimension adds an ARRAY level.
    """
    data_type = _DERIVED_FLINK_TYPES.get(datatype)
    if data_type is None:
        return None
    for _ in significant_dims(dims):
        data_type = DataTypes.ARRAY(data_type)
    return data_type


def parse_data_type(text: str, column: str) -> DataType:
    """Parse a Flink SQL type (``ARRAY<FLOAT>``, ``STRING``...) with Flink's own parser."""
    from pyflink.java_gateway import get_gateway
    from pyflink.table.types import _from_java_data_type

    jvm = get_gateway().jvm
    try:
        logical = jvm.org.apache.flink.table.types.logical.utils.LogicalTypeParser.parse(
            text, jvm.Thread.currentThread().getContextClassLoader())
        java_type = jvm.org.apache.flink.table.types.utils.TypeConversions \
            .fromLogicalToDataType(logical)
        return _from_java_data_type(java_type)
    except Exception as e:
        java_exception = getattr(e, "java_exception", None)  # py4j's wrapper of Flink's error
        reason = java_exception.getMessage() if java_exception is not None else str(e)
        first_line = (reason or type(e).__name__).strip().splitlines()[0]
        raise TritonConfigError(
            f"Column '{column}' has type '{text}', which is not a Flink SQL type "
            f"({first_line}).") from None
