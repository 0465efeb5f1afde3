"""The PyFlink side of the Table API benchmarks (bench/throughput.py, bench/replicas.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def process_mode_table_env(flink_config: dict[str, str]) -> Any:
    """One streaming TableEnvironment (one JVM, each job a fresh mini-cluster job) with
    ``flink_config`` set; its Python functions run in process mode (one Python worker process
    per subtask, as on a cluster; async functions need it) with this interpreter, and import
    this checkout's pyflink_triton, shipped to the workers."""
    # Must be set before the JVM starts.
    os.environ["_python_worker_execution_mode"] = "process"  # noqa: SIM112 (PyFlink's name)
    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = t_env.get_config()
    config.set("python.executable", sys.executable)
    for key, value in flink_config.items():
        config.set(key, value)
    t_env.add_python_file(str(ROOT / "pyflink_triton"))
    return t_env


def sink_lines(out_dir: Path) -> list[str]:
    """The lines a filesystem sink wrote under ``out_dir``: of finished part files only
    (in-progress ones are hidden: their names start with a dot)."""
    return [line for path in sorted(out_dir.rglob("[!.]*")) if path.is_file()
            for line in path.read_text().splitlines() if line.strip()]
