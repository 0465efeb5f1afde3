"""Workarounds for PyFlink bugs that would make results wrong, applied once per process.

FLINK-39532 (PyFlink 2.3.0): ``AsyncScalarFunctionOperation.process_element`` hands the input
row to the event loop, and the decoder reuses that row object for the next record before the
coroutine reads it, so an async function can compute a result from another row's values (432
of 500 rows in an echo test). Copying the row before it is handed over fixes it; copying
inside ``eval`` is too late. The patch is installed when ``pyflink_triton.table`` is imported,
which happens in each Python worker when it unpickles the function.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

_AFFECTED_VERSIONS = ("2.3.",)  # the rows are reused in 2.3.0; check again for 2.4


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
