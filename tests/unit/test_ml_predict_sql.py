"""Unit tests of the ML_PREDICT translation's pure parts: reading the calls and CTEs of a
statement (pyflink_triton.sql.ml_predict), Flink's column checks, clash names and the SQL
that replaces a call (pyflink_triton.sql.predict_plan), and the CONFIG map turned into the
function's options (pyflink_triton.sql.predict_config). No JVM: PyFlink's types are plain
Python objects."""

from __future__ import annotations

import pytest
from pyflink.table.types import DataType, DataTypes

from pyflink_triton.errors import TritonConfigError
from pyflink_triton.sql.ml_predict import (
    CommonTableExpression,
    PredictCall,
    common_table_expressions,
    input_ctes,
    predict_calls,
)
from pyflink_triton.sql.predict_config import function_options
from pyflink_triton.sql.predict_plan import (
    Column,
    PredictQuery,
    argument_columns,
    may_change_values,
    projection,
    quote,
    result_columns,
    supports_implicit_cast,
    unique_output_names,
)
from pyflink_triton.sql.tokens import split_statements

# --- ml_predict: predict_calls ----------------------------------------------------------------


def statement(sql: str, index: int = 0) -> tuple[str, list[PredictCall]]:
    """The statement's text and its calls."""
    text, tokens = split_statements(sql)[index]
    return text, predict_calls(text, tokens)


def one_call(sql: str) -> tuple[str, PredictCall]:
    text, calls = statement(sql)
    assert len(calls) == 1, calls
    return text, calls[0]


def test_positional_call() -> None:
    text, call = one_call("SELECT * FROM ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a, b))")
    assert call == PredictCall(
        start=text.index("ML_PREDICT"), end=len(text), model=("m",), model_text="m",
        table=("t",), table_text="t", columns=("a", "b"), config={}, problem=None)
    assert text[call.start:call.end] == "ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a, b))"


def test_positional_call_with_config_map() -> None:
    _, call = one_call("SELECT * FROM ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a), "
                       "MAP['async', 'true', 'timeout', '10 s', 'k''q', ''])")
    assert call.problem is None
    assert call.columns == ("a",)
    # In order, unquoted ('' is an escaped quote), an empty value kept.
    assert list(call.config.items()) == [("async", "true"), ("timeout", "10 s"), ("k'q", "")]


def test_empty_config_map() -> None:
    _, call = one_call("SELECT * FROM ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a), MAP[])")
    assert call.problem is None
    assert call.config == {}


def test_table_wrapper_is_part_of_the_call() -> None:
    sql = ("SELECT * FROM TABLE(ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a), MAP['k', 'v'])) "
           "AS p WHERE p.a > 0")
    text, call = one_call(sql)
    assert text[call.start:call.end] == (
        "TABLE(ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a), MAP['k', 'v']))")
    assert (call.model, call.table, call.columns, call.config) == (
        ("m",), ("t",), ("a",), {"k": "v"})


def test_table_wrapper_with_spaces() -> None:
    text, call = one_call("SELECT * FROM TABLE ( ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a)) )")
    assert text[call.start:call.end] == "TABLE ( ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a)) )"


def test_a_parenthesis_before_the_call_without_table_is_not_a_wrapper() -> None:
    text, call = one_call("SELECT * FROM (ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a)))")
    assert text[call.start:call.end] == "ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a))"


@pytest.mark.parametrize("operands", [
    "INPUT => TABLE t, MODEL => MODEL m, ARGS => DESCRIPTOR(x), CONFIG => MAP['k', 'v']",
    "CONFIG => MAP['k', 'v'], ARGS => DESCRIPTOR(x), MODEL => MODEL m, INPUT => TABLE t",
    "model => model m, input => table t, config => map['k', 'v'], args => descriptor(x)",
    "Args=>Descriptor(x), Input=>Table t, Config=>Map['k', 'v'], Model=>Model m",
])
def test_named_operands_in_any_order_and_case(operands: str) -> None:
    text, call = one_call(f"SELECT * FROM ml_predict({operands})")
    assert call.problem is None
    assert (call.model, call.model_text, call.table, call.table_text) == (("m",), "m", ("t",), "t")
    assert call.columns == ("x",)
    assert call.config == {"k": "v"}
    assert (call.start, call.end) == (text.index("ml_predict"), len(text))


def test_named_operands_without_config() -> None:
    _, call = one_call("SELECT * FROM ML_PREDICT(MODEL => MODEL m, INPUT => TABLE t, "
                       "ARGS => DESCRIPTOR(x, y))")
    assert call.problem is None
    assert (call.model, call.table, call.columns, call.config) == (("m",), ("t",), ("x", "y"), {})


