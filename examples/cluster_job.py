"""A job to submit to a Flink cluster: the seed's stateful model, called once per record.

Ids 1..N go through ``my_stateful_model`` with sequence-ID auto-increment, each as its own
one-request sequence ``flink-job-123-<subtask>-<counter>``; every result is the JSON report of
what Triton delivered to the model (sequence ID, START/END flags, running total). Results go to
JSON files under ``--output`` (committed when the job ends), or to the TaskManagers' stdout.

    python -m pyflink_triton job-zip -o dist/pyflink-triton-job.zip
    flink run -pyfs dist/pyflink-triton-job.zip -py examples/cluster_job.py \\
        --endpoint http://triton-host:8000 --rows 100 --output /shared/results

The endpoint must be reachable from the TaskManagers (and from where ``flink run`` runs: the
model's signature is read when the function is registered).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from pyflink_triton import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoint", default="http://localhost:8000",
                        help="Triton's HTTP endpoint, as seen from the TaskManagers")
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--output", help="a directory for the results (default: stdout)")
    args = parser.parse_args()

    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE readings (id BIGINT) WITH (
          'connector' = 'datagen', 'fields.id.kind' = 'sequence',
          'fields.id.start' = '1', 'fields.id.end' = '{args.rows}')""")
    sink = (f"'connector' = 'filesystem', 'path' = '{Path(args.output).resolve().as_uri()}', "
            "'format' = 'json'" if args.output else "'connector' = 'print'")
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE results (id BIGINT, what_triton_saw STRING) WITH ({sink})""")
    create_model(t_env, "my_triton_model", {
        "provider": "triton",
        "endpoint": args.endpoint,
        "model-name": "my_stateful_model",
        "sequence-id": "flink-job-123",
        "sequence-id-auto-increment": "true",
        "sequence-start": "true",
        "sequence-end": "true",
    })
    # Wait, so that an attached `flink run` reports how the job ended.
    t_env.execute_sql(
        "INSERT INTO results SELECT id, my_triton_model(id) FROM readings").wait()


if __name__ == "__main__":
    main()
