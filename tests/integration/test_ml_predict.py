"""ML_PREDICT written for Flink's Java 'triton' provider, run unchanged through execute_sql on
the mini-cluster against the real Triton: columns, values, and Triton's own count of
inferences (its statistics endpoint), which proves one model call per row."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyflink.table import DataTypes

from pyflink_triton import TritonConfigError, execute_sql, ml_predict
from pyflink_triton.sql.client import export_for_sql_client

from cluster_jobs.plain_sql import run_sql_client_file
from jobs import (
    SEED_CREATE_MODEL,
    SEED_ENDPOINT,
    assert_one_shot_sequences_per_subtask,
    sequence_source,
)

ROWS = [  # id, vals, Count (a column named like one of the model's outputs), label
    (1, [1.0, 2.0], "a", "ab"),
    (2, [0.5], "b", "Flink"),
    (3, [1.0, 1.0, 1.0], "c", "ünï"),
    (4, [], "d", ""),
    (5, [2.5, -0.5], "e", "x"),
]
ASYNC_KEY = "table.exec.async-scalar.max-concurrent-operations"


def row_type(**fields):
    return DataTypes.ROW([DataTypes.FIELD(name, data_type) for name, data_type in fields.items()])


def inference_count(triton, model: str) -> int:
    """How many inferences (batch rows) Triton's statistics endpoint counts for ``model``."""
    with urllib.request.urlopen(f"{triton.http_endpoint}/v2/models/{model}/stats") as answer:
        return sum(s["inference_count"] for s in json.load(answer)["model_stats"])


@pytest.fixture
def counted(triton) -> Iterator:
    """``counted(model)``: the inferences Triton made for ``model`` since the test began."""
    before: dict[str, int] = {}

    def since(model: str) -> int:
        return inference_count(triton, model) - before[model]

    for model in ("multi_io", "my_stateful_model", "add_one"):
        before[model] = inference_count(triton, model)
    yield since


@pytest.fixture
def multi_io(triton, t_env):
    """The table ``src`` of ROWS and the three-output model ``m`` (multi_io),
    whose INPUT names differ from the table's columns and whose OUTPUT 'Count' clashes with
    the table's column 'Count'."""
    t_env.create_temporary_view("src", t_env.from_elements(ROWS, row_type(
        id=DataTypes.BIGINT(), vals=DataTypes.ARRAY(DataTypes.FLOAT()),
        Count=DataTypes.STRING(), label=DataTypes.STRING())))
    execute_sql(t_env, f"""
        CREATE TEMPORARY MODEL m
          INPUT (`values` ARRAY<FLOAT>, Label STRING)
          OUTPUT (TOTAL DOUBLE, label_Upper STRING, `Count` BIGINT)
          WITH ('provider' = 'triton', 'endpoint' = '{triton.http_endpoint}',
                'model-name' = 'multi_io')""")
    return t_env


def expected_multi_io(rows=ROWS) -> list[tuple]:
    return sorted((i, vals, count, label, sum(vals), label.upper(), len(vals))
                  for i, vals, count, label in rows)


def plain(row) -> tuple:
    return tuple(list(v) if isinstance(v, list | tuple) else v for v in row)


def collected(result) -> list[tuple]:
    return sorted(plain(row) for row in result.collect())


def names(result) -> list[str]:
    return result.get_table_schema().get_field_names()


def test_the_seed_create_model_and_ml_predict_run_unchanged(triton, t_env, counted):
    t_env.get_config().set("parallelism.default", "2")
    sequence_source(t_env, 60, name="readings")
    endpoint = f"{triton.http_endpoint}/v2/models"
    execute_sql(t_env, SEED_CREATE_MODEL.replace(SEED_ENDPOINT, endpoint))

    result = execute_sql(
        t_env, "SELECT * FROM ML_PREDICT(TABLE readings, MODEL my_triton_model, DESCRIPTOR(id))")

    assert names(result) == ["id", "OUTPUT0"]
    rows = [(r[0], json.loads(r[1])) for r in result.collect()]
    assert_one_shot_sequences_per_subtask(rows, 60, 2)
    assert counted("my_stateful_model") == 60


