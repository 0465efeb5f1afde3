"""The FLINK-39532 workaround is installed once, and passes the original a copy of the row."""

from __future__ import annotations

from pyflink.fn_execution.table.async_function.operations import AsyncScalarFunctionOperation

import pyflink_triton.flink.table  # noqa: F401  (installs the workaround, as in a Python worker)
from pyflink_triton.flink import _pyflink_fixes


def test_the_workaround_is_installed_once_and_copies_the_row(monkeypatch):
    installed = AsyncScalarFunctionOperation.process_element
    assert installed.copies_rows
    _pyflink_fixes.copy_rows_before_async_eval()
    assert AsyncScalarFunctionOperation.process_element is installed  # not wrapped twice

    received = []
    monkeypatch.setattr(AsyncScalarFunctionOperation, "process_element",
                        lambda self, value: received.append(value))
    _pyflink_fixes.copy_rows_before_async_eval()  # wraps the stand-in
    row = [1, "a"]
    AsyncScalarFunctionOperation.process_element(object(), row)
    row[0] = 2  # what the decoder does to the reused row
    assert received == [[1, "a"]] and received[0] is not row


def test_other_pyflink_versions_are_left_alone(monkeypatch):
    import pyflink.version

    monkeypatch.setattr(pyflink.version, "__version__", "2.4.0")
    original = lambda self, value: value  # noqa: E731
    monkeypatch.setattr(AsyncScalarFunctionOperation, "process_element", original)
    _pyflink_fixes.copy_rows_before_async_eval()
    assert AsyncScalarFunctionOperation.process_element is original
