"""Keyed sequences (one long-lived Triton sequence per key) on the mini-cluster and a real
tritonserver serving the running_total model: per-key totals, END by a field, by idle timeout
and at the end of the input, replay into a new incarnation, resubmits, and the errors."""

from __future__ import annotations

import re

import pytest
from pyflink.common import Row
from pyflink.common.typeinfo import Types

from pyflink_triton import (
    TritonConfigError,
    TritonKeyedSequenceFunction,
    TritonScalarFunction,
    keyed_sequence_map,
)
from pyflink_triton.sessions.function import TritonInference

from faults import ECHO_LOG, RUNNING_TOTAL
from jobs import paced_keyed_stream
from sequence_checks import (
    assert_no_live_sequences,
    assert_running_totals,
    by_sequence,
    keyed_id_parts,
)

ELEMENT = Types.ROW_NAMED(["key", "x", "last"], [Types.STRING(), Types.LONG(), Types.BOOLEAN()])
KEYS = 60
IDLE_KEYS = 10  # keys 0..9 appear in the first part of the stream only


def options(server, base: str, **extra: str) -> dict[str, str]:
    return {"endpoint": f"http://127.0.0.1:{server.http_port}", "model-name": RUNNING_TOTAL,
            "sequence-id": base, "input-names": "x:X", "output-names": "total:TOTAL", **extra}


def keyed_function(server, base: str, **extra: str) -> TritonKeyedSequenceFunction:
    return TritonKeyedSequenceFunction(options(server, base, **extra), inputs=[("x", "BIGINT")],
                                       output=("total", "BIGINT"), end_when="last")


def key_of(x: int) -> str:
    """k0..k59 in turn; k0..k9 only among the first 100 elements."""
    return f"k{(x - 1) % KEYS if x <= 100 else IDLE_KEYS + (x - 1) % (KEYS - IDLE_KEYS)}"


def ends(x: int) -> bool:
    return x % 13 == 0


def elements(count: int) -> list[Row]:
    return [Row(key=key_of(x), x=x, last=ends(x)) for x in range(1, count + 1)]


def run_keyed_job(stream_env, function, rows: list[Row]) -> list[Row]:
    """The rows through the function, keyed by ``key``, at parallelism 2; the single source
    keeps each key's order."""
    stream_env.set_parallelism(2)
    source = stream_env.from_collection(rows, type_info=ELEMENT).set_parallelism(1)
    keyed = source.key_by(lambda row: row.key, key_type=Types.STRING())
    return list(keyed_sequence_map(keyed, function).execute_and_collect())


def run_paced_keyed_job(function, count: int, rows_per_second: int) -> list[Row]:
    """elements(count), paced by a datagen source (jobs.paced_keyed_stream, whose short
    bundles also get the timers registered in Python to Flink in time: timely idle ENDs)."""
    keyed = paced_keyed_stream(count, rows_per_second, f"""
        CONCAT('k', CAST(CASE WHEN x <= 100 THEN MOD(x - 1, {KEYS})
                              ELSE {IDLE_KEYS} + MOD(x - 1, {KEYS - IDLE_KEYS}) END
                         AS STRING)) AS key,
        x, MOD(x, 13) = 0 AS last""")
    results = keyed_sequence_map(keyed, function).set_parallelism(2)
    return list(results.execute_and_collect())


def expected_totals(rows: list[Row]) -> dict[int, int]:
    """x -> the running total of its key's sequence (ended by ``last``) at that element."""
    totals, running = {}, {}
    for row in rows:
        running[row.key] = running.get(row.key, 0) + row.x
        totals[row.x] = running[row.key]
        if row.last:
            running[row.key] = 0
    return totals


