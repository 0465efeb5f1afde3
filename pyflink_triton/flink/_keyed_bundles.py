"""Keys in flight together under PyFlink's keyed process operation.

PyFlink's ``StatefulOperation`` (the Python side of a ``KeyedProcessFunction``) takes a
function's results element by element: ``process_element`` must return them before the next
element comes, so a keyed function could only send one request at a time. PyFlink's batching
Table API operations (pandas UDFs) are ``BundleOperation``\\s instead: the worker hands them
every element of an input chunk, then asks ``finish_bundle()`` for the results of all
(``FunctionOperation.process`` in ``pyflink.fn_execution.beam``). :func:`install` makes the
operation of a keyed Triton function one such: its elements only queue their requests (keys
in flight together), and ``finish_bundle()`` waits for them, stores the keys' states and
returns the results in input order, each with its own element's timestamp.

A chunk ends before its bundle does, and a bundle ends before every checkpoint barrier and at
the end of the input, so nothing is in flight across a checkpoint, the end of the input or a
timer (PyFlink fires timers between chunks, on the same thread).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from pyflink.common import Row

log = logging.getLogger(__name__)

_AFFECTED_VERSIONS = ("2.3.",)  # the operation classes patched are 2.3.0's; check again for 2.4


class BundledFunction(Protocol):
    """What a function gives the operation: see ``TritonKeyedSequenceFunction``."""

    pending: int

    def describe(self) -> str: ...

    def bundled(self, keyed_state_backend: Any) -> None: ...

    def drain(self) -> list[tuple[int, Any, Any]]: ...


_opening = threading.local()  # the function that asked, from its open(), to be bundled


def ask_for_bundles(function: BundledFunction) -> None:
    """From a function's ``open()``: have its operation (if PyFlink's keyed process operation
    opens it, with :func:`install` in place) hand it whole input chunks. Its ``bundled()`` is
    called if so; otherwise it is called element by element, as usual."""
    _opening.function = function


def current_key_bytes(keyed_state_backend: Any) -> bytes:
    """The current key as the keyed state backend serialized it: how Flink tells keys apart
    (Python's == would merge 0.0 and -0.0, split NaNs and refuse lists)."""
    return keyed_state_backend._encoded_current_key


def install() -> None:
    import pyflink.version

    if not pyflink.version.__version__.startswith(_AFFECTED_VERSIONS):
        return
    try:
        from pyflink.fn_execution.datastream.process import operations
        from pyflink.fn_execution.table.operations import BundleOperation
    except ImportError:  # (no process-mode worker here: the client side)
        return
    stateful = operations.StatefulOperation
    if getattr(stateful.open, "hands_over_chunks", False):
        return
    original_open = stateful.open

    class KeyedChunkOperation(stateful, BundleOperation):  # type: ignore[misc, valid-type]
        """A keyed process operation whose function sends a chunk's records together."""

        _function: BundledFunction

        def finish_bundle(self) -> list[Row]:
            return [Row(timestamp, watermark, result)
                    for timestamp, watermark, result in self._function.drain()]

        def finish(self) -> None:
            # (never, with the PyFlink this was written for: each input chunk ends with
            # finish_bundle(), which drains; a PyFlink that skipped it would lose the results)
            if self._function.pending:
                raise RuntimeError(
                    f"{self._function.pending} record(s) of the keyed Triton function of "
                    f"{self._function.describe()} were sent but their results never emitted: "
                    "this PyFlink finished a bundle without asking the operation for the "
                    "results of its last input chunk. Set 'max-concurrent-requests' = '1' to "
                    "send one record at a time.")
            super().finish()

    def open(self: Any) -> None:
        _opening.function = None
        original_open(self)
        function, _opening.function = getattr(_opening, "function", None), None
        if function is None or type(self) is not stateful:
            return
        handle = self.process_element_func
        if getattr(getattr(handle, "__self__", None), "_has_side_output", True):
            # (with side outputs, PyFlink takes each element's outputs at once and never asks
            # for finish_bundle(): the function stays one record at a time)
            log.info("A keyed Triton function with side outputs sends one record at a time.")
            return

        def process_element(value: Any) -> tuple[()]:
            # (the bundle path ignores what this returns: the function yields nothing here,
            # it queues the record)
            for output in handle(value):
                raise AssertionError(f"a bundled keyed function emitted {output!r} early")
            return ()

        self.process_element_func = process_element
        self._function = function
        self.__class__ = KeyedChunkOperation
        function.bundled(self.keyed_state_backend)

    open.hands_over_chunks = True  # type: ignore[attr-defined]
    stateful.open = open
    log.debug("keyed Triton functions send the records of an input chunk together")
