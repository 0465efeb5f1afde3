"""Table API / SQL adapters: the three ways a PyFlink function can call the model.

    f = TritonScalarFunction({"endpoint": "http://localhost:8000", "model-name": "add_one"})
    t_env.create_temporary_function("add_one", f.as_udf())
    t_env.execute_sql("SELECT add_one(x) FROM t")

- :class:`TritonScalarFunction`: one blocking request per row;
- :class:`TritonAsyncScalarFunction`: one request per row, up to 'max-concurrent-requests' in
  flight (PyFlink's ``AsyncScalarFunction``; process mode only);
- :class:`TritonVectorizedFunction`: a pandas UDF; each Arrow batch goes out as requests of up
  to the model's max_batch_size rows.

Options and columns are validated in the constructor (at registration); ``open()`` reads the
subtask index and attempt number from Flink's ``FunctionContext`` and opens the session of the
class's mode (``sessions.contract``); ``eval`` hands it the row, or the pandas columns.
:func:`create_model` picks the class from the 'mode' option and registers it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pyflink.table.types import (
    BigIntType,
    DataType,
    DecimalType,
    DoubleType,
    FloatType,
    IntType,
    RowType,
    SmallIntType,
    TinyIntType,
)
from pyflink.table.udf import (
    AsyncScalarFunction,
    FunctionContext,
    ScalarFunction,
    UserDefinedFunctionWrapper,
    udf,
)

from ..codecs.columns import sql_type
from ..codecs.signature import ColumnDeclaration, OutputDeclaration
from ..errors import TritonConfigError, TritonRequestError
from ..options import Mode, TritonOptions
from ..sessions.batches import ColumnBatch
from ..sessions.contract import InferenceSession
from ..sessions.function import TritonInference
from ..sessions.per_record import AsyncInferenceSession
from ..sessions.vectorized import BatchInferenceSession
from . import _pyflink_fixes

_pyflink_fixes.install()  # here: this module is imported in the workers

_INTEGER_TYPES = (TinyIntType, SmallIntType, IntType, BigIntType)
_FLOAT64_EXACT_LIMIT = 2**53  # float64 holds every integer below it; 2**53 may be 2**53 + 1


def open_for(inference: TritonInference, context: Any,
             get_metric_group: Callable[[], Any]) -> InferenceSession[Any, Any, Any, Any]:
    """The session of ``inference`` (in the mode it was created for) for the function instance
    that Flink's context of a function (Table ``FunctionContext`` or DataStream
    ``RuntimeContext``) describes. The metric group is None when 'python.metric.enabled' is
    false (PyFlink then raises instead of giving one: the function runs without metrics)."""
    try:
        metric_group = get_metric_group()
    except RuntimeError:
        metric_group = None
    return inference.open(context.get_index_of_this_subtask(), context.get_attempt_number(),
                          metric_group, context.get_number_of_parallel_subtasks() or 1)


class TritonFunction:
    """The Table API / SQL function of a model: what the three adapters share (registration,
    the UDF, open and close)."""

    MODE: ClassVar[Mode]
    FUNC_TYPE: ClassVar[str] = "general"
    _session: Any = None  # opened in open(), per parallel instance

    def __init__(self, options: Mapping[str, object] | TritonOptions,
                 inputs: Sequence[ColumnDeclaration] | None = None,
                 output: OutputDeclaration | None = None) -> None:
        """``inputs``: the argument columns in order, each a name or a ``(name, type)`` pair;
        ``output``: the result column, or a list of them for a ROW result. A column feeds (or
        is) the tensor of its own name unless 'input-names' / 'output-names' map it. What is
        not declared is taken from the model's metadata on the server: all its (required)
        inputs, and its output, or a ROW of its outputs when it has several."""
        parsed = options if isinstance(options, TritonOptions) else TritonOptions.from_dict(options)
        if parsed.mode not in (None, self.MODE):
            raise TritonConfigError(
                f"'mode' = '{parsed.mode}' does not fit {type(self).__name__}, which is the "
                f"'{self.MODE}' mode; use {_CLASSES[parsed.mode].__name__}, or create_model / "
                "CREATE MODEL, which pick the class from 'mode'.")
        self.inference = TritonInference.create(parsed, inputs, output, mode=self.MODE)

    @property
    def input_types(self) -> list[DataType]:
        return [c.data_type for c in self.inference.signature.inputs]

    @property
    def result_type(self) -> DataType:
        return self.inference.result_type

    def declarations(self) -> tuple[list[tuple[str, str]], OutputDeclaration]:
        """The function's columns as resolved, each ``(name, SQL type)``: the ``inputs`` and
        ``output`` that give the same function without asking the server again."""
        signature = self.inference.signature
        inputs = [(c.name, sql_type(c.data_type)) for c in signature.inputs]
        outputs: list[ColumnDeclaration] = [
            (c.name, sql_type(c.data_type)) for c in signature.outputs]
        return inputs, outputs if signature.row_output else outputs[0]

    def with_options(self, options: Mapping[str, object]) -> TritonFunction:
        """The function of the same model and columns with other ``options`` (their 'mode'
        picks the class)."""
        inputs, output = self.declarations()
        return function_for(options, inputs, output)

    def as_udf(self, name: str | None = None) -> UserDefinedFunctionWrapper:
        """The PyFlink UDF to register (``create_temporary_function``) or call."""
        return udf(self, input_types=self.input_types, result_type=self.result_type,
                   deterministic=False, name=name, func_type=self.FUNC_TYPE)

    def is_deterministic(self) -> bool:
        return False  # each call is a request to a (possibly stateful) model

    def open(self, function_context: FunctionContext) -> None:
        self._session = open_for(self.inference, function_context,
                                 function_context.get_metric_group)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


class TritonScalarFunction(TritonFunction, ScalarFunction):
    MODE = "sync"

    def eval(self, *args: Any) -> Any:
        assert self._session is not None, "eval() before open()"
        return self._session.infer(args)


class TritonAsyncScalarFunction(TritonFunction, AsyncScalarFunction):
    """Needs process mode (PyFlink has no async functions in thread mode). PyFlink's own
    bound and timeout apply too: :func:`create_model` sets them from the options."""

    MODE = "async"
    _session: AsyncInferenceSession | None = None

    async def eval(self, *args: Any) -> Any:
        assert self._session is not None, "eval() before open()"
        return await self._session.infer(args)

    def close(self) -> None:
        # PyFlink stops the event loop before close(): the connections were closed on it, as
        # it stopped (_pyflink_fixes cancels what is pending there first); what is left
        # needs no loop.
        if self._session is not None:
            self._session.stop()
            self._session = None


class TritonVectorizedFunction(TritonFunction, ScalarFunction):
    """A pandas UDF. PyFlink hands it NULL FLOAT/DOUBLE values as NaN and turns NaN results
    into NULL (its Arrow conversion); other NULLs follow 'null-input'."""

    MODE = "vectorized"
    FUNC_TYPE = "pandas"
    _session: BatchInferenceSession | None = None

    def __init__(self, options: Mapping[str, object] | TritonOptions,
                 inputs: Sequence[ColumnDeclaration] | None = None,
                 output: OutputDeclaration | None = None) -> None:
        super().__init__(options, inputs, output)
        # How PyFlink's Arrow -> pandas conversion shows a NULL: NaN in FLOAT/DOUBLE columns,
        # where it cannot be told from a NaN value; NaN in integer columns, which then become
        # float columns; None elsewhere.
        types = [c.data_type for c in self.inference.signature.inputs]
        self._nan_is_a_value = [isinstance(t, FloatType | DoubleType) for t in types]
        self._integer = [isinstance(t, _INTEGER_TYPES) for t in types]
        self._input_names = [c.name for c in self.inference.signature.inputs]
        # Result fields of integers, which must not become float64 (see _result_series).
        self._integral_results = [isinstance(t, (*_INTEGER_TYPES, DecimalType))
                                  for t in _field_types(self.result_type)]

    def eval(self, *series: pd.Series) -> pd.Series | pd.DataFrame:
        assert self._session is not None, "eval() before open()"
        columns, nulls = [], []
        for values, name, nan_is_a_value, integer in zip(
                series, self._input_names, self._nan_is_a_value, self._integer, strict=True):
            mask = None if nan_is_a_value else values.isna().to_numpy()
            if mask is not None and mask.any() and integer:
                columns.append(_exact_integers(values, mask, name))
            else:
                columns.append(_plain(values))
            nulls.append(mask)
        results = self._session.infer_many(ColumnBatch(columns, nulls))
        fields = [_result_series(r, integral)
                  for r, integral in zip(results, self._integral_results, strict=True)]
        names = self.inference.results.field_names
        if names is None:
            return fields[0]
        return pd.DataFrame(dict(zip(names, fields, strict=True)))


_CLASSES: dict[str, type[TritonFunction]] = {
    c.MODE: c for c in (TritonScalarFunction, TritonAsyncScalarFunction,
                        TritonVectorizedFunction)}


def _field_types(data_type: DataType) -> list[DataType]:
    """The types of a ROW's fields, or [the type] of a single value."""
    if isinstance(data_type, RowType):
        return [field.data_type for field in data_type.fields]
    return [data_type]


