"""How the failure-handling options combine: retries, the circuit breaker and the health check
each have a switch, and tuning one that is switched off would do nothing while seeming to."""

from __future__ import annotations

from ..errors import TritonConfigError
from .spec import OptionValues
from .values import format_duration


def check_reliability(options: OptionValues) -> None:
    if options.retry_max_backoff < options.retry_initial_backoff:
        raise TritonConfigError(
            f"'retry-max-backoff' ({format_duration(options.retry_max_backoff)}) must be at "
            f"least 'retry-initial-backoff' ({format_duration(options.retry_initial_backoff)}).")
    # Each switch, whether it is on, the text of its 'on' value and the options that tune it.
    for switch, on, wanted, keys in (
            ("max-retries", options.max_retries > 0, "> 0",
             ("retry-initial-backoff", "retry-max-backoff")),
            ("circuit-breaker-enabled", options.circuit_breaker_enabled, "= 'true'",
             ("circuit-breaker-failure-threshold", "circuit-breaker-timeout",
              "circuit-breaker-half-open-requests")),
            ("health-check-enabled", options.health_check_enabled, "= 'true'",
             ("health-check-interval",))):
        changed = [key for key in keys if not on and options.differs_from_default(key)]
        if changed:
            raise TritonConfigError(
                f"{', '.join(repr(k) for k in changed)} has no effect without '{switch}' "
                f"{wanted}; set '{switch}' or remove it.")