def test_positional_keywords_in_any_case() -> None:
    _, call = one_call("select * from Ml_Predict(table t, model m, descriptor(a), map['k', 'v'])")
    assert call.problem is None
    assert (call.model, call.table, call.columns, call.config) == (
        ("m",), ("t",), ("a",), {"k": "v"})


def test_qualified_names() -> None:
    _, call = one_call("SELECT * FROM ML_PREDICT(TABLE db.t, MODEL cat.db.m, DESCRIPTOR(a))")
    assert (call.model, call.model_text) == (("cat", "db", "m"), "cat.db.m")
    assert (call.table, call.table_text) == (("db", "t"), "db.t")


def test_quoted_names_are_unquoted_in_the_parts_and_kept_as_written_in_the_text() -> None:
    _, call = one_call("SELECT * FROM ML_PREDICT(TABLE `my db`.`t``x`, "
                       "MODEL `my-cat`.db.`my model`, DESCRIPTOR(`col a`, b))")
    assert call.problem is None
    assert call.model == ("my-cat", "db", "my model")
    assert call.model_text == "`my-cat`.db.`my model`"
    assert call.table == ("my db", "t`x")
    assert call.table_text == "`my db`.`t``x`"
    assert call.columns == ("col a", "b")


def test_descriptor_takes_the_last_part_of_a_qualified_column() -> None:
    _, call = one_call("SELECT * FROM ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(t.a, db.t.`b`))")
    assert call.columns == ("a", "b")


def test_several_calls_in_one_statement() -> None:
    sql = ("SELECT * FROM ML_PREDICT(TABLE t1, MODEL m1, DESCRIPTOR(a)) "
           "UNION ALL SELECT * FROM TABLE(ML_PREDICT(TABLE t2, MODEL db.m2, DESCRIPTOR(b), "
           "MAP['async', 'false'])) "
           "UNION ALL SELECT * FROM ML_PREDICT(TABLE t3, MODEL m3)")
    text, calls = statement(sql)
    assert [call.model for call in calls] == [("m1",), ("db", "m2"), ("m3",)]
    assert [text[call.start:call.end] for call in calls] == [
        "ML_PREDICT(TABLE t1, MODEL m1, DESCRIPTOR(a))",
        "TABLE(ML_PREDICT(TABLE t2, MODEL db.m2, DESCRIPTOR(b), MAP['async', 'false']))",
        "ML_PREDICT(TABLE t3, MODEL m3)",
    ]
    assert [call.table for call in calls[:2]] == [("t1",), ("t2",)]
    assert calls[1].config == {"async": "false"}
    assert [call.problem is None for call in calls] == [True, True, False]


def test_offsets_are_relative_to_the_statement_not_the_script() -> None:
    sql = ("CREATE TABLE s (a INT) WITH ('connector' = 'datagen');\n"
           "INSERT INTO k SELECT * FROM ML_PREDICT(TABLE s, MODEL m, DESCRIPTOR(a));")
    text, calls = statement(sql, 1)
    assert text.startswith("INSERT")
    assert [text[call.start:call.end] for call in calls] == [
        "ML_PREDICT(TABLE s, MODEL m, DESCRIPTOR(a))"]


def test_call_inside_a_cte() -> None:
    sql = ("WITH p AS (SELECT * FROM TABLE(ML_PREDICT(TABLE src, MODEL m, DESCRIPTOR(a)))) "
           "SELECT * FROM p")
    text, call = one_call(sql)
    assert text[call.start:call.end] == "TABLE(ML_PREDICT(TABLE src, MODEL m, DESCRIPTOR(a)))"
    assert (call.model, call.table, call.columns) == (("m",), ("src",), ("a",))


@pytest.mark.parametrize("sql", [
    "SELECT 'ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a))' FROM t",
    "SELECT a FROM t -- ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a))",
    "SELECT a FROM t /* ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a)) */",
    "SELECT `ML_PREDICT(` FROM t",
    "SELECT ml_predict FROM t",  # a column of that name: no call
])
def test_no_call_outside_the_code(sql: str) -> None:
    assert statement(sql)[1] == []


def test_a_call_after_a_literal_mentioning_ml_predict() -> None:
    text, call = one_call("SELECT 'ML_PREDICT(' AS s, p.* "
                          "FROM ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a)) AS p")
    assert text[call.start:call.end] == "ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a))"
    assert call.problem is None


