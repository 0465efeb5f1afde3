"""DataStream adapters: the model as a map over a stream, in the three modes.

    f = TritonMapFunction({"endpoint": "http://localhost:8000", "model-name": "add_one"})
    stream.map(f, output_type=f.output_type)                  # one blocking request per element
    async_map(stream, TritonAsyncFunction(options))           # many requests in flight, in order
    vectorized_map(t_env, stream, TritonVectorizedFunction(options))  # batched requests

and, for stateful models, one long-lived Triton sequence per key of a keyed stream:

    keyed_sequence_map(stream.key_by(lambda r: r.device),
                       TritonKeyedSequenceFunction(options, end_when="is_last"))

An element is the value of the model's single input, or a ``Row``/tuple with one field per
input column (matched by field name when the Row has names, by position otherwise). A ROW result
is a ``Row`` with one named field per output column.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from pyflink.common import Row, Time
from pyflink.common.typeinfo import ExternalTypeInfo, RowTypeInfo, TypeInformation, Types
from pyflink.datastream import AsyncDataStream, DataStream, KeyedStream
from pyflink.datastream.functions import (
    AsyncFunction,
    KeyedProcessFunction,
    MapFunction,
    RuntimeContext,
)
from pyflink.datastream.state import ValueStateDescriptor
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

from ..codecs.signature import ColumnDeclaration, OutputDeclaration
from ..errors import TritonConfigError, TritonRequestError
from ..options import Mode, TritonOptions
from ..policies.keyed import KeySequence
from ..sessions.function import TritonInference
from ..sessions.keyed import KeyedInferenceSession
from ..sessions.keyed_flight import KeysInFlight
from ..sessions.per_record import AsyncInferenceSession
from . import _keyed_bundles
from .table import TritonVectorizedFunction, open_for

_keyed_bundles.install()  # (in each Python worker, when it unpickles a function)

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

    MODE: ClassVar[Mode]  # how the function calls the model

    def __init__(self, options: Mapping[str, object] | TritonOptions,
                 inputs: Sequence[ColumnDeclaration] | None = None,
                 output: OutputDeclaration | None = None) -> None:
        """Same arguments as :class:`pyflink_triton.TritonScalarFunction`."""
        self.inference = TritonInference.create(options, inputs, output, mode=self.MODE)
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
        self._session = open_for(self.inference, runtime_context,
                                 runtime_context.get_metrics_group)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()  # (a keyed one ends the sequences it still holds open)
            self._session = None

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

    MODE = "sync"

    def map(self, value: Any) -> Any:
        assert self._session is not None, "map() before open()"
        return self._session.infer(self._arguments(value))


class TritonAsyncFunction(_ElementFunction, AsyncFunction):
    """One request per element, up to 'max-concurrent-requests' in flight; apply it with
    :func:`async_map`, which sets Flink's capacity to match."""

    MODE = "async"
    _session: AsyncInferenceSession | None = None

    async def async_invoke(self, value: Any) -> list[Any]:
        assert self._session is not None, "async_invoke() before open()"
        return [await self._session.infer(self._arguments(value))]

    def close(self) -> None:
        if self._session is not None:  # (as TritonAsyncScalarFunction.close)
            self._session.stop()
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


EndCondition = str | Callable[[Any], bool]


