"""Flink SQL through execute_sql: the seed's CREATE MODEL verbatim, column clauses, catalogs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyflink_triton import TritonConfigError, execute_sql

from jobs import (
    SEED_CREATE_MODEL,
    SEED_ENDPOINT,
    assert_one_shot_sequences_per_subtask,
    sequence_source,
)

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def model_names(t_env) -> set[str]:
    return {row[0] for row in t_env.execute_sql("SHOW MODELS").collect()}


def test_seed_statement_verbatim_with_parallelism_3_over_300_rows(triton, t_env):
    t_env.get_config().set("parallelism.default", "3")
    sequence_source(t_env, 300)
    # Only the host changes: the seed's https://triton-server:8000 is not this machine.
    statement = SEED_CREATE_MODEL.replace(SEED_ENDPOINT, f"{triton.http_endpoint}/v2/models")

    execute_sql(t_env, statement)
    rows = list(execute_sql(t_env, "SELECT id, my_triton_model(id) FROM src").collect())

    assert "my_triton_model" in model_names(t_env)  # Flink's catalog holds the model too
    assert_one_shot_sequences_per_subtask([(r[0], json.loads(r[1])) for r in rows], 300, 3)


def test_the_sql_example_file_runs_against_the_server(triton, t_env):
    script = (SQL_DIR / "seed_example.sql").read_text()
    script = script.replace("http://localhost:8000", triton.http_endpoint)
    t_env.get_config().set("parallelism.default", "2")

    rows = list(execute_sql(t_env, script).collect())

    assert_one_shot_sequences_per_subtask([(r[0], json.loads(r[1])) for r in rows], 10, 2)


def test_input_and_output_clauses_if_not_exists_and_several_statements(triton, t_env):
    script = f"""
        /* a model whose columns are declared: nothing is fetched at registration */
        CREATE TEMPORARY MODEL IF NOT EXISTS add_one
          INPUT (x DOUBLE COMMENT 'tensor x')
          OUTPUT (y DOUBLE)
          COMMENT 'y = x + 1'
          WITH ('provider' = 'triton', 'endpoint' = '{triton.http_endpoint}',
                'model-name' = 'add_one');
        CREATE TEMPORARY MODEL IF NOT EXISTS add_one  -- a second time is a no-op
          INPUT (x DOUBLE) OUTPUT (y DOUBLE)
          WITH ('provider' = 'triton', 'endpoint' = '{triton.http_endpoint}',
                'model-name' = 'add_one');
        CREATE TEMPORARY VIEW numbers AS SELECT * FROM (VALUES (1.0), (2.5)) AS t(x);
        SELECT x, add_one(x) AS y FROM numbers
    """
    rows = list(execute_sql(t_env, script).collect())
    assert sorted((r[0], r[1]) for r in rows) == [(1.0, 2.0), (2.5, 3.5)]


def test_invalid_create_model_fails_before_anything_is_stored(triton, t_env):
    statement = SEED_CREATE_MODEL.replace(SEED_ENDPOINT, triton.http_endpoint).replace(
        "'sequence-end' = 'true'", "'sequence-end' = 'false'")
    with pytest.raises(TritonConfigError, match="'sequence-end' = 'true'"):
        execute_sql(t_env, statement)
    assert "my_triton_model" not in model_names(t_env)
    assert "my_triton_model" not in t_env.list_user_defined_functions()


def test_a_model_of_another_provider_goes_to_flink_unchanged(t_env):
    execute_sql(t_env, "CREATE MODEL other INPUT (a STRING) OUTPUT (b STRING) "
                       "WITH ('provider' = 'openai', 'endpoint' = 'x')")
    assert "other" in model_names(t_env)
    assert "other" not in t_env.list_user_defined_functions()


def test_a_model_cannot_silently_replace_an_existing_function(triton, t_env):
    create = (f"CREATE TEMPORARY MODEL add_one INPUT (x DOUBLE) OUTPUT (y DOUBLE) WITH "
              f"('provider' = 'triton', 'endpoint' = '{triton.http_endpoint}', "
              f"'model-name' = 'add_one')")
    t_env.create_temporary_function("add_one", _noop_udf())
    with pytest.raises(TritonConfigError, match="a function named 'add_one' already exists"):
        execute_sql(t_env, create)


def _noop_udf():
    from pyflink.table import DataTypes
    from pyflink.table.udf import udf

    return udf(lambda x: x, result_type=DataTypes.DOUBLE())


@pytest.mark.parametrize("mode", ["sync", "async", "vectorized"])
def test_error_fields_route_failed_rows_to_a_side_table(triton, t_env, mode):
    """Every third row has a NULL input, which fails its record ('null-input' = 'fail'): with
    'error-fields' those rows come out with ok = false and the reason, the others with their
    prediction, and a statement set writes the two kinds to two tables."""
    sequence_source(t_env, 30)
    execute_sql(t_env, f"""
        CREATE MODEL scorer INPUT (x DOUBLE) OUTPUT (y DOUBLE) WITH (
          'provider' = 'triton', 'endpoint' = '{triton.http_endpoint}',
          'model-name' = 'add_one', 'mode' = '{mode}',
          'error-fields' = 'true', 'default-value' = '-1');
        CREATE TEMPORARY VIEW scored AS
          SELECT id, scorer(CASE WHEN MOD(id, 3) = 0 THEN NULL ELSE CAST(id AS DOUBLE) END) AS r
          FROM src""")
    rows = {r[0]: (r[1], r[2], r[3]) for r in execute_sql(
        t_env, "SELECT id, r.y, r.ok, r.error FROM scored").collect()}
    assert sorted(rows) == list(range(1, 31))
    for i, (y, ok, error) in rows.items():
        if i % 3:
            assert (y, ok, error) == (i + 1.0, True, None)
        elif mode == "vectorized":
            # PyFlink hands a NULL DOUBLE to a pandas UDF as NaN (a value: sent), and turns the
            # NaN result into NULL (docs/modes.md).
            assert (y, ok, error) == (None, True, None)
        else:
            assert (y, ok) == (-1.0, False)
            assert "are NULL" in error and "'add_one'" in error
