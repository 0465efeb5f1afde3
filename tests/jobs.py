"""Helpers shared by the integration tests: options for the test models, sources, checks."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from pyflink_triton.sessions.contract import InferenceSession
from pyflink_triton.sessions.function import TritonInference

BASE_ID = "flink-job-123"

# The seed's statement (FLINK-38857), verbatim.
SEED_CREATE_MODEL = """CREATE MODEL my_triton_model WITH (
  'provider' = 'triton',
  'endpoint' = 'https://triton-server:8000/v2/models',
  'model-name' = 'my_stateful_model',
  'sequence-id' = 'flink-job-123',
  'sequence-id-auto-increment' = 'true',  -- Enable auto-increment
  'sequence-start' = 'true',
  'sequence-end' = 'true'
);"""
SEED_ENDPOINT = "https://triton-server:8000/v2/models"


def table_env(parallelism: int | None = None) -> Any:
    """A streaming TableEnvironment whose Python workers run this interpreter."""
    import sys

    from pyflink.table import EnvironmentSettings, TableEnvironment

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    env.get_config().set("python.executable", sys.executable)
    if parallelism is not None:
        env.get_config().set("parallelism.default", str(parallelism))
    return env


def stateful_options(triton: Any, **overrides: str) -> dict[str, str]:
    """The seed's options for the test server's my_stateful_model."""
    return {
        "provider": "triton",
        "endpoint": f"{triton.http_endpoint}/v2/models",
        "model-name": "my_stateful_model",
        "sequence-id": BASE_ID,
        "sequence-id-auto-increment": "true",
        "sequence-start": "true",
        "sequence-end": "true",
        **overrides,
    }


def sequence_source(t_env: Any, rows: int, name: str = "src") -> None:
    """A datagen table of ids 1..rows, split among the source's parallel subtasks."""
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE {name} (id BIGINT) WITH (
          'connector' = 'datagen', 'number-of-rows' = '{rows}',
          'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '{rows}')""")


def paced_keyed_stream(count: int, rows_per_second: int, select: str) -> Any:
    """x = 1..count from a datagen source at ``rows_per_second`` (it emits each second's rows at
    once; paced in Java, because a pause in a Python function would not reach a keyed operator
    as a pause, PyFlink's bundles being in between), as the rows of ``SELECT {select} FROM ids``
    keyed by their STRING column ``key``. Parallelism 1 (the source: each key's order kept);
    bundles of at most 50 ms, so that records reach Python, and the timers registered in Python
    reach Flink, as they come."""
    import sys

    from pyflink.common.typeinfo import Types
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    t_env = StreamTableEnvironment.create(env)
    config = t_env.get_config()
    config.set("python.executable", sys.executable)
    config.set("python.fn-execution.bundle.time", "50")
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE ids (x BIGINT) WITH (
          'connector' = 'datagen', 'rows-per-second' = '{rows_per_second}',
          'fields.x.kind' = 'sequence', 'fields.x.start' = '1', 'fields.x.end' = '{count}')""")
    table = t_env.sql_query(f"SELECT {select} FROM ids")
    return t_env.to_data_stream(table).key_by(lambda row: row.key, key_type=Types.STRING())


def assert_one_shot_sequences_per_subtask(pairs: Iterable[tuple[int, dict[str, Any]]],
                                          rows: int, subtasks: int) -> None:
    """Check what my_stateful_model reported for ids 1..rows sent by ``subtasks`` subtasks.

    ``pairs``: (input id, the model's report) for every output row. Triton must have seen
    exactly ``rows`` distinct sequence IDs ``{BASE_ID}-{subtask}-{counter}``, each a complete
    START+END sequence, with counters 0..n-1 without gaps in every subtask, and every output
    must belong to its own input.
    """
    pairs = list(pairs)
    assert sorted(i for i, _ in pairs) == list(range(1, rows + 1)), "rows out != rows in"
    counters: dict[int, list[int]] = defaultdict(list)
    for value, report in pairs:
        assert report["input"] == value and report["total"] == value, report
        assert report["start"] is True and report["end"] is True, report
        base, subtask, counter = report["sequence_id"].rsplit("-", 2)
        assert base == BASE_ID
        counters[int(subtask)].append(int(counter))
    assert len({r["sequence_id"] for _, r in pairs}) == rows, "Triton saw a sequence ID twice"
    assert sorted(counters) == list(range(subtasks)), f"subtasks seen: {sorted(counters)}"
    for subtask, seen in counters.items():
        assert sorted(seen) == list(range(len(seen))), f"gap in subtask {subtask}: {seen}"


@contextmanager
def open_session(triton: Any, model: str, inputs: Any = None, output: Any = None,
                 **options: str) -> Iterator[InferenceSession]:
    """An inference session (what one UDF instance uses) on a model of the test server."""
    inference = TritonInference.create(
        {"endpoint": triton.http_endpoint, "model-name": model, **options}, inputs, output)
    session = inference.open(subtask_index=0)
    try:
        yield session
    finally:
        session.close()


def same_value(a: Any, b: Any) -> bool:
    """Equality that also holds for NaN and tells -0.0 from 0.0, through nested lists."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b