class TritonKeyedSequenceFunction(_ElementFunction, KeyedProcessFunction):
    """One Triton sequence per key of a keyed stream, for stateful models; apply it with
    :func:`keyed_sequence_map`.

    A key's first record sends START; a record for which ``end_when`` holds sends END (a
    boolean field of the element's Row, or a predicate on the element; None: never); a key
    without records for 'sequence-idle-timeout' gets an explicit END from a processing-time
    timer (repeating its last input, with the request parameter ``sequence_flush`` = true so
    the model can ignore that input). IDs are ``{sequence-id}-{key}-{incarnation}-{n}``, the
    incarnation new in every ``open()``. Each key's sequence state lives in Flink keyed state,
    so it is checkpointed: after a restore a key never resumes the old incarnation's ID, it
    starts a new sequence, replaying its last 'sequence-replay-records' inputs first.

    With :func:`keyed_sequence_map`, an element that is a ``Row`` with field names comes out as
    that Row with the result field(s) appended (like Flink's ML_PREDICT); any other element as
    the result alone.
    Each key's requests go one at a time, in order, as a sequence needs; different keys'
    go together, up to 'max-concurrent-requests' per subtask, so that Triton's sequence
    batcher can batch them: the records of one PyFlink input chunk are sent together and
    their results come out when the chunk ends, in input order. Each subtask holds at most
    its budget of sequences open ('sequence-slots'; by default its share of the model's
    slots), ENDing the least recently used one before it starts another.
    """

    MODE = "keyed"
    _STATE = ValueStateDescriptor("triton-sequence", Types.PICKLED_BYTE_ARRAY())

    def __init__(self, options: Mapping[str, object] | TritonOptions,
                 inputs: Sequence[ColumnDeclaration] | None = None,
                 output: OutputDeclaration | None = None, *,
                 end_when: EndCondition | None = None) -> None:
        super().__init__(options, inputs, output)
        if end_when is not None and not (isinstance(end_when, str) or callable(end_when)):
            raise TritonConfigError(
                f"end_when must be the name of a boolean field of the elements or a predicate "
                f"on an element, not {end_when!r}.")
        self._end_when = end_when
        result = self.inference.result_type
        self._result_names = list(result.names) if isinstance(result, RowType) else [
            self.inference.signature.outputs[0].name]

    _session: KeyedInferenceSession | None = None
    _appends_results = False  # to the element's Row; set in the copy for_elements() makes

    def for_elements(self, element_type: TypeInformation
                     ) -> tuple[TritonKeyedSequenceFunction, TypeInformation]:
        """A copy of this function for elements of ``element_type``, and the type of what it
        emits: named Rows with the result field(s) appended, else the result alone."""
        result = self.output_type
        if isinstance(element_type, ExternalTypeInfo):  # (what to_data_stream gives)
            element_type = element_type._type_info
        bound = copy.copy(self)
        bound._appends_results = isinstance(element_type, RowTypeInfo)
        if not bound._appends_results:
            return bound, result
        names = element_type.get_field_names()
        clash = sorted(set(names) & set(self._result_names))
        if clash:
            raise TritonConfigError(
                f"The elements' field(s) {clash} have the names of the model's output "
                f"column(s) {self._result_names}; rename them, or name the output column(s) "
                "differently (output=...).")
        results = (list(result.get_field_types()) if isinstance(result, RowTypeInfo)
                   else [result])
        return bound, Types.ROW_NAMED([*names, *self._result_names],
                                      [*element_type.get_field_types(), *results])

    _in_flight: KeysInFlight | None = None  # keys in flight together (bundled())

    def open(self, runtime_context: RuntimeContext) -> None:
        self._state = runtime_context.get_state(self._STATE)
        super().open(runtime_context)
        if self.inference.options.max_concurrent_requests > 1:
            _keyed_bundles.ask_for_bundles(self)

    def bundled(self, keyed_state_backend: Any) -> None:
        """PyFlink's operation hands this function whole input chunks: send the records of
        different keys together, and emit the results when :meth:`drain` is called."""
        assert self._session is not None
        self._in_flight = KeysInFlight(self._session,
                                       self.inference.options.max_concurrent_requests)
        self._backend = keyed_state_backend
        # each key of the chunk, as the backend has it, by its serialized form
        self._state_keys: dict[bytes, Any] = {}
        self._timers: Any = None

    @property
    def pending(self) -> int:
        return 0 if self._in_flight is None else self._in_flight.pending

    def describe(self) -> str:
        return f"model {self.inference.model}"

    def process_element(self, value: Any,
                        ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        assert self._session is not None, "process_element() before open()"
        timers = ctx.timer_service()
        key, before = ctx.get_current_key(), self._state.value()
        arguments, ends = self._arguments(value), self._ends(value)
        now_ms = timers.current_processing_time()
        if self._in_flight is not None:
            self._timers = timers
            identity = _keyed_bundles.current_key_bytes(self._backend)
            self._state_keys[identity] = self._backend.get_current_key()
            emitted = value.as_dict() if self._appends_results else None  # (a copy)
            self._in_flight.submit((ctx.timestamp(), timers.current_watermark(), emitted),
                                   identity, key, before, arguments, ends, now_ms)
            return
        result, after = self._session.infer(before, key, arguments, ends, now_ms)
        self._store(before, after, timers)
        yield self._emitted(value.as_dict() if self._appends_results else None, result)

    def drain(self) -> list[tuple[int, Any, Any]]:
        """Wait for the records submitted since the last drain; store their keys' states (and
        idle timers) and return their (timestamp, watermark, output), in input order."""
        assert self._in_flight is not None
        drained = self._in_flight.drain()
        for identity, after in drained.after.items():
            self._backend.set_current_key(self._state_keys[identity])
            self._store(drained.before[identity], after, self._timers)
        self._state_keys.clear()
        return [(timestamp, watermark, self._emitted(element, result))
                for (timestamp, watermark, element), result in drained.results]

    def _emitted(self, element: dict[str, Any] | None, result: Any) -> Any:
        """What the function emits for an element (its fields, if it appends results to
        them) and its result."""
        if element is None:
            return result
        fields = result.as_dict() if len(self._result_names) > 1 else {
            self._result_names[0]: result}
        return Row(**element, **fields)

    def close(self) -> None:
        if self._in_flight is not None:
            self._in_flight.close()
            self._in_flight = None
        super().close()

    def on_timer(self, timestamp: int,
                 ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        assert self._session is not None, "on_timer() before open()"
        timers = ctx.timer_service()
        before: KeySequence | None = self._state.value()
        after = self._session.end_if_idle(before, ctx.get_current_key(),
                                          timers.current_processing_time())
        self._store(before, after, timers, fired=timestamp)
        yield from ()

    def _ends(self, value: Any) -> bool:
        end_when = self._end_when
        if end_when is None:
            return False
        if callable(end_when):
            return bool(end_when(value))
        if not (isinstance(value, Row) and getattr(value, "_fields", None)
                and end_when in value._fields):
            raise TritonRequestError(
                f"end_when = {end_when!r} names no field of the element {value!r}; give the "
                "name of a boolean field of the keyed stream's Rows, or a predicate.")
        return bool(value[end_when])  # (NULL: not the end)

    def _store(self, before: KeySequence | None, after: KeySequence | None,
               timers: Any, fired: int | None = None) -> None:
        """Keep the key's state, and its one idle timer in step with it."""
        old = before.idle_timer_ms if before is not None else None
        new = after.idle_timer_ms if after is not None else None
        if old is not None and old not in (new, fired):
            timers.delete_processing_time_timer(old)
        if new is not None and new != old:
            timers.register_processing_time_timer(new)
        if after is None:
            self._state.clear()
        elif after is not before:
            self._state.update(after)


def keyed_sequence_map(stream: KeyedStream,
                       function: TritonKeyedSequenceFunction) -> DataStream:
    """``stream`` (keyed: ``key_by(...)``) through the model, one Triton sequence per key."""
    if not isinstance(stream, KeyedStream):
        raise TritonConfigError(
            "Keyed sequences need a keyed stream: call stream.key_by(<the entity's key>) "
            "first; the key decides which Triton sequence each element belongs to.")
    # (get_type() of a KeyedStream is PyFlink's internal (key, element) Row; this is the
    # elements' own type)
    bound, output_type = function.for_elements(stream._original_data_type_info)
    return stream.process(bound, output_type=output_type)
