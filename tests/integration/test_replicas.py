"""Several Triton servers in one 'endpoint' (a comma-separated list): real PyFlink jobs on the
mini-cluster against three real tritonserver processes serving the fault models
(tests/faults.py, tests/replicas.py). The models log every request with the pid of the
tritonserver that received it, which is how the tests see which server got what.

- Stateless rows spread over the three (sync mode, HTTP); a server killed mid-job loses no row,
  the other two take its share, and once restarted it gets requests again.
- A server down at open() is skipped with a WARNING naming it.
- One-request sequences (auto-increment, async mode) spread, each ID sent to one server.
- The list over gRPC (vectorized mode).
- Keyed sequences pinned: no sequence ID at two servers, every output the model's total; with a
  server killed mid-job, its keys go on in new sequences on the others, replayed, nothing lost.
- nginx hashing 'sequence-id-header' in front of two servers (tests/replicas.py's
  configuration, as the docs give it): one endpoint, no sequence split, no HTTP 400.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pytest
from pyflink.common import Row
from pyflink.common.typeinfo import Types

from pyflink_triton import TritonKeyedSequenceFunction, create_model, keyed_sequence_map
from pyflink_triton.sessions.function import TritonInference

from faults import ECHO_LOG, ECHO_LOG_SEQ, RUNNING_TOTAL
from jobs import paced_keyed_stream, table_env
from replicas import (
    BalancedRequest,
    NginxSequenceBalancer,
    Replicas,
    assert_each_sequence_on_one_server,
    wait_for,
)
from sequence_checks import (
    assert_running_totals,
    by_sequence,
    keyed_id_parts,
    own_requests,
)

ELEMENT = Types.ROW_NAMED(["key", "x"], [Types.STRING(), Types.LONG()])
KEYS = 60
T = TypeVar("T")
log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def module_replicas(tmp_path_factory) -> Iterator[Replicas]:
    replicas = Replicas(tmp_path_factory.mktemp("replicas"), 3)
    try:
        replicas.start()
        yield replicas
    finally:
        replicas.stop()


@pytest.fixture
def replicas(module_replicas) -> Replicas:
    """The module's three servers, all up and answering at once, whatever the last test did."""
    module_replicas.repository.set_delay(0)
    module_replicas.start()
    return module_replicas


class BackgroundJob:
    """A job run in a thread, so the test can act on the servers while it runs."""

    def __init__(self, job: Callable[[], Any]) -> None:
        self._outcome: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, args=(job,), daemon=True)
        self._thread.start()

    def _run(self, job: Callable[[], Any]) -> None:
        try:
            self._outcome["result"] = job()
        except BaseException as e:  # (handed to the test thread)
            self._outcome["error"] = e

    def running(self) -> bool:
        """Whether the job still runs; raises the job's error if it failed (a wait on the
        logs would otherwise time out without saying why)."""
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._thread.is_alive()

    def watch(self, check: Callable[[], T]) -> Callable[[], T]:
        """``check``, failing at once if the job failed or ended before it held."""
        def watched() -> T:
            running = self.running()
            found = check()
            assert found or running, "the job ended first"
            return found
        return watched

    def wait(self, timeout: float) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the job did not finish within {timeout:g} s"
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["result"]


def echo_job(endpoint: str, model: str, rows: int, parallelism: int, mode: str,
             rows_per_second: int | None = None, **options: str
             ) -> Callable[[], list[tuple[int, int]]]:
    """A job sending ids 1..rows (a datagen sequence, paced if ``rows_per_second``) through
    ``model`` (Y = X + 1); returns (id, Y) per output row."""
    def job() -> list[tuple[int, int]]:
        t_env = table_env(parallelism=parallelism)
        pace = f", 'rows-per-second' = '{rows_per_second}'" if rows_per_second else ""
        t_env.execute_sql(f"""
            CREATE TEMPORARY TABLE src (id BIGINT) WITH (
              'connector' = 'datagen', 'number-of-rows' = '{rows}', 'fields.id.kind' = 'sequence',
              'fields.id.start' = '1', 'fields.id.end' = '{rows}'{pace})""")
        create_model(t_env, "echo", {"endpoint": endpoint, "model-name": model, "mode": mode,
                                     **options},
                     inputs=[("X", "BIGINT")], output=("Y", "BIGINT"))
        frame = t_env.sql_query("SELECT id, echo(id) AS y FROM src").to_pandas()
        return [(int(i), int(y)) for i, y in zip(frame["id"], frame["y"], strict=True)]
    return job


