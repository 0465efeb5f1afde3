"""Reliability policy: whether to send a request again, how long to wait, when to stop sending.
Pure, no I/O: time comes from a clock and randomness from a function the caller gives.

- :class:`RetryPolicy` (options 'max-retries', 'retry-initial-backoff', 'retry-max-backoff',
  'timeout', 'record-timeout') and :class:`Attempts`, one record's attempts under it: only
  transient failures are retried, with exponential backoff and equal jitter, within the
  record's overall bound.
- :class:`CircuitBreaker` (options 'circuit-breaker-*'), one per server: CLOSED -> OPEN when
  the share of failed attempts among the last 100 reaches the threshold (over at least 10, as
  Flink's Java provider; it counts all requests, halving at 10 000); OPEN -> HALF_OPEN after
  the open duration; HALF_OPEN lets a budget of trial requests through and closes when all
  succeed. ``routing`` admits each attempt through the breaker of the server it goes to.

The plumbing that sends requests under these policies is ``reliable``.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import TritonRequestError
from ..options import TritonOptions


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    initial_backoff: float  # seconds
    max_backoff: float
    attempt_timeout: float  # 'timeout': the bound on one attempt
    record_timeout: float  # the bound on all of a record's attempts and waits

    @classmethod
    def from_options(cls, options: TritonOptions) -> RetryPolicy:
        initial = options.retry_initial_backoff.total_seconds()
        maximum = options.retry_max_backoff.total_seconds()
        attempt = options.timeout.total_seconds()
        if options.record_timeout is not None:
            record = options.record_timeout.total_seconds()
        else:  # what the retries could take at most anyway, and a second for the work between
            record = ((options.max_retries + 1) * attempt
                      + _total_backoff(initial, maximum, options.max_retries) + 1.0)
        return cls(options.max_retries, initial, maximum, attempt, record)

    def backoff(self, retry: int, uniform: Callable[[], float]) -> float:
        """The wait before retry number ``retry`` (1 for the first): uniform in [d/2, d] with
        d = min(initial * 2^(retry-1), max). ``uniform()`` gives a number in [0, 1)."""
        nominal = _nominal_backoff(self.initial_backoff, self.max_backoff, retry)
        return nominal / 2 + uniform() * nominal / 2

    def describe(self) -> str:
        if self.max_retries == 0:
            return f"no retries, {self.record_timeout:g} s per record"
        return (f"up to {self.max_retries} retries, backoff {self.initial_backoff:g}-"
                f"{self.max_backoff:g} s, {self.record_timeout:g} s per record")


def _nominal_backoff(initial: float, maximum: float, retry: int) -> float:
    return min(initial * 2.0 ** min(max(retry - 1, 0), 64), maximum)


def _total_backoff(initial: float, maximum: float, retries: int) -> float:
    """The sum of the nominal backoffs of retries 1..``retries`` (in closed form: the option
    has no upper bound)."""
    doubling = 0  # retries whose backoff is still below the maximum
    while doubling < retries and initial * 2.0 ** doubling < maximum:
        doubling += 1
    return initial * (2.0 ** doubling - 1) + (retries - doubling) * maximum


class Attempts:
    """One record's attempts: how long the next may take, and whether (when) to make it.
    ``resend_delivered`` False: a failure after which the request may have reached the server
    is not retried (a step of a long-lived sequence would be applied twice)."""

    def __init__(self, policy: RetryPolicy, now: float, uniform: Callable[[], float],
                 resend_delivered: bool = True) -> None:
        self.policy = policy
        self.made = 0  # attempts started so far
        self.deadline = now + policy.record_timeout
        self._uniform = uniform
        self._resend_delivered = resend_delivered
        self.gave_up_because = ""  # why the last failure ended the record, for messages

    def start(self, now: float) -> float:
        """Count an attempt about to start; returns its timeout (never past the deadline)."""
        self.made += 1
        return max(min(self.policy.attempt_timeout, self.deadline - now), 0.001)

    def wait_before_retry(self, error: TritonRequestError, now: float) -> float | None:
        """Seconds to wait before attempting again after ``error``, or None to give up."""
        policy = self.policy
        if not error.retryable:
            self.gave_up_because = "not retryable"
        elif not self._resend_delivered and error.maybe_delivered:
            self.gave_up_because = ("it may have reached the model, and a step of a sequence "
                                    "sent twice would be applied twice")
        elif self.made > policy.max_retries:
            self.gave_up_because = f"'max-retries' = {policy.max_retries}"
        else:
            wait = policy.backoff(self.made, self._uniform)
            if now + wait < self.deadline:
                return wait
            self.gave_up_because = (f"the record's time limit of {policy.record_timeout:g} s "
                                    "('record-timeout') would pass before the next attempt")
        return None

    def gave_up(self, error: TritonRequestError, what: str) -> TritonRequestError:
        """The error to raise once :meth:`wait_before_retry` gave up after ``error``: ``error``
        itself when one attempt failed for good at once, else one that says how many attempts
        were made and why they stopped, keeping ``error`` as its ``last_attempt``."""
        if self.made == 1 and not error.retryable:
            return error
        gave_up = TritonRequestError(
            f"Gave up on {what} after {self.made} attempt(s) ({self.gave_up_because}). "
            f"Last cause: {error}")
        gave_up.last_attempt = error
        gave_up.maybe_delivered = error.maybe_delivered
        return gave_up


class Admission(enum.Enum):
    """How the circuit breaker let a request through."""

    REQUEST = "request"  # closed: a request like any other
    TRIAL = "trial"  # half-open: one of the trial requests


class BreakerState(enum.IntEnum):
    """As reported by the ``circuitBreakerState`` gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Per function instance and server; thread-safe (the health check reports from its own
    thread)."""

    MINIMUM_SAMPLES = 10  # the breaker never opens on fewer requests
    # The share is taken over the last WINDOW attempts only: after hours of successes, an
    # outage must open the breaker within a few dozen records, not after as many failures.
    WINDOW = 100

    def __init__(self, failure_threshold: float, open_seconds: float, half_open_requests: int,
                 clock: Callable[[], float]) -> None:
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self.half_open_requests = half_open_requests
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._outcomes: deque[bool] = deque()  # while closed: the last WINDOW, True = failed
        self._failed = 0  # failures among them
        self._opened_at = 0.0
        self._trials_admitted = self._trials_succeeded = 0  # while half-open

    @classmethod
    def from_options(cls, options: TritonOptions,
                     clock: Callable[[], float]) -> CircuitBreaker | None:
        if not options.circuit_breaker_enabled:
            return None
        return cls(options.circuit_breaker_failure_threshold,
                   options.circuit_breaker_timeout.total_seconds(),
                   options.circuit_breaker_half_open_requests, clock)

    @property
    def state(self) -> BreakerState:
        return self._state

    def admit(self) -> Admission | float:
        """How a request may be sent now; or, when it may not, the seconds until the breaker
        will let trial requests through (0 when half-open and the trials are all out)."""
        with self._lock:
            if self._state is BreakerState.OPEN:
                remaining = self._opened_at + self.open_seconds - self._clock()
                if remaining > 0:
                    return remaining
                self._state = BreakerState.HALF_OPEN
                self._trials_admitted = self._trials_succeeded = 0
            if self._state is BreakerState.HALF_OPEN:
                if self._trials_admitted >= self.half_open_requests:
                    return 0.0
                self._trials_admitted += 1
                return Admission.TRIAL
            return Admission.REQUEST

    def open_for(self) -> float | None:
        """Seconds the breaker stays open, or None when it is not open (its server then gets
        no requests; a record stops retrying once every server's breaker is open)."""
        with self._lock:
            if self._state is not BreakerState.OPEN:
                return None
            remaining = self._opened_at + self.open_seconds - self._clock()
            return remaining if remaining > 0 else None

    def record(self, success: bool, admission: Admission) -> None:
        """The outcome of an admitted attempt."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                self._count(success)
            elif self._state is BreakerState.HALF_OPEN and admission is Admission.TRIAL:
                if not success:
                    self._open()
                else:
                    self._trials_succeeded += 1
                    if self._trials_succeeded >= self.half_open_requests:
                        self._close()
            # OPEN, or a request admitted before the breaker opened that ends while it is
            # half-open: only trials decide, so it changes nothing.

    def release(self, admission: Admission) -> None:
        """An admitted request ended without an outcome (cancelled): its trial slot is free."""
        with self._lock:
            if self._state is BreakerState.HALF_OPEN and admission is Admission.TRIAL:
                self._trials_admitted = max(self._trials_admitted - 1, 0)

    def record_probe(self, healthy: bool) -> None:
        """A health probe: a sample while closed; a failed one reopens a half-open breaker,
        a good one does not close it (only real requests do)."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                self._count(healthy)
            elif self._state is BreakerState.HALF_OPEN and not healthy:
                self._open()

    def describe_open(self) -> str:
        """Why it is open, for messages."""
        return (f"the share of failed requests reached {self.failure_threshold:g} "
                f"('circuit-breaker-failure-threshold')")

    def _count(self, success: bool) -> None:
        outcomes = self._outcomes
        outcomes.append(not success)
        self._failed += not success
        if len(outcomes) > self.WINDOW:
            self._failed -= outcomes.popleft()
        if (len(outcomes) >= self.MINIMUM_SAMPLES
                and self._failed / len(outcomes) >= self.failure_threshold):
            self._open()

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._outcomes.clear()
        self._failed = 0