PROBLEMS = [
    pytest.param("TABLE t, MODEL m", ("m",), "takes 3 or 4 operands", id="two-operands"),
    pytest.param("TABLE t, MODEL m, DESCRIPTOR(a), MAP['k', 'v'], 'x'", ("m",),
                 "not 5", id="five-operands"),
    pytest.param("", None, "not 0", id="no-operands"),
    pytest.param("TABLE t, MODEL => MODEL m, ARGS => DESCRIPTOR(a)", ("m",),
                 "partly by name and partly by position", id="mixed"),
    pytest.param("INPUT => TABLE t, MODEL => MODEL m, COLUMNS => DESCRIPTOR(a)", ("m",),
                 "'COLUMNS' is not a parameter of ML_PREDICT (INPUT, MODEL, ARGS, CONFIG)",
                 id="unknown-parameter"),
    pytest.param("INPUT => TABLE t, MODEL => MODEL m, ARGS => DESCRIPTOR(a), "
                 "input => TABLE u", ("m",), "the parameter INPUT is given twice",
                 id="duplicate-parameter"),
    pytest.param("INPUT => TABLE t, MODEL => MODEL m, CONFIG => MAP['k', 'v']", ("m",),
                 "no ARGS operand", id="no-args"),
    pytest.param("TABLE t, MODEL m, DESCRIPTOR(a), MAP['async', true]", ("m",),
                 "MAP of string literals, as in MAP['async', 'true']; the value of 'async' is "
                 "not one",
                 id="boolean-in-map"),
    pytest.param("TABLE t, MODEL m, DESCRIPTOR(a), MAP['max-retries', 3]", ("m",),
                 "MAP of string literals", id="number-in-map"),
    pytest.param("TABLE t, MODEL m, DESCRIPTOR(a), MAP['async', 'true', 'timeout']", ("m",),
                 "found ']'", id="odd-map"),
    pytest.param("TABLE t, MODEL m, DESCRIPTOR(a), MAP['async', 'true', 'async', 'false']",
                 ("m",), "the CONFIG key 'async' is given twice", id="duplicate-config-key"),
    pytest.param("TABLE t, MODEL m, DESCRIPTOR(a), 'async'", ("m",), "expected MAP",
                 id="config-not-a-map"),
    pytest.param("TABLE t, MODEL m, a", ("m",), "expected DESCRIPTOR", id="no-descriptor"),
    pytest.param("TABLE t, MODEL m, DESCRIPTOR()", ("m",), "expected a name",
                 id="empty-descriptor"),
    pytest.param("TABLE t, MODEL m x, DESCRIPTOR(a)", ("m",),
                 "unexpected 'x' after the model's name", id="junk-after-model"),
    pytest.param("MODEL m, TABLE t, DESCRIPTOR(a)", ("m",), "expected MODEL, found 'TABLE'",
                 id="positions-swapped"),
    pytest.param("TABLE t, MODEL cat.`d b`.m", ("cat", "d b", "m"), "takes 3 or 4 operands",
                 id="qualified-model-of-a-problem"),
]


@pytest.mark.parametrize(("operands", "model", "problem"), PROBLEMS)
def test_problem_calls_keep_their_model(operands: str, model: tuple[str, ...] | None,
                                        problem: str) -> None:
    text, call = one_call(f"SELECT * FROM ML_PREDICT({operands}) AS p")
    assert call.problem is not None
    assert problem in call.problem
    assert call.model == model
    assert text[call.start:call.end] == f"ML_PREDICT({operands})"


def test_unclosed_parenthesis() -> None:
    """The call runs to the end of the statement; it still names its model (the module's
    promise: a call that does not read gives its model when it names one)."""
    text, call = one_call("SELECT * FROM ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a) WHERE a > 0")
    assert call.problem is not None
    assert "not closed" in call.problem
    assert text[call.start:call.end] == "ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a) WHERE a > 0"
    assert call.model == ("m",)


def test_a_problem_call_does_not_hide_the_next_call() -> None:
    text, calls = statement("SELECT * FROM ML_PREDICT(TABLE t, MODEL a) "
                            "JOIN ML_PREDICT(TABLE u, MODEL b, DESCRIPTOR(x)) ON true")
    assert [(call.model, call.problem is None) for call in calls] == [
        (("a",), False), (("b",), True)]
    assert text[calls[1].start:calls[1].end] == "ML_PREDICT(TABLE u, MODEL b, DESCRIPTOR(x))"


# --- ml_predict: common_table_expressions ---------------------------------------------------


def ctes(sql: str, index: int = 0) -> tuple[str, list[CommonTableExpression]]:
    text, tokens = split_statements(sql)[index]
    return text, common_table_expressions(text, tokens)


def test_one_cte() -> None:
    text, found = ctes("WITH a AS (SELECT 1 AS x) SELECT * FROM a")
    assert found == [CommonTableExpression("a", text.index("a AS"), text.index(") SELECT") + 1,
                                           0, len(text))]
    assert text[found[0].start:found[0].end] == "a AS (SELECT 1 AS x)"


