"""ML_PREDICT's CONFIG map for a Triton model: Flink's runtime keys
(``MLPredictRuntimeConfigOptions``) and this package's options, turned into the options of
the function that runs that one query."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TypeVar

from ..errors import TritonConfigError
from ..options import option_specs
from ..options.values import parse_bool, parse_positive_duration, parse_positive_int

_LOG = logging.getLogger(__name__)
T = TypeVar("T")

FLINK_KEYS = {
    "async": "true or false: the async or the sync function",
    "max-concurrent-operations": "a positive integer: requests in flight (async, vectorized)",
    "output-mode": "ORDERED or ALLOW_UNORDERED (both run ordered)",
    "timeout": "a duration such as 10 s: bound on a record, retries included "
               "(the option 'record-timeout')",
}
# This package's options a query may set; the others belong to the model.
_QUERY_OPTIONS = tuple(spec.key for spec in option_specs()
                       if spec.key not in ("provider", *FLINK_KEYS))


def function_options(model: str, config: Mapping[str, str],
                     options: Mapping[str, str]) -> dict[str, str]:
    """The options of the function that runs an ML_PREDICT of ``model`` with ``config``: the
    model's ``options`` with the config applied (equal to them when it changes nothing)."""
    what = f"ML_PREDICT of model '{model}'"
    ours = {key: value for key, value in config.items() if key not in FLINK_KEYS}
    for key in ours:
        if key not in _QUERY_OPTIONS:
            why = ("is the model's provider, fixed by CREATE MODEL" if key == "provider"
                   else "is neither one of Flink's ML_PREDICT keys nor an option of the "
                        "'triton' provider")
            raise TritonConfigError(
                f"{what}: CONFIG key '{key}' {why}. Accepted: Flink's "
                f"{', '.join(repr(k) for k in FLINK_KEYS)}, and the model's options "
                f"{', '.join(repr(k) for k in _QUERY_OPTIONS)} (docs/options.md).")
    merged = {**options, **ours}

    model_mode = (options.get("mode") or "sync").strip().lower()
    mode = (merged.get("mode") or "sync").strip().lower()
    if "async" in config:
        wants_async = _parsed(what, "async", config["async"], parse_bool)
        if "mode" in ours and (mode == "async") != wants_async:
            raise TritonConfigError(
                f"{what}: CONFIG 'async' = '{config['async']}' contradicts 'mode' = "
                f"'{ours['mode']}'. Give one of them.")
        mode = "async" if wants_async else ("sync" if mode == "async" else mode)
        if mode != model_mode or "mode" in merged:
            merged["mode"] = mode
    if "max-concurrent-operations" in config:
        bound = _parsed(what, "max-concurrent-operations",
                        config["max-concurrent-operations"], parse_positive_int)
        # (the sync function has one request in flight; Flink applies the key to async only)
        if mode in ("async", "vectorized"):
            _agree(what, ours, "max-concurrent-requests", str(bound),
                   "max-concurrent-operations", parse_positive_int)
            merged["max-concurrent-requests"] = str(bound)
    if "output-mode" in config:
        output_mode = config["output-mode"].strip().upper()
        if output_mode not in ("ORDERED", "ALLOW_UNORDERED"):
            raise TritonConfigError(
                f"{what}: CONFIG 'output-mode' = '{config['output-mode']}': expected ORDERED "
                "or ALLOW_UNORDERED.")
        if output_mode == "ALLOW_UNORDERED":
            _LOG.info("%s: 'output-mode' = 'ALLOW_UNORDERED' runs ordered: PyFlink's async "
                      "functions keep the input order.", what)
    if "timeout" in config:
        _parsed(what, "timeout", config["timeout"], parse_positive_duration)
        _agree(what, ours, "record-timeout", config["timeout"], "timeout",
               parse_positive_duration)
        merged["record-timeout"] = config["timeout"]
    return merged


def _parsed(what: str, key: str, value: str, parse: Callable[[str], T]) -> T:
    try:
        return parse(value)
    except ValueError as error:
        raise TritonConfigError(
            f"{what}: Invalid runtime config option '{key}' = '{value}' ({error}); expected "
            f"{FLINK_KEYS[key]}.") from None


def _agree(what: str, ours: Mapping[str, str], option: str, value: str, flink_key: str,
           parse: Callable[[str], object]) -> None:
    """Refuse a CONFIG key of Flink's and the option it becomes with different values."""
    try:
        same = option not in ours or parse(ours[option]) == parse(value)
    except ValueError:
        same = True  # (the option's own check names what is wrong with it)
    if not same:
        raise TritonConfigError(
            f"{what}: CONFIG '{flink_key}' = '{value}' and '{option}' = '{ours[option]}' set "
            "the same thing differently. Give one of them.")