def test_one_sequence_per_key_ended_by_field_idle_timer_and_end_of_input(
        server, fault_repository):
    rows = elements(800)
    # 4 s of input; keys k0..k9 stop after 0.5 s, and their idle timers (2 s) fire while the
    # job runs. The other keys' records are 0.25 s apart on average, but datagen emits each
    # second's rows in one burst: with keys in flight together a burst is answered quickly,
    # and a key's last record of one burst and its first of the next were measured 1.1 s
    # apart, so a 1 s timeout would end them too.
    outputs = run_paced_keyed_job(keyed_function(server, "kd", **{
        "sequence-idle-timeout": "2 s"}), len(rows), rows_per_second=200)

    assert sorted(o.x for o in outputs) == [r.x for r in rows], "rows out != rows in"
    totals = expected_totals(rows)
    assert all(o.total == totals[o.x] for o in outputs), [
        o for o in outputs if o.total != totals[o.x]][:5]
    assert all(o.key == key_of(o.x) and o.last == ends(o.x) for o in outputs)
    assert {tuple(o.as_dict()) for o in outputs} == {("key", "x", "last", "total")}

    sequences = by_sequence(fault_repository.records(RUNNING_TOTAL), "kd")
    for lines in sequences.values():
        assert_running_totals(lines)
        assert lines[-1]["end"], f"sequence {lines[0]['corrid']} never ended: {lines}"
    parts = {sid: keyed_id_parts(sid, "kd") for sid in sequences}
    assert {key for key, _, _ in parts.values()} == {f"k{k}" for k in range(KEYS)}
    assert len({inc for _, inc, _ in parts.values()}) == 2, "one incarnation per subtask"
    # n counts a key's sequences: 0, 1, 2... without gaps.
    numbers: dict[str, list[int]] = {}
    for key, _, number in parts.values():
        numbers.setdefault(key, []).append(number)
    assert all(sorted(n) == list(range(len(n))) for n in numbers.values()), numbers
    # The idle keys got their END (a flush) from the timer, 2 s after their last record and
    # while the job ran; the other keys' open sequences were ended at the end of input.
    last_request = max(line["time"] for lines in sequences.values() for line in lines
                       if not line["flush"])
    for key in (k for k in range(IDLE_KEYS) if not ends(KEYS + 1 + k)):  # (their last x)
        final = max((s for s in sequences if parts[s][0] == f"k{key}"),
                    key=lambda s: parts[s][2])
        *records, end = sequences[final]
        assert end["flush"] and end["end"], end
        assert records[-1]["time"] + 1.95 < end["time"] < last_request, (records, end)
    assert_no_live_sequences(server.http_port, RUNNING_TOTAL, sequences)
    assert "conflict" not in server.log_text()

def test_a_resubmitted_job_never_reuses_an_id(server, fault_repository, stream_env):
    rows = elements(120)
    seen = []
    for _ in range(2):
        run_keyed_job(stream_env, keyed_function(server, "resub"), rows)
        sequences = by_sequence(fault_repository.records(RUNNING_TOTAL), "resub")
        seen.append(set(sequences) - set().union(*seen))
        for lines in sequences.values():
            assert_running_totals(lines)
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    incarnations = [{keyed_id_parts(s, "resub")[1] for s in run} for run in seen]
    assert not incarnations[0] & incarnations[1], incarnations


@pytest.mark.parametrize("replay", [0, 3])
def test_a_new_incarnation_starts_a_new_sequence_and_replays_the_last_inputs(
        server, fault_repository, replay):
    """What a restore does, without Flink: the state kept by one open() (incarnation) is
    handed to the next one, as Flink's keyed state would be after a failover."""
    base = f"inc{replay}"
    inference = TritonInference.create(
        options(server, base, **{"sequence-replay-records": str(replay)}),
        [("x", "BIGINT")], ("total", "BIGINT"), mode="keyed")
    before = inference.open(0, mode="keyed")
    state = None
    for x in (1, 2, 4, 8, 16):
        total, state = before.infer(state, "dev", [x], False, 1000)
    assert total == 31
    # The failed attempt's worker dies without close(): its sequence stays open in Triton.
    after = inference.open(0, attempt=1, mode="keyed")
    try:
        total, state = after.infer(state, "dev", [32], False, 2000)
        assert total == {0: 32, 3: 4 + 8 + 16 + 32}[replay]
        total, state = after.infer(state, "dev", [64], True, 3000)
    finally:
        after.close()
    sequences = by_sequence(fault_repository.records(RUNNING_TOTAL), base)
    old, new = sorted(sequences, key=lambda s: sequences[s][0]["time"])
    assert keyed_id_parts(old, base)[1] == before.sequences.incarnation
    assert keyed_id_parts(new, base)[1] == after.sequences.incarnation
    assert keyed_id_parts(new, base)[2] == keyed_id_parts(old, base)[2] + 1
    assert [line["x"] for line in sequences[new]] == [4, 8, 16, 32, 64][3 - replay:]
    assert [line["replay"] for line in sequences[new]] == [True] * replay + [False] * 2
    assert_running_totals(sequences[new])
    assert after.replayed == replay and after.restarted == 1
    before._transport.close()  # (the old incarnation's sequence is left to Triton's reaper)