def test_several_ctes_with_column_lists() -> None:
    sql = ("WITH a (x, y) AS (SELECT 1, (2)), `b c` AS (SELECT * FROM a), "
           "c(z) AS (SELECT x FROM `b c` WHERE y IN (1, 2)) SELECT * FROM c")
    text, found = ctes(sql)
    assert [d.name for d in found] == ["a", "b c", "c"]
    assert {(d.scope_start, d.scope_end) for d in found} == {(0, len(text))}
    assert [text[d.start:d.end] for d in found] == [
        "a (x, y) AS (SELECT 1, (2))",
        "`b c` AS (SELECT * FROM a)",
        "c(z) AS (SELECT x FROM `b c` WHERE y IN (1, 2))",
    ]


def test_cte_with_a_predict_call_and_lowercase_keywords() -> None:
    sql = ("with src as (select * from t), "
           "p as (select * from ml_predict(table src, model m, descriptor(a))) "
           "select * from p")
    text, found = ctes(sql)
    assert [d.name for d in found] == ["src", "p"]
    _, calls = statement(sql)
    # The call in p's body reads src, defined before it in the same WITH clause.
    assert input_ctes(text, split_statements(sql)[0][1], calls[0]) == (
        "WITH src as (select * from t)")


def test_cte_in_the_second_statement_and_in_insert() -> None:
    sql = "SET 'a' = 'b'; INSERT INTO k WITH a AS (SELECT 1) SELECT * FROM a"
    text, found = ctes(sql, 1)
    assert [(d.name, text[d.start:d.end]) for d in found] == [("a", "a AS (SELECT 1)")]


def test_nested_with() -> None:
    sql = "WITH a AS (WITH b AS (SELECT 1) SELECT * FROM b) SELECT * FROM a"
    text, found = ctes(sql)
    assert [(d.name, text[d.start:d.end]) for d in found] == [
        ("a", "a AS (WITH b AS (SELECT 1) SELECT * FROM b)"),
        ("b", "b AS (SELECT 1)"),
    ]
    inner = found[1]
    assert text[inner.scope_start:inner.scope_end] == "WITH b AS (SELECT 1) SELECT * FROM b"


def probe(sql: str) -> str | None:
    text, tokens = split_statements(sql)[0]
    return input_ctes(text, tokens, predict_calls(text, tokens)[-1])


def test_a_cte_out_of_the_calls_scope_is_not_its_input() -> None:
    """A CTE of a subquery is not visible beside it: the call reads the catalog's table."""
    assert probe("SELECT * FROM (WITH src AS (SELECT 1 AS x) SELECT * FROM src) q, "
                 "ML_PREDICT(TABLE src, MODEL m, DESCRIPTOR(x))") is None


def test_a_nested_cte_keeps_the_outer_ones_it_may_read() -> None:
    assert probe("WITH base AS (SELECT 1 AS x) SELECT * FROM (WITH inner_t AS "
                 "(SELECT * FROM base) SELECT * FROM ML_PREDICT(TABLE inner_t, MODEL m, "
                 "DESCRIPTOR(x)))") == (
        "WITH base AS (SELECT 1 AS x), inner_t AS (SELECT * FROM base)")


def test_a_table_that_is_no_cte_has_no_probe_prefix() -> None:
    assert probe("WITH a AS (SELECT 1 AS x) SELECT * FROM ML_PREDICT(TABLE t, MODEL m, "
                 "DESCRIPTOR(x))") is None
    assert probe("WITH t AS (SELECT 1 AS x) SELECT * FROM ML_PREDICT(TABLE db.t, MODEL m, "
                 "DESCRIPTOR(x))") is None


def test_config_values_in_casts_and_no_value_in_messages() -> None:
    _, call = one_call("SELECT * FROM ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a), "
                       "MAP['async', CAST('true' AS STRING), 'timeout', CAST('1 s' AS "
                       "VARCHAR(10))])")
    assert call.problem is None and call.config == {"async": "true", "timeout": "1 s"}
    _, call = one_call("SELECT * FROM ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a), "
                       "MAP['auth-token', sk_live_abc123])")
    assert call.problem is not None and "sk_live_abc123" not in call.problem


@pytest.mark.parametrize("sql", [
    "CREATE TABLE t (a INT) WITH ('connector' = 'datagen')",
    "CREATE TABLE t (a TIMESTAMP(3) WITH LOCAL TIME ZONE) WITH ('connector' = 'datagen')",
    "SELECT 'WITH a AS (SELECT 1)' FROM t",
    "SELECT * FROM t",
])
def test_no_cte(sql: str) -> None:
    assert ctes(sql)[1] == []


def test_unclosed_cte_is_not_a_definition() -> None:
    _, found = ctes("WITH a AS (SELECT 1), b AS (SELECT 2")
    assert [d.name for d in found] == ["a"]


# --- predict_plan ---------------------------------------------------------------------------


