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


def test_ml_predict_of_a_model_that_is_not_tritons_goes_to_flink(t_env):
    t_env.create_temporary_view("src", t_env.from_elements([(1,)],
                                                           row_type(id=DataTypes.BIGINT())))
    execute_sql(t_env, "CREATE TEMPORARY MODEL other INPUT (a BIGINT) OUTPUT (b STRING) "
                       "WITH ('provider' = 'openai', 'endpoint' = 'x')")
    for model, flink_says in (("other", "Unable to create a model provider for model"),
                              ("missing", "Object 'missing' not found")):
        with pytest.raises(Exception, match=flink_says):
            execute_sql(t_env, f"SELECT * FROM ML_PREDICT(TABLE src, MODEL {model}, "
                               "DESCRIPTOR(id))")
