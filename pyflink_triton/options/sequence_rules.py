"""How the sequence options combine: 'sequence-id' and its type, auto-increment and its
counter, the START/END flags, and what keyed sequences need of them. (What a sequence ID may be
is in ``sequence_ids``; what each mode allows of sequences, in ``modes``.)

Triton keeps a stateful model's state per sequence ID, and a sequence's requests must reach the
model one at a time, in order, START first and END last. Each rule here refuses a combination
that would break this silently (state never initialised, slots never freed, steps interleaved),
at registration rather than in the running job.
"""

from __future__ import annotations

from ..errors import TritonConfigError
from .sequence_ids import AUTO_INCREMENT_SUFFIX_BYTES, KEYED_SUFFIX_BYTES, check_sequence_id_room
from .spec import OptionValues

# The options a keyed-sequence function sets itself, per key.
_KEYED_MANAGED_OPTIONS = ("sequence-id-auto-increment", "sequence-start", "sequence-end",
                          "sequence-id-type", "sequence-id-counter-init-strategy")


def check_sequence_options(options: OptionValues) -> None:
    """The rules that hold whatever function calls the model (checked when parsing)."""
    _check_auto_increment(options)
    _check_flags_need_an_id(options)
    _check_uint64_id(options)


def _check_auto_increment(options: OptionValues) -> None:
    if not options.sequence_id_auto_increment:
        if options.differs_from_default("sequence-id-counter-init-strategy"):
            raise TritonConfigError(
                "'sequence-id-counter-init-strategy' has no effect without "
                "'sequence-id-auto-increment' = 'true'; set it or remove the strategy.")
        return
    if options.sequence_id is None:
        raise TritonConfigError(
            "'sequence-id-auto-increment' = 'true' requires 'sequence-id': the "
            "generated IDs are {sequence-id}-{subtask-index}-{counter}. Set "
            "'sequence-id' to a base such as 'flink-job-123'.")
    if options.sequence_id_type == "uint64":
        raise TritonConfigError(
            "'sequence-id-auto-increment' = 'true' generates string IDs and cannot be "
            "combined with 'sequence-id-type' = 'uint64'.")
    check_sequence_id_room(options.sequence_id, AUTO_INCREMENT_SUFFIX_BYTES,
                           "auto-incremented IDs")
    unset = " and ".join(repr(key) for key, value in (
        ("sequence-start", options.sequence_start), ("sequence-end", options.sequence_end))
        if not value)
    if unset:
        raise TritonConfigError(
            f"'sequence-id-auto-increment' = 'true' requires {unset} = 'true'. Every "
            "auto-incremented ID is a one-request sequence: without START the model's "
            "state for it is uninitialised (Triton rejects the request), and without END "
            "each request holds a Triton sequence slot until the model's idle timeout, so "
            "slots run out silently and later requests queue.")


def _check_flags_need_an_id(options: OptionValues) -> None:
    if options.sequence_id_auto_increment or options.sequence_id is not None:
        return
    flags = [k for k, v in (("sequence-start", options.sequence_start),
                            ("sequence-end", options.sequence_end)) if v]
    if flags:
        raise TritonConfigError(
            f"{' and '.join(repr(k) for k in flags)} = 'true' needs 'sequence-id': "
            "Triton ignores sequence flags on a request without a sequence ID.")


def _check_uint64_id(options: OptionValues) -> None:
    sequence_id = options.sequence_id
    if options.sequence_id_type == "uint64" and sequence_id is not None and not (
            sequence_id.isdigit() and 0 < int(sequence_id) < 2**63):
        raise TritonConfigError(
            f"'sequence-id' = '{sequence_id}' is not valid with 'sequence-id-type' = "
            "'uint64': expected an integer between 1 and 2^63-1 (Triton rejects 0, negative "
            "and larger values).")


def check_keyed_sequence(options: OptionValues) -> None:
    """What a keyed-sequence function (one sequence per key, opened and ended by the
    function) needs of the sequence options."""
    if options.sequence_id is None:
        raise TritonConfigError(
            "Keyed sequences need 'sequence-id': each key's sequence ID is "
            "{sequence-id}-{key}-{incarnation}-{n}. Set it to a base such as 'sensors'.")
    check_sequence_id_room(options.sequence_id, KEYED_SUFFIX_BYTES, "keyed sequences")
    managed = [repr(k) for k in _KEYED_MANAGED_OPTIONS if options.differs_from_default(k)]
    if managed:
        raise TritonConfigError(
            f"A keyed-sequence function sends START and END and forms string IDs itself; "
            f"remove {', '.join(managed)}.")