@pytest.mark.parametrize(("inputs", "outputs", "names"), [
    (["a", "b", "c"], ["b", "c", "d"], ["b0", "c0", "d"]),  # Flink's own example
    (["y", "y0"], ["y"], ["y1"]),
    (["x"], ["x", "x0"], ["x0", "x00"]),  # the second clashes with the first's new name
    (["a"], ["a0", "a"], ["a0", "a1"]),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ([], ["o"], ["o"]),
])
def test_unique_output_names(inputs: list[str], outputs: list[str], names: list[str]) -> None:
    assert unique_output_names(inputs, outputs) == names


T = DataTypes


@pytest.mark.parametrize(("source", "target", "ok"), [
    (T.INT(), T.BIGINT(), True),
    (T.BIGINT(), T.INT(), False),
    (T.TINYINT(), T.SMALLINT(), True),
    (T.INT(), T.INT(nullable=False), False),
    (T.INT(nullable=False), T.INT(), True),
    (T.INT(nullable=False), T.BIGINT(nullable=False), True),
    (T.VARCHAR(5), T.STRING(), True),
    (T.CHAR(3), T.VARCHAR(5), True),
    (T.VARCHAR(3), T.CHAR(3), False),
    (T.INT(), T.DOUBLE(), True),
    (T.FLOAT(), T.DOUBLE(), True),
    (T.DOUBLE(), T.FLOAT(), False),
    (T.DECIMAL(10, 2), T.DOUBLE(), True),
    (T.DOUBLE(), T.DECIMAL(10, 2), True),  # Flink: every number to DECIMAL
    (T.FLOAT(), T.DECIMAL(10, 2), True),
    (T.BIGINT(), T.DECIMAL(20, 0), True),
    (T.ARRAY(T.INT()), T.ARRAY(T.BIGINT()), True),
    (T.ARRAY(T.BIGINT()), T.ARRAY(T.INT()), False),
    (T.ARRAY(T.INT()), T.ARRAY(T.INT(nullable=False)), False),
    (T.ARRAY(T.FLOAT()), T.ARRAY(T.FLOAT(), nullable=False), False),
    (T.MAP(T.STRING(), T.INT()), T.MAP(T.STRING(), T.BIGINT()), True),
    (T.MAP(T.STRING(), T.BIGINT()), T.MAP(T.STRING(), T.INT()), False),
    (T.ROW([T.FIELD("a", T.INT())]), T.ROW([T.FIELD("a", T.BIGINT())]), True),
    (T.ROW([T.FIELD("a", T.INT())]), T.ROW([T.FIELD("a", T.INT()), T.FIELD("b", T.INT())]),
     False),
    (T.BINARY(3), T.VARBINARY(5), True),
    (T.TIMESTAMP(3), T.TIMESTAMP_LTZ(3), True),
    (T.STRING(), T.BIGINT(), False),
    (T.INT(), T.STRING(), False),
    (T.BOOLEAN(), T.INT(), False),
    (T.DATE(), T.TIMESTAMP(3), False),
])
def test_supports_implicit_cast(source: DataType, target: DataType, ok: bool) -> None:
    assert supports_implicit_cast(source, target) is ok


@pytest.mark.parametrize(("source", "target", "changes"), [
    (T.VARCHAR(10), T.VARCHAR(3), True),
    (T.VARCHAR(3), T.STRING(), False),
    (T.CHAR(4), T.VARCHAR(3), True),
    (T.BYTES(), T.VARBINARY(8), True),
    (T.DECIMAL(10, 2), T.DECIMAL(20, 0), True),  # the scale
    (T.DECIMAL(38, 0), T.DECIMAL(20, 0), True),  # the integer digits
    (T.DECIMAL(10, 2), T.DECIMAL(12, 2), False),
    (T.INT(), T.DECIMAL(10, 0), False),
    (T.BIGINT(), T.DECIMAL(18, 0), True),
    (T.DOUBLE(), T.DECIMAL(38, 10), True),
    (T.INT(), T.BIGINT(), False),
    (T.INT(), T.DOUBLE(), False),
    (T.ARRAY(T.VARCHAR(9)), T.ARRAY(T.VARCHAR(2)), True),
    (T.ARRAY(T.INT()), T.ARRAY(T.BIGINT()), False),
])
def test_implicit_casts_that_may_change_a_value(source, target, changes: bool) -> None:
    assert may_change_values(source, target) is changes


def predict_query(table: list[Column], columns: list[str], inputs: list[Column],
                  outputs: list[Column], row_result: bool = False) -> PredictQuery:
    return PredictQuery(
        model="cat.db.m", table_text="src", table=table, columns=columns, model_inputs=inputs,
        model_outputs=outputs, row_result=row_result, function_sql="`__triton_m`")


