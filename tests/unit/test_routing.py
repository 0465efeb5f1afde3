"""Unit tests of pyflink_triton.policies.routing: rendezvous order, the Router's choice of a
server (least in flight, down marks, health probes, circuit breakers, sequence pins). Pure:
a fake clock, no I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

import pytest

from pyflink_triton.policies.resilience import Admission, BreakerState, CircuitBreaker
from pyflink_triton.policies.routing import (
    FIRST_DOWN_SECONDS,
    MAX_DOWN_SECONDS,
    Lost,
    Outcome,
    Refused,
    Route,
    Router,
    rendezvous_order,
    spans_requests,
)
from pyflink_triton.policies.sequence import SequenceParams

from fake_clock import FakeClock

A, B, C = "http://a:8000", "http://b:8000", "http://c:8000"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_router(clock: FakeClock, servers: tuple[str, ...] = (A, B, C),
                breakers: bool = False, max_pins: int = 1000) -> Router:
    return Router(servers, [CircuitBreaker(0.5, 60.0, 1, clock) if breakers else None
                            for _ in servers], clock, max_pins)


def start(sequence_id: str | int) -> SequenceParams:
    return SequenceParams(sequence_id, True, False)


def middle(sequence_id: str | int) -> SequenceParams:
    return SequenceParams(sequence_id, False, False)


def end(sequence_id: str | int) -> SequenceParams:
    return SequenceParams(sequence_id, False, True)


def routed(router: Router, sequence: SequenceParams | None = None) -> Route:
    route = router.route(sequence)
    assert isinstance(route, Route), route
    return route


def send(router: Router, sequence: SequenceParams | None = None,
         outcome: Outcome = Outcome.ANSWERED) -> int:
    """Route a request, finish it with ``outcome``; its server."""
    route = routed(router, sequence)
    router.finish(route, outcome)
    return route.server


def fail(router: Router, server: int) -> None:
    """A request routed to ``server`` (the only available one for a moment) that fails
    transiently."""
    route = Route(server, None, None)
    router.in_flight[server] += 1  # (as route() would have counted it)
    router.finish(route, Outcome.UNREACHABLE)


def id_with_order(servers: tuple[str, ...], order: list[int],
                  skip: Collection[str] = ()) -> str:
    """A sequence ID (not in ``skip``) whose rendezvous order over ``servers`` starts with
    ``order``."""
    for n in range(10_000):
        if (rendezvous_order(f"seq-{n}", servers)[:len(order)] == order
                and f"seq-{n}" not in skip):
            return f"seq-{n}"
    raise AssertionError(f"no ID with order {order}")


# --- rendezvous order ----------------------------------------------------------------------------

def test_rendezvous_order_is_a_stable_permutation():
    for sequence_id in ("job-0-7", 7, "ключ", 2**64 - 1):
        order = rendezvous_order(sequence_id, (A, B, C))
        assert sorted(order) == [0, 1, 2]
        assert rendezvous_order(sequence_id, (A, B, C)) == order


def test_rendezvous_order_depends_on_the_servers_not_their_position():
    for n in range(100):
        forward = [(A, B, C)[i] for i in rendezvous_order(n, (A, B, C))]
        backward = [(C, B, A)[i] for i in rendezvous_order(n, (C, B, A))]
        assert forward == backward


def test_losing_a_server_moves_only_its_ids():
    ids = range(1000)
    with_c = {n: (A, B, C)[rendezvous_order(n, (A, B, C))[0]] for n in ids}
    without_c = {n: (A, B)[rendezvous_order(n, (A, B))[0]] for n in ids}
    moved = {n for n in ids if with_c[n] != without_c[n]}
    assert moved == {n for n in ids if with_c[n] == C}
    # ... and each to its second choice among the three
    assert all(without_c[n] == (A, B, C)[rendezvous_order(n, (A, B, C))[1]] for n in moved)


def test_ids_spread_roughly_evenly():
    counts = Counter(rendezvous_order(f"job-3-{n}", (A, B, C))[0] for n in range(3000))
    assert set(counts) == {0, 1, 2}
    assert all(850 <= count <= 1150 for count in counts.values()), counts


def test_spans_requests():
    assert not spans_requests(None)
    assert not spans_requests(SequenceParams("s", True, True))  # one-request sequence
    assert spans_requests(start("s")) and spans_requests(middle("s")) and spans_requests(end("s"))


# --- requests without a sequence: least in flight --------------------------------------------

def test_one_at_a_time_requests_go_round_robin(clock):
    router = make_router(clock)
    assert [send(router) for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_one_request_sequences_are_routed_by_load_too(clock):
    router = make_router(clock)
    single = SequenceParams("auto-1", True, True)
    assert [send(router, single) for _ in range(4)] == [0, 1, 2, 0]


def test_requests_in_flight_go_to_the_least_loaded(clock):
    router = make_router(clock)
    held = [routed(router) for _ in range(3)]
    assert sorted(route.server for route in held) == [0, 1, 2]
    assert router.in_flight == [1, 1, 1]
    router.finish(held[1], Outcome.ANSWERED)  # server 1 frees up
    assert routed(router).server == 1
    assert router.in_flight == [1, 1, 1]


def test_a_busy_server_is_avoided_while_others_are_idle(clock):
    router = make_router(clock)
    routed(router)  # server 0 keeps one in flight
    assert {send(router) for _ in range(6)} == {1, 2}


# --- down marks after transient failures -----------------------------------------------------

def test_a_server_that_failed_transiently_is_avoided_for_half_a_second(clock):
    router = make_router(clock)
    assert send(router, outcome=Outcome.UNREACHABLE) == 0
    assert router.in_flight == [0, 0, 0]
    clock.advance(FIRST_DOWN_SECONDS - 0.01)
    assert 0 not in {send(router) for _ in range(6)}
    clock.advance(0.01)
    assert router.available(0)
    assert 0 in {send(router) for _ in range(3)}


def test_down_marks_double_up_to_five_seconds(clock):
    router = make_router(clock)
    periods = []
    for _ in range(7):
        fail(router, 0)
        down_at = clock.now
        while not router.available(0):
            clock.advance(0.125)
        periods.append(clock.now - down_at)
    assert periods == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert MAX_DOWN_SECONDS == 5.0


def test_a_server_down_for_long_stays_marked_down_for_five_seconds(clock):
    router = make_router(clock, (A,))
    for _ in range(1100):  # e.g. an hour of records to a single server that is gone
        fail(router, 0)
    assert router.in_flight == [0]
    clock.advance(MAX_DOWN_SECONDS)
    assert router.available(0)


def test_an_answer_resets_the_down_marks(clock):
    router = make_router(clock, (A,))
    for _ in range(3):
        fail(router, 0)
    clock.advance(5.0)
    assert send(router) == 0  # answered
    fail(router, 0)
    clock.advance(FIRST_DOWN_SECONDS)
    assert router.available(0)


def test_an_error_answer_shows_the_server_up(clock):
    router = make_router(clock, (A,))
    fail(router, 0)
    clock.advance(FIRST_DOWN_SECONDS)
    send(router)  # Outcome.ANSWERED is also what an HTTP 400 gives
    fail(router, 0)
    clock.advance(FIRST_DOWN_SECONDS)
    assert router.available(0)  # 0.5 s again, not 1 s


def test_when_all_servers_are_down_a_request_goes_to_the_one_back_first(clock):
    router = make_router(clock, (A, B))
    fail(router, 0)
    fail(router, 0)  # down for 1 s
    clock.advance(0.1)
    fail(router, 1)  # down for 0.5 s, until 0.6 s
    assert not router.available(0) and not router.available(1)
    assert send(router) == 1
    assert send(router, start("s")) == 1


def test_when_all_are_down_a_server_failing_its_probes_is_not_preferred(clock):
    router = make_router(clock, (A, B))
    router.probed(0, False)  # down until a probe passes
    fail(router, 1)  # back in 0.5 s
    assert send(router) == 1


def test_a_single_server_gets_every_request_even_when_down(clock):
    router = make_router(clock, (A,))
    for _ in range(5):
        assert send(router, outcome=Outcome.UNREACHABLE) == 0
    assert send(router, middle("s")) == 0  # its continuation: not Lost, nowhere else to go


def test_mark_down_avoids_a_server_for_the_longest_period(clock):
    router = make_router(clock, (A, B))
    router.mark_down(0)
    clock.advance(MAX_DOWN_SECONDS - 0.01)
    assert not router.available(0)
    assert {send(router) for _ in range(4)} == {1}
    clock.advance(0.01)
    assert router.available(0)


def test_a_cancelled_request_says_nothing_about_the_server(clock):
    router = make_router(clock, (A,))
    route = routed(router)
    router.finish(route, Outcome.CANCELLED)
    assert router.available(0) and router.in_flight == [0]


# --- health probes ---------------------------------------------------------------------------

def test_a_failed_probe_makes_a_server_unavailable_until_one_passes(clock):
    router = make_router(clock)
    router.probed(1, False)
    clock.advance(3600.0)
    assert not router.available(1)
    assert 1 not in {send(router) for _ in range(6)}
    router.probed(1, True)
    assert router.available(1)
    assert 1 in {send(router) for _ in range(3)}


def test_a_passed_probe_clears_a_down_mark(clock):
    router = make_router(clock, (A, B))
    router.mark_down(0)
    router.probed(0, True)
    assert router.available(0)


# --- sequences: pinned to the server of their START ------------------------------------------

def test_a_start_goes_to_the_first_in_its_rendezvous_order(clock):
    router = make_router(clock)
    for n in range(30):
        first = rendezvous_order(f"s{n}", (A, B, C))[0]
        assert send(router, start(f"s{n}")) == first


def test_a_start_skips_an_unavailable_server_and_the_continuations_follow_it(clock):
    router = make_router(clock)
    sequence_id = id_with_order((A, B, C), [0, 1])
    router.mark_down(0)
    assert send(router, start(sequence_id)) == 1  # the second choice
    clock.advance(MAX_DOWN_SECONDS)
    assert router.available(0)  # the first choice is back ...
    assert send(router, middle(sequence_id)) == 1  # ... but the sequence lives on server 1
    assert send(router, end(sequence_id)) == 1
    # The END answered: the pin is gone, a later request with that ID follows the order.
    assert send(router, middle(sequence_id)) == 0


def test_a_continuation_follows_its_pin_whatever_the_load(clock):
    router = make_router(clock)
    sequence_id = id_with_order((A, B, C), [2])
    assert send(router, start(sequence_id)) == 2
    held = [routed(router) for _ in range(5)]  # server 2 gets its share of the load
    assert router.in_flight[2] >= 1
    assert all(send(router, middle(sequence_id)) == 2 for _ in range(3))
    for route in held:
        router.finish(route, Outcome.ANSWERED)


def test_an_end_that_failed_keeps_the_pin(clock):
    router = make_router(clock)
    sequence_id = id_with_order((A, B, C), [0, 1])
    router.mark_down(0)
    assert send(router, start(sequence_id)) == 1
    clock.advance(MAX_DOWN_SECONDS)
    assert send(router, end(sequence_id), Outcome.UNREACHABLE) == 1
    clock.advance(FIRST_DOWN_SECONDS)
    assert send(router, end(sequence_id)) == 1  # (its retry)


def test_a_retried_start_moves_to_the_next_server(clock):
    router = make_router(clock)
    sequence_id = id_with_order((A, B, C), [0, 1])
    assert send(router, start(sequence_id), Outcome.UNREACHABLE) == 0
    assert send(router, start(sequence_id)) == 1
    assert send(router, middle(sequence_id)) == 1


def test_a_continuation_whose_server_is_slow_is_not_lost(clock):
    # A timeout or a 5xx marks a server down for new work, but it still holds its sequences.
    router = make_router(clock)
    sequence_id = id_with_order((A, B, C), [0])
    other = id_with_order((A, B, C), [0], skip={sequence_id})
    assert send(router, start(sequence_id)) == 0
    assert send(router, start(other), Outcome.FAILED) == 0  # another sequence timed out there
    assert not router.available(0)
    assert send(router, middle(sequence_id)) == 0
    assert send(router, start(sequence_id)) == 0  # a START sent again stays where it may be
    assert send(router) != 0  # (new work goes elsewhere meanwhile)
    router.mark_down(0)  # now a is gone
    assert isinstance(router.route(middle(sequence_id)), Lost)


def test_a_continuation_whose_server_is_down_is_lost_while_another_is_up(clock):
    router = make_router(clock)
    sequence_id = id_with_order((A, B, C), [0])
    assert send(router, start(sequence_id)) == 0
    in_flight = list(router.in_flight)
    router.mark_down(0)
    lost = router.route(middle(sequence_id))
    assert isinstance(lost, Lost)
    assert lost.server == 0
    assert "refused or cut off" in lost.why
    assert router.in_flight == in_flight  # nothing sent
    router.probed(0, False)
    lost = router.route(end(sequence_id))
    assert isinstance(lost, Lost) and "health probe" in lost.why


def test_a_continuation_is_routed_to_its_down_server_when_all_are_down(clock):
    router = make_router(clock, (A, B))
    sequence_id = id_with_order((A, B), [0])
    assert send(router, start(sequence_id)) == 0
    router.mark_down(0)
    router.mark_down(1)
    assert send(router, middle(sequence_id)) == 0


def test_a_continuation_without_a_pin_follows_its_rendezvous_order(clock):
    router = make_router(clock)  # (its START was sent by another process)
    for n in range(10):
        assert send(router, middle(n)) == rendezvous_order(n, (A, B, C))[0]


def test_pins_are_bounded_oldest_first(clock):
    router = make_router(clock, max_pins=3)
    ids = [id_with_order((A, B, C), [0, 1])]
    ids += [f"{ids[0]}-{n}" for n in range(3)]
    router.mark_down(0)
    assert send(router, start(ids[0])) == 1  # pinned to its second choice
    clock.advance(MAX_DOWN_SECONDS)
    assert send(router, middle(ids[0])) == 1  # (still pinned)
    for sequence_id in ids[1:]:
        send(router, start(sequence_id))  # three newer pins push the oldest out
    assert send(router, middle(ids[0])) == 0  # dropped: back to its rendezvous order


def test_a_continuation_refreshes_its_pin(clock):
    router = make_router(clock, max_pins=2)
    old = id_with_order((A, B, C), [0, 1])
    router.mark_down(0)
    assert send(router, start(old)) == 1
    clock.advance(MAX_DOWN_SECONDS)
    send(router, start("newer"))
    assert send(router, middle(old)) == 1  # now the most recent
    send(router, start("newest"))  # pushes "newer" out, not the old one
    assert send(router, middle(old)) == 1


# --- circuit breakers, one per server ---------------------------------------------------------

def open_breaker(router: Router, server: int) -> CircuitBreaker:
    breaker = router.breakers[server]
    assert breaker is not None
    for _ in range(10):
        breaker.record(False, Admission.REQUEST)
    assert breaker.state is BreakerState.OPEN
    return breaker


def test_an_open_breakers_server_is_skipped(clock):
    router = make_router(clock, breakers=True)
    open_breaker(router, 1)
    assert 1 not in {send(router) for _ in range(6)}
    assert not router.available(1)


def test_a_start_skips_a_server_whose_breaker_is_open(clock):
    router = make_router(clock, breakers=True)
    sequence_id = id_with_order((A, B, C), [0, 2])
    open_breaker(router, 0)
    assert send(router, start(sequence_id)) == 2


def test_a_continuation_whose_breaker_is_open_is_lost(clock):
    router = make_router(clock, breakers=True)
    sequence_id = id_with_order((A, B, C), [0])
    assert send(router, start(sequence_id)) == 0
    open_breaker(router, 0)
    lost = router.route(middle(sequence_id))
    assert isinstance(lost, Lost) and "circuit breaker" in lost.why


def test_all_breakers_open_refuse_with_the_smallest_wait(clock):
    router = make_router(clock, breakers=True)
    open_breaker(router, 0)
    clock.advance(10.0)
    open_breaker(router, 1)
    clock.advance(10.0)
    open_breaker(router, 2)
    refused = router.route(None)
    assert isinstance(refused, Refused)
    assert refused.wait == pytest.approx(40.0)  # server 0's, opened first
    assert router.in_flight == [0, 0, 0]
    assert isinstance(router.route(start("s")), Refused)


def test_half_open_with_the_trials_out_refuses_with_no_wait(clock):
    router = make_router(clock, (A,), breakers=True)
    open_breaker(router, 0)
    clock.advance(60.0)
    trial = routed(router)
    assert trial.admission is Admission.TRIAL
    refused = router.route(None)
    assert isinstance(refused, Refused) and refused.wait == 0


def test_an_answered_trial_closes_the_breaker(clock):
    router = make_router(clock, (A,), breakers=True)
    breaker = open_breaker(router, 0)
    clock.advance(60.0)
    send(router)
    assert breaker.state is BreakerState.CLOSED


def test_a_cancelled_trial_frees_its_slot(clock):
    router = make_router(clock, (A,), breakers=True)
    breaker = open_breaker(router, 0)
    clock.advance(60.0)
    assert send(router, outcome=Outcome.CANCELLED) == 0
    assert breaker.state is BreakerState.HALF_OPEN
    trial = routed(router)  # not refused: the slot is free again
    assert trial.admission is Admission.TRIAL
    router.finish(trial, Outcome.ANSWERED)
    assert breaker.state is BreakerState.CLOSED


def test_an_unreachable_trial_reopens_the_breaker(clock):
    router = make_router(clock, (A,), breakers=True)
    breaker = open_breaker(router, 0)
    clock.advance(60.0)
    send(router, outcome=Outcome.UNREACHABLE)
    assert breaker.state is BreakerState.OPEN


def test_each_outcome_is_a_breaker_sample(clock):
    router = make_router(clock, (A, B), breakers=True)
    breaker = router.breakers[0]
    assert breaker is not None
    for _ in range(10):
        route = Route(0, Admission.REQUEST, None)
        router.in_flight[0] += 1
        router.finish(route, Outcome.UNREACHABLE)
    assert breaker.state is BreakerState.OPEN


def test_probes_reach_the_servers_breaker(clock):
    router = make_router(clock, (A, B), breakers=True)
    for _ in range(10):
        router.probed(0, False)
    assert router.breakers[0] is not None and router.breakers[0].state is BreakerState.OPEN
    assert router.breakers[1] is not None and router.breakers[1].state is BreakerState.CLOSED
