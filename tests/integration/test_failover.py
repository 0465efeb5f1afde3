"""Sequences across failover, on a real standalone Flink cluster (JobManager and two
TaskManagers from the wheel's scripts) and a real tritonserver: a TaskManager running the job
is killed by PID mid-stream, the job recovers from its last checkpoint, and the exactly-once
sink holds every source row once. What Triton saw is read from the test models' request logs
and the server's own log."""

from __future__ import annotations

import itertools
import json
import logging
import signal
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from faults import (
    ECHO_LOG_SEQ,
    RUNNING_TOTAL,
    RUNNING_TOTAL_4INSTANCES,
    FaultRepository,
    make_fault_repository,
)
from flink_cluster import FlinkCluster, committed_rows
from sequence_checks import (
    assert_no_live_sequences,
    assert_running_totals,
    by_sequence,
    keyed_id_parts,
)

log = logging.getLogger(__name__)
JOBS = Path(__file__).resolve().parents[1] / "cluster_jobs"
sys.path.insert(0, str(JOBS))
import keyed_in_flight  # noqa: E402
from keyed_totals import ENDS_EVERY, IDLE_KEYS, KEYS, key_of  # noqa: E402


@pytest.fixture(scope="module")
def fault_repository(tmp_path_factory) -> FaultRepository:
    """The fault models with the slot models: RUNNING_TOTAL_4INSTANCES runs 4 requests at
    once, so in its request log (a line on a request's arrival, before the delay) requests of
    different keys in flight together overlap."""
    return make_fault_repository(tmp_path_factory.mktemp("faults"), slot_models=True)


def endpoint(server) -> str:
    return f"http://127.0.0.1:{server.http_port}"


def kill_mid_stream(cluster: FlinkCluster, job: str, repository: FaultRepository, model: str,
                    requests: int) -> float:
    """Once the model logged ``requests`` requests and a checkpoint completed, SIGKILL the
    TaskManager running the job (and its Python workers); wait until the job runs again.
    Returns the time of the kill."""
    repository.wait_for_records(model, requests, timeout=90)
    cluster.wait_for_checkpoints(job, 1, timeout=60)
    [victim, *_] = cluster.taskmanagers_of(job)
    killed_at = time.time()
    cluster.kill_taskmanager(victim)
    cluster.wait_for_recovery(job, min_attempt=1, timeout=90)
    assert cluster.restored_checkpoint(job) is not None, "restarted from a checkpoint"
    return killed_at


def settled_records(repository: FaultRepository, model: str, quiet: float = 1.5,
                    timeout: float = 30.0) -> list[dict[str, Any]]:
    """``repository.records(model)`` once no line came for ``quiet`` s. A keyed function ENDs
    the sequences it holds open in close(), which PyFlink calls while it tears the Python
    workers down, alongside Flink reporting the tasks, and the job, FINISHED: those ENDs
    reached the model up to ~0.15 s after the job was FINISHED (measured, before and after
    keys in flight together)."""
    deadline = time.monotonic() + timeout
    lines, since = repository.records(model), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"{model} still logged requests {timeout:g} s on")
        time.sleep(0.1)
        if len(latest := repository.records(model)) != len(lines):
            lines, since = latest, time.monotonic()
    return lines


def assert_exactly_once(output: Path, rows: int) -> list[list[str]]:
    committed = committed_rows(output)
    counts = Counter(int(row[1] if len(row) == 3 else row[0]) for row in committed)
    assert sorted(counts) == list(range(1, rows + 1)), "rows in the sink != rows in the source"
    assert [x for x, n in counts.items() if n > 1] == [], "a row was committed twice"
    return committed