def test_quote() -> None:
    assert quote("a") == "`a`"
    assert quote("my col") == "`my col`"
    assert quote("a`b") == "`a``b`"


def test_argument_columns_in_descriptor_order() -> None:
    a, b, c = Column("a", T.INT()), Column("b", T.STRING()), Column("c", T.BIGINT())
    query = predict_query([a, b, c], ["c", "a"], [Column("x", T.BIGINT()),
                                                  Column("y", T.BIGINT())], [])
    assert argument_columns(query) == [c, a]


def test_argument_columns_count_mismatch() -> None:
    query = predict_query([Column("a", T.INT()), Column("b", T.INT())], ["a", "b"],
                          [Column("x", T.INT())], [Column("o", T.INT())])
    with pytest.raises(TritonConfigError) as error:
        argument_columns(query)
    message = str(error.value)
    assert "'cat.db.m'" in message
    assert "DESCRIPTOR(a, b)" in message
    assert ("Number of descriptor input columns (2) does not match model input size (1)"
            in message)
    assert "x INT" in message  # the model's inputs


def test_argument_columns_missing_column() -> None:
    query = predict_query([Column("a", T.INT()), Column("b", T.INT())], ["a", "zz"],
                          [Column("x", T.INT()), Column("y", T.INT())], [Column("o", T.INT())])
    with pytest.raises(TritonConfigError) as error:
        argument_columns(query)
    message = str(error.value)
    assert "'cat.db.m'" in message
    assert "Column 'zz' is not a column of the input table src (a, b)" in message


def test_argument_columns_are_case_sensitive() -> None:
    query = predict_query([Column("A", T.INT())], ["a"], [Column("x", T.INT())], [])
    with pytest.raises(TritonConfigError, match="Column 'a' is not a column"):
        argument_columns(query)


@pytest.mark.parametrize(("column", "target", "shown"), [
    (T.STRING(), T.BIGINT(), "STRING cannot be assigned to model input type BIGINT"),
    (T.BIGINT(), T.INT(), "BIGINT cannot be assigned to model input type INT"),
    (T.INT(), T.INT(nullable=False), "INT cannot be assigned to model input type INT NOT NULL"),
    (T.ARRAY(T.DOUBLE()), T.ARRAY(T.FLOAT()),
     "ARRAY<DOUBLE> cannot be assigned to model input type ARRAY<FLOAT>"),
])
def test_argument_columns_type_mismatch(column: DataType, target: DataType, shown: str) -> None:
    query = predict_query([Column("a", T.INT()), Column("b", column)], ["a", "b"],
                          [Column("x", T.INT()), Column("y", target)], [Column("o", T.INT())])
    with pytest.raises(TritonConfigError) as error:
        argument_columns(query)
    message = str(error.value)
    assert f"Descriptor column type {shown} at position 1" in message
    assert "(column 'b', model input 'y')" in message
    assert "'cat.db.m'" in message


def test_projection_of_a_single_output() -> None:
    query = predict_query(
        [Column("a", T.INT()), Column("b", T.STRING(nullable=False)),
         Column("c", T.BIGINT(nullable=False)), Column("out", T.INT())],
        ["b", "a", "c"],
        # a INT -> BIGINT: cast; b STRING NOT NULL -> STRING and c BIGINT NOT NULL -> BIGINT
        # differ only in nullability: no cast.
        [Column("x", T.STRING()), Column("y", T.BIGINT()), Column("z", T.BIGINT())],
        [Column("out", T.ARRAY(T.FLOAT()))])
    assert projection(query) == (
        "(SELECT `a`, `b`, `c`, `out`, "
        "`__triton_m`(`b`, CAST(`a` AS BIGINT), `c`) AS `out0` FROM src)")


def test_projection_casts_to_the_type_without_not_null() -> None:
    query = predict_query([Column("a", T.INT(nullable=False)), Column("v", T.VARCHAR(5))],
                          ["a", "v"],
                          [Column("x", T.BIGINT(nullable=False)), Column("y", T.STRING())],
                          [Column("score", T.FLOAT())])
    assert projection(query) == (
        "(SELECT `a`, `v`, `__triton_m`(CAST(`a` AS BIGINT), CAST(`v` AS STRING)) AS `score` "
        "FROM src)")


def test_projection_quotes_names() -> None:
    query = predict_query([Column("my col", T.FLOAT())], ["my col"], [Column("x", T.FLOAT())],
                          [Column("o`1", T.FLOAT())])
    assert projection(query) == "(SELECT `my col`, `__triton_m`(`my col`) AS `o``1` FROM src)"


