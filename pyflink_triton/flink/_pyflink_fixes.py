"""Workarounds for PyFlink 2.3 bugs that would make results wrong or leak resources, applied
once per process by :func:`install`, which ``pyflink_triton.flink.table`` calls when it is imported:
in each Python worker, when it unpickles the function.

- FLINK-39532: ``AsyncScalarFunctionOperation.process_element`` hands the input row to the
  event loop, and the decoder reuses that row object for the next record before the coroutine
  reads it, so an async function can compute a result from another row's values (432 of 500
  rows in an echo test). Copying the row before it is handed over fixes it; copying inside
  ``eval`` is too late (:func:`copy_rows_before_async_eval`).
- The event loop of async functions is stopped and closed with its tasks still pending, so
  nothing opened on it is ever closed (:func:`cancel_pending_tasks_before_the_async_loop_stops`).
- A pandas UDF gets an integer column with NULLs as float64, BIGINTs beyond 2**53 rounded
  (:func:`keep_exact_int64_for_pandas_udfs`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

_AFFECTED_VERSIONS = ("2.3.",)  # what is patched is 2.3.0's; check again for 2.4


def install() -> None:
    copy_rows_before_async_eval()
    cancel_pending_tasks_before_the_async_loop_stops()
    keep_exact_int64_for_pandas_udfs()


def copy_rows_before_async_eval() -> None:
    import pyflink.version

    if not pyflink.version.__version__.startswith(_AFFECTED_VERSIONS):
        return
    try:
        from pyflink.fn_execution.table.async_function.operations import (
            AsyncScalarFunctionOperation,
        )
    except ImportError:  # a PyFlink without async scalar functions: nothing to fix
        return
    original = AsyncScalarFunctionOperation.process_element
    if getattr(original, "copies_rows", False):
        return

    def process_element(self: Any, value: Any) -> Any:
        return original(self, list(value))

    process_element.copies_rows = True  # type: ignore[attr-defined]
    AsyncScalarFunctionOperation.process_element = process_element
    log.debug("FLINK-39532 workaround installed: async scalar function rows are copied")


# How long the patched stop() waits for cancelled tasks to finish (closing sockets is quick).
_CANCEL_TIMEOUT = 5.0


def cancel_pending_tasks_before_the_async_loop_stops() -> None:
    """PyFlink 2.3's ``AsyncFunctionRunner`` (the event loop of async scalar functions and of
    DataStream async functions) stops its loop and closes it without cancelling what is still
    pending on it, so no ``finally`` block of a task runs and what the tasks hold is never
    closed: the keep-alive connections and gRPC channels of an async function stay open until
    the garbage collector finds them (and warns). ``asyncio.run`` cancels every pending task
    and lets it finish before it closes its loop; the patched ``stop()`` does the same first,
    on the loop's own thread, which closes the connections (``transport.LoopState``)."""
    import pyflink.version

    if not pyflink.version.__version__.startswith(_AFFECTED_VERSIONS):
        return
    try:
        from pyflink.fn_execution.datastream.process.async_function.operation import (
            AsyncFunctionRunner,
        )
    except ImportError:  # a PyFlink without async functions: nothing to fix
        return
    original = AsyncFunctionRunner.stop
    if getattr(original, "cancels_tasks", False):
        return

    def stop(self: Any) -> None:
        loop = getattr(self, "_loop", None)
        if loop is not None and loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(_cancel_pending_tasks(), loop).result(
                    _CANCEL_TIMEOUT + 1.0)  # (the inner wait gives up first)
            except Exception as e:  # (stopping must go on)
                log.warning("Could not cancel the pending tasks of an async function's event "
                            "loop before it stops: %r", e)
        original(self)

    stop.cancels_tasks = True  # type: ignore[attr-defined]
    AsyncFunctionRunner.stop = stop
    log.debug("AsyncFunctionRunner.stop cancels pending tasks first")


async def _cancel_pending_tasks() -> None:
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=_CANCEL_TIMEOUT)