@pytest.mark.parametrize("strategy", ["zero", "nano-time"])
def test_auto_increment_ids_after_a_taskmanager_is_killed(
        flink_cluster, server, fault_repository, tmp_path, strategy):
    rows, base = 2000, f"failover-{strategy}"
    job = flink_cluster.submit(JOBS / "auto_increment.py", tmp_path / "out", endpoint(server),
                               base, strategy, rows, 100)
    kill_mid_stream(flink_cluster, job, fault_repository, ECHO_LOG_SEQ, 400)
    flink_cluster.wait_for_status(job, "FINISHED", timeout=120)

    committed = assert_exactly_once(tmp_path / "out", rows)
    assert all(int(y) == int(x) + 1 for x, y in committed)
    sequences = by_sequence(fault_repository.records(ECHO_LOG_SEQ), base)
    lines = [line for sequence in sequences.values() for line in sequence]
    assert all(line["start"] and line["end"] for line in lines), "every request START+END"
    assert "conflict" not in server.log_text()
    repeated = {s for s, sequence in sequences.items() if len(sequence) > 1}
    if strategy == "zero":
        # The restarted subtasks counted from 0 again: the IDs sent before the kill came
        # again, each time a complete one-request sequence of its own.
        assert len(repeated) >= 100, f"only {len(repeated)} IDs were sent twice"
    else:
        assert repeated == set(), f"IDs sent twice: {sorted(repeated)[:5]}"
        starts = {s.rsplit("-", 2)[1]: [] for s in sequences}
        for s in sequences:
            starts[s.rsplit("-", 2)[1]].append(int(s.rsplit("-", 1)[1]))
        assert set(starts) == {"0", "1"}


def assert_keyed_failover(sequences: dict[str, list[dict[str, Any]]], base: str,
                          replay: int) -> tuple[int, int]:
    """Per key: its sequences in order, each a clean running total from its START; where a
    new incarnation's sequence replaced an interrupted one, it began as a fresh sequence at the
    recovery point, warmed up by exactly the key's last ``replay`` inputs before that point
    (replayed requests carry the ``sequence_replay`` parameter, which the model logs).
    Returns how many keys' sequences the failover interrupted, and how many of them were
    warmed up by a replay."""
    for lines in sequences.values():
        assert_running_totals(lines)
        replayed = [line["replay"] for line in lines]
        assert replayed == sorted(replayed, reverse=True), f"replays not first: {lines}"
    by_key: dict[str, list[str]] = defaultdict(list)
    for sequence_id in sorted(sequences, key=lambda s: sequences[s][0]["time"]):
        by_key[keyed_id_parts(sequence_id, base)[0]].append(sequence_id)
    interrupted = warmed_up = 0
    for key, ids in by_key.items():
        # n grows within an incarnation; a restored state counts on from the checkpoint's n.
        for incarnation in {keyed_id_parts(s, base)[1] for s in ids}:
            numbers = [keyed_id_parts(s, base)[2] for s in ids
                       if keyed_id_parts(s, base)[1] == incarnation]
            assert numbers == sorted(set(numbers)), f"{key}: {ids}"
        for old, new in itertools.pairwise(ids):
            assert sequences[old][-1]["time"] < sequences[new][0]["time"], (old, new)
            lines = sequences[new]
            k = sum(line["replay"] for line in lines)
            if keyed_id_parts(old, base)[1] == keyed_id_parts(new, base)[1]:
                assert k == 0, f"replay within an incarnation: {new}"
                continue
            if sequences[old][-1]["end"] and k == 0:
                continue
            # A new incarnation's sequence after ``old``: either ``old`` was interrupted, or it
            # ended after the checkpoint (an END record, or the close() of a cancelled subtask),
            # so the restored state still held its sequence open and warms the new one up.
            interrupted += 1
            # The key's inputs under the killed incarnation, in order, across its sequences:
            # the checkpointed sequence may be an earlier one than ``old`` (``old`` began after
            # the checkpoint, when that one had ended).
            received = [line["x"] for s in ids[:ids.index(new)]
                        if keyed_id_parts(s, base)[1] == keyed_id_parts(old, base)[1]
                        for line in sequences[s] if not (line["replay"] or line["flush"])]
            replayed, first = [line["x"] for line in lines[:k]], lines[k]["x"]
            if k == 0:
                # Nothing to replay (replay 0), or the checkpointed sequence had ended: then
                # the records since came again, the first of them first.
                assert replay == 0 or first in received, (key, received, lines)
                continue
            # The checkpointed sequence's last inputs: a stretch of what the key's old IDs
            # received, ending at the checkpoint; then the first record after it, which they
            # had received next if the kill came later.
            cuts = [c for c in range(k, len(received) + 1) if received[c - k:c] == replayed]
            assert cuts, f"{key}: replayed {replayed} is not a stretch of {received}"
            # All ``replay`` of them, or the whole sequence if it had fewer.
            starts = {sequences[s][0]["x"] for s in ids[:ids.index(new)]}
            assert k == replay or (k < replay and replayed[0] in starts), (key, replayed)
            assert any(c == len(received) or first == received[c] for c in cuts), (
                key, received, replayed, first)
            warmed_up += 1
    return interrupted, warmed_up


