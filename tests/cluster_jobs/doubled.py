"""Cluster job: ids 1..rows from a replayable source, a Python UDF doubles them, an
exactly-once csv sink stores ``id,doubled``.

Usage (``FlinkCluster.submit``):
``doubled.py OUTPUT_DIR ROWS ROWS_PER_SECOND [table|datastream] [csv|json]``.
``datastream`` routes the rows through a DataStream ``map`` instead of a Table API UDF (the
same source and sink, bridged with ``to_data_stream`` / ``from_data_stream``).
"""

from __future__ import annotations

import sys

from pyflink.common import Row, Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import DataTypes, StreamTableEnvironment
from pyflink.table.udf import udf

from flink_cluster import file_sink, sequence_source


@udf(result_type=DataTypes.BIGINT())
def times_two(x: int) -> int:
    return x * 2


def main(output: str, rows: int, rate: int, api: str = "table", fmt: str = "csv") -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    sequence_source(t_env, "source", rows, rate)
    file_sink(t_env, "sink", output, "id BIGINT, doubled BIGINT", fmt)
    if api == "table":
        t_env.create_temporary_function("times_two", times_two)
        t_env.execute_sql("INSERT INTO sink SELECT id, times_two(id) FROM source")
    else:
        stream = t_env.to_data_stream(t_env.from_path("source")).map(
            lambda row: Row(row[0], row[0] * 2),
            output_type=Types.ROW_NAMED(["id", "doubled"], [Types.LONG(), Types.LONG()]))
        t_env.from_data_stream(stream).execute_insert("sink")
    # Detached submission (flink run -d): return at once, the job runs on.


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:6])
