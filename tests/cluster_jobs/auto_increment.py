"""Cluster job: ids 1..rows from a replayable source through the seed's auto-increment
sequence options (a Table API UDF on echo_log_seq, Y = X + 1), into an exactly-once csv sink
of ``id,y``.

Usage (``FlinkCluster.submit``): ``auto_increment.py OUTPUT_DIR ENDPOINT SEQUENCE_ID STRATEGY
ROWS ROWS_PER_SECOND``; STRATEGY is a 'sequence-id-counter-init-strategy'.
"""

from __future__ import annotations

import sys

from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from pyflink_triton import create_model

from flink_cluster import file_sink, sequence_source


def main(output: str, endpoint: str, sequence_id: str, strategy: str, rows: int,
         rate: int) -> None:
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    sequence_source(t_env, "source", rows, rate)
    file_sink(t_env, "sink", output, "id BIGINT, y BIGINT")
    create_model(t_env, "echo", {
        "provider": "triton", "endpoint": endpoint, "model-name": "echo_log_seq",
        "sequence-id": sequence_id, "sequence-id-auto-increment": "true",
        "sequence-start": "true", "sequence-end": "true",
        "sequence-id-counter-init-strategy": strategy,
    }, inputs=[("X", "BIGINT")], output=("Y", "BIGINT"))
    t_env.execute_sql("INSERT INTO sink SELECT id, echo(id) FROM source")


if __name__ == "__main__":
    main(*sys.argv[1:4], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
