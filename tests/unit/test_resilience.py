"""Unit tests of pyflink_triton.policies.resilience: the retry policy, one record's attempts and the
circuit breaker. Pure: a fake clock and a fixed uniform() stand for time and randomness."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyflink_triton.errors import (
    TritonCircuitOpenError,
    TritonConnectionError,
    TritonRequestError,
    TritonServerError,
    TritonTlsError,
)
from pyflink_triton.options import TritonOptions
from pyflink_triton.policies.resilience import (
    Admission,
    Attempts,
    BreakerState,
    CircuitBreaker,
    RetryPolicy,
)

from fake_clock import FakeClock

BASE = {"endpoint": "localhost:8000", "model-name": "m"}
ALMOST_ONE = math.nextafter(1.0, 0.0)  # the largest value random.random() can return


def options(**extra: str) -> TritonOptions:
    return TritonOptions.from_dict({**BASE, **extra})


def policy(max_retries: int = 3, initial: float = 0.1, maximum: float = 30.0,
           attempt: float = 30.0, record: float = 1000.0) -> RetryPolicy:
    return RetryPolicy(max_retries, initial, maximum, attempt, record)


def nominal(initial: float, maximum: float, retry: int) -> float:
    """d = min(initial * 2^(retry-1), max), as the option's description states it."""
    return min(initial * 2.0 ** (retry - 1), maximum)


def transient() -> TritonRequestError:
    return TritonServerError("HTTP 503 from model 'm'", 503)


# --- RetryPolicy: backoff ------------------------------------------------------------------------

@pytest.mark.parametrize("retry, d", [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (6, 1.0),
                                      (40, 1.0)])
def test_backoff_bounds_are_half_d_and_d(retry, d):
    retry_policy = policy(initial=0.1, maximum=1.0)
    assert retry_policy.backoff(retry, lambda: 0.0) == pytest.approx(d / 2)
    assert retry_policy.backoff(retry, lambda: ALMOST_ONE) == pytest.approx(d)
    assert retry_policy.backoff(retry, lambda: ALMOST_ONE) <= d
    assert retry_policy.backoff(retry, lambda: 0.5) == pytest.approx(0.75 * d)


def test_backoff_from_options():
    retry_policy = RetryPolicy.from_options(options(**{
        "max-retries": "5", "retry-initial-backoff": "200ms", "retry-max-backoff": "1s"}))
    assert (retry_policy.initial_backoff, retry_policy.max_backoff) == (0.2, 1.0)
    waits = [retry_policy.backoff(n, lambda: 0.0) for n in range(1, 6)]
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_backoff_defaults():
    retry_policy = RetryPolicy.from_options(options())
    assert retry_policy.max_retries == 0
    assert retry_policy.initial_backoff == 0.1
    assert retry_policy.max_backoff == 30.0
    assert retry_policy.attempt_timeout == 30.0


def test_backoff_calls_uniform_once_per_wait():
    calls: list[int] = []

    def uniform() -> float:
        calls.append(1)
        return 0.25

    assert policy(initial=0.4, maximum=10).backoff(2, uniform) == pytest.approx(0.5)
    assert len(calls) == 1


@given(retry=st.integers(1, 64),
       initial=st.floats(1e-6, 100.0),
       factor=st.floats(1.0, 1e4),
       uniform=st.floats(0.0, 1.0, exclude_max=True))
def test_backoff_is_uniform_between_half_d_and_d(retry, initial, factor, uniform):
    maximum = initial * factor
    retry_policy = policy(initial=initial, maximum=maximum)
    d = nominal(initial, maximum, retry)
    wait = retry_policy.backoff(retry, lambda: uniform)
    assert d / 2 <= wait <= d
    assert wait <= maximum
    assert retry_policy.backoff(retry, lambda: 0.0) == d / 2


@given(retry=st.integers(1, 64), initial=st.floats(1e-6, 100.0), factor=st.floats(1.0, 1e4),
       uniform=st.floats(0.0, 1.0, exclude_max=True))