def assert_echoed(results: list[tuple[int, int]], rows: int) -> None:
    assert sorted(i for i, _ in results) == list(range(1, rows + 1)), "rows out != rows in"
    wrong = [(i, y) for i, y in results if y != i + 1]
    assert not wrong, f"outputs that do not belong to their input: {wrong[:5]}"


def shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [round(c / total, 3) if total else 0.0 for c in counts]


# --- stateless requests ----------------------------------------------------------------------

def test_stateless_rows_spread_over_three_servers_and_around_one_killed_and_restarted(
        replicas):
    """Sync mode, HTTP, parallelism 2, 320 rows/s for 25 s. The three servers share the
    rows; the third is killed (SIGKILL) once each logged 40 requests: no row is lost or
    answered twice, the other two take every request, and once the third is back (restarted
    on its ports while the job runs) it gets requests again, from its new process, within
    the longest down period (5 s) of its return."""
    rows, victim = 8000, 2
    start = replicas.mark(ECHO_LOG)
    job = BackgroundJob(echo_job(replicas.endpoint_list(), ECHO_LOG, rows, parallelism=2,
                                 mode="sync", rows_per_second=320))

    def logged(since: int, minimum: Sequence[int]) -> list[list[dict[str, Any]]]:
        per = replicas.records(ECHO_LOG, since)
        return per if all(len(p) >= m for p, m in zip(per, minimum, strict=True)) else []

    before = wait_for("each server logged 40 of the job's requests",
                      job.watch(lambda: logged(start, [40, 40, 40])), timeout=120)
    old_pid = replicas.kill(victim)
    at_kill = replicas.mark(ECHO_LOG)
    # The other two carry the job alone: 400 requests while the third is down.
    wait_for("the two servers left logged 400 requests after the kill",
             job.watch(lambda: logged(at_kill, [200, 200, 0])), timeout=60)
    replicas.start(victim)
    back_at = time.time()
    new_pid = replicas.pid(victim)
    returned = wait_for("the restarted server got 30 requests while the job ran",
                        job.watch(lambda: logged(at_kill, [0, 0, 30])), timeout=60)[victim]
    results = job.wait(300)

    assert_echoed(results, rows)
    per = replicas.records(ECHO_LOG, start)
    # Before the kill: a third each (sync: one request in flight per subtask, so every pick
    # is a tie, taken in turn).
    first = [len(p) for p in before]
    assert min(shares(first)) >= 0.25, f"requests per server before the kill: {first}"
    # While the third was down: the other two took every request, each a share. (The
    # restarted process may log requests before ``back_at`` is read: it is ready before
    # start() returns; only the dead process must have logged none.)
    down = [[line for line in p if line["time"] < back_at and line["pid"] != new_pid]
            for p in replicas.records(ECHO_LOG, at_kill)]
    assert down[victim] == [] and min(shares([len(down[0]), len(down[1])])) >= 0.25, (
        [len(d) for d in down])
    # Back: requests from the new process, within 5 s (the longest down period) of its return.
    assert new_pid != old_pid and all(line["pid"] == new_pid for line in returned)
    log.info("requests per server: before the kill %s, while down %s; back after %.2f s",
             first, [len(d) for d in down], returned[0]["time"] - back_at)
    assert returned[0]["time"] - back_at < 5.0 + 1.5, (
        f"the restarted server's first request came {returned[0]['time'] - back_at:.2f} s "
        "after it was ready")
    # Every row reached a server; a row twice only if it was at the killed server when it
    # died (its request was logged there, unanswered, and went to another server).
    seen = Counter(line["x"] for p in per for line in p)
    assert sorted(seen) == list(range(1, rows + 1))
    old_lines = [line for line in per[victim] if line["pid"] == old_pid]
    in_flight_at_kill = {line["x"] for line in old_lines[-2:]}  # (2 subtasks, 1 each)
    twice = {x: n for x, n in seen.items() if n > 1}
    assert set(twice) <= in_flight_at_kill and max(twice.values(), default=2) == 2, (
        f"rows sent more than once: {twice}; the last at the killed server: "
        f"{old_lines[-2:]}")


