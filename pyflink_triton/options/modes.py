"""The ways a function calls the model, and which options each of them accepts.

A function calls the model in one mode: 'sync' (one blocking request per record), 'async'
(one request per record, many in flight), 'vectorized' (batches of rows per request) or
'keyed' (one Triton sequence per key of a keyed stream). The options are parsed before the
function is known, so what depends on the mode is checked when the function is created (and
again in its open()), by :func:`check_mode`.
"""

from __future__ import annotations

from typing import Literal

from ..errors import TritonConfigError
from .sequence_rules import check_keyed_sequence
from .spec import OptionValues

Mode = Literal["sync", "async", "vectorized", "keyed"]
_MODE_NAMES: dict[Mode, str] = {
    "sync": "the 'sync' mode", "async": "the 'async' mode", "vectorized": "the 'vectorized' mode",
    "keyed": "keyed sequences (TritonKeyedSequenceFunction on a keyed DataStream)"}

# The mode-compatibility table: the options that only some ways of calling the model use, and
# those ways (every mode takes the options not listed). In any other mode, an option would do
# nothing while seeming to, so it is refused. (What each mode can keep of a sequence's order,
# which depends on the values, is checked by _check_sequence_fits_mode.)
MODE_ONLY_OPTIONS: dict[str, tuple[Mode, ...]] = {
    "max-concurrent-requests": ("async", "vectorized", "keyed"),
    "batch-size": ("vectorized",),
    "sequence-idle-timeout": ("keyed",),
    "sequence-replay-records": ("keyed",),
    "sequence-slots": ("keyed",),
}
_KEYED_ONLY_OPTIONS = tuple(k for k, modes in MODE_ONLY_OPTIONS.items() if modes == ("keyed",))

VECTORIZED_SEQUENCE_ERROR = (
    "The 'vectorized' mode sends many rows in one request, and a request carries one sequence "
    "ID, so per-row sequence semantics ('sequence-id' and its flags) cannot be kept. Use "
    "'mode' = 'async' (one request per row, many in flight) or 'sync' for stateful models.")


def check_mode_option(options: OptionValues) -> None:
    """What can be checked of the mode when parsing: 'mode' = 'vectorized' names the one
    function that takes it. (The others are checked when the function is created: 'sync'
    may be a keyed one.)"""
    if options.mode == "vectorized":
        check_mode(options, options.mode)


def check_mode(options: OptionValues, mode: Mode) -> None:
    """Refuse options that do nothing, or something wrong, when the model is called in
    ``mode``: 'sync', 'async' or 'vectorized', or 'keyed' for keyed sequences."""
    check_sequence_scope(options, mode == "keyed")
    if options.mode not in (None, mode) and mode != "keyed":
        raise TritonConfigError(
            f"'mode' = '{options.mode}' does not fit this function, which calls the model in "
            f"{_MODE_NAMES[mode]}; remove 'mode', or use the function of that mode.")
    unused: dict[tuple[Mode, ...], list[str]] = {}
    for key, modes in MODE_ONLY_OPTIONS.items():
        if mode not in modes and options.differs_from_default(key):
            unused.setdefault(modes, []).append(repr(key))
    for modes, keys in unused.items():
        where = " and ".join(_MODE_NAMES[m] for m in modes)
        raise TritonConfigError(
            f"{', '.join(keys)} appl{'y' if len(keys) > 1 else 'ies'} only to {where}, and "
            f"this function calls the model in {_MODE_NAMES[mode]}; remove "
            f"{'them' if len(keys) > 1 else 'it'}.")
    _check_sequence_fits_mode(options, mode)


def check_sequence_scope(options: OptionValues, keyed: bool) -> None:
    """Refuse options of the other kind of function: keyed sequences (one sequence per
    key, opened and ended by the function) versus per-record functions."""
    if not keyed:
        keyed_only = [repr(k) for k in _KEYED_ONLY_OPTIONS if options.differs_from_default(k)]
        if keyed_only:
            raise TritonConfigError(
                f"{', '.join(keyed_only)} apply only to keyed sequences "
                "(TritonKeyedSequenceFunction on a keyed DataStream); remove them here.")
        return
    check_keyed_sequence(options)
    if options.mode not in (None, "sync"):
        raise TritonConfigError(
            f"'mode' = '{options.mode}' does not apply to keyed sequences: each key's "
            "requests go one at a time, in order, as a sequence needs (different keys' go "
            "together, up to 'max-concurrent-requests'). Remove it.")


def _check_sequence_fits_mode(options: OptionValues, mode: Mode) -> None:
    """What a per-record function of ``mode`` can keep of a sequence's order. The one place
    'vectorized' refuses 'sequence-id', reached from parsing ('mode' = 'vectorized') and when a
    function is created and opened."""
    if options.sequence_id is None or mode == "keyed":
        return
    if mode == "vectorized":
        raise TritonConfigError(VECTORIZED_SEQUENCE_ERROR)
    if mode == "async" and not options.sequence_id_auto_increment:
        raise TritonConfigError(
            f"'mode' = 'async' with the fixed 'sequence-id' = '{options.sequence_id}' would "
            "send up to 'max-concurrent-requests' requests of one Triton sequence at once, "
            "on separate connections, so the model would get its steps in any order. Use "
            "'sequence-id-auto-increment' = 'true' (a sequence per request), keyed "
            "sequences (one sequence per key, TritonKeyedSequenceFunction) or the 'sync' "
            "mode.")