def _exact_integers(values: pd.Series, nulls: np.ndarray, column: str) -> np.ndarray:
    """An integer column with NULLs as int64 (0 in the NULL rows, which are never sent).

    PyFlink hands such a column over as float64, rounding BIGINT values beyond 2**53; the
    exact values come with it from the ``_pyflink_fixes`` workaround. Without them, a value
    that may have been rounded fails the call: sending it would silently change the input.
    """
    exact = _pyflink_fixes.exact_int64_values(values)
    if exact is not None:
        return exact
    if values.dtype.kind == "f" and (
            np.abs(values.to_numpy()[~nulls]) >= _FLOAT64_EXACT_LIMIT).any():
        raise TritonRequestError(
            f"Column '{column}' holds integers of magnitude 2**53 or more next to NULLs, which "
            "PyFlink's pandas conversion rounded (it makes an integer column with NULLs "
            "float64); pyflink_triton restores the exact values on PyFlink 2.3 only. Filter "
            "the NULLs out or replace them with COALESCE, or use the 'sync' or 'async' mode.")
    return values.fillna(0).astype(np.int64).to_numpy()


def _result_series(values: Sequence[Any], integral: bool) -> pd.Series:
    """A result field as PyFlink takes it. pandas would make integers next to a None (a row
    skipped or failed) float64, rounding them beyond 2**53, so a list of integers stays
    Python objects, which PyFlink's Arrow conversion takes exactly. (A numpy array, what a
    batch answered in full gives, has no None: it stays as it is.)"""
    if integral and not isinstance(values, np.ndarray):
        return pd.Series(values, dtype=object)
    return pd.Series(values)