def test_a_server_down_at_open_is_skipped_with_a_warning(replicas, caplog):
    """open() with one of the three servers dead: a WARNING names it, the records go to the
    other two (sync session, in this process, so the log is this test's)."""
    replicas.kill(2)
    start = replicas.mark(ECHO_LOG)
    inference = TritonInference.create(
        {"endpoint": replicas.endpoint_list(), "model-name": ECHO_LOG},
        [("X", "BIGINT")], ("Y", "BIGINT"))
    with caplog.at_level(logging.WARNING, logger="pyflink_triton"):
        session = inference.open(0)
    try:
        assert [session.infer([x]) for x in range(1, 31)] == list(range(2, 32))
    finally:
        session.close()
    dead = replicas.servers[2].http_endpoint
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"Triton server {dead} (option 'endpoint') cannot be reached now" in w
               for w in warnings), warnings
    counts = [len(p) for p in replicas.records(ECHO_LOG, start)]
    assert counts[2] == 0 and counts[0] + counts[1] == 30 and min(counts[:2]) >= 10, counts


def test_one_request_sequences_spread_each_id_at_one_server(replicas):
    """Auto-increment IDs (START and END in every request), async mode, HTTP, 8 requests in
    flight per subtask: the one-request sequences spread over the three servers, each ID
    sent once, to one server."""
    rows, base = 1600, "autoinc"
    start = replicas.mark(ECHO_LOG_SEQ)
    results = echo_job(replicas.endpoint_list(), ECHO_LOG_SEQ, rows, parallelism=2,
                       mode="async", **{"max-concurrent-requests": "8", "sequence-id": base,
                                        "sequence-id-auto-increment": "true",
                                        "sequence-start": "true", "sequence-end": "true"})()

    assert_echoed(results, rows)
    per = replicas.records(ECHO_LOG_SEQ, start)
    lines = [line for p in per for line in p]
    assert all(line["start"] and line["end"] for line in lines), "a request not START+END"
    assert sorted(line["x"] for line in lines) == list(range(1, rows + 1)), "a row sent twice"
    ids = Counter(line["corrid"] for line in lines)
    assert len(ids) == rows and all(str(i).startswith(f"{base}-") for i in ids), ids
    assert_each_sequence_on_one_server(per, base)
    counts = [len(p) for p in per]
    assert min(shares(counts)) >= 0.2, f"requests per server: {counts}"


def test_vectorized_mode_spreads_over_grpc_endpoints(replicas):
    """The list of grpc:// endpoints, in vectorized mode (a model without batching: one row
    per request, several in flight): every server answers a share, each row once."""
    rows = 1200
    start = replicas.mark(ECHO_LOG)
    results = echo_job(replicas.endpoint_list("grpc"), ECHO_LOG, rows, parallelism=1,
                       mode="vectorized", **{"max-concurrent-requests": "4"})()

    assert_echoed(results, rows)
    per = replicas.records(ECHO_LOG, start)
    assert sorted(line["x"] for p in per for line in p) == list(range(1, rows + 1))
    counts = [len(p) for p in per]
    assert min(shares(counts)) >= 0.2, f"requests per server: {counts}"


# --- keyed sequences -------------------------------------------------------------------------

def keyed_function(endpoint: str, base: str, **extra: str) -> TritonKeyedSequenceFunction:
    """Keyed sequences ``{base}-{key}-...`` of running_total, x -> total, no END by a record."""
    return TritonKeyedSequenceFunction(
        {"endpoint": endpoint, "model-name": RUNNING_TOTAL, "sequence-id": base,
         "input-names": "x:X", "output-names": "total:TOTAL", **extra},
        inputs=[("x", "BIGINT")], output=("total", "BIGINT"))


