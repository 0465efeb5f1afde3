"""Checks of what a stateful test model logged about the sequences it received.

``records`` are the lines of a fault model's request log (``FaultRepository.records``): one dict
per request, in arrival order, with ``corrid``, ``x``, ``start``, ``end`` (and, for
``running_total``, ``flush``, ``replay``, ``total`` and ``time``). Also a few probes of the
sequence slots a server holds, by real requests (Triton has no API listing live sequences).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def by_sequence(records: Iterable[dict[str, Any]], base: str) -> dict[str, list[dict[str, Any]]]:
    """The lines of each sequence ID starting with ``{base}-``, in arrival order."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if isinstance(record["corrid"], str) and record["corrid"].startswith(f"{base}-"):
            grouped[record["corrid"]].append(record)
    return dict(grouped)


def keyed_id_parts(sequence_id: str, base: str) -> tuple[str, str, int]:
    """(key, incarnation, n) of ``{base}-{key}-{incarnation}-{n}``."""
    key, incarnation, number = sequence_id.removeprefix(f"{base}-").rsplit("-", 2)
    return key, incarnation, int(number)


def assert_running_totals(lines: list[dict[str, Any]], offset: int = 0) -> None:
    """One running_total sequence: START first and only first, every total the sum of the X
    counted so far (plus ``offset``), flushes counted nowhere and only as END, END last."""
    corrid = lines[0]["corrid"]
    assert lines[0]["start"], f"{corrid} did not begin with START: {lines[0]}"
    assert not any(line["start"] for line in lines[1:]), f"{corrid}: START twice: {lines}"
    assert not any(line.get("unknown") for line in lines), f"{corrid}: unknown state: {lines}"
    ends = [i for i, line in enumerate(lines) if line["end"]]
    assert ends in ([], [len(lines) - 1]), f"{corrid}: END not last or twice: {lines}"
    total = offset
    for line in lines:
        if line["flush"]:
            assert line["end"], f"{corrid}: a flush that is not an END: {line}"
        else:
            total += line["x"]
        assert line["total"] == total, f"{corrid}: total {line['total']} != {total}: {lines}"


def assert_no_live_sequences(http_port: int, model: str, sequence_ids: Iterable[str]) -> None:
    """Triton holds none of ``sequence_ids`` open: a request without START for each is refused
    with "must specify the START flag" (Triton has no API listing live sequences; this probe
    would end a live one, and fail)."""
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    try:
        live = []
        for sequence_id in sequence_ids:
            x = httpclient.InferInput("X", [1], "INT64")
            x.set_data_from_numpy(np.zeros(1, dtype=np.int64))
            try:
                client.infer(model, [x], sequence_id=sequence_id, sequence_start=False,
                             sequence_end=True)
                live.append(sequence_id)
            except InferenceServerException as e:
                assert "must specify the START flag" in str(e), e
        assert not live, f"Triton still held {len(live)} sequence(s) open: {live[:5]}"
    finally:
        client.close()


