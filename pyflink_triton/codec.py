"""Tensor codec: Flink column types and values <-> Triton datatypes and tensors.

A :class:`TensorColumn` binds one Flink column to one Triton tensor (by the tensor's exact,
case-preserved name). ``encode`` turns a column value into an ``InferInput``; ``decode`` turns
an output tensor back into the value Flink expects. Arrays become tensors of their element
type, nested arrays multi-dimensional tensors.

| Flink type              | Triton datatype | notes                                   |
|-------------------------|-----------------|-----------------------------------------|
| BOOLEAN                 | BOOL            |                                         |
| TINYINT / SMALLINT      | INT8 / INT16    |                                         |
| INT / BIGINT            | INT32 / INT64   |                                         |
| FLOAT / DOUBLE          | FP32 / FP64     |                                         |
| STRING, VARCHAR, CHAR   | BYTES           | UTF-8 encoded                           |
| BYTES, VARBINARY, BINARY| BYTES           | raw bytes                               |
| ARRAY<T>                | datatype of T   | one tensor dimension per ARRAY level    |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from pyflink.table import DataTypes
from pyflink.table.types import (
    ArrayType,
    BigIntType,
    BinaryType,
    BooleanType,
    CharType,
    DataType,
    DoubleType,
    FloatType,
    IntType,
    SmallIntType,
    TinyIntType,
    VarBinaryType,
    VarCharType,
)
from tritonclient.http import InferInput, InferRequestedOutput

from .errors import TritonConfigError, TritonRequestError

# Flink logical type class -> (Triton datatype, numpy dtype)
_SCALAR_TYPES: dict[type, tuple[str, Any]] = {
    BooleanType: ("BOOL", np.bool_),
    TinyIntType: ("INT8", np.int8),
    SmallIntType: ("INT16", np.int16),
    IntType: ("INT32", np.int32),
    BigIntType: ("INT64", np.int64),
    FloatType: ("FP32", np.float32),
    DoubleType: ("FP64", np.float64),
    VarCharType: ("BYTES", np.object_),
    CharType: ("BYTES", np.object_),
    VarBinaryType: ("BYTES", np.object_),
    BinaryType: ("BYTES", np.object_),
}
_TEXT_TYPES = (VarCharType, CharType)

# Triton datatype -> the Flink type a column gets when it is derived from model metadata.
_FLINK_TYPE_OF: dict[str, DataType] = {
    "BOOL": DataTypes.BOOLEAN(),
    "INT8": DataTypes.TINYINT(),
    "INT16": DataTypes.SMALLINT(),
    "INT32": DataTypes.INT(),
    "INT64": DataTypes.BIGINT(),
    "FP32": DataTypes.FLOAT(),
    "FP64": DataTypes.DOUBLE(),
    "BYTES": DataTypes.STRING(),
}

SUPPORTED_FLINK_TYPES = ("BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, STRING/VARCHAR/"
                         "CHAR, BYTES/VARBINARY/BINARY, and ARRAY of these")


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
    elif hasattr(data_type, "precision") and hasattr(data_type, "scale"):
        text = f"{data_type.type_name()}({data_type.precision}, {data_type.scale})"
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
    """A Flink column bound to the Triton tensor of the same (case-preserved) name."""

    name: str
    data_type: DataType

    def __post_init__(self) -> None:
        element, _ = _element_type(self.data_type)
        if type(element) not in _SCALAR_TYPES:
            raise TritonConfigError(
                f"Column '{self.name}' has type {sql_type(self.data_type)}, which has no Triton "
                f"tensor datatype. Supported: {SUPPORTED_FLINK_TYPES}.")

    # Cached: they are read for every record.
    @cached_property
    def triton_datatype(self) -> str:
        return _SCALAR_TYPES[type(_element_type(self.data_type)[0])][0]

    @cached_property
    def numpy_dtype(self) -> Any:
        return _SCALAR_TYPES[type(_element_type(self.data_type)[0])][1]

    @cached_property
    def rank(self) -> int:
        """Number of ARRAY levels: 0 for a scalar column."""
        return _element_type(self.data_type)[1]

    @cached_property
    def is_text(self) -> bool:
        return isinstance(_element_type(self.data_type)[0], _TEXT_TYPES)

    def describe(self) -> str:
        return f"'{self.name}' {sql_type(self.data_type)} <-> {self.triton_datatype}"

    # --- values -> tensors ---------------------------------------------------------------

    def encode(self, value: Any, scalar_shape: Sequence[int], batched: bool) -> InferInput:
        """One record's value as an input tensor.

        ``scalar_shape`` is the shape a scalar takes (the model's dims, e.g. ``[1]``); arrays
        take their own shape. ``batched`` adds the leading batch dimension of size 1.
        """
        if value is None:
            raise TritonRequestError(
                f"Column '{self.name}' is NULL, and a Triton tensor cannot hold NULL; filter "
                "NULLs out before calling the model or replace them with COALESCE.")
        array = self._to_numpy(value)
        shape = list(scalar_shape) if self.rank == 0 else list(array.shape)
        if batched:
            shape = [1, *shape]
        tensor = InferInput(self.name, shape, self.triton_datatype)
        tensor.set_data_from_numpy(array.reshape(shape), binary_data=True)
        return tensor

    def _to_numpy(self, value: Any) -> np.ndarray:
        numpy_dtype = self.numpy_dtype
        if self.rank == 0:
            value = [value]
        if numpy_dtype is np.object_:
            return self._bytes_array(value)
        try:
            raw = np.asarray(value)
        except ValueError:  # numpy's "inhomogeneous shape" for ragged nesting
            _shape_of(value, self.name)
            raise
        if raw.dtype == np.object_ and any(item is None for item in raw.flat):
            raise TritonRequestError(f"Column '{self.name}' holds a NULL array element.")
        if np.issubdtype(numpy_dtype, np.integer):
            self._check_integer_range(raw, numpy_dtype)
        try:
            array = raw.astype(numpy_dtype)
        except (TypeError, ValueError) as e:
            raise TritonRequestError(
                f"Column '{self.name}' ({sql_type(self.data_type)}): cannot convert the value to "
                f"a {self.triton_datatype} tensor: {e}") from None
        self._check_rank(array)
        return array

    def _check_integer_range(self, raw: np.ndarray, numpy_dtype: Any) -> None:
        """numpy 1.x wraps out-of-range integers silently; refuse them instead."""
        if raw.size == 0:
            return
        if raw.dtype.kind not in "iub" and not (
                raw.dtype == np.object_ and all(isinstance(i, int) for i in raw.flat)):
            raise TritonRequestError(
                f"Column '{self.name}' ({sql_type(self.data_type)}) is sent as "
                f"{self.triton_datatype} and needs integers, got values of type {raw.dtype}.")
        limits = np.iinfo(numpy_dtype)
        low, high = min(raw.flat), max(raw.flat)
        if low < limits.min or high > limits.max:
            bad = low if low < limits.min else high
            raise TritonRequestError(
                f"Column '{self.name}' ({sql_type(self.data_type)}): {bad} is outside the "
                f"{self.triton_datatype} range [{limits.min}, {limits.max}].")

    def _bytes_array(self, value: Any) -> np.ndarray:
        def to_bytes(item: Any) -> Any:
            if isinstance(item, list | tuple):
                return [to_bytes(i) for i in item]
            if item is None:
                raise TritonRequestError(f"Column '{self.name}' holds a NULL array element.")
            if isinstance(item, str):
                return item.encode("utf-8")
            if isinstance(item, bytes | bytearray | memoryview):
                return bytes(item)
            raise TritonRequestError(
                f"Column '{self.name}' ({sql_type(self.data_type)}) needs str or bytes values, "
                f"got {type(item).__name__}.")

        encoded = to_bytes(value)
        array = np.empty(_shape_of(encoded, self.name), dtype=np.object_)
        array[...] = encoded
        self._check_rank(array)
        return array

    def _check_rank(self, array: np.ndarray) -> None:
        if array.ndim != max(self.rank, 1):
            raise TritonRequestError(
                f"Column '{self.name}' ({sql_type(self.data_type)}): expected {max(self.rank, 1)} "
                f"dimension(s), got an array of shape {list(array.shape)}; nested arrays must "
                "not be ragged (every inner array of one value needs the same length).")

    # --- tensors -> values ---------------------------------------------------------------

    def requested_output(self) -> InferRequestedOutput:
        return InferRequestedOutput(self.name, binary_data=True)

    def decode(self, array: np.ndarray | None, batched: bool, model: str) -> Any:
        """The Flink value of an output tensor (its first batch entry when ``batched``)."""
        if array is None:
            raise TritonRequestError(
                f"Model '{model}' returned no output tensor '{self.name}'.")
        if batched:
            array = array[0]
        if self.rank == 0:
            if array.size != 1:
                raise TritonRequestError(
                    f"Model '{model}' returned output '{self.name}' with shape "
                    f"{list(array.shape)}, but column '{self.name}' "
                    f"({sql_type(self.data_type)}) is a scalar; declare it as an ARRAY.")
            return self._from_element(array.reshape(-1)[0])
        if array.ndim != self.rank:  # e.g. [1, N] for ARRAY<T>: flatten, as Flink's provider does
            array = array.reshape(-1) if self.rank == 1 else array
        if array.ndim != self.rank:
            raise TritonRequestError(
                f"Model '{model}' returned output '{self.name}' with shape "
                f"{list(array.shape)}, which does not fit column type {sql_type(self.data_type)}.")
        if array.dtype == np.object_:
            return _map_nested(array.tolist(), self._from_element)
        return array.tolist()

    def _from_element(self, item: Any) -> Any:
        if isinstance(item, bytes):
            if not self.is_text:
                return item
            try:
                return item.decode("utf-8")
            except UnicodeDecodeError:
                raise TritonRequestError(
                    f"Output '{self.name}' is not valid UTF-8; declare the column as BYTES to "
                    "receive raw bytes.") from None
        return item.item() if isinstance(item, np.generic) else item


def _shape_of(nested: Any, column: str) -> tuple[int, ...]:
    """Shape of a nested list, or an error if it is ragged."""
    if not isinstance(nested, list):
        return ()
    inner = {_shape_of(item, column) for item in nested}
    if len(inner) > 1:
        raise TritonRequestError(
            f"Column '{column}' holds a ragged nested array (inner lengths differ); a tensor "
            "needs every inner array of one value to have the same length.")
    return (len(nested), *(inner.pop() if inner else ()))


def _map_nested(items: Any, convert: Any) -> Any:
    if isinstance(items, list):
        return [_map_nested(i, convert) for i in items]
    return convert(items)


def flink_type_for(datatype: str, dims: Sequence[int]) -> DataType | None:
    """The Flink type of a tensor with these (batch-free) dims, or None if there is none.

    Dims that are all 1 (``[1]``, ``[1, 1]``) give a scalar column; every other dimension adds
    an ARRAY level.
    """
    element = _FLINK_TYPE_OF.get(datatype)
    if element is None:
        return None
    data_type = element
    for _ in range(sum(1 for d in dims if d != 1)):
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