def key_of(x: int) -> str:
    return f"k{(x - 1) % KEYS}"


def readings_of(rows: int) -> dict[str, list[int]]:
    """x = 1..rows, the keys taking turns."""
    readings: dict[str, list[int]] = defaultdict(list)
    for x in range(1, rows + 1):
        readings[key_of(x)].append(x)
    return dict(readings)


def run_keyed(stream_env, function: TritonKeyedSequenceFunction, rows: int) -> list[Row]:
    """x = 1..rows keyed by key_of(x), from one source subtask (each key's order kept), through
    the function at parallelism 2."""
    stream_env.set_parallelism(2)
    elements = [Row(key=key_of(x), x=x) for x in range(1, rows + 1)]
    source = stream_env.from_collection(elements, type_info=ELEMENT).set_parallelism(1)
    keyed = source.key_by(lambda row: row.key, key_type=Types.STRING())
    return list(keyed_sequence_map(keyed, function).execute_and_collect())


def run_paced_keyed(function: TritonKeyedSequenceFunction, rows: int,
                    rows_per_second: int) -> list[Row]:
    """As run_keyed, from a datagen source at ``rows_per_second`` (jobs.paced_keyed_stream)."""
    keyed = paced_keyed_stream(rows, rows_per_second,
                               f"CONCAT('k', CAST(MOD(x - 1, {KEYS}) AS STRING)) AS key, x")
    return list(keyed_sequence_map(keyed, function).set_parallelism(2).execute_and_collect())


def ended_sequences(replicas: Replicas, since: int, base: str, servers: Sequence[int],
                    within: float = 15.0) -> list[list[dict[str, Any]]]:
    """Each replica's running_total lines of sequences ``{base}-...`` (after the mark
    ``since``), once every sequence at ``servers`` has its END: the function ENDs the ones it
    holds open in close(), which can come after the results are collected."""
    def lines() -> list[list[dict[str, Any]]]:
        return [[line for line in p if str(line["corrid"]).startswith(f"{base}-")]
                for p in replicas.records(RUNNING_TOTAL, since)]

    def all_ended() -> list[list[dict[str, Any]]]:
        per = lines()
        open_ids = [sid for s in servers for sid, seq in by_sequence(per[s], base).items()
                    if not seq[-1]["end"]]
        return [] if open_ids else per

    return wait_for(f"every sequence {base}-... ended at servers {list(servers)}", all_ended,
                    timeout=within)


def assert_outputs_are_answered_totals(outputs: list[Row], rows: int,
                                       answered: dict[int, dict[str, Any]]) -> None:
    """One output per reading x = 1..rows, its own key and x, and the total the model logged
    in the request that answered it (``answered``: x -> that log line)."""
    assert sorted(o.x for o in outputs) == list(range(1, rows + 1)), "rows out != rows in"
    assert all(o.key == key_of(o.x) for o in outputs)
    wrong = [(o, answered[o.x]) for o in outputs if o.total != answered[o.x]["total"]]
    assert not wrong, f"outputs that are not the model's logged total: {wrong[:5]}"


def test_keyed_sequences_are_pinned_each_to_one_server(replicas, stream_env):
    """60 keys x 5 readings over the three servers: each key's one sequence stays at one
    server from START to END (a continuation elsewhere would get HTTP 400, or a wrong
    total), the sequences spread over all three, and every output is the model's total."""
    rows, base = KEYS * 5, "pinned"
    start = replicas.mark(RUNNING_TOTAL)
    outputs = run_keyed(stream_env, keyed_function(replicas.endpoint_list(), base), rows)

    per = ended_sequences(replicas, start, base, servers=range(3))
    where = assert_each_sequence_on_one_server(per, base)
    sequences = by_sequence([line for p in per for line in p], base)
    readings = readings_of(rows)
    assert sorted(keyed_id_parts(s, base)[0] for s in sequences) == sorted(readings), (
        "not one sequence per key")
    for sequence_id, lines in sequences.items():
        assert_running_totals(lines)
        key = keyed_id_parts(sequence_id, base)[0]
        assert [line["x"] for line in own_requests(lines)] == readings[key], lines
        assert lines[-1]["flush"] and lines[-1]["end"], f"{sequence_id} not ended: {lines}"
    per_server = Counter(where.values())
    assert min(per_server[s] for s in range(3)) >= 5, f"sequences per server: {per_server}"
    answered = {line["x"]: line for line in own_requests(line for p in per for line in p)}
    assert_outputs_are_answered_totals(outputs, rows, answered)
    for text in replicas.log_texts():
        assert "START flag" not in text and "conflict" not in text