# --- exact BIGINT values for pandas UDFs ------------------------------------------------------
#
# PyFlink's worker hands a pandas UDF an Arrow column as pandas (``arrow_to_pandas``), which
# makes an int64 column with NULLs float64: integers beyond 2**53 are rounded before any UDF
# sees them. The Series must stay what it was (other pandas UDFs of the job may run in the same
# worker), so the exact values ride along in its ``attrs``, pandas' metadata dict.

EXACT_INT64 = "pyflink_triton.exact_int64"  # the key in ``Series.attrs``
# The modules whose ``arrow_to_pandas`` the worker's Arrow decoders call: each imported it by
# name, so each binding is replaced (a module imported later takes the patched one).
_ARROW_TO_PANDAS_MODULES = ("pyflink.table.utils", "pyflink.fn_execution.coder_impl_fast",
                            "pyflink.fn_execution.coder_impl_slow")


class ExactInt64:
    """The exact values (0 in NULL rows) of one Series PyFlink made float64.

    pandas copies ``attrs`` into every Series derived from one (a slice, a sorted copy), where
    these values would be wrong: they answer for the Series they were made for only. Shared,
    not copied (they are never changed), and compared by identity: pandas compares the attrs
    of the Series it concatenates, which numpy arrays would make raise. A pickled copy (a UDF
    may pickle its Series) belongs to no Series and holds no values.
    """

    __slots__ = ("_series", "_values")

    def __init__(self, values: np.ndarray | None, series: pd.Series | None) -> None:
        self._values = values
        self._series = None if series is None else weakref.ref(series)

    def values_of(self, series: pd.Series) -> np.ndarray | None:
        if self._series is None or self._series() is not series:
            return None
        return self._values

    def __deepcopy__(self, memo: dict[int, Any]) -> ExactInt64:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return ExactInt64, (None, None)  # (a weak reference cannot be pickled)


def exact_int64_values(series: pd.Series) -> np.ndarray | None:
    """The exact int64 values of a float64 Series PyFlink handed to a pandas UDF (0 in its
    NULL rows), or None if it carries none (see :func:`keep_exact_int64_for_pandas_udfs`)."""
    kept = series.attrs.get(EXACT_INT64)
    return kept.values_of(series) if isinstance(kept, ExactInt64) else None


def keep_exact_int64_for_pandas_udfs() -> None:
    """Make PyFlink's Arrow -> pandas conversion attach :class:`ExactInt64` values to each
    float64 Series it makes of an int64 column with NULLs; read them with
    :func:`exact_int64_values`. Its values and dtype stay as they were (attrs gains a key)."""
    import pyflink.version

    if not pyflink.version.__version__.startswith(_AFFECTED_VERSIONS):
        return
    import pyflink.table.utils  # (patched first: a module importing it later takes ours)

    for name in _ARROW_TO_PANDAS_MODULES:
        module = sys.modules.get(name)
        original = getattr(module, "arrow_to_pandas", None)
        if original is not None and not getattr(original, "keeps_exact_int64", False):
            module.arrow_to_pandas = _keeping_exact_int64(original)  # type: ignore[union-attr]
    log.debug("pandas UDFs get the exact values of BIGINT columns with NULLs in Series.attrs")


def _keeping_exact_int64(arrow_to_pandas: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
    def keeping_exact_int64(timezone: Any, field_types: list[Any], batches: Any) -> list[Any]:
        import pyarrow as pa

        batches = list(batches)
        converted = arrow_to_pandas(timezone, field_types, batches)
        table = pa.Table.from_batches(batches)  # (no copy: the batches' own buffers)
        # (not strict: PyFlink zips the columns with field_types without checking either)
        for column, series in zip(table.itercolumns(), converted, strict=False):
            if pa.types.is_int64(column.type) and column.null_count and (
                    series.dtype == np.float64):
                series.attrs[EXACT_INT64] = ExactInt64(column.fill_null(0).to_numpy(), series)
        return converted

    keeping_exact_int64.keeps_exact_int64 = True  # type: ignore[attr-defined]
    return keeping_exact_int64