def test_backoff_never_decreases_with_the_retry_number(retry, initial, factor, uniform):
    retry_policy = policy(initial=initial, maximum=initial * factor)
    assert (retry_policy.backoff(retry + 1, lambda: uniform)
            >= retry_policy.backoff(retry, lambda: uniform))


def test_backoff_of_a_huge_retry_number_is_the_maximum():
    assert policy(initial=0.001, maximum=5.0).backoff(10_000, lambda: 0.0) == 2.5


# --- RetryPolicy: the record's bound ------------------------------------------------------------

@pytest.mark.parametrize("extra, expected", [
    ({}, 30.0),  # no retries: one attempt
    ({"timeout": "2s"}, 2.0),
    ({"max-retries": "1", "timeout": "2s"}, 2 * 2 + 0.1),
    ({"max-retries": "3", "timeout": "2s", "retry-initial-backoff": "100ms",
      "retry-max-backoff": "300ms"}, 4 * 2 + 0.1 + 0.2 + 0.3),
    ({"max-retries": "5", "timeout": "1s", "retry-initial-backoff": "1s",
      "retry-max-backoff": "4s"}, 6 * 1 + 1 + 2 + 4 + 4 + 4),
])
def test_derived_record_timeout(extra, expected):
    retry_policy = RetryPolicy.from_options(options(**extra))
    assert retry_policy.record_timeout == pytest.approx(expected + 1.0)  # + 1 s of slack


@given(retries=st.integers(0, 30), timeout_ms=st.integers(1, 60_000),
       initial_ms=st.integers(1, 5_000), extra_ms=st.integers(0, 60_000))
def test_derived_record_timeout_is_attempts_plus_nominal_waits(retries, timeout_ms, initial_ms,
                                                              extra_ms):
    max_ms = initial_ms + extra_ms
    extra = {"timeout": f"{timeout_ms}ms", "max-retries": str(retries)}
    if retries:
        extra |= {"retry-initial-backoff": f"{initial_ms}ms", "retry-max-backoff": f"{max_ms}ms"}
    else:
        initial_ms, max_ms = 100, 30_000  # the defaults
    retry_policy = RetryPolicy.from_options(options(**extra))
    waits = sum(nominal(initial_ms / 1000, max_ms / 1000, n) for n in range(1, retries + 1))
    assert retry_policy.record_timeout == pytest.approx(
        (retries + 1) * timeout_ms / 1000 + waits + 1.0)


def test_record_timeout_option_wins():
    retry_policy = RetryPolicy.from_options(options(**{
        "max-retries": "3", "timeout": "2s", "record-timeout": "5s"}))
    assert retry_policy.record_timeout == 5.0
    assert retry_policy.attempt_timeout == 2.0


def test_describe():
    assert policy(max_retries=0, record=2.5).describe() == "no retries, 2.5 s per record"
    text = policy(max_retries=3, initial=0.1, maximum=2.0, record=9.0).describe()
    assert text == "up to 3 retries, backoff 0.1-2 s, 9 s per record"


# --- Attempts ------------------------------------------------------------------------------------

