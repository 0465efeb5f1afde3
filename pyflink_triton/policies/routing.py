"""Routing over several Triton servers (replicas serving the same model): which server each
request goes to. Pure, no I/O: time comes from a clock the caller gives.

Triton keeps a sequence on the one server that saw its START; a continuation anywhere else is
refused (HTTP 400 "must specify the START flag"). So:

- **a sequence** (one that spans requests: keyed sequences, a fixed 'sequence-id') is
  *pinned*: its START goes to the first available server in the ID's rendezvous order (a
  START sent again to its pinned server while that is reachable), and every later request to
  the server of that START. Rendezvous (highest random weight) hashing scores each server by
  a hash of (server URL, sequence ID), so adding or losing a server moves only the sequences
  that server gains or held, and every client computes the same order. A continuation whose
  server is gone (a request there was refused or cut off, its health probe fails, or its
  circuit breaker is open) while another is available is :class:`Lost`: it must not be sent
  elsewhere, and the caller starts a new sequence instead. A timeout or a 5xx alone does not
  lose a server's sequences: a slow server still holds them.
- **a request without a sequence**, or a one-request sequence (START and END together, as
  'sequence-id-auto-increment' sends), goes to the available server with the fewest requests
  in flight; of those, the one chosen longest ago, so one-at-a-time callers go round robin.

A server is unavailable while it is *marked down* after a transient failure (for 0.5 s,
doubling with each consecutive one up to 5 s: then a real request tries it again), while its
health probe fails, or while its circuit breaker refuses requests. When every server is
unavailable, a request still goes to the one whose down mark ends first: with one server,
exactly as without routing, the retry policy decides how long to keep trying.
"""

from __future__ import annotations

import enum
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from .resilience import Admission, CircuitBreaker
from .sequence import SequenceParams

# How long a server is avoided after a transient failure: doubling per consecutive failure.
FIRST_DOWN_SECONDS = 0.5
MAX_DOWN_SECONDS = 5.0
# Pins of sequences that never sent an END (abandoned, or reaped by Triton) are dropped, oldest
# first, beyond this many: a dropped pin of a live sequence falls back to its rendezvous
# order, where its START most likely went.
MAX_PINS = 100_000


def rendezvous_order(sequence_id: str | int, servers: Sequence[str]) -> list[int]:
    """The indexes of ``servers`` (their URLs) in the sequence's order of preference."""
    def score(index: int) -> bytes:
        key = f"{servers[index]}\0{sequence_id}".encode("utf-8", "surrogatepass")
        return hashlib.blake2b(key, digest_size=8).digest()

    return sorted(range(len(servers)), key=score, reverse=True)


def spans_requests(sequence: SequenceParams | None) -> bool:
    """Whether the request belongs to a sequence that other requests continue."""
    return sequence is not None and not (sequence.start and sequence.end)


class Outcome(enum.Enum):
    """How a routed request ended, as far as its server's health goes."""

    ANSWERED = "answered"  # the server answered (an error answer too: it is up)
    UNREACHABLE = "unreachable"  # refused or cut off: the server is gone, or its network
    FAILED = "failed"  # another transient failure (timed out, 5xx): it may only be slow
    CANCELLED = "cancelled"  # cut short by the caller: says nothing about the server


@dataclass(frozen=True)
class Route:
    """Where a request goes; handed back to :meth:`Router.finish`."""

    server: int
    admission: Admission | None  # how the server's breaker let it through (None: no breaker)
    sequence: SequenceParams | None


@dataclass(frozen=True)
class Lost:
    """A continuation whose server is unavailable (while another server is available)."""

    server: int
    why: str


@dataclass(frozen=True)
class Refused:
    """Every server's circuit breaker refuses requests; the first lets trials through in
    ``wait`` seconds (0: trials are out)."""

    wait: float


class _Health:
    """What the client saw of one server lately."""

    def __init__(self) -> None:
        self.consecutive_failures = 0
        self.down_until = float("-inf")  # no new work before (any transient failure)
        self.gone_until = float("-inf")  # its sequences count as lost before (unreachable)
        self.probe_failing = False

    def available(self, now: float) -> bool:
        return now >= self.down_until and not self.probe_failing

    def clear(self) -> None:
        """It answered: no mark."""
        self.consecutive_failures = 0
        self.down_until = self.gone_until = float("-inf")

    def reachable(self, now: float) -> bool:
        """Whether the sequences it holds may go on: no sign that it is gone (a timeout or a
        5xx alone is none: a slow server still holds them)."""
        return now >= self.gone_until and not self.probe_failing


