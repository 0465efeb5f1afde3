"""What a record's result is when its request failed for good, and the shape of results.

Options 'default-value' and 'error-fields'. By default a failed record fails the job (Flink's
usual behaviour). With 'default-value' it returns that value instead; with 'error-fields' the
result is ``ROW(<output fields...>, ok, error)`` and a failed record has ``ok = false`` and the
reason in ``error``, so failures can be routed to a side table rather than mixed silently with
predictions. 'default-value' is parsed here, at registration, against the output types.
"""

from __future__ import annotations

import copy
import decimal
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pyflink.common import Row
from pyflink.table.types import (
    ArrayType,
    BigIntType,
    BinaryType,
    BooleanType,
    DataType,
    DataTypes,
    DecimalType,
    DoubleType,
    FloatType,
    IntType,
    SmallIntType,
    TinyIntType,
    VarBinaryType,
)

from ..errors import TritonConfigError, TritonRequestError
from .columns import TensorColumn, sql_type

OK_FIELD, ERROR_FIELD = "ok", "error"
_INTEGER_BITS = {TinyIntType: 8, SmallIntType: 16, IntType: 32, BigIntType: 64}
_FORMATS = ("STRING: the text itself; BOOLEAN: true or false; numbers: e.g. -1 or 0.5; "
            "ARRAY: a JSON array such as [0.0, 0.0]; a ROW result: a JSON object of its fields "
            "such as {\"label\": \"unknown\", \"score\": 0}; SQL NULL: null")


@dataclass(frozen=True)
class ResultPolicy:
    """How a record's result is built, from its output values or from its failure."""

    outputs: tuple[TensorColumn, ...]
    row_output: bool
    default: tuple[Any, ...] | None  # one value per output; None: no 'default-value'
    error_fields: bool

    @classmethod
    def from_options(cls, default_value: str | None, error_fields: bool,
                     outputs: Sequence[TensorColumn], row_output: bool) -> ResultPolicy:
        outputs = tuple(outputs)
        if error_fields:
            taken = sorted({OK_FIELD, ERROR_FIELD} & {c.name for c in outputs})
            if taken:
                raise TritonConfigError(
                    f"'error-fields' = 'true' adds the fields '{OK_FIELD}' and '{ERROR_FIELD}' "
                    f"to the result, and the output column(s) {taken} already have those "
                    "names; rename them (OUTPUT (...) / output=, with 'output-names').")
        default = None
        if default_value is not None:
            default = _parse_default(default_value, outputs, row_output)
        return cls(outputs, row_output, default, error_fields)

    @property
    def handles_failures(self) -> bool:
        return self.default is not None or self.error_fields

    @cached_property  # (read for every record)
    def field_names(self) -> list[str] | None:
        """The fields of a ROW result, or None when the result is a single value."""
        names = [c.name for c in self.outputs]
        if self.error_fields:
            return [*names, OK_FIELD, ERROR_FIELD]
        return names if self.row_output else None

    @property
    def result_type(self) -> DataType:
        fields = [DataTypes.FIELD(c.name, c.data_type) for c in self.outputs]
        if self.error_fields:
            fields += [DataTypes.FIELD(OK_FIELD, DataTypes.BOOLEAN()),
                       DataTypes.FIELD(ERROR_FIELD, DataTypes.STRING())]
        elif not self.row_output:
            return self.outputs[0].data_type
        return DataTypes.ROW(fields)

    def succeeded(self, values: Sequence[Any]) -> Any:
        if self.error_fields:
            return self._row([*values, True, None])
        return self._row(values) if self.row_output else values[0]

    def failed(self, error: TritonRequestError) -> Any:
        """The result of a record that failed with ``error``; raises it when no option says
        otherwise. Each call returns fresh objects: Flink may hold on to results."""
        if not self.handles_failures:
            raise error
        values = self.failed_values()
        if self.error_fields:
            return self._row([*values, False, str(error)])
        return self._row(values) if self.row_output else values[0]

    def of_fields(self, fields: Sequence[Any]) -> Any:
        """A record's result from all its result fields (the outputs, then ok and error with
        'error-fields'), as the vectorized mode gives them per field."""
        return fields[0] if self.field_names is None else self._row(fields)

    def failed_values(self) -> list[Any]:
        """The output values of a failed record: the 'default-value', or NULLs."""
        if self.default is None:
            return [None] * len(self.outputs)
        return copy.deepcopy(list(self.default))

    def _row(self, values: Sequence[Any]) -> Row:
        row = Row(*values)
        row.set_field_names(self.field_names)
        return row


def _parse_default(text: str, outputs: tuple[TensorColumn, ...],
                   row_output: bool) -> tuple[Any, ...]:
    result_type = (DataTypes.ROW([DataTypes.FIELD(c.name, c.data_type) for c in outputs])
                   if row_output else outputs[0].data_type)
    try:
        if text.strip() == "null":
            return tuple(None for _ in outputs)
        if not row_output:
            column = outputs[0]
            if column.is_text and column.rank == 0:
                return (text,)  # the text itself, as Flink's provider takes it
            if isinstance(column.data_type, VarBinaryType | BinaryType):
                return (text.encode("utf-8"),)
            return (_value(_json(text), column.data_type, column.name),)
        fields = _json(text)
        if not isinstance(fields, dict):
            raise ValueError("a ROW result takes a JSON object of its fields")
        unknown = sorted(set(fields) - {c.name for c in outputs})
        if unknown:
            raise ValueError(f"the result has no field(s) {unknown}")
        return tuple(_value(fields.get(c.name), c.data_type, c.name) for c in outputs)
    except ValueError as e:
        raise TritonConfigError(
            f"Invalid value for option 'default-value': {text!r} does not fit the result type "
            f"{sql_type(result_type)}: {e}. Expected formats: {_FORMATS}.") from None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ValueError("not valid JSON") from None


def _value(value: Any, data_type: DataType, name: str) -> Any:
    """``value`` (parsed JSON) as a value of ``data_type``; raises ``ValueError``."""
    if value is None:
        return None
    where = f"field '{name}' ({sql_type(data_type)})"
    if isinstance(data_type, ArrayType):
        if not isinstance(value, list):
            raise ValueError(f"{where} takes a JSON array")
        return [_value(item, data_type.element_type, name) for item in value]
    if isinstance(data_type, BooleanType):
        if not isinstance(value, bool):
            raise ValueError(f"{where} takes true or false")
        return value
    if type(data_type) in _INTEGER_BITS:
        bits = _INTEGER_BITS[type(data_type)]
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{where} takes an integer")
        if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            raise ValueError(f"{value} is out of the range of {where}")
        return value
    if isinstance(data_type, DecimalType):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{where} takes an integer")
        if len(str(abs(value))) > data_type.precision:
            raise ValueError(f"{value} has more digits than {where}")
        return decimal.Decimal(value)
    if isinstance(data_type, FloatType | DoubleType):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{where} takes a number")
        limit = 3.4028235e38 if isinstance(data_type, FloatType) else sys.float_info.max
        if (isinstance(value, int) or math.isfinite(value)) and abs(value) > limit:
            raise ValueError(f"{value} is out of the range of {where}")
        return float(value)
    if isinstance(data_type, VarBinaryType | BinaryType):
        if not isinstance(value, str):
            raise ValueError(f"{where} takes a JSON string (sent as its UTF-8 bytes)")
        return value.encode("utf-8")
    if not isinstance(value, str):  # a text type
        raise ValueError(f"{where} takes a JSON string")
    return value
