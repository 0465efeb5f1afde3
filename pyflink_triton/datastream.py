"""DataStream adapters: the model as a map over a stream, in the three modes.

    f = TritonMapFunction({"endpoint": "http://localhost:8000", "model-name": "add_one"})
    stream.map(f, output_type=f.output_type)                  # one blocking request per element
    async_map(stream, TritonAsyncFunction(options))           # many requests in flight, in order
    vectorized_map(t_env, stream, TritonVectorizedFunction(options))  # batched requests

An element is the value of the model's single input, or a ``Row``/tuple with one field per
input column (matched by field name when the Row has names, by position otherwise). A ROW result
is a ``Row`` with one named field per output column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyflink.common import Row, Time
from pyflink.common.typeinfo import TypeInformation, Types
from pyflink.datastream import AsyncDataStream, DataStream
from pyflink.datastream.functions import AsyncFunction, MapFunction, RuntimeContext
from pyflink.table.expressions import col
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
from .inference import AsyncInferenceSession, InferenceSession, TritonInference
from .options import TritonOptions
from .signature import ColumnDeclaration, OutputDeclaration
from .table import TritonVectorizedFunction

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


class _ElementFunction:
    """What the per-element adapters share: validation, the output type, element -> values."""

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

    _session: Any = None  # opened in open(), per parallel instance

    @property
    def output_type(self) -> TypeInformation:
        return type_info_for(self.inference.result_type)

    def open(self, runtime_context: RuntimeContext) -> None:
        self._session = self._open_session(runtime_context.get_index_of_this_subtask(),
                                           runtime_context.get_attempt_number(),
                                           runtime_context.get_metrics_group())

    def _open_session(self, subtask_index: int, attempt: int, metric_group: Any) -> Any:
        raise NotImplementedError

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


class TritonMapFunction(_ElementFunction, MapFunction):
    """One blocking request per element."""

    def _open_session(self, subtask_index: int, attempt: int,
                      metric_group: Any) -> InferenceSession:
        return self.inference.open(subtask_index, attempt, metric_group)

    def map(self, value: Any) -> Any:
        assert self._session is not None, "map() before open()"
        return self._session.infer(self._arguments(value))

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


class TritonAsyncFunction(_ElementFunction, AsyncFunction):
    """One request per element, up to 'max-concurrent-requests' in flight; apply it with
    :func:`async_map`, which sets Flink's capacity to match."""

    def _open_session(self, subtask_index: int, attempt: int,
                      metric_group: Any) -> AsyncInferenceSession:
        return self.inference.open_async(subtask_index, attempt, metric_group)

    async def async_invoke(self, value: Any) -> list[Any]:
        assert self._session is not None, "async_invoke() before open()"
        return [await self._session.infer(self._arguments(value))]

    def close(self) -> None:
        if self._session is not None:  # (PyFlink stops the event loop first; the sockets
            self._session.stop()       # close with it)
            self._session = None


def async_map(stream: DataStream, function: TritonAsyncFunction) -> DataStream:
    """``stream`` mapped through the model, results in input order, with Flink's capacity set
    to 'max-concurrent-requests'. Each element's request is bounded by 'timeout'; Flink's own
    timeout (0 here: none) would start a timer thread per element."""
    return AsyncDataStream.ordered_wait(
        stream, function, Time.milliseconds(0),
        function.inference.options.max_concurrent_requests, function.output_type)


def vectorized_map(t_env: Any, stream: DataStream,
                   function: TritonVectorizedFunction) -> DataStream:
    """``stream`` mapped through the model in Arrow batches, results in input order.

    PyFlink's DataStream API has no vectorized functions, so the stream goes through the
    Table API (``t_env``: a ``StreamTableEnvironment`` of the stream's environment): its
    elements become rows (a ``Row`` type's fields, or one column for other types), the pandas
    function runs on them, and the results come back as a stream of the function's
    ``output_type``. The columns are matched to the model's inputs by position.
    """
    table = t_env.from_data_stream(stream)
    arguments = [col(name) for name in table.get_schema().get_field_names()]
    result = table.select(function.as_udf()(*arguments).alias("result"))
    output_type = type_info_for(function.result_type)
    return t_env.to_data_stream(result).map(lambda row: row[0], output_type=output_type)