def test_a_wrapped_call_with_several_outputs_calls_the_model_once_per_row(multi_io, counted):
    """TABLE(ML_PREDICT(...)); DESCRIPTOR names differ from the model's inputs; the output
    'Count' clashes with an input column and becomes Count0; a ROW-valued Python call whose
    fields are selected is planned once per row."""
    result = execute_sql(multi_io, "SELECT * FROM TABLE(ML_PREDICT(TABLE src, MODEL m, "
                                   "DESCRIPTOR(vals, label)))")

    assert names(result) == ["id", "vals", "Count", "label", "TOTAL", "label_Upper", "Count0"]
    assert collected(result) == expected_multi_io()
    assert counted("multi_io") == len(ROWS)


def test_named_arguments_with_async_config_over_a_cte_with_where_and_projection(
        multi_io, counted):
    result = execute_sql(multi_io, """
        WITH labelled AS (SELECT id, vals, label AS name FROM src WHERE id > 1)
        SELECT id, `Count` AS n, label_Upper
        FROM ML_PREDICT(
          INPUT => TABLE labelled, MODEL => MODEL m, ARGS => DESCRIPTOR(vals, name),
          CONFIG => MAP['async', 'true', 'max-concurrent-operations', '3', 'timeout', '20 s'])
        WHERE label_Upper <> ''""")

    # labelled has no column 'Count': the model's output keeps its name; the query renames it
    assert names(result) == ["id", "n", "label_Upper"]
    assert collected(result) == [(2, 1, "FLINK"), (3, 3, "ÜNÏ"), (5, 2, "X")]
    assert counted("multi_io") == 4  # one per row of the CTE, the WHERE comes after
    # The statement's async bound was PyFlink's setting while it ran; the table config no
    # longer holds it after (an async model's own bound would be back in force).
    assert not multi_io.get_config().get_configuration().contains_key(ASYNC_KEY)


def test_insert_into_from_ml_predict_over_a_view(multi_io, counted, tmp_path: Path):
    sink = tmp_path / "sink"
    execute_sql(multi_io, f"""
        CREATE TEMPORARY VIEW short_rows AS SELECT * FROM src WHERE CARDINALITY(vals) < 3;
        CREATE TEMPORARY TABLE totals (id BIGINT, total DOUBLE, n BIGINT) WITH (
          'connector' = 'filesystem', 'path' = '{sink}', 'format' = 'json');
        INSERT INTO totals
        SELECT id, TOTAL, Count0 FROM ML_PREDICT(TABLE short_rows, MODEL m,
                                                 DESCRIPTOR(vals, label))""").wait()

    written = sorted(tuple(json.loads(line).values())
                     for path in sink.rglob("*") if path.is_file() and not path.name.startswith(".")
                     for line in path.read_text().splitlines())
    assert written == [(1, 3.0, 2), (2, 0.5, 1), (4, 0.0, 0), (5, 2.0, 2)]
    assert counted("multi_io") == 4


def test_one_model_in_two_calls_with_different_config_in_one_statement(multi_io, counted):
    """An async and a sync call of one model, each with its own function: neither takes the
    other's settings, and every row of each is answered."""
    result = execute_sql(multi_io, """
        SELECT id, TOTAL, 'async' AS how FROM ML_PREDICT(TABLE src, MODEL m,
            DESCRIPTOR(vals, label), MAP['async', 'true', 'max-concurrent-operations', '2'])
        UNION ALL
        SELECT id, TOTAL, 'sync' AS how FROM ML_PREDICT(TABLE src, MODEL m,
            DESCRIPTOR(vals, label), MAP['async', 'false', 'max-retries', '1'])""")

    rows = collected(result)
    expected = sorted((i, sum(v), how) for i, v, _, _ in ROWS for how in ("async", "sync"))
    assert rows == expected
    assert counted("multi_io") == 2 * len(ROWS)
    functions = multi_io.list_user_defined_functions()
    assert {"m_ml_predict_1", "m_ml_predict_2"} <= set(functions)


def test_the_table_api_form_gives_the_table_ml_predict_gives(multi_io, counted):
    table = ml_predict(multi_io.from_path("src"), "m", ["vals", "label"], {"async": "true"})

    assert table.get_schema().get_field_names() == [
        "id", "vals", "Count", "label", "TOTAL", "label_Upper", "Count0"]
    assert collected(table.execute()) == expected_multi_io()
    assert counted("multi_io") == len(ROWS)