def test_projection_of_a_row_result() -> None:
    query = predict_query(
        [Column("a", T.INT()), Column("out", T.STRING())], ["a"], [Column("x", T.INT())],
        [Column("out", T.ARRAY(T.FLOAT())), Column("p", T.FLOAT())], row_result=True)
    assert projection(query) == (
        "(SELECT `__p`.`a`, `__p`.`out`, "
        "`__p`.`__ml_predict`.`out` AS `out0`, `__p`.`__ml_predict`.`p` AS `p` "
        "FROM (SELECT `a`, `out`, `__triton_m`(`a`) AS `__ml_predict` FROM src) AS `__p`)")


def test_projection_of_a_row_result_avoids_the_input_columns_names() -> None:
    query = predict_query(
        [Column("__ml_predict", T.INT()), Column("a", T.INT()), Column("p", T.INT())],
        ["a"], [Column("x", T.BIGINT())], [Column("p", T.FLOAT()), Column("q", T.FLOAT())],
        row_result=True)
    assert projection(query) == (
        "(SELECT `__p`.`__ml_predict`, `__p`.`a`, `__p`.`p`, "
        "`__p`.`__ml_predict1`.`p` AS `p0`, `__p`.`__ml_predict1`.`q` AS `q` "
        "FROM (SELECT `__ml_predict`, `a`, `p`, `__triton_m`(CAST(`a` AS BIGINT)) "
        "AS `__ml_predict1` FROM src) AS `__p`)")


def test_projection_checks_the_columns() -> None:
    query = predict_query([Column("a", T.STRING())], ["a"], [Column("x", T.INT())],
                          [Column("o", T.INT())])
    with pytest.raises(TritonConfigError, match="at position 0"):
        projection(query)


def test_result_columns() -> None:
    a = Column("a", T.INT())
    query = predict_query([a], ["a"], [Column("x", T.INT())],
                          [Column("a", T.FLOAT()), Column("b", T.STRING())])
    assert result_columns(query) == [a, Column("a0", T.FLOAT()), Column("b", T.STRING())]


# --- predict_config: function_options -------------------------------------------------------

OPTIONS = {"provider": "triton", "endpoint": "http://triton:8000", "model-name": "m"}


def options_of(config: dict[str, str], **options: str) -> dict[str, str]:
    return function_options("cat.db.m", config, {**OPTIONS, **options})


def config_error(config: dict[str, str], **options: str) -> str:
    with pytest.raises(TritonConfigError) as error:
        options_of(config, **options)
    message = str(error.value)
    assert "ML_PREDICT of model 'cat.db.m'" in message
    return message


@pytest.mark.parametrize("options", [OPTIONS, {**OPTIONS, "mode": "async"}])
def test_empty_config_keeps_the_options(options: dict[str, str]) -> None:
    given = dict(options)
    assert function_options("m", {}, given) == options
    assert given == options  # not changed in place


def test_config_does_not_change_the_models_options_in_place() -> None:
    given = {**OPTIONS, "mode": "async"}
    function_options("m", {"async": "false", "max-retries": "2"}, given)
    assert given == {**OPTIONS, "mode": "async"}


@pytest.mark.parametrize(("model_mode", "value", "mode"), [
    (None, "true", "async"),
    ("sync", "true", "async"),
    ("sync", "TRUE", "async"),
    ("async", "false", "sync"),
    ("async", " False ", "sync"),
    ("async", "true", "async"),
    ("vectorized", "false", "vectorized"),  # already a batching function
])
def test_async(model_mode: str | None, value: str, mode: str) -> None:
    options = {} if model_mode is None else {"mode": model_mode}
    assert options_of({"async": value}, **options) == {**OPTIONS, "mode": mode}


def test_async_false_on_a_sync_model_changes_nothing() -> None:
    """(so the query runs the model's own function, not a copy of it)"""
    assert options_of({"async": "false"}) == OPTIONS


@pytest.mark.parametrize("value", ["yes", "1", ""])
def test_invalid_async(value: str) -> None:
    message = config_error({"async": value})
    assert f"'async' = '{value}'" in message
    assert "true or false" in message


@pytest.mark.parametrize("mode", ["async", "vectorized"])
def test_max_concurrent_operations(mode: str) -> None:
    assert options_of({"max-concurrent-operations": "4"}, mode=mode) == {
        **OPTIONS, "mode": mode, "max-concurrent-requests": "4"}


def test_max_concurrent_operations_is_ignored_by_the_sync_function() -> None:
    assert options_of({"max-concurrent-operations": "4"}) == OPTIONS
    assert options_of({"max-concurrent-operations": "4"}, mode="sync") == {**OPTIONS,
                                                                           "mode": "sync"}


def test_max_concurrent_operations_applies_after_async_turns_the_function_async() -> None:
    assert options_of({"async": "true", "max-concurrent-operations": "8"}) == {
        **OPTIONS, "mode": "async", "max-concurrent-requests": "8"}