def own_requests(lines: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The requests records asked for: neither flushes (idle, evicting or closing ENDs) nor
    inputs replayed into a restarted sequence."""
    return [line for line in lines if not line["flush"] and not line["replay"]]


def max_open_sequences(records: Iterable[dict[str, Any]]) -> int:
    """The most sequences open at once, replaying the STARTs and ENDs of ``records`` in log
    order (a request with both is open for that moment)."""
    open_ids: set[Any] = set()
    most = 0
    for record in records:
        if record["start"]:
            open_ids.add(record["corrid"])
        most = max(most, len(open_ids))
        if record["end"]:
            open_ids.discard(record["corrid"])
    return most


def assert_key_runs(sequences: Mapping[str, list[dict[str, Any]]], base: str,
                    readings: Mapping[str, Sequence[int]], replay_records: int) -> int:
    """The running_total sequences of keyed sequences ``{base}-{key}-{incarnation}-{n}``
    (``by_sequence``), for keys whose readings (X values) were ``readings[key]`` in order, and
    whose sequences all ended by the function's flush END (evicted, or at close: no END by a
    record, no idle END), so every sequence after a key's first is a restart after an eviction.

    Each sequence is :func:`assert_running_totals`-consistent and holds one key's readings
    only: first (after the key's first sequence) its last ``replay_records`` readings again,
    flagged as replays, then a contiguous run of its next readings, then a flush END that
    repeats its last input. A key's sequences are numbered 0, 1, 2... in one incarnation, and
    their runs are every reading of the key once, in order. Returns how many sequences were
    evicted (ended by a flush, not the key's last).
    """
    by_key: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for sequence_id in sequences:
        key, incarnation, number = keyed_id_parts(sequence_id, base)
        by_key[key].append((number, incarnation, sequence_id))
    assert set(by_key) == set(readings), (
        f"keys with sequences {sorted(by_key)} != keys read {sorted(readings)}")
    evicted = 0
    for key, numbered in by_key.items():
        numbered.sort()
        assert [n for n, _, _ in numbered] == list(range(len(numbered))), (key, numbered)
        assert len({inc for _, inc, _ in numbered}) == 1, f"{key}: incarnations {numbered}"
        done: list[int] = []  # the key's readings answered in its sequences so far
        for number, _, sequence_id in numbered:
            lines = sequences[sequence_id]
            assert_running_totals(lines)
            xs = [line["x"] for line in lines]
            flags = [("replay" if line["replay"] else "flush" if line["flush"] else "own")
                     for line in lines]
            replays, owns = flags.count("replay"), flags.count("own")
            assert flags == ["replay"] * replays + ["own"] * owns + ["flush"], (
                f"{sequence_id}: not replays, then readings, then a flush END: "
                f"{list(zip(flags, xs, strict=True))}")
            expected_replay = done[max(0, len(done) - replay_records):] if replay_records else []
            assert xs[:replays] == expected_replay, (
                f"{sequence_id} replayed {xs[:replays]}, not the key's last {replay_records} "
                f"reading(s) {expected_replay}")
            own = xs[replays:replays + owns]
            assert owns and own == list(readings[key][len(done):len(done) + owns]), (
                f"{sequence_id}: readings {own} are not the key's next ones after {done}: "
                f"{list(readings[key])}")
            assert xs[-1] == own[-1], f"{sequence_id}: the END does not repeat {own[-1]}: {xs}"
            done += own
            evicted += number < len(numbered) - 1
        assert done == list(readings[key]), f"{key}: readings answered {done}"
    return evicted


def _zero() -> httpclient.InferInput:
    x = httpclient.InferInput("X", [1], "INT64")
    x.set_data_from_numpy(np.zeros(1, dtype=np.int64))
    return x


def end_live_sequences(http_port: int, model: str, sequence_ids: Iterable[Any]) -> list[Any]:
    """END, as a flush (``sequence_flush``: running_total does not count it), each of
    ``sequence_ids`` that Triton still holds open; the IDs that were open. To free a model's
    slots after a test that left sequences open (a failed job)."""
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    try:
        live = []
        for sequence_id in sequence_ids:
            try:
                client.infer(model, [_zero()], sequence_id=sequence_id, sequence_start=False,
                             sequence_end=True, parameters={"sequence_flush": True})
                live.append(sequence_id)
            except InferenceServerException as e:
                assert "must specify the START flag" in str(e), e
        return live
    finally:
        client.close()


def wait_for_free_slots(http_port: int, model: str, count: int, within: float = 10.0) -> None:
    """Return once ``count`` sequences can be open at once on ``model``: STARTs that many
    (each may wait 1 s in Triton's backlog: Triton's ``timeout`` parameter), then ENDs them,
    again until they all got a slot, for at most ``within`` seconds (a leftover sequence holds
    its slot until Triton reaps it)."""
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    deadline = time.monotonic() + within
    try:
        while True:
            started = []
            try:
                for i in range(count):
                    sequence_id = f"slot-probe-{uuid.uuid4().hex[:8]}-{i}"
                    client.infer(model, [_zero()], sequence_id=sequence_id,
                                 sequence_start=True, timeout=1_000_000)
                    started.append(sequence_id)
                return
            except InferenceServerException as e:
                if "timeout" not in str(e) or time.monotonic() > deadline:
                    raise
            finally:
                for sequence_id in started:
                    client.infer(model, [_zero()], sequence_id=sequence_id, sequence_end=True,
                                 parameters={"sequence_flush": True})
    finally:
        client.close()


@contextlib.contextmanager
def holding_sequences(http_port: int, model: str, count: int,
                      every: float = 1.0) -> Iterator[list[str]]:
    """Another client holding ``count`` of ``model``'s sequence slots while the block runs:
    it STARTs that many sequences, sends each an input of 0 every ``every`` seconds (so
    Triton never reaps them), and ENDs them (flushes) at the end. Yields their IDs."""
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    ids = [f"holder-{uuid.uuid4().hex[:8]}-{i}" for i in range(count)]
    stop = threading.Event()
    failures: list[Exception] = []

    def keep_alive() -> None:
        keeper = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
        try:
            while not stop.wait(every):
                for sequence_id in ids:
                    keeper.infer(model, [_zero()], sequence_id=sequence_id)
        except Exception as e:  # (reported when the block ends)
            failures.append(e)
        finally:
            keeper.close()

    try:
        for sequence_id in ids:
            client.infer(model, [_zero()], sequence_id=sequence_id, sequence_start=True,
                         timeout=2_000_000)
        thread = threading.Thread(target=keep_alive, name="holding_sequences", daemon=True)
        thread.start()
        try:
            yield ids
        finally:
            stop.set()
            thread.join(30)
        assert not failures, f"the sequences held could not be kept alive: {failures}"
    finally:
        end_live_sequences(http_port, model, ids)
        client.close()
