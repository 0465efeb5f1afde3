"""The one contract every mode's session implements: opened, infer one record or many, closed.

The shape of Beam's ``ModelHandler`` against ``RunInference``: the picklable
``function.TritonInference`` travels with the job and opens one session per parallel function
instance, in Flink's open(); sessions are never pickled. The PyFlink adapters (``flink``) only
translate Flink's calling conventions into these calls. What a record and its result are is
the mode's:

============  ===================================  ============================================
mode          ``infer(...)``                       ``infer_many(...)``
============  ===================================  ============================================
sync          values -> result                     values of many records -> their results
async         values -> awaitable result           the same, awaited
vectorized    values -> result                     a :class:`~.batches.ColumnBatch` -> result
                                                   fields (one sequence per field)
keyed         state, key, values, end, now (ms)    such records -> their (result, state)s
              -> (result, the key's new state)
============  ===================================  ============================================

A new mode is one subclass and one entry in ``function.SESSIONS`` (and, where users pick it,
its name in ``options.modes`` and an adapter in ``flink``: docs/architecture.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import Any, ClassVar, Generic, ParamSpec, TypeVar

from ..options import Mode
from .context import InstanceContext

One = ParamSpec("One")  # infer()'s parameters: one record, as the mode takes it
Result = TypeVar("Result")  # what infer() returns for it
Many = TypeVar("Many")  # infer_many()'s argument: many records at once
Results = TypeVar("Results")  # what infer_many() returns for them


class InferenceSession(ABC, Generic[One, Result, Many, Results]):
    """One function instance's way to the model in one mode (not thread-safe)."""

    mode: ClassVar[Mode]
    #: True: sends on the blocking transport open() connected; False: on an asyncio one,
    #: which connects on the first call (PyFlink's event loop starts after open()).
    blocking: ClassVar[bool]
    #: True: keeps a long-lived sequence per key (open() draws the keyed-sequence policy);
    #: False: each record draws its sequence fields from the subtask's counter.
    sequence_per_key: ClassVar[bool] = False

    def __init__(self, context: InstanceContext, transport: Any) -> None:
        """Called by ``TritonInference.open`` once the served model is checked."""
        self.context = context
        self._transport = transport

    @abstractmethod
    def infer(self, *record: One.args, **named: One.kwargs) -> Result:
        """One record's result."""

    @abstractmethod
    def infer_many(self, records: Many) -> Results:
        """The results of many records, in their order."""

    @abstractmethod
    def close(self) -> Awaitable[None] | None:
        """Release the connections and what the instance holds (its sequence IDs, the health
        check). An asyncio session's close() is awaited on the loop its connections belong
        to; without that loop, its ``stop()`` releases the rest."""