def test_a_killed_servers_keys_go_on_in_new_sequences_on_the_others_replayed(replicas):
    """60 keys x 12 readings at 120 rows/s over the three servers, 'sequence-replay-records'
    = 2; the third server is killed once 4 readings per key reached the models. Each key
    whose sequence was there goes on in a new sequence (the next ID) on one of the other two,
    warmed up with the key's last 2 answered readings (flagged as replays), and never
    continues its old ID anywhere; the others' keys keep their one sequence. Every reading
    gets one output, the total of the request that answered it."""
    rows, base, victim, replay = KEYS * 12, "moved", 2, 2
    start = replicas.mark(RUNNING_TOTAL)
    job = BackgroundJob(lambda: run_paced_keyed(
        keyed_function(replicas.endpoint_list(), base,
                       **{"sequence-replay-records": str(replay)}), rows, rows_per_second=120))

    def readings_logged() -> bool:
        per = replicas.records(RUNNING_TOTAL, start)
        return sum(len(own_requests(p)) for p in per) >= KEYS * 4

    wait_for("4 readings per key reached the models", job.watch(readings_logged),
             timeout=120)
    old_pid = replicas.kill(victim)
    try:
        outputs = job.wait(300)
        live = [s for s in range(3) if s != victim]
        per = ended_sequences(replicas, start, base, servers=live)
    finally:
        replicas.start(victim)

    where = assert_each_sequence_on_one_server(per, base)
    assert all(line["pid"] == old_pid for line in per[victim])
    sequences = by_sequence([line for p in per for line in p], base)
    readings = readings_of(rows)
    by_key: dict[str, list[str]] = defaultdict(list)
    for sequence_id in sequences:
        by_key[keyed_id_parts(sequence_id, base)[0]].append(sequence_id)
    assert sorted(by_key) == sorted(readings)
    # A reading at the killed server when it died was logged there, unanswered, and sent
    # again in the key's new sequence: the answer is that one.
    resent = {line["x"] for s in live for line in own_requests(per[s])}
    answered = {line["x"]: line for p in per for line in own_requests(p)
                if line["server"] != victim or line["x"] not in resent}
    assert_outputs_are_answered_totals(outputs, rows, answered)

    moved_to = Counter()
    for key, ids in by_key.items():
        ids.sort(key=lambda s: keyed_id_parts(s, base)[2])
        assert len({keyed_id_parts(s, base)[1] for s in ids}) == 1, f"{key}: {ids}"
        first = sequences[ids[0]]
        assert first[0]["start"] and not first[0]["replay"], first
        if where[ids[0]] != victim:
            # Untouched: one sequence, every reading, ENDed at close.
            assert len(ids) == 1, f"{key} moved though its server ran: {ids}"
            assert_running_totals(first)
            assert [line["x"] for line in own_requests(first)] == readings[key], first
            assert first[-1]["flush"] and first[-1]["end"], first
            continue
        assert len(ids) == 2, f"{key}: not one new sequence after the kill: {ids}"
        old, new = (sequences[s] for s in ids)
        moved_to[where[ids[1]]] += 1
        # The old sequence: what the killed server received, a running total, never ended.
        assert not any(line["end"] or line["replay"] for line in old), old
        assert_running_totals(old)
        unanswered = [line["x"] for line in old if line["x"] in resent]
        assert unanswered in ([], [old[-1]["x"]]), (
            f"{key}: readings resent that were not the last one at the killed server: {old}")
        done = [line["x"] for line in old if line["x"] not in resent]
        # The new sequence: the last answered readings replayed, then the next readings.
        replayed = [line["x"] for line in new if line["replay"]]
        assert replayed == done[-replay:], (
            f"{key}: {ids[1]} replayed {replayed}, not the last {replay} answered of {done}")
        assert [line["replay"] for line in new[:len(replayed)]] == [True] * len(replayed), new
        assert [line["x"] for line in own_requests(new)] == readings[key][len(done):], (
            f"{key}: {ids[1]} did not go on after {done}: {new}")
        assert_running_totals(new)
        assert new[-1]["flush"] and new[-1]["end"], new
    log.info("keys moved from the killed server, per server: %s", dict(moved_to))
    assert sum(moved_to.values()) >= 5, f"only {sum(moved_to.values())} keys were at the victim"
    assert sorted(moved_to) == live, f"new sequences per server: {moved_to}"


