"""DataStream adapter: a PyFlink ``MapFunction`` that sends one request per element.

    f = TritonMapFunction({"endpoint": "http://localhost:8000", "model-name": "add_one"})
    stream.map(f, output_type=f.output_type)

An element is the value of the model's single input, or a ``Row``/tuple with one field per
input column (matched by field name when the Row has names, by position otherwise). A ROW result
is a ``Row`` with one named field per output column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyflink.common import Row
from pyflink.common.typeinfo import TypeInformation, Types
from pyflink.datastream.functions import MapFunction, RuntimeContext
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
    RowType,
    SmallIntType,
    TinyIntType,
    VarBinaryType,
    VarCharType,
)

from .errors import TritonConfigError, TritonRequestError
from .inference import InferenceSession, TritonInference
from .options import TritonOptions
from .signature import ColumnDeclaration, OutputDeclaration

_PRIMITIVE_TYPE_INFO = {
    BooleanType: Types.BOOLEAN, TinyIntType: Types.BYTE, SmallIntType: Types.SHORT,
    IntType: Types.INT, BigIntType: Types.LONG, FloatType: Types.FLOAT,
    DoubleType: Types.DOUBLE,
}


def type_info_for(data_type: DataType) -> TypeInformation:
    """The DataStream type of values of a column type (what ``map(output_type=...)`` needs)."""
    if isinstance(data_type, VarCharType | CharType):
        return Types.STRING()
    if isinstance(data_type, VarBinaryType | BinaryType):
        return Types.PRIMITIVE_ARRAY(Types.BYTE())
    if type(data_type) in _PRIMITIVE_TYPE_INFO:
        return _PRIMITIVE_TYPE_INFO[type(data_type)]()
    if isinstance(data_type, DecimalType):
        return Types.BIG_DEC()
    if isinstance(data_type, RowType):
        return Types.ROW_NAMED(data_type.names,
                               [type_info_for(f.data_type) for f in data_type.fields])
    assert isinstance(data_type, ArrayType), data_type  # signatures admit nothing else
    element = data_type.element_type
    if isinstance(element, TinyIntType):  # PRIMITIVE_ARRAY(BYTE) would be bytes, not ints
        return Types.BASIC_ARRAY(Types.BYTE())
    if type(element) in _PRIMITIVE_TYPE_INFO:
        return Types.PRIMITIVE_ARRAY(type_info_for(element))
    if isinstance(element, VarCharType | CharType):
        return Types.BASIC_ARRAY(Types.STRING())
    return Types.OBJECT_ARRAY(type_info_for(element))


class TritonMapFunction(MapFunction):
    def __init__(self, options: Mapping[str, object] | TritonOptions,
                 inputs: Sequence[ColumnDeclaration] | None = None,
                 output: OutputDeclaration | None = None) -> None:
        """Same arguments as :class:`pyflink_triton.TritonScalarFunction`."""
        self.inference = TritonInference.create(options, inputs, output)
        if self.inference.options.null_input == "skip":
            # It would emit null elements, and Flink's DataStream serializers for numbers,
            # arrays and rows reject null (a NullPointerException far from the cause).
            raise TritonConfigError(
                "'null-input' = 'skip' is for Table API / SQL functions, where the result is "
                "NULL; a DataStream element cannot be null. Filter NULL fields out before the "
                "map (stream.filter(...)) instead.")
        self._input_names = [c.name for c in self.inference.signature.inputs]
        self._session: InferenceSession | None = None

    @property
    def output_type(self) -> TypeInformation:
        return type_info_for(self.inference.signature.result_type)

    def open(self, runtime_context: RuntimeContext) -> None:
        self._session = self.inference.open(runtime_context.get_index_of_this_subtask(),
                                            runtime_context.get_attempt_number())

    def map(self, value: Any) -> Any:
        assert self._session is not None, "map() before open()"
        return self._session.infer(self._arguments(value))

    def _arguments(self, value: Any) -> Sequence[Any]:
        names = self._input_names
        if isinstance(value, Row) and getattr(value, "_fields", None):
            fields = value.as_dict()
            missing = [n for n in names if n not in fields]
            if missing:
                raise TritonRequestError(
                    f"The element's Row has no field(s) {missing} for the model's input tensors "
                    f"{names}; its fields are {list(fields)}.")
            return [fields[n] for n in names]
        if isinstance(value, Row | tuple) and (len(names) > 1 or len(value) == 1):
            return list(value)
        return [value]

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