def _plain(values: pd.Series) -> Sequence[Any]:
    """A column as the codecs take it: a numpy array for numbers, else plain Python values
    (Arrow hands ARRAY values over as numpy arrays, possibly of numpy arrays)."""
    array = values.to_numpy()
    if array.dtype != np.object_:
        return array
    return [_nested_list(v) for v in array.tolist()]


def _nested_list(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_nested_list(v) for v in value.tolist()] if value.dtype == np.object_ else value
    return value


def function_for(options: Mapping[str, object] | TritonOptions,
                 inputs: Sequence[ColumnDeclaration] | None = None,
                 output: OutputDeclaration | None = None) -> TritonFunction:
    """The adapter the 'mode' option asks for (sync when unset)."""
    parsed = options if isinstance(options, TritonOptions) else TritonOptions.from_dict(options)
    return _CLASSES[parsed.mode or "sync"](parsed, inputs, output)


def async_settings(options: TritonOptions) -> dict[str, str]:
    """PyFlink's async-function settings for the options (they apply to every async function
    of a job: PyFlink has no per-function setting):

    - at most 'max-concurrent-requests' calls in flight;
    - no PyFlink timeout: PyFlink would start a timer thread per row, which halves the rows/s
      it can do; each row's request is bounded by 'timeout' on the event loop instead;
    - no retries: a retried call would draw a new sequence ID and resend a row the model may
      already have seen.
    """
    return {
        "table.exec.async-scalar.max-concurrent-operations": str(options.max_concurrent_requests),
        "table.exec.async-scalar.timeout": "0 ms",
        "table.exec.async-scalar.retry-strategy": "NO_RETRY",
    }


