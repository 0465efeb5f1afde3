"""'sequence-id-counter-init-strategy' in real jobs against a real tritonserver: with
'nano-time' the auto-increment IDs keep their format and a rerun of the job never repeats one;
with 'zero' (Flink's behaviour) a rerun repeats every ID, each a complete START+END sequence."""

from __future__ import annotations

import time

import pytest

from pyflink_triton import create_model

from faults import ECHO_LOG_SEQ
from jobs import sequence_source, table_env
from sequence_checks import by_sequence

ROWS = 200


def run_auto_increment_job(server, base: str, strategy: str) -> None:
    t_env = table_env(parallelism=2)
    sequence_source(t_env, ROWS)
    create_model(t_env, "echo", {
        "endpoint": f"http://127.0.0.1:{server.http_port}", "model-name": ECHO_LOG_SEQ,
        "sequence-id": base, "sequence-id-auto-increment": "true", "sequence-start": "true",
        "sequence-end": "true", "sequence-id-counter-init-strategy": strategy,
    }, inputs=[("X", "BIGINT")], output=("Y", "BIGINT"))
    frame = t_env.sql_query("SELECT id, echo(id) AS y FROM src").to_pandas()
    assert sorted(frame["y"] - frame["id"]) == [1] * ROWS


@pytest.mark.parametrize("strategy", ["zero", "nano-time"])
def test_a_rerun_repeats_ids_only_with_zero(server, fault_repository, strategy):
    base = f"rerun-{strategy}"
    runs = []
    for _ in range(2):
        started = time.time_ns()
        run_auto_increment_job(server, base, strategy)
        sequences = by_sequence(fault_repository.records(ECHO_LOG_SEQ), base)
        runs.append((started, set(sequences) - set().union(*(ids for _, ids in runs))))
        # Every ID, however often it came, was a complete one-request sequence each time.
        assert all(line["start"] and line["end"] for lines in sequences.values()
                   for line in lines)

    (first_start, first), (second_start, second) = runs
    assert len(first) == ROWS
    counters = {}
    for sequence_id in first:
        prefix, subtask, counter = sequence_id.rsplit("-", 2)
        assert prefix == base and subtask in ("0", "1"), sequence_id
        counters.setdefault(subtask, []).append(int(counter))
    for seen in counters.values():
        # Consecutive from where open() started the counter: 0, or the clock in ns.
        assert sorted(seen) == list(range(min(seen), min(seen) + len(seen)))
        if strategy == "zero":
            assert min(seen) == 0
        else:
            assert first_start <= min(seen) <= second_start
    if strategy == "zero":
        assert not second, "a rerun with 'zero' sends the same IDs again"
        assert all(len(lines) == 2 for lines in by_sequence(
            fault_repository.records(ECHO_LOG_SEQ), base).values())
    else:
        assert len(second) == ROWS, "a rerun with 'nano-time' repeats no ID"
        assert min(int(s.rsplit("-", 1)[1]) for s in second) > max(
            c for seen in counters.values() for c in seen)