def generated_source(t_env, rows: int) -> None:
    """A datagen table ``gen`` of ``rows`` rows (pandas UDFs fail on VALUES sources)."""
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE gen (id BIGINT, vals ARRAY<FLOAT>, label STRING) WITH (
          'connector' = 'datagen', 'number-of-rows' = '{rows}', 'fields.id.kind' = 'sequence',
          'fields.id.start' = '1', 'fields.id.end' = '{rows}', 'fields.label.length' = '4',
          'fields.vals.element.min' = '0', 'fields.vals.element.max' = '10')""")


def assert_multi_io_rows(rows, count: int) -> None:
    """Rows of (id, vals, label, TOTAL, label_Upper, Count) answered by multi_io."""
    assert sorted(r[0] for r in rows) == list(range(1, count + 1))
    for _, vals, label, total, upper, n in rows:
        assert total == pytest.approx(sum(vals)) and upper == label.upper() and n == len(vals)


MULTI_IO_MODEL = """
    CREATE TEMPORARY MODEL m
      INPUT (`values` ARRAY<FLOAT>, Label STRING)
      OUTPUT (TOTAL DOUBLE, label_Upper STRING, `Count` BIGINT)
      WITH ('provider' = 'triton', 'endpoint' = '{endpoint}', 'model-name' = 'multi_io'{more})"""


def test_a_vectorized_model_with_several_outputs_is_called_once_per_row(triton, t_env, counted):
    generated_source(t_env, 300)
    execute_sql(t_env, MULTI_IO_MODEL.format(endpoint=triton.http_endpoint,
                                             more=", 'mode' = 'vectorized'"))

    # 'async' = 'false' keeps a vectorized model vectorized (it is synchronous)
    result = execute_sql(t_env, "SELECT * FROM ML_PREDICT(TABLE gen, MODEL m, "
                                "DESCRIPTOR(vals, label), MAP['async', 'false'])")

    assert names(result) == ["id", "vals", "label", "TOTAL", "label_Upper", "Count"]
    assert_multi_io_rows([plain(r) for r in result.collect()], 300)
    assert counted("multi_io") == 300


def test_sql_client_files_translate_ml_predict_with_a_function_of_its_own(
        triton, t_env, counted, tmp_path, monkeypatch):
    """The rewritten file, run as Flink's SQL client runs it (SET/RESET by the client, every
    other statement by Flink alone): the per-query async function comes from the generated
    module, with the query's bound set before the query and taken back after it."""
    source = MULTI_IO_MODEL.format(endpoint=triton.http_endpoint, more="") + """;
        CREATE TEMPORARY TABLE gen (id BIGINT, vals ARRAY<FLOAT>, label STRING) WITH (
          'connector' = 'datagen', 'number-of-rows' = '50', 'fields.id.kind' = 'sequence',
          'fields.id.start' = '1', 'fields.id.end' = '50', 'fields.label.length' = '4',
          'fields.vals.element.min' = '0', 'fields.vals.element.max' = '10');
        SELECT * FROM ML_PREDICT(TABLE gen, MODEL m, DESCRIPTOR(vals, label),
                                 MAP['async', 'true', 'max-concurrent-operations', '3'])"""

    files = export_for_sql_client(source, "ml_models")

    assert files.functions == ["m", "m_ml_predict_1"]
    for line in ("CREATE TEMPORARY SYSTEM FUNCTION m_ml_predict_1 AS "
                 "'ml_models.m_ml_predict_1' LANGUAGE PYTHON;",
                 f"SET '{ASYNC_KEY}' = '3';", f"RESET '{ASYNC_KEY}';"):
        assert line in files.sql
    assert files.sql.index(f"SET '{ASYNC_KEY}'") < files.sql.index("FROM (SELECT") < \
        files.sql.index(f"RESET '{ASYNC_KEY}'")
    (tmp_path / "ml_models.py").write_text(files.module)
    monkeypatch.syspath_prepend(str(tmp_path))
    t_env.get_config().set("python.files", str(tmp_path / "ml_models.py"))
    result = run_sql_client_file(t_env, files.sql)

    assert names(result) == ["id", "vals", "label", "TOTAL", "label_Upper", "Count"]
    assert_multi_io_rows([plain(r) for r in result.collect()], 50)
    assert counted("multi_io") == 50