# The async models registered in each table environment, with their 'max-concurrent-requests'.
_ASYNC_BOUNDS: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()


def async_bounds(t_env: Any) -> dict[str, int]:
    """The async models registered in ``t_env``, each with its 'max-concurrent-requests'."""
    return dict(_ASYNC_BOUNDS.get(t_env, {}))


def forget_async_model(t_env: Any, model: str) -> None:
    """A dropped async model no longer holds the environment's bound."""
    bounds = _ASYNC_BOUNDS.get(t_env, {})
    for name in [n for n in bounds if n.split(".")[-1].strip("`") == model]:
        del bounds[name]


def check_async_bound(bounds: Mapping[str, int], model: str, options: TritonOptions) -> None:
    """Refuse an async model whose 'max-concurrent-requests' differs from that of another
    async model of the job (``bounds``: each one's): PyFlink has one setting for all the async
    functions of a job, so one would silently get the other's bound."""
    bound = options.max_concurrent_requests
    for other, other_bound in bounds.items():
        if other != model and other_bound != bound:
            raise TritonConfigError(
                f"The async models '{other}' ('max-concurrent-requests' = {other_bound}) and "
                f"'{model}' ({bound}) are in one table environment, and PyFlink applies one "
                "bound on calls in flight to every async function of a job "
                "(table.exec.async-scalar.max-concurrent-operations), so one of them would "
                "silently get the other's. Give them the same 'max-concurrent-requests'.")


def check_async_model(t_env: Any, model: str, options: TritonOptions) -> None:
    """:func:`check_async_bound` against the async models registered in ``t_env``: before
    anything is registered."""
    check_async_bound(_ASYNC_BOUNDS.get(t_env, {}), model, options)


def configure_async(t_env: Any, model: str, options: TritonOptions) -> None:
    """Set :func:`async_settings` on ``t_env`` for the async ``model``, once registered."""
    check_async_model(t_env, model, options)
    config = t_env.get_config()
    for key, value in async_settings(options).items():
        config.set(key, value)
    _ASYNC_BOUNDS.setdefault(t_env, {})[model] = options.max_concurrent_requests


def create_model(t_env: Any, name: str, options: Mapping[str, object],
                 inputs: Sequence[ColumnDeclaration] | None = None,
                 output: OutputDeclaration | None = None) -> UserDefinedFunctionWrapper:
    """Register a temporary function ``name`` that calls the model, callable from SQL.

    The Python equivalent of ``CREATE MODEL name [INPUT (...)] [OUTPUT (...)] WITH (...)``
    handled by :func:`pyflink_triton.execute_sql`. 'mode' picks sync, async or vectorized.
    """
    adapter = function_for(options, inputs, output)
    if adapter.MODE == "async":
        check_async_model(t_env, name, adapter.inference.options)
    function = adapter.as_udf(name.split(".")[-1])
    t_env.create_temporary_function(name, function)
    if adapter.MODE == "async":
        configure_async(t_env, name, adapter.inference.options)
    return function
