"""Sequence-ID policy: which Triton sequence each record's request belongs to. Pure, no I/O.

A :class:`SequencePolicy` is built from the options when a function is registered and shipped
with it. In ``open()`` each parallel subtask asks it for a :class:`SequenceIdGenerator`, whose
:meth:`~SequenceIdGenerator.next` is called once per record. With auto-increment the IDs are
``{sequence-id}-{subtask-index}-{counter}``, the counter starting at 0 in every ``open()``, so
parallel subtasks never share a sequence. A record draws its ID once; anything that resends the
record (a retry) must reuse the :class:`SequenceParams` it drew.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Literal

from .options import TritonOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SequenceParams:
    """The sequence fields of one request, as sent in the request's ``parameters``."""

    sequence_id: str | int  # int only with sequence-id-type = uint64
    start: bool
    end: bool


@dataclass(frozen=True)
class SequencePolicy:
    base_id: str | None
    auto_increment: bool
    start: bool
    end: bool
    id_type: Literal["string", "uint64"] = "string"

    @classmethod
    def from_options(cls, options: TritonOptions) -> SequencePolicy:
        return cls(options.sequence_id, options.sequence_id_auto_increment,
                   options.sequence_start, options.sequence_end, options.sequence_id_type)

    def for_subtask(self, subtask_index: int) -> SequenceIdGenerator:
        return SequenceIdGenerator(self, subtask_index)


class SequenceIdGenerator:
    """The sequence IDs of one parallel subtask (one function instance)."""

    def __init__(self, policy: SequencePolicy, subtask_index: int) -> None:
        self.policy = policy
        self.subtask_index = subtask_index
        # next() on itertools.count is atomic under the GIL: safe if records are drawn
        # from several threads (async modes).
        self._counter = itertools.count()
        self._issued = 0

    @property
    def issued(self) -> int:
        """How many auto-incremented IDs this subtask has drawn."""
        return self._issued

    def describe(self) -> str:
        policy = self.policy
        if policy.base_id is None:
            return "no sequence ID"
        if policy.auto_increment:
            return (f"sequence IDs {policy.base_id}-{self.subtask_index}-<counter> "
                    f"(subtask {self.subtask_index}, counter from 0)")
        return f"the fixed sequence ID {policy.base_id!r} ({policy.id_type})"

    def next(self) -> SequenceParams | None:
        """The sequence fields for the next record, or None when requests carry no sequence."""
        policy = self.policy
        if policy.base_id is None:
            return None
        if not policy.auto_increment:
            sequence_id: str | int = (int(policy.base_id) if policy.id_type == "uint64"
                                      else policy.base_id)
            return SequenceParams(sequence_id, policy.start, policy.end)
        counter = next(self._counter)
        self._issued = counter + 1
        sequence_id = f"{policy.base_id}-{self.subtask_index}-{counter}"
        log.debug("sequence ID %s", sequence_id)
        return SequenceParams(sequence_id, policy.start, policy.end)
