"""Cluster job: one Triton sequence per key (running_total: the sum of X per sequence).

Elements ``(key, x, last)`` for x = 1..rows from a replayable source: keys k0..k59 take turns
while x <= 300, then only k10..k59 (k0..k9 go idle and get an explicit END from their idle
timers); ``last`` (x divisible by 97) ends a key's sequence. The table goes to a keyed
DataStream (``to_data_stream``), through ``keyed_sequence_map`` (up to 8 keys' requests in
flight per subtask) and back into an exactly-once csv sink of ``key,x,total``.

Usage (``FlinkCluster.submit``): ``keyed_totals.py OUTPUT_DIR ENDPOINT SEQUENCE_ID
REPLAY_RECORDS IDLE_TIMEOUT ROWS ROWS_PER_SECOND``.
"""

from __future__ import annotations

import sys

from pyflink.common import Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from pyflink_triton import TritonKeyedSequenceFunction, keyed_sequence_map

from flink_cluster import file_sink, sequence_source

KEYS, IDLE_KEYS, LAST_KEYED_X, ENDS_EVERY = 60, 10, 300, 97
# Keys with a request in flight at once, per subtask (each key's requests stay in order).
MAX_CONCURRENT_REQUESTS = "8"


def key_of(x: int) -> str:
    """The job's key of element x (the SQL below, in Python, for the tests)."""
    return f"k{(x - 1) % KEYS if x <= LAST_KEYED_X else IDLE_KEYS + (x - 1) % (KEYS - IDLE_KEYS)}"


def main(output: str, endpoint: str, sequence_id: str, replay: str, idle: str, rows: int,
         rate: int) -> None:
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    sequence_source(t_env, "source", rows, rate)
    file_sink(t_env, "sink", output, "key STRING, x BIGINT, total BIGINT")
    elements = t_env.sql_query(f"""
        SELECT CONCAT('k', CAST(CASE WHEN id <= {LAST_KEYED_X} THEN MOD(id - 1, {KEYS})
                                     ELSE {IDLE_KEYS} + MOD(id - 1, {KEYS - IDLE_KEYS}) END
                                AS STRING)) AS key,
               id AS x, MOD(id, {ENDS_EVERY}) = 0 AS last
        FROM source""")
    function = TritonKeyedSequenceFunction({
        "endpoint": endpoint, "model-name": "running_total", "sequence-id": sequence_id,
        "input-names": "x:X", "output-names": "total:TOTAL",
        "sequence-idle-timeout": idle, "sequence-replay-records": replay,
        "max-concurrent-requests": MAX_CONCURRENT_REQUESTS,
    }, inputs=[("x", "BIGINT")], output=("total", "BIGINT"), end_when="last")
    keyed = t_env.to_data_stream(elements).key_by(lambda row: row.key, key_type=Types.STRING())
    totals = t_env.from_data_stream(keyed_sequence_map(keyed, function))
    totals.select(totals.key, totals.x, totals.total).execute_insert("sink")


if __name__ == "__main__":
    main(*sys.argv[1:6], int(sys.argv[6]), int(sys.argv[7]))
