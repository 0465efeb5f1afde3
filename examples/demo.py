"""The demo: a local Triton, and a PyFlink job that calls a stateful model with auto-increment.

Starts tritonserver with the repository's model_repository on free loopback ports, runs the
seed's SQL example (sql/seed_example.sql) with parallelism 2 on the embedded mini-cluster, and
prints every row next to the sequence ID Triton delivered to the model for it.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from pyflink.table import EnvironmentSettings, TableEnvironment

from pyflink_triton import execute_sql
from pyflink_triton.server import LocalTritonServer

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("pyflink_triton").setLevel(logging.INFO)
    with LocalTritonServer(ROOT / "model_repository") as server:
        print(f"Triton is serving {ROOT / 'model_repository'} at {server.http_endpoint}")
        sql = (ROOT / "sql" / "seed_example.sql").read_text()
        sql = sql.replace("http://localhost:8000", server.http_endpoint)

        t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
        t_env.get_config().set("parallelism.default", "2")
        t_env.get_config().set("python.executable", sys.executable)
        rows = list(execute_sql(t_env, sql).collect())

    print(f"\n{'id':>4}  {'sequence ID Triton saw':<24} {'START':<6} {'END':<6} total")
    for row_id, report in sorted((r[0], json.loads(r[1])) for r in rows):
        print(f"{row_id:>4}  {report['sequence_id']:<24} {report['start']!s:<6} "
              f"{report['end']!s:<6} {report['total']}")
    sequence_ids = {json.loads(r[1])["sequence_id"] for r in rows}
    print(f"\n{len(rows)} rows, {len(sequence_ids)} distinct sequence IDs, "
          f"{len({s.rsplit('-', 2)[1] for s in sequence_ids})} subtasks.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