def test_many_records_at_once_go_on_in_their_keys_sequences(server, fault_repository):
    """The session contract's infer_many() for keyed sequences: records of two keys, each
    key's records in its own sequence, each state carried to the key's next record."""
    inference = TritonInference.create(options(server, "many"), [("x", "BIGINT")],
                                       ("total", "BIGINT"), mode="keyed")
    session = inference.open(0, mode="keyed")
    try:
        answers = session.infer_many([(None, "a", [1], False, 1000),
                                      (None, "b", [10], False, 1000),
                                      (None, "a", [2], False, 1001),
                                      (None, "b", [20], True, 1002),
                                      (None, "a", [4], True, 1003)])
    finally:
        session.close()
    assert [total for total, _ in answers] == [1, 10, 3, 30, 7]
    assert [state.open for _, state in answers] == [True, True, True, False, False]
    sequences = by_sequence(fault_repository.records(RUNNING_TOTAL), "many")
    assert sorted([line["x"] for line in lines] for lines in sequences.values()) == [
        [1, 2, 4], [10, 20]]


def test_table_api_rows_reach_keyed_sequences_through_to_data_stream(server, fault_repository):
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    t_env = StreamTableEnvironment.create(env)
    import sys
    t_env.get_config().set("python.executable", sys.executable)
    t_env.execute_sql("""
        CREATE TEMPORARY VIEW readings AS SELECT * FROM (VALUES
          ('a', CAST(1 AS BIGINT), FALSE), ('b', 10, FALSE), ('a', 2, TRUE), ('b', 20, FALSE),
          ('a', 3, FALSE)) AS t(key, x, last)""")
    readings = t_env.to_data_stream(t_env.from_path("readings"))
    totals = keyed_sequence_map(readings.key_by(lambda r: r.key, key_type=Types.STRING()),
                                keyed_function(server, "tbl"))
    t_env.create_temporary_view("totals", t_env.from_data_stream(totals))

    result = t_env.execute_sql("SELECT key, x, total FROM totals").collect()
    with result:
        rows = sorted((r[0], r[1], r[2]) for r in result)

    assert rows == [("a", 1, 1), ("a", 2, 3), ("a", 3, 3), ("b", 10, 10), ("b", 20, 30)]


def test_a_stateless_model_is_refused_at_open(server):
    inference = TritonInference.create(
        {**options(server, "x"), "model-name": ECHO_LOG, "output-names": "total:Y"},
        [("x", "BIGINT")], ("total", "BIGINT"), mode="keyed")
    with pytest.raises(TritonConfigError, match="Model 'echo_log' has no sequence_batching"):
        inference.open(0, mode="keyed")


def test_an_idle_timeout_beyond_the_models_is_refused_at_open(server):
    inference = TritonInference.create(
        options(server, "x", **{"sequence-idle-timeout": "5 s"}),
        [("x", "BIGINT")], ("total", "BIGINT"), mode="keyed")
    with pytest.raises(TritonConfigError, match=re.escape(
            "'sequence-idle-timeout' (5000 ms) must be below model 'running_total''s "
            "max_sequence_idle_microseconds (5000 ms)")):
        inference.open(0, mode="keyed")


def test_keyed_options_are_refused_by_per_record_functions(server):
    with pytest.raises(TritonConfigError, match="'sequence-replay-records' apply only to keyed"):
        TritonScalarFunction(options(server, "x", **{"sequence-replay-records": "2"}),
                             [("x", "BIGINT")], ("total", "BIGINT"))


def test_an_unkeyed_stream_is_refused(server, stream_env):
    stream = stream_env.from_collection(elements(3), type_info=ELEMENT)
    with pytest.raises(TritonConfigError, match=re.escape("call stream.key_by(")):
        keyed_sequence_map(stream, keyed_function(server, "x"))
