"""Cluster job: keys with requests in flight together (keyed sequences, concurrency on).

Elements ``(key, x)`` for x = 1..rows from a replayable source, the keys k0..k3 taking turns
(``key_of``); no record ends a sequence, so each key holds one sequence per incarnation
(ended by its idle timer or at the end of the input). The table goes to a keyed DataStream,
through ``keyed_sequence_map`` on MODEL (a running_total: the sum of X per sequence) with up
to CONCURRENCY keys' requests in flight per subtask, and into an exactly-once csv sink of
``key,x,total``.

Usage (``FlinkCluster.submit``): ``keyed_in_flight.py OUTPUT_DIR ENDPOINT SEQUENCE_ID MODEL
REPLAY_RECORDS CONCURRENCY ROWS ROWS_PER_SECOND``.
"""

from __future__ import annotations

import sys

from pyflink.common import Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from pyflink_triton import TritonKeyedSequenceFunction, keyed_sequence_map

from flink_cluster import file_sink, sequence_source

KEYS = 4
# Below the test models' max_sequence_idle_microseconds (5 s), well above a key's turn even
# while the model is slowed (test_failover's 4 rows a second: each key has a record in each
# second's rows): keys go idle only when the input ends, or the job is down.
IDLE_TIMEOUT = "4 s"


def key_of(x: int) -> str:
    """The job's key of element x (the SQL below, in Python, for the tests)."""
    return f"k{(x - 1) % KEYS}"


def main(output: str, endpoint: str, sequence_id: str, model: str, replay: str,
         concurrency: str, rows: int, rate: int) -> None:
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    sequence_source(t_env, "source", rows, rate)
    file_sink(t_env, "sink", output, "key STRING, x BIGINT, total BIGINT")
    elements = t_env.sql_query(f"""
        SELECT CONCAT('k', CAST(MOD(id - 1, {KEYS}) AS STRING)) AS key, id AS x FROM source""")
    function = TritonKeyedSequenceFunction({
        "endpoint": endpoint, "model-name": model, "sequence-id": sequence_id,
        "input-names": "x:X", "output-names": "total:TOTAL",
        "sequence-idle-timeout": IDLE_TIMEOUT, "sequence-replay-records": replay,
        "max-concurrent-requests": concurrency,
    }, inputs=[("x", "BIGINT")], output=("total", "BIGINT"))
    keyed = t_env.to_data_stream(elements).key_by(lambda row: row.key, key_type=Types.STRING())
    totals = t_env.from_data_stream(keyed_sequence_map(keyed, function))
    totals.select(totals.key, totals.x, totals.total).execute_insert("sink")


if __name__ == "__main__":
    main(*sys.argv[1:7], int(sys.argv[7]), int(sys.argv[8]))