def test_max_concurrent_operations_overrides_the_models_option() -> None:
    assert options_of({"max-concurrent-operations": "8"}, mode="async",
                      **{"max-concurrent-requests": "2"}) == {
        **OPTIONS, "mode": "async", "max-concurrent-requests": "8"}


@pytest.mark.parametrize("value", ["0", "-1", "many", "1.5"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_invalid_max_concurrent_operations(value: str, mode: str) -> None:
    message = config_error({"max-concurrent-operations": value}, mode=mode)
    assert f"'max-concurrent-operations' = '{value}'" in message
    assert "positive integer" in message


@pytest.mark.parametrize("value", ["ORDERED", "ordered", "ALLOW_UNORDERED", "Allow_Unordered"])
def test_output_mode(value: str) -> None:
    assert options_of({"output-mode": value}) == OPTIONS


@pytest.mark.parametrize("value", ["UNORDERED", "", "ORDERED,ALLOW_UNORDERED"])
def test_invalid_output_mode(value: str) -> None:
    message = config_error({"output-mode": value})
    assert f"'output-mode' = '{value}'" in message
    assert "ORDERED or ALLOW_UNORDERED" in message


@pytest.mark.parametrize("value", ["10 s", "500ms", "2 min"])
def test_timeout_is_the_record_timeout(value: str) -> None:
    assert options_of({"timeout": value}) == {**OPTIONS, "record-timeout": value}
    # The model's own record-timeout gives way to the query's.
    assert options_of({"timeout": value}, **{"record-timeout": "1 h"}) == {
        **OPTIONS, "record-timeout": value}


@pytest.mark.parametrize("value", ["ten seconds", "0 s", "-1 s", "10 parsecs"])
def test_invalid_timeout(value: str) -> None:
    message = config_error({"timeout": value})
    assert f"'timeout' = '{value}'" in message
    assert "duration" in message


@pytest.mark.parametrize(("config", "named"), [
    ({"async": "true", "mode": "sync"}, ["'async' = 'true'", "'mode' = 'sync'"]),
    ({"async": "false", "mode": "async"}, ["'async' = 'false'", "'mode' = 'async'"]),
    ({"timeout": "10 s", "record-timeout": "5 s"}, ["'timeout' = '10 s'",
                                                    "'record-timeout' = '5 s'"]),
    ({"max-concurrent-operations": "4", "max-concurrent-requests": "8", "mode": "async"},
     ["'max-concurrent-operations' = '4'", "'max-concurrent-requests' = '8'"]),
])
def test_contradictions(config: dict[str, str], named: list[str]) -> None:
    message = config_error(config)
    for part in named:
        assert part in message
    assert "Give one of them" in message


@pytest.mark.parametrize(("config", "expected"), [
    ({"async": "true", "mode": "async"}, {"mode": "async"}),
    ({"async": "false", "mode": "vectorized"}, {"mode": "vectorized"}),
    ({"timeout": "10 s", "record-timeout": "10 s"}, {"record-timeout": "10 s"}),
    ({"max-concurrent-operations": "4", "max-concurrent-requests": "4", "mode": "async"},
     {"mode": "async", "max-concurrent-requests": "4"}),
])
def test_agreeing_keys(config: dict[str, str], expected: dict[str, str]) -> None:
    assert options_of(config) == {**OPTIONS, **expected}


def test_unknown_key() -> None:
    message = config_error({"colour": "red"})
    assert "CONFIG key 'colour'" in message
    # The accepted keys: Flink's, then this package's options a query may set.
    for key in ("'async'", "'max-concurrent-operations'", "'output-mode'", "'timeout'",
                "'max-retries'", "'record-timeout'", "'mode'"):
        assert key in message
    assert "'provider'" not in message


def test_provider_cannot_be_set_by_a_query() -> None:
    message = config_error({"provider": "openai"})
    assert "CONFIG key 'provider'" in message
    assert "CREATE MODEL" in message


@pytest.mark.parametrize(("config", "expected"), [
    ({"max-retries": "5"}, {"max-retries": "5"}),
    ({"mode": "vectorized", "batch-size": "16"}, {"mode": "vectorized", "batch-size": "16"}),
    ({"endpoint": "http://other:8000"}, {"endpoint": "http://other:8000"}),
    ({"max-retries": "5", "async": "true", "timeout": "3 s"},
     {"max-retries": "5", "mode": "async", "record-timeout": "3 s"}),
])
def test_the_packages_options_pass_into_the_result(config: dict[str, str],
                                                   expected: dict[str, str]) -> None:
    assert options_of(config) == {**OPTIONS, **expected}


def test_a_query_option_overrides_the_models() -> None:
    assert options_of({"max-retries": "5"}, **{"max-retries": "1", "priority": "2"}) == {
        **OPTIONS, "max-retries": "5", "priority": "2"}