@pytest.mark.parametrize("error", [
    TritonServerError("HTTP 400: bad input", 400),
    TritonServerError("HTTP 404: unknown model", 404),
    TritonServerError("gRPC INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    TritonTlsError("certificate verify failed"),
    TritonCircuitOpenError("open"),
    TritonRequestError("cannot encode"),
], ids=lambda e: type(e).__name__ + "-" + str(getattr(e, "status", "")))
def test_non_retryable_errors_give_up_at_once(error):
    attempts = Attempts(policy(max_retries=5), 0.0, lambda: 0.0)
    attempts.start(0.0)
    assert attempts.wait_before_retry(error, 0.0) is None
    assert attempts.gave_up_because == "not retryable"
    assert attempts.made == 1


@pytest.mark.parametrize("error", [
    TritonServerError("HTTP 500", 500),
    TritonServerError("HTTP 503", 503),
    TritonServerError("gRPC UNAVAILABLE", "UNAVAILABLE"),
    TritonServerError("gRPC RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"),
    TritonConnectionError("connection refused"),
], ids=lambda e: type(e).__name__ + "-" + str(getattr(e, "status", "")))
def test_transient_errors_are_retryable(error):
    assert error.retryable is True
    attempts = Attempts(policy(max_retries=1), 0.0, lambda: 0.0)
    attempts.start(0.0)
    assert attempts.wait_before_retry(error, 0.0) == pytest.approx(0.05)


@pytest.mark.parametrize("max_retries", [0, 1, 3, 7])
def test_retries_up_to_max_retries_then_give_up(max_retries):
    retry_policy = policy(max_retries=max_retries, initial=0.1, maximum=100.0)
    attempts = Attempts(retry_policy, 0.0, lambda: 0.0)
    waits = []
    while True:
        attempts.start(0.0)
        wait = attempts.wait_before_retry(transient(), 0.0)
        if wait is None:
            break
        waits.append(wait)
    assert attempts.made == max_retries + 1
    assert waits == pytest.approx([retry_policy.backoff(n, lambda: 0.0)
                                   for n in range(1, max_retries + 1)])
    assert "'max-retries'" in attempts.gave_up_because
    assert f"= {max_retries}" in attempts.gave_up_because


def test_a_wait_past_the_deadline_gives_up_naming_record_timeout():
    # initial 1 s, uniform -> 1: the first wait is (almost) 1 s; the record has 3 s.
    attempts = Attempts(policy(max_retries=5, initial=1.0, record=3.0), 10.0, lambda: ALMOST_ONE)
    attempts.start(10.0)
    assert attempts.wait_before_retry(transient(), 11.5) == pytest.approx(1.0)  # ends at 12.5
    attempts.start(12.5)
    assert attempts.wait_before_retry(transient(), 12.9) is None  # 2 s wait, ends past 13
    assert "'record-timeout'" in attempts.gave_up_because
    assert "3 s" in attempts.gave_up_because
    assert "max-retries" not in attempts.gave_up_because


def test_a_wait_ending_exactly_at_the_deadline_gives_up():
    attempts = Attempts(policy(max_retries=5, initial=0.5, record=1.0), 0.0, lambda: 1.0)
    attempts.start(0.0)
    assert attempts.wait_before_retry(transient(), 0.5) is None  # 0.5 + 0.5 == deadline
    attempts = Attempts(policy(max_retries=5, initial=0.5, record=1.0), 0.0, lambda: 1.0)
    attempts.start(0.0)
    assert attempts.wait_before_retry(transient(), 0.25) == 0.5


def test_max_retries_is_checked_before_the_deadline():
    attempts = Attempts(policy(max_retries=0, record=0.001), 0.0, lambda: 0.0)
    attempts.start(0.0)
    assert attempts.wait_before_retry(transient(), 5.0) is None
    assert "'max-retries' = 0" in attempts.gave_up_because


@pytest.mark.parametrize("now, expected", [
    (100.0, 2.0),  # a fresh record: the attempt's own 'timeout'
    (102.5, 2.0),
    (103.0, 2.0),  # exactly 'timeout' left
    (104.0, 1.0),  # less left than 'timeout': the time left
    (104.75, 0.25),
])
def test_attempt_timeout_is_the_smaller_of_timeout_and_time_left(now, expected):
    attempts = Attempts(policy(attempt=2.0, record=5.0), 100.0, lambda: 0.0)
    assert attempts.deadline == 105.0
    assert attempts.start(now) == pytest.approx(expected)
    assert attempts.made == 1


@pytest.mark.parametrize("now", [105.0, 106.0, 1000.0])
def test_attempt_timeout_past_the_deadline_is_a_small_positive_bound(now):
    attempts = Attempts(policy(attempt=2.0, record=5.0), 100.0, lambda: 0.0)
    timeout = attempts.start(now)
    assert 0 < timeout <= 0.001


@given(start=st.floats(0, 1e6), elapsed=st.floats(0, 1e3), attempt=st.floats(1e-3, 100),
       record=st.floats(1e-3, 1000))
def test_attempt_timeout_never_exceeds_timeout_or_time_left(start, elapsed, attempt, record):
    attempts = Attempts(policy(attempt=attempt, record=record), start, lambda: 0.0)
    timeout = attempts.start(start + elapsed)
    assert 0 < timeout <= attempt
    assert timeout <= max(attempts.deadline - (start + elapsed), 0.001) + 1e-9


# --- CircuitBreaker ------------------------------------------------------------------------------

def breaker(threshold: float = 0.5, open_seconds: float = 60.0, half_open: int = 3,
            clock: FakeClock | None = None) -> CircuitBreaker:
    return CircuitBreaker(threshold, open_seconds, half_open, clock or FakeClock(1000.0))


def record_all(circuit: CircuitBreaker, outcomes: list[bool]) -> None:
    for success in outcomes:
        circuit.record(success, Admission.TRIAL)


def open_breaker(circuit: CircuitBreaker) -> None:
    record_all(circuit, [False] * CircuitBreaker.MINIMUM_SAMPLES)
    assert circuit.state is BreakerState.OPEN


def test_breaker_state_values_are_the_gauge_values():
    assert [int(s) for s in (BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN)] == [
        0, 1, 2]


def test_breaker_from_options():
    assert CircuitBreaker.from_options(options(), FakeClock()) is None
    circuit = CircuitBreaker.from_options(options(**{
        "circuit-breaker-enabled": "true", "circuit-breaker-failure-threshold": "0.25",
        "circuit-breaker-timeout": "90s", "circuit-breaker-half-open-requests": "2"}), FakeClock())
    assert circuit is not None
    assert (circuit.failure_threshold, circuit.open_seconds, circuit.half_open_requests) == (
        0.25, 90.0, 2)
    assert circuit.state is BreakerState.CLOSED
    defaults = CircuitBreaker.from_options(options(**{"circuit-breaker-enabled": "true"}),
                                           FakeClock())
    assert defaults is not None
    assert (defaults.failure_threshold, defaults.open_seconds, defaults.half_open_requests) == (
        0.5, 60.0, 3)


def test_closed_breaker_admits():
    circuit = breaker()
    assert isinstance(circuit.admit(), Admission)
    assert circuit.open_for() is None
    assert circuit.state is BreakerState.CLOSED


def test_never_opens_below_ten_samples():
    circuit = breaker(threshold=0.1)
    for _ in range(CircuitBreaker.MINIMUM_SAMPLES - 1):
        circuit.record(False, Admission.TRIAL)
        assert circuit.state is BreakerState.CLOSED
        assert isinstance(circuit.admit(), Admission)
    circuit.record(False, Admission.TRIAL)
    assert circuit.state is BreakerState.OPEN


@pytest.mark.parametrize("threshold, failures, opens", [
    (0.5, 5, True),
    (0.5, 4, False),
    (0.5, 6, True),
    (0.1, 1, True),
    (0.1, 0, False),
    (0.2, 2, True),
    (0.3, 3, True),
    (0.3, 2, False),
    (0.7, 7, True),
    (0.7, 6, False),
    (1.0, 10, True),
    (1.0, 9, False),
    (0.55, 5, False),
    (0.45, 5, True),
])
@pytest.mark.parametrize("failures_first", [True, False])
def test_opens_at_the_threshold_share_of_ten(threshold, failures, opens, failures_first):
    circuit = breaker(threshold=threshold)
    outcomes = [False] * failures + [True] * (10 - failures)
    record_all(circuit, outcomes if failures_first else outcomes[::-1])
    assert circuit.state is (BreakerState.OPEN if opens else BreakerState.CLOSED)


@given(total=st.integers(10, 300), data=st.data())
def test_opens_when_the_share_in_the_window_reaches_the_threshold(total, data):
    failures = data.draw(st.integers(1, total))
    threshold = data.draw(st.floats(0.01, 1.0))
    circuit = breaker(threshold=threshold)
    opened_at = None
    outcomes = [True] * (total - failures) + [False] * failures
    window: list[bool] = []  # the last WINDOW outcomes, True = failed
    for count, success in enumerate(outcomes, start=1):
        circuit.record(success, Admission.TRIAL)
        window = [*window, not success][-CircuitBreaker.WINDOW:]
        share = sum(window) / len(window)
        if circuit.state is BreakerState.OPEN:
            opened_at = (count, share)
            break
        if len(window) >= CircuitBreaker.MINIMUM_SAMPLES:
            assert share < threshold
    if opened_at is not None:
        count, share = opened_at
        assert count >= CircuitBreaker.MINIMUM_SAMPLES
        assert share >= threshold


def test_opens_exactly_at_every_share_written_as_a_decimal():
    missed = []
    for total in range(10, 60):
        for failures in range(1, total + 1):
            threshold = float(repr(failures / total))  # what a user would write
            circuit = breaker(threshold=threshold)
            record_all(circuit, [True] * (total - failures) + [False] * failures)
            if circuit.state is not BreakerState.OPEN:
                missed.append((failures, total, threshold))
    assert missed == []


def test_admit_while_open_returns_the_remaining_open_time():
    clock = FakeClock(1000.0)
    circuit = breaker(open_seconds=60.0, clock=clock)
    open_breaker(circuit)
    assert circuit.admit() == pytest.approx(60.0)
    assert circuit.open_for() == pytest.approx(60.0)
    clock.advance(15.0)
    assert circuit.admit() == pytest.approx(45.0)
    assert circuit.open_for() == pytest.approx(45.0)
    clock.advance(44.5)
    assert circuit.admit() == pytest.approx(0.5)
    assert circuit.state is BreakerState.OPEN


def test_open_for_is_none_once_the_open_duration_passed():
    clock = FakeClock(1000.0)
    circuit = breaker(open_seconds=60.0, clock=clock)
    open_breaker(circuit)
    clock.advance(60.0)
    assert circuit.open_for() is None
    assert circuit.state is BreakerState.OPEN  # until a request asks to be admitted
    assert isinstance(circuit.admit(), Admission)
    assert circuit.state is BreakerState.HALF_OPEN
    assert circuit.open_for() is None


@pytest.mark.parametrize("half_open", [1, 3, 5])
def test_half_open_admits_exactly_its_trial_budget(half_open):
    clock = FakeClock(1000.0)
    circuit = breaker(half_open=half_open, clock=clock)
    open_breaker(circuit)
    clock.advance(60.0)
    assert all(circuit.admit() is Admission.TRIAL for _ in range(half_open))
    assert circuit.state is BreakerState.HALF_OPEN
    assert circuit.admit() == 0.0
    clock.advance(1000.0)  # waiting does not add trials: only their outcomes do
    assert circuit.admit() == 0.0


def half_open_breaker(half_open: int = 3, clock: FakeClock | None = None) -> CircuitBreaker:
    clock = clock or FakeClock(1000.0)
    circuit = breaker(half_open=half_open, clock=clock)
    open_breaker(circuit)
    clock.advance(60.0)
    assert isinstance(circuit.admit(), Admission)
    assert circuit.state is BreakerState.HALF_OPEN
    return circuit


def test_all_trials_succeeding_closes_and_resets_the_counts():
    circuit = half_open_breaker(half_open=3)
    assert isinstance(circuit.admit(), Admission)
    assert isinstance(circuit.admit(), Admission)
    circuit.record(True, Admission.TRIAL)
    circuit.record(True, Admission.TRIAL)
    assert circuit.state is BreakerState.HALF_OPEN
    circuit.record(True, Admission.TRIAL)
    assert circuit.state is BreakerState.CLOSED
    assert isinstance(circuit.admit(), Admission)
    # The ten failures that opened it are forgotten: ten new samples are needed again.
    record_all(circuit, [False] * 9)
    assert circuit.state is BreakerState.CLOSED
    circuit.record(False, Admission.TRIAL)
    assert circuit.state is BreakerState.OPEN


@pytest.mark.parametrize("successes_before", [0, 1, 2])
def test_any_trial_failure_reopens(successes_before):
    clock = FakeClock(1000.0)
    circuit = half_open_breaker(half_open=3, clock=clock)
    record_all(circuit, [True] * successes_before)
    clock.advance(7.0)
    circuit.record(False, Admission.TRIAL)
    assert circuit.state is BreakerState.OPEN
    assert circuit.admit() == pytest.approx(60.0)  # open anew from the failure
    clock.advance(60.0)
    # A new round of trials, with a full budget.
    assert [circuit.admit() for _ in range(4)] == [Admission.TRIAL] * 3 + [0.0]
    assert circuit.state is BreakerState.HALF_OPEN


def test_outcomes_while_open_change_nothing():
    clock = FakeClock(1000.0)
    circuit = breaker(clock=clock)
    open_breaker(circuit)
    clock.advance(30.0)
    record_all(circuit, [True] * 50 + [False] * 50)  # requests admitted before it opened
    assert circuit.state is BreakerState.OPEN
    assert circuit.admit() == pytest.approx(30.0)
    clock.advance(30.0)
    assert isinstance(circuit.admit(), Admission)
    assert circuit.state is BreakerState.HALF_OPEN


def test_probes_count_as_samples_while_closed():
    circuit = breaker(threshold=0.5)
    for _ in range(9):
        circuit.record_probe(False)
    assert circuit.state is BreakerState.CLOSED
    circuit.record_probe(False)
    assert circuit.state is BreakerState.OPEN


def test_probes_and_requests_share_the_counts():
    circuit = breaker(threshold=0.5)
    for _ in range(5):
        circuit.record_probe(True)
    record_all(circuit, [False] * 4)
    assert circuit.state is BreakerState.CLOSED  # 4 of 9
    circuit.record(False, Admission.TRIAL)
    assert circuit.state is BreakerState.OPEN  # 5 of 10


def test_good_probes_keep_a_closed_breaker_closed():
    circuit = breaker(threshold=0.5)
    for _ in range(10):
        circuit.record_probe(True)
    record_all(circuit, [False] * 9)
    assert circuit.state is BreakerState.CLOSED  # 9 of 19
    circuit.record(False, Admission.TRIAL)
    assert circuit.state is BreakerState.OPEN  # 10 of 20


def test_a_failed_probe_reopens_a_half_open_breaker():
    clock = FakeClock(1000.0)
    circuit = half_open_breaker(clock=clock)
    clock.advance(3.0)
    circuit.record_probe(False)
    assert circuit.state is BreakerState.OPEN
    assert circuit.admit() == pytest.approx(60.0)


def test_good_probes_never_close_a_half_open_breaker():
    circuit = half_open_breaker(half_open=3)
    for _ in range(100):
        circuit.record_probe(True)
    assert circuit.state is BreakerState.HALF_OPEN
    assert isinstance(circuit.admit(), Admission)  # trials 2 and 3 remain
    assert isinstance(circuit.admit(), Admission)
    assert circuit.admit() == 0.0


def test_probes_are_ignored_while_open():
    clock = FakeClock(1000.0)
    circuit = breaker(clock=clock)
    open_breaker(circuit)
    clock.advance(50.0)
    for healthy in (True, False, True, False):
        circuit.record_probe(healthy)
    assert circuit.state is BreakerState.OPEN
    assert circuit.admit() == pytest.approx(10.0)  # a failed probe does not extend it
    clock.advance(10.0)
    assert isinstance(circuit.admit(), Admission)
    assert circuit.state is BreakerState.HALF_OPEN


def test_the_share_is_over_the_last_window_of_records():
    window = CircuitBreaker.WINDOW
    circuit = breaker(threshold=0.5)
    record_all(circuit, [True] * (10 * window))  # hours of successes weigh no more than 100
    record_all(circuit, [False] * (window // 2 - 1))
    assert circuit.state is BreakerState.CLOSED
    circuit.record(False, Admission.TRIAL)  # 50 of the last 100
    assert circuit.state is BreakerState.OPEN


def test_old_failures_leave_the_window():
    class SmallWindow(CircuitBreaker):
        WINDOW = 20

    circuit = SmallWindow(0.5, 60.0, 3, FakeClock())
    record_all(circuit, [True] * 11 + [False] * 9)  # 9 of 20
    record_all(circuit, [True] * 20)  # the 9 failures leave the window: 0 of 20
    record_all(circuit, [False] * 9)  # 9 of 20
    assert circuit.state is BreakerState.CLOSED
    circuit.record(False, Admission.TRIAL)  # 10 of 20
    assert circuit.state is BreakerState.OPEN


def test_describe_open_names_the_threshold_option():
    text = breaker(threshold=0.25).describe_open()
    assert "0.25" in text
    assert "'circuit-breaker-failure-threshold'" in text


# --- CircuitBreaker: threads ---------------------------------------------------------------------

def run_threads(count: int, target: Callable[[int], object]) -> None:
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        target(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()


@pytest.mark.parametrize("half_open", [1, 3, 7])
def test_threads_hammering_admit_in_half_open_get_exactly_the_budget(half_open):
    clock = FakeClock(1000.0)
    circuit = breaker(half_open=half_open, clock=clock)
    open_breaker(circuit)
    clock.advance(60.0)
    admitted: list[int] = []
    refused: list[float] = []
    lock = threading.Lock()

    def hammer(index: int) -> None:
        for _ in range(200):
            wait = circuit.admit()
            with lock:
                if isinstance(wait, Admission):
                    admitted.append(index)
                else:
                    refused.append(wait)

    run_threads(32, hammer)
    assert len(admitted) == half_open
    assert len(refused) == 32 * 200 - half_open
    assert set(refused) == {0.0}
    assert circuit.state is BreakerState.HALF_OPEN


def test_threads_recording_lose_no_sample():
    circuit = breaker(threshold=1.0)  # only all-failures opens it

    def record(index: int) -> None:
        for i in range(300):
            circuit.record(i % 2 == 0 or index % 2 == 0, Admission.TRIAL)

    run_threads(32, record)
    assert circuit.state is BreakerState.CLOSED
    # (the private counts: no update lost)
    assert len(circuit._outcomes) == CircuitBreaker.WINDOW
    assert circuit._failed == sum(circuit._outcomes)


def test_threads_recording_failures_open_it_once():
    clock = FakeClock(1000.0)
    circuit = breaker(threshold=0.5, clock=clock)
    run_threads(32, lambda index: record_all(circuit, [False] * 100))
    assert circuit.state is BreakerState.OPEN
    assert circuit.admit() == pytest.approx(60.0)
    clock.advance(60.0)
    assert [circuit.admit() for _ in range(4)] == [Admission.TRIAL] * 3 + [0.0]


def test_timedelta_options_become_seconds():
    circuit = CircuitBreaker.from_options(options(**{
        "circuit-breaker-enabled": "true", "circuit-breaker-timeout": "1500ms"}), FakeClock())
    assert circuit is not None
    assert circuit.open_seconds == timedelta(milliseconds=1500).total_seconds() == 1.5