def test_an_implicit_cast_is_inserted_where_the_column_type_differs(triton, t_env, counted):
    t_env.create_temporary_view("ints", t_env.from_elements(
        [(1, 2), (2, 40)], row_type(k=DataTypes.INT(), x=DataTypes.INT())))
    execute_sql(t_env, f"""
        CREATE TEMPORARY MODEL plus_one INPUT (v DOUBLE) OUTPUT (x DOUBLE)
        WITH ('provider' = 'triton', 'endpoint' = '{triton.http_endpoint}',
              'model-name' = 'add_one', 'input-names' = 'x', 'output-names' = 'y')""")

    result = execute_sql(t_env, "SELECT * FROM ML_PREDICT(TABLE ints, MODEL plus_one, "
                                "DESCRIPTOR(x))")

    assert names(result) == ["k", "x", "x0"]
    assert collected(result) == [(1, 2, 3.0), (2, 40, 41.0)]
    assert counted("add_one") == 2


@pytest.mark.parametrize("query, message", [
    ("SELECT * FROM ML_PREDICT(TABLE src, MODEL m, DESCRIPTOR(vals))",
     r"ML_PREDICT of model 'm' over src with DESCRIPTOR\(vals\): Number of descriptor input "
     r"columns \(1\) does not match model input size \(2\)"),
    ("SELECT * FROM ML_PREDICT(TABLE src, MODEL m, DESCRIPTOR(vals, nope))",
     r"Column 'nope' is not a column of the input table src \(id, vals, Count, label\)"),
    ("SELECT * FROM ML_PREDICT(TABLE src, MODEL m, DESCRIPTOR(vals, id))",
     r"Descriptor column type BIGINT cannot be assigned to model input type STRING at "
     r"position 1 \(column 'id', model input 'Label'\)"),
    ("SELECT * FROM ML_PREDICT(TABLE nowhere, MODEL m, DESCRIPTOR(a, b))",
     r"ML_PREDICT of model 'm': the input table nowhere cannot be read: .*'nowhere' not found"),
    ("SELECT * FROM ML_PREDICT(TABLE src, MODEL m, DESCRIPTOR(vals, label), MAP['asynch', "
     "'true'])", r"CONFIG key 'asynch' is neither .* Accepted: Flink's 'async'"),
    ("SELECT * FROM ML_PREDICT(TABLE src, MODEL m, DESCRIPTOR(vals, label), MAP['async', "
     "'yes'])", r"Invalid runtime config option 'async' = 'yes'"),
    ("SELECT * FROM ML_PREDICT(TABLE src, MODEL m, DESCRIPTOR(vals, label), MAP['async', true])",
     r"ML_PREDICT of model 'm': ML_PREDICT config param can only be a MAP of string literals"),
    ("SELECT * FROM ML_PREDICT(TABLE counts, MODEL m, DESCRIPTOR(vals, label))",
     r"ML_PREDICT of model 'm' doesn't support consuming update and delete changes, which "
     r"its input table counts produces"),
])
def test_errors_name_the_model_and_columns_as_flinks_do(multi_io, query, message):
    multi_io.execute_sql("CREATE TEMPORARY VIEW counts AS "
                         "SELECT label, COLLECT(vals) AS vals FROM src GROUP BY label")
    with pytest.raises(TritonConfigError, match=message):
        execute_sql(multi_io, query)


def test_another_providers_model_goes_to_flink_and_a_missing_model_is_named(t_env):
    t_env.create_temporary_view("src", t_env.from_elements([(1,)],
                                                           row_type(id=DataTypes.BIGINT())))
    execute_sql(t_env, "CREATE TEMPORARY MODEL other INPUT (a BIGINT) OUTPUT (b STRING) "
                       "WITH ('provider' = 'openai', 'endpoint' = 'x')")
    with pytest.raises(Exception, match="Unable to create a model provider for model"):
        execute_sql(t_env, "SELECT * FROM ML_PREDICT(TABLE src, MODEL other, DESCRIPTOR(id))")
    with pytest.raises(TritonConfigError, match=(
            r"ML_PREDICT of model 'missing' over src with DESCRIPTOR\(id\): the model does not "
            r"exist \(.*missing' doesn't exist")):
        execute_sql(t_env, "SELECT * FROM ML_PREDICT(TABLE src, MODEL missing, DESCRIPTOR(id))")


