"""Column types: Flink column types <-> Triton datatypes and shapes.

Two steps, matching the two moments of a function's life:

- At registration a :class:`TensorColumn` names a Flink column (or ROW field), the tensor it is
  bound to, and its Flink type. Any type made of the types below is accepted; which Triton
  datatypes it can carry is :meth:`TensorColumn.accepts`.
- At ``open()``, once the model's metadata and config are known, ``signature`` builds a
  codec per tensor (``tensors``): the served datatype and shape are fixed, and
  ``encode``/``decode`` convert one record's values.

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

from ..errors import TritonConfigError

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