class Router:
    """The routing state of one function instance; thread-safe (a keyed function sends from
    several threads)."""

    def __init__(self, servers: Sequence[str], breakers: Sequence[CircuitBreaker | None],
                 clock: Callable[[], float], max_pins: int = MAX_PINS) -> None:
        self.servers = tuple(servers)
        self.breakers = tuple(breakers)
        self._clock = clock
        self._lock = threading.Lock()
        self._health = [_Health() for _ in servers]
        self.in_flight = [0] * len(servers)
        self._chosen_at = [0] * len(servers)  # when each was last routed to (a count)
        self._routed = 0
        self._pins: OrderedDict[str | int, int] = OrderedDict()  # sequence ID -> server
        self._max_pins = max_pins

    def route(self, sequence: SequenceParams | None,
              tried: Collection[int] = ()) -> Route | Lost | Refused:
        """Where a request with these sequence fields goes now; ``tried``: the servers this
        request already failed at, taken only when no other is left."""
        with self._lock:
            if len(self.servers) == 1:  # (nothing to choose: no order, pin or mark matters)
                return self._admitted(0, sequence)
            now = self._clock()
            if sequence is not None and not sequence.start:
                return self._continuation(sequence, now)
            if sequence is not None and not sequence.end:
                pinned = self._pins.get(sequence.sequence_id)
                if pinned is not None and self._reachable(pinned, now):
                    # (a START sent again: its first may have opened the sequence there)
                    return self._admitted(pinned, sequence)
                order = rendezvous_order(sequence.sequence_id, self.servers)
            else:
                order = self._by_load()
            if tried:
                order = [s for s in order if s not in tried] + [s for s in order if s in tried]
            return self._first_admitted(order, sequence, now)

    def finish(self, route: Route, outcome: Outcome) -> None:
        """Record how a routed request ended."""
        with self._lock:
            server = route.server
            self.in_flight[server] -= 1
            health, breaker = self._health[server], self.breakers[server]
            if outcome in (Outcome.UNREACHABLE, Outcome.FAILED):
                health.consecutive_failures += 1
                doublings = min(health.consecutive_failures - 1, 16)  # (5 s long before 16)
                health.down_until = self._clock() + min(FIRST_DOWN_SECONDS * 2 ** doublings,
                                                        MAX_DOWN_SECONDS)
                if outcome is Outcome.UNREACHABLE:
                    health.gone_until = health.down_until
            elif outcome is Outcome.ANSWERED:
                health.clear()
                sequence = route.sequence
                if sequence is not None and sequence.end:
                    self._pins.pop(sequence.sequence_id, None)
            if breaker is not None and route.admission is not None:
                if outcome is Outcome.CANCELLED:
                    breaker.release(route.admission)
                else:
                    breaker.record(outcome is Outcome.ANSWERED, route.admission)

    def probed(self, server: int, healthy: bool) -> None:
        """A health probe's result: a failing server is avoided until a probe passes."""
        with self._lock:
            health = self._health[server]
            health.probe_failing = not healthy
            if healthy:
                health.clear()
        breaker = self.breakers[server]
        if breaker is not None:
            breaker.record_probe(healthy)

    def mark_down(self, server: int) -> None:
        """A server found unreachable outside a request (open()'s checks)."""
        with self._lock:
            health = self._health[server]
            health.consecutive_failures += 1
            health.down_until = health.gone_until = self._clock() + MAX_DOWN_SECONDS

    def available(self, server: int) -> bool:
        with self._lock:
            return self._available(server, self._clock())

    def any_available(self, besides: Collection[int]) -> bool:
        """Whether a server other than ``besides`` is available now."""
        with self._lock:
            return self._any_available(besides, self._clock())

    def breakers_open(self) -> bool:
        """Whether every server's circuit breaker is open (none takes a request now)."""
        return all(b is not None and b.open_for() is not None for b in self.breakers)

    # --- under the lock ---------------------------------------------------------------

    def _any_available(self, besides: Collection[int], now: float) -> bool:
        return any(self._available(s, now) for s in range(len(self.servers))
                   if s not in besides)

    def _available(self, server: int, now: float) -> bool:
        return self._health[server].available(now) and self._breaker_closed(server)

    def _reachable(self, server: int, now: float) -> bool:
        return self._health[server].reachable(now) and self._breaker_closed(server)

    def _breaker_closed(self, server: int) -> bool:
        breaker = self.breakers[server]
        return breaker is None or breaker.open_for() is None

    def _by_load(self) -> list[int]:
        """Every server, fewest in flight first, ties by the longest since last chosen (so
        that one-at-a-time callers go round robin over the idle ones)."""
        return sorted(range(len(self.servers)),
                      key=lambda s: (self.in_flight[s], self._chosen_at[s]))

    def _first_admitted(self, order: list[int], sequence: SequenceParams | None,
                        now: float) -> Route | Refused:
        """The first server of ``order`` that is available and whose breaker admits the
        request; when none is available, the one back first whose breaker admits it."""
        available = [s for s in order if self._health[s].available(now)]
        fallback = sorted((s for s in order if s not in available),  # (probes failing: last)
                          key=lambda s: (self._health[s].probe_failing,
                                         self._health[s].down_until))
        wait = float("inf")
        for server in available + fallback:
            route = self._admitted(server, sequence)
            if isinstance(route, Refused):
                wait = min(wait, route.wait)
                continue
            if sequence is not None and not sequence.end:  # (a START: its later requests)
                self._pin(sequence.sequence_id, server)
            return route
        return Refused(wait)

    def _continuation(self, sequence: SequenceParams, now: float) -> Route | Lost | Refused:
        server = self._pins.get(sequence.sequence_id)
        if server is None:  # (its START was sent by another process, or its pin dropped)
            server = rendezvous_order(sequence.sequence_id, self.servers)[0]
        else:
            self._pins.move_to_end(sequence.sequence_id)
        if not self._reachable(server, now) and self._any_available((server,), now):
            return Lost(server, self._why_unreachable(server))
        return self._admitted(server, sequence)

    def _admitted(self, server: int, sequence: SequenceParams | None) -> Route | Refused:
        """``server``, if its breaker admits the request."""
        breaker = self.breakers[server]
        admission = None if breaker is None else breaker.admit()
        if isinstance(admission, float):
            return Refused(admission)
        self._took(server)
        return Route(server, admission, sequence)

    def _took(self, server: int) -> None:
        self.in_flight[server] += 1
        self._routed += 1
        self._chosen_at[server] = self._routed

    def _why_unreachable(self, server: int) -> str:
        health = self._health[server]
        if health.probe_failing:
            return "its health probe fails"
        if self._breaker_closed(server):
            return "a request there was refused or cut off"
        return "its circuit breaker is open"

    def _pin(self, sequence_id: str | int, server: int) -> None:
        pins = self._pins
        pins[sequence_id] = server
        pins.move_to_end(sequence_id)
        while len(pins) > self._max_pins:
            pins.popitem(last=False)