def test_an_async_model_with_a_bound_of_its_own_in_config_and_in_a_view(triton, t_env,
                                                                        counted):
    """An async model's ML_PREDICT may set its own bound for one query; a view's async call
    sets the environment's bound, since the queries reading the view run later."""
    t_env.create_temporary_view("src", t_env.from_elements(ROWS, row_type(
        id=DataTypes.BIGINT(), vals=DataTypes.ARRAY(DataTypes.FLOAT()),
        Count=DataTypes.STRING(), label=DataTypes.STRING())))
    execute_sql(t_env, MULTI_IO_MODEL.format(
        endpoint=triton.http_endpoint,
        more=", 'mode' = 'async', 'max-concurrent-requests' = '4'"))
    totals = sorted((i, sum(v)) for i, v, _, _ in ROWS)

    result = execute_sql(t_env, "SELECT id, TOTAL FROM ML_PREDICT(TABLE src, MODEL m, "
                                "DESCRIPTOR(vals, label), MAP['max-concurrent-operations', '2'])")
    assert collected(result) == totals

    with pytest.raises(TritonConfigError, match=r"one bound on calls in flight"):
        execute_sql(t_env, "CREATE TEMPORARY VIEW narrow AS SELECT * FROM ML_PREDICT(TABLE src, "
                           "MODEL m, DESCRIPTOR(vals, label), "
                           "MAP['max-concurrent-operations', '2'])")
    execute_sql(t_env, "CREATE TEMPORARY VIEW predicted AS SELECT * FROM ML_PREDICT(TABLE src, "
                       "MODEL m, DESCRIPTOR(vals, label), MAP['max-retries', '1'])")
    assert t_env.get_config().get(ASYNC_KEY, None) == "4"
    assert t_env.get_config().get("table.exec.async-scalar.retry-strategy", None) == "NO_RETRY"
    assert collected(execute_sql(t_env, "SELECT id, TOTAL FROM predicted")) == totals
    assert counted("multi_io") == 2 * len(ROWS)


def test_error_fields_give_ok_and_error_columns(multi_io, counted):
    result = execute_sql(multi_io, "SELECT * FROM ML_PREDICT(TABLE src, MODEL m, "
                                   "DESCRIPTOR(vals, label), MAP['error-fields', 'true'])")

    assert names(result) == ["id", "vals", "Count", "label", "TOTAL", "label_Upper", "Count0",
                             "ok", "error"]
    assert collected(result) == [(*row, True, None) for row in expected_multi_io()]
    assert counted("multi_io") == len(ROWS)


def test_a_dropped_model_can_be_created_again_and_alter_is_refused(triton, t_env, counted):
    t_env.create_temporary_view("xs", t_env.from_elements(
        [(1.0,), (2.5,)], row_type(x=DataTypes.DOUBLE())))
    create = ("CREATE TEMPORARY MODEL IF NOT EXISTS plus INPUT (x DOUBLE) OUTPUT (y DOUBLE) "
              f"WITH ('provider' = 'triton', 'endpoint' = '{triton.http_endpoint}', "
              "'model-name' = 'add_one')")
    query = "SELECT * FROM ML_PREDICT(TABLE xs, MODEL plus, DESCRIPTOR(x))"
    execute_sql(t_env, create)

    with pytest.raises(TritonConfigError, match="ALTER MODEL of the Triton model 'plus'"):
        execute_sql(t_env, "ALTER MODEL plus SET ('model-name' = 'identity_fp64')")
    execute_sql(t_env, "DROP TEMPORARY MODEL plus")
    assert "plus" not in t_env.list_user_defined_functions()
    with pytest.raises(TritonConfigError, match="the model does not exist"):
        execute_sql(t_env, query)
    execute_sql(t_env, create)  # IF NOT EXISTS: the model, and its function, come back

    assert collected(execute_sql(t_env, query)) == [(1.0, 2.0), (2.5, 3.5)]
    assert counted("add_one") == 2