def test_nginx_hashing_the_sequence_id_header_keeps_each_sequence_on_one_server(
        replicas, stream_env, tmp_path):
    """One endpoint, nginx, in front of two servers with tests/replicas.py's configuration
    (hash $http_x_sequence_id consistent), and 'sequence-id-header' = 'X-Sequence-Id': each
    request of a sequence carries its ID in the header, so nginx sends the whole sequence to
    one server. No HTTP 400 (a continuation at the wrong server), both servers hold
    sequences, and every output is the model's total."""
    rows, base = KEYS * 4, "nginx"
    start = replicas.mark(RUNNING_TOTAL)
    addresses = [replicas.address(0), replicas.address(1)]
    with NginxSequenceBalancer(tmp_path / "nginx", addresses) as nginx:
        outputs = run_keyed(stream_env, keyed_function(
            nginx.endpoint, base, **{"sequence-id-header": "X-Sequence-Id"}), rows)
        per = ended_sequences(replicas, start, base, servers=range(2))
        logged = sum(len(p) for p in per)
        # (nginx logs a request just after its response)
        def all_logged() -> list[BalancedRequest]:
            found = nginx.requests()
            return found if sum(r.method == "POST" for r in found) >= logged else []

        requests = wait_for("nginx logged every request the servers received", all_logged,
                            timeout=10)

    assert per[2] == [], "a request reached the server outside nginx's upstream"
    statuses = Counter(r.status for r in requests)
    assert set(statuses) == {200}, f"nginx answered {statuses}:\n{nginx.logs()}"
    where = assert_each_sequence_on_one_server(per, base)
    per_server = Counter(where.values())
    assert set(per_server) == {0, 1}, f"sequences per server: {per_server}"
    # Every inference request carried its sequence ID in the header, and nginx sent each
    # ID's requests to the server whose log has them.
    inferences = [r for r in requests if r.method == "POST"]
    assert len(inferences) == logged, "requests through nginx != requests logged"
    assert all(r.uri == f"/v2/models/{RUNNING_TOTAL}/infer" for r in inferences), inferences
    upstreams: dict[str | None, set[str]] = defaultdict(set)
    for r in inferences:
        upstreams[r.sequence_header].add(r.upstream)
    assert set(upstreams) == set(where), "the headers are not the sequence IDs"
    wrong = {sid: ups for sid, ups in upstreams.items() if ups != {addresses[where[sid]]}}
    assert not wrong, f"IDs nginx sent elsewhere than the server that logged them: {wrong}"
    sequences = by_sequence([line for p in per for line in p], base)
    readings = readings_of(rows)
    for sequence_id, lines in sequences.items():
        assert_running_totals(lines)
        key = keyed_id_parts(sequence_id, base)[0]
        assert [line["x"] for line in own_requests(lines)] == readings[key], lines
    answered = {line["x"]: line for line in own_requests(line for p in per for line in p)}
    assert_outputs_are_answered_totals(outputs, rows, answered)