@pytest.mark.parametrize("replay", [0, 3])
def test_keyed_sequences_after_a_taskmanager_is_killed(
        flink_cluster, server, fault_repository, tmp_path, replay):
    rows, base = 3000, f"keyed{replay}"
    job = flink_cluster.submit(JOBS / "keyed_totals.py", tmp_path / "out", endpoint(server),
                               base, replay, "1 s", rows, 150)
    killed_at = kill_mid_stream(flink_cluster, job, fault_repository, RUNNING_TOTAL, 1200)
    flink_cluster.wait_for_status(job, "FINISHED", timeout=120)

    committed = assert_exactly_once(tmp_path / "out", rows)
    assert all(key == key_of(int(x)) for key, x, _ in committed)
    assert flink_cluster.max_attempt(job) == 1, "one restart: no request failed afterwards"
    records = settled_records(fault_repository, RUNNING_TOTAL)
    server_log = server.log_text()
    assert "conflict" not in server_log and "START flag" not in server_log
    sequences = by_sequence(records, base)
    assert not any(line.get("unknown") for lines in sequences.values() for line in lines)
    assert len({keyed_id_parts(s, base)[0] for s in sequences}) == KEYS
    assert len({keyed_id_parts(s, base)[1] for s in sequences}) >= 3, "incarnations"
    interrupted, warmed_up = assert_keyed_failover(sequences, base, replay)
    # (how many depends on placement: a cancelled subtask on the surviving TaskManager ENDs
    # its open sequences in close(), so only the killed one's are interrupted)
    assert interrupted >= 1, "no key's sequence crossed the failover"
    assert (warmed_up >= interrupted // 2) if replay else warmed_up == 0, (interrupted, warmed_up)
    log.info("replay %d: %d sequences interrupted by the failover, %d warmed up", replay,
             interrupted, warmed_up)
    # Each committed total is what the model answered for that x in the key's sequence.
    answered = {(line["x"], line["total"]) for lines in sequences.values() for line in lines
                if not (line["replay"] or line["flush"])}
    assert all((int(x), int(total)) in answered for _, x, total in committed)
    # The idle keys' last sequences were ended by their timers (a flush END), unless the
    # killed incarnation held them: their restored timers fired after the restore and, by
    # design, touched no old ID (Triton reaped those; checked below).
    for key in (f"k{k}" for k in range(IDLE_KEYS)):
        last = max((s for s in sequences if keyed_id_parts(s, base)[0] == key),
                   key=lambda s: sequences[s][-1]["time"])
        end = sequences[last][-1]
        assert ((end["end"] and (end["flush"] or end["x"] % ENDS_EVERY == 0))
                or end["time"] < killed_at), end
    # The new incarnations ended their sequences; Triton reaped the killed one's (5 s).
    assert_no_live_sequences(server.http_port, RUNNING_TOTAL, sequences)


def test_a_resubmitted_keyed_job_never_reuses_an_id(flink_cluster, server, fault_repository,
                                                    tmp_path):
    base, seen = "resubmitted", []
    for run in range(2):
        job = flink_cluster.submit(JOBS / "keyed_totals.py", tmp_path / f"out{run}",
                                   endpoint(server), base, 0, "1 s", 400, 400)
        flink_cluster.wait_for_status(job, "FINISHED", timeout=120)
        sequences = by_sequence(settled_records(fault_repository, RUNNING_TOTAL), base)
        seen.append(set(sequences) - set().union(*seen))
        for lines in sequences.values():
            assert_running_totals(lines)
            assert lines[-1]["end"]
    assert seen[0] and seen[1] and not seen[0] & seen[1]


def keys_in_flight(sequences: dict[str, list[dict[str, Any]]], base: str, arrived_after: float,
                   until: float) -> dict[str, dict[str, Any]]:
    """The keys with a request that reached the model in (arrived_after, until]: each key's
    last such request-log line."""
    found: dict[str, dict[str, Any]] = {}
    for sequence_id, lines in sequences.items():
        for line in lines:
            if arrived_after < line["time"] <= until:
                key = keyed_id_parts(sequence_id, base)[0]
                if key not in found or found[key]["time"] < line["time"]:
                    found[key] = line
    return found


def kill_with_keys_in_flight(cluster: FlinkCluster, job: str, repository: FaultRepository,
                             model: str, base: str, delay: float, requests: int, keys: int = 2,
                             timeout: float = 60.0) -> tuple[float, float]:
    """Once ``model`` (answering ``delay`` s after a request arrives) logged ``requests``
    requests, a checkpoint completed after that, and ``keys`` keys have a request at the model
    that arrived in the last ``delay / 2`` s (so unanswered for another ``delay / 2`` s at
    least), SIGKILL the TaskManager running the job and its Python workers; wait until the
    job runs again. Returns the times just before the kill and once the workers were dead."""
    repository.wait_for_records(model, requests, timeout=90)
    # (+2: a checkpoint whose barrier came after those requests, not one under way already)
    cluster.wait_for_checkpoints(job, cluster.completed_checkpoints(job) + 2, timeout=60)
    [victim, *_] = cluster.taskmanagers_of(job)
    # Its processes, found now: a scan of /proc between the detection and the kill would eat
    # into the ``delay / 2`` s the requests stay unanswered (a large part of it on a loaded
    # machine). The workers run as long as the job does; none starts in between.
    workers = victim.children()
    assert workers, f"TaskManager {victim.name} runs no Python worker"
    deadline = time.monotonic() + timeout
    while True:
        lines = repository.records(model)
        now = time.time()  # (after the read: every line logged by now is in ``lines``)
        recent = keys_in_flight(by_sequence(lines, base), base, now - delay / 2, now)
        if len(recent) >= keys:
            break
        if time.monotonic() > deadline:
            raise AssertionError(
                f"in {timeout:g} s, never {keys} keys' requests at the model at once (one "
                f"subtask with 'max-concurrent-requests' > 1): the last requests were "
                f"{lines[-10:]}")
        time.sleep(0.01)
    before = time.time()
    for proc in (*workers, victim.proc):  # (the workers first: they send the requests)
        proc.send(signal.SIGKILL)
    gone_by = time.monotonic() + 10
    while any(proc.alive() for proc in workers):
        assert time.monotonic() < gone_by, f"Python workers alive after SIGKILL: {workers}"
        time.sleep(0.005)
    after = time.time()  # (no request sent or answer taken after this)
    victim.process.wait(10)
    log.info("detected %d keys in flight %.3f s before the kill, all dead %.3f s after it",
             len(recent), before - now, after - before)
    cluster.wait_for_recovery(job, min_attempt=1, timeout=90)
    assert cluster.restored_checkpoint(job) is not None, "restarted from a checkpoint"
    return before, after


def test_a_taskmanager_killed_while_keys_have_requests_in_flight(
        flink_cluster, server, fault_repository, tmp_path):
    """One subtask (parallelism 1) with its keys' requests in flight together (up to 8); the
    model slowed to ``delay`` a request, on 4 instances, so that several keys' requests are
    at it together. The TaskManager is killed while at least 2 keys have a request there
    without an answer: no reading is lost or committed twice, every committed total is the
    model's, no sequence ID gets a request after the failover, and each key's new sequence
    begins with its replayed inputs."""
    rows, rate, base, replay, delay = 120, 4, "inflight", 3, 0.6
    keys, model = keyed_in_flight.KEYS, RUNNING_TOTAL_4INSTANCES
    # (a delay long enough that the kill, detected with delay / 2 to go, lands well before
    # the answers; the datagen source emits each second's 4 rows at once: the 4 keys'
    # requests together, one round of the model's 4 instances, busy ~60% of the time, no
    # backlog to hold up the checkpoints; each key has a record every second, far within its
    # idle timeout (4 s); 30 s of input)
    fault_repository.set_delay(delay)
    job = flink_cluster.submit(JOBS / "keyed_in_flight.py", tmp_path / "out", endpoint(server),
                               base, model, replay, 8, rows, rate, parallelism=1)
    before, after = kill_with_keys_in_flight(flink_cluster, job, fault_repository, model, base,
                                             delay, requests=4 * keys)
    fault_repository.set_delay(0)  # (every request of the killed incarnation has slept delay)
    flink_cluster.wait_for_status(job, "FINISHED", timeout=120)

    committed = assert_exactly_once(tmp_path / "out", rows)
    assert all(key == keyed_in_flight.key_of(int(x)) for key, x, _ in committed)
    assert flink_cluster.max_attempt(job) == 1, "one restart: no request failed afterwards"
    sequences = by_sequence(settled_records(fault_repository, model), base)
    server_log = server.log_text()
    assert "conflict" not in server_log and "START flag" not in server_log
    assert not any(line["unknown"] for lines in sequences.values() for line in lines)

    # At the kill (between ``before`` and ``after``), requests of several keys had reached
    # the model and had no answer yet: each is answered ``delay`` after its line's time.
    in_flight = keys_in_flight(sequences, base, after - delay, before)
    log.info("in flight at the kill (%.3f..%.3f): %s", before, after,
             json.dumps(sorted(in_flight.values(), key=lambda line: line["time"])))
    assert len(in_flight) >= 2, (before, after, in_flight)

    def incarnation(sequence_id: str) -> str:
        return keyed_id_parts(sequence_id, base)[1]
    killed = {incarnation(s) for s, lines in sequences.items()
              if lines[0]["time"] <= before}
    restored = {incarnation(s) for s in sequences} - killed
    assert len(killed) == 1 and len(restored) == 1, (killed, restored)  # one subtask
    old = [line for s, lines in sequences.items() if incarnation(s) in killed for line in lines]
    new = {s: lines for s, lines in sequences.items() if incarnation(s) in restored}
    # Each key's requests one at a time: the next one only after the answer, ``delay`` later.
    by_key: dict[str, list[float]] = defaultdict(list)
    for line in old:
        by_key[keyed_id_parts(line["corrid"], base)[0]].append(line["time"])
    for key, times in by_key.items():
        gaps = [b - a for a, b in itertools.pairwise(sorted(times))]
        assert all(gap >= delay * 0.99 for gap in gaps), (key, gaps)
    # No ID continued across the failover: the killed incarnation's IDs got nothing once the
    # restored one had begun, and a request in flight at the kill was its sequence's last.
    restored_from = min(lines[0]["time"] for lines in new.values())
    assert restored_from > after
    assert [line for line in old if line["time"] >= restored_from] == []
    for line in in_flight.values():
        assert sequences[line["corrid"]][-1] == line, sequences[line["corrid"]]
    # No key went idle before the kill: each key's restored state held its sequence open.
    # (Only the killed incarnation's requests, all sent before the kill (above), so however
    # slow the restart: the restored keys' timers, due by then, END no old ID by design.)
    idle = [line for line in old if line["flush"]]
    assert not idle, f"a key went idle before the kill: slow the source less: {idle}"
    # Every key starts again in a new sequence, warmed up with its last inputs before the
    # checkpoint; each sequence a clean running total; all ended when the input ended.
    interrupted, warmed_up = assert_keyed_failover(sequences, base, replay)
    assert interrupted == warmed_up == keys, (interrupted, warmed_up)
    firsts: dict[str, dict[str, Any]] = {}  # each key's first request after the failover
    for sequence_id, lines in sorted(new.items(), key=lambda item: item[1][0]["time"]):
        firsts.setdefault(keyed_id_parts(sequence_id, base)[0], lines[0])
    assert len(firsts) == keys and all(line["replay"] for line in firsts.values()), firsts
    assert all(lines[-1]["end"] for lines in new.values()), "a restored sequence left open"
    # Each committed total is what the model answered for that x in the key's sequence.
    answered = {(line["x"], line["total"]) for lines in sequences.values() for line in lines
                if not (line["replay"] or line["flush"])}
    assert all((int(x), int(total)) in answered for _, x, total in committed)
    assert_no_live_sequences(server.http_port, model, sequences)
