"""Unit tests of the SQL parsing (pyflink_triton.sql.tokens.split_statements,
pyflink_triton.sql.create_model.parse_create_model)."""

from __future__ import annotations

import pytest

from pyflink_triton.errors import TritonConfigError
from pyflink_triton.options import TritonOptions
from pyflink_triton.policies.sequence import SequencePolicy
from pyflink_triton.sql.create_model import CreateModel, is_triton_model, parse_create_model
from pyflink_triton.sql.execute import execute_sql
from pyflink_triton.sql.tokens import Token, split_statements

from jobs import SEED_CREATE_MODEL as SEED

SEED_OPTIONS = {
    "provider": "triton",
    "endpoint": "https://triton-server:8000/v2/models",
    "model-name": "my_stateful_model",
    "sequence-id": "flink-job-123",
    "sequence-id-auto-increment": "true",
    "sequence-start": "true",
    "sequence-end": "true",
}

WITH = "WITH ('provider' = 'triton')"


def texts(sql: str) -> list[str]:
    return [text for text, _ in split_statements(sql)]


def only(sql: str) -> CreateModel | None:
    statements = split_statements(sql)
    assert len(statements) == 1, statements
    text, tokens = statements[0]
    return parse_create_model(text, tokens)


def model(sql: str) -> CreateModel:
    statement = only(sql)
    assert statement is not None
    return statement


def parse_error(sql: str) -> str:
    with pytest.raises(TritonConfigError) as info:
        only(sql)
    return str(info.value)


# --- the seed statement --------------------------------------------------------------------------

def test_seed_statement_splits_into_one_statement():
    statements = split_statements(SEED)
    assert len(statements) == 1
    text, tokens = statements[0]
    assert text == SEED[:-1]  # everything but the final ';'
    assert text.startswith("CREATE MODEL my_triton_model WITH (")
    assert text.endswith(")")
    assert "-- Enable auto-increment" in text  # comments inside a statement are kept
    assert all(token.kind != "space" for token in tokens)
    assert not any("Enable" in token.text for token in tokens)


def test_seed_statement_parses():
    statement = model(SEED)
    assert statement.name == "my_triton_model"
    assert statement.function_name == "my_triton_model"
    assert statement.options == SEED_OPTIONS
    assert list(statement.options) == list(SEED_OPTIONS)  # order preserved
    assert statement.inputs is None
    assert statement.outputs is None
    assert statement.if_not_exists is False
    assert statement.temporary is False
    assert statement.text == SEED[:-1]


def test_an_endpoint_list_in_create_model_is_one_option():
    statement = model(SEED.replace("'https://triton-server:8000/v2/models'",
                                   "'https://triton-0:8000, https://triton-1:8000'"))
    options = TritonOptions.from_dict(statement.options)
    assert [(s.host, s.port) for s in options.endpoint] == [("triton-0", 8000),
                                                           ("triton-1", 8000)]


def test_seed_statement_options_are_valid_and_generate_ids():
    options = TritonOptions.from_dict(model(SEED).options)
    assert options.model_name == "my_stateful_model"
    assert options.endpoint.use_tls
    (server,) = options.endpoint.servers
    assert (server.host, server.port) == ("triton-server", 8000)
    generator = SequencePolicy.from_options(options).for_subtask(0)
    assert generator.next().sequence_id == "flink-job-123-0-0"
    assert generator.next().sequence_id == "flink-job-123-0-1"


def test_seed_statement_without_trailing_semicolon():
    assert model(SEED[:-1]).options == SEED_OPTIONS


def test_seed_statement_twice_in_one_script():
    statements = split_statements(SEED + "\n" + SEED + "\n")
    assert len(statements) == 2
    for text, tokens in statements:
        assert parse_create_model(text, tokens).options == SEED_OPTIONS


# --- split_statements ----------------------------------------------------------------------------

@pytest.mark.parametrize("sql, expected", [
    ("SELECT 1", ["SELECT 1"]),
    ("SELECT 1;", ["SELECT 1"]),
    ("SELECT 1; SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("SELECT 1;\nSELECT 2;\n", ["SELECT 1", "SELECT 2"]),
    ("  SELECT 1  ;  ;; SELECT 2 ;", ["SELECT 1", "SELECT 2"]),
    ("", []),
    ("   \n\t ", []),
    (";;;", []),
    ("-- only a comment", []),
    ("/* only a comment */", []),
    ("-- a\n/* b */ ;", []),
    ("SELECT 'a;b'", ["SELECT 'a;b'"]),
    ("SELECT 'a;b'; SELECT 2", ["SELECT 'a;b'", "SELECT 2"]),
    ("SELECT 'it''s; fine'; SELECT 2", ["SELECT 'it''s; fine'", "SELECT 2"]),
    ("SELECT `a;b` FROM t; SELECT 2", ["SELECT `a;b` FROM t", "SELECT 2"]),
    # a comment after the last token is not part of the statement text
    ("SELECT 1 -- not; split\n; SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("SELECT 1 /* not; split */; SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("SELECT 1 -- not; split\n+ 1; SELECT 2", ["SELECT 1 -- not; split\n+ 1", "SELECT 2"]),
    ("SELECT 1 /* not; split */ + 1; SELECT 2", ["SELECT 1 /* not; split */ + 1", "SELECT 2"]),
    ("SELECT /* multi\nline; */ 1; SELECT 2", ["SELECT /* multi\nline; */ 1", "SELECT 2"]),
    ("-- lead; comment\nSELECT 1", ["SELECT 1"]),
    ("/* lead; */ SELECT 1 /* trail; */", ["SELECT 1"]),
    ("SELECT '--not a comment'; SELECT 2", ["SELECT '--not a comment'", "SELECT 2"]),
    ("SELECT '/*x'; SELECT '*/'", ["SELECT '/*x'", "SELECT '*/'"]),
    ("SELECT 1 -- trailing comment without newline", ["SELECT 1"]),
    ("SELECT 3.14; SELECT 2", ["SELECT 3.14", "SELECT 2"]),
])
def test_split_statements(sql, expected):
    assert texts(sql) == expected


def test_split_statement_text_is_a_slice_of_the_input():
    sql = "  /* c */ SELECT  1 ,\n 'x' ; INSERT INTO t VALUES ('a')  -- tail"
    for text, tokens in split_statements(sql):
        assert text in sql
        assert sql[tokens[0].start:tokens[-1].end] == text


def test_split_statement_tokens():
    (_, tokens), = split_statements("SELECT 'a;b', `c``d`, 42, x$y FROM t -- c\n")
    assert [(t.kind, t.text) for t in tokens] == [
        ("word", "SELECT"), ("string", "'a;b'"), ("symbol", ","), ("quoted", "`c``d`"),
        ("symbol", ","), ("number", "42"), ("symbol", ","), ("word", "x$y"), ("word", "FROM"),
        ("word", "t"),
    ]
    assert tokens[1].value == "a;b"
    assert tokens[3].value == "c`d"
    assert tokens[0].value == "SELECT"


def test_token_value_unescapes_doubled_quotes():
    assert Token("string", "'it''s'", 0, 7).value == "it's"
    assert Token("string", "''", 0, 2).value == ""
    assert Token("quoted", "`a``b`", 0, 6).value == "a`b"
    assert Token("word", "Model", 0, 5).is_word("MODEL")
    assert not Token("string", "'MODEL'", 0, 7).is_word("MODEL")


@pytest.mark.parametrize("sql", [
    "SELECT 'unterminated; SELECT 2",
    "SELECT `unterminated; SELECT 2",
    "SELECT 1 /* unterminated; SELECT 2",
])
def test_unterminated_literal_or_comment_is_an_error(sql):
    """An unterminated string, identifier or comment must not be split at a ';' inside it."""
    with pytest.raises(TritonConfigError, match="Unterminated"):
        split_statements(sql)


# --- statements that are not CREATE MODEL --------------------------------------------------------

@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "CREATE TABLE t (a INT) WITH ('connector' = 'datagen')",
    "CREATE TEMPORARY TABLE t (a INT)",
    "CREATE TEMPORARY FUNCTION f AS 'x.y'",
    "CREATE OR REPLACE VIEW v AS SELECT 1",
    # Flink 2.3 has no CREATE OR REPLACE MODEL: left to Flink, which rejects it.
    "CREATE OR REPLACE MODEL m WITH ('provider' = 'triton')",
    "CREATE CATALOG c WITH ('type' = 'generic_in_memory')",
    "INSERT INTO t SELECT * FROM s",
    "DROP MODEL m",
    "ALTER MODEL m SET ('k' = 'v')",
    "SHOW MODELS",
    "DESCRIBE MODEL m",
    "SELECT * FROM ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(x))",
    "CREATE",
    "'CREATE' MODEL m WITH ('k' = 'v')",
    "`CREATE` MODEL m WITH ('k' = 'v')",
])
def test_other_statements_return_none(sql):
    assert only(sql) is None


# --- CREATE MODEL variants -----------------------------------------------------------------------

@pytest.mark.parametrize("prefix, temporary, if_not_exists", [
    ("CREATE MODEL", False, False),
    ("create model", False, False),
    ("Create Model", False, False),
    ("CREATE TEMPORARY MODEL", True, False),
    ("CREATE MODEL IF NOT EXISTS", False, True),
    ("create model if not exists", False, True),
    ("CREATE TEMPORARY MODEL IF NOT EXISTS", True, True),
    ("CREATE /* c */ TEMPORARY -- c\n MODEL IF NOT /* c */ EXISTS", True, True),
])
def test_create_model_flags(prefix, temporary, if_not_exists):
    statement = model(f"{prefix} m {WITH}")
    assert statement.name == "m"
    assert (statement.temporary, statement.if_not_exists) == (temporary, if_not_exists)
    assert statement.options == {"provider": "triton"}


@pytest.mark.parametrize("name, function_name", [
    ("m", "m"),
    ("my_model_2", "my_model_2"),
    ("db.m", "m"),
    ("cat.db.m", "m"),
    ("`cat`.`db`.`my_model`", "my_model"),
    ("`my model`", "my model"),
    ("`cat`.db.`my-model`", "my-model"),
    ("`a``b`", "a`b"),
    ("`MODEL`", "MODEL"),
    ("MyModel", "MyModel"),
])
def test_model_names(name, function_name):
    statement = model(f"CREATE MODEL {name} {WITH}")
    assert statement.name == name
    assert statement.function_name == function_name


def test_qualified_name_with_spaces_keeps_text_as_written():
    statement = model(f"CREATE MODEL cat . db . m {WITH}")
    assert statement.name == "cat . db . m"
    assert statement.function_name == "m"


def test_empty_with_clause():
    assert model("CREATE MODEL m WITH ()").options == {}


@pytest.mark.parametrize("literal, value", [
    ("'plain'", "plain"),
    ("''", ""),
    ("'it''s'", "it's"),
    ("''''", "'"),
    ("'a;b'", "a;b"),
    ("'-- not a comment'", "-- not a comment"),
    ("'/* not a comment */'", "/* not a comment */"),
    ("'X-A:\"h:1\",X-B:2'", "X-A:\"h:1\",X-B:2"),
    ("'multi\nline'", "multi\nline"),
    ("'  spaced  '", "  spaced  "),
    ("'ünïcødé'", "ünïcødé"),
])
def test_option_value_literals(literal, value):
    assert model(f"CREATE MODEL m WITH ('k' = {literal})").options == {"k": value}


def test_option_key_escapes_and_case():
    statement = model("CREATE MODEL m WITH ('it''s' = 'v', 'Model-Name' = 'X')")
    assert statement.options == {"it's": "v", "Model-Name": "X"}


def test_comments_everywhere():
    sql = """
    /* header; comment */
    CREATE /* a */ MODEL -- b; c
      m /* d */ INPUT /* e */ ( /* f */ x /* g */ INT /* h */ ) -- i
      WITH ( -- j
        'k' /* k */ = /* l */ 'v' -- m; n
      ) /* o */
    """
    statement = model(sql)
    assert statement.name == "m"
    assert statement.options == {"k": "v"}
    assert statement.inputs == [("x", "INT")]


# --- INPUT / OUTPUT ------------------------------------------------------------------------------

@pytest.mark.parametrize("declaration, columns", [
    ("(x FLOAT)", [("x", "FLOAT")]),
    ("(x ARRAY<FLOAT>)", [("x", "ARRAY<FLOAT>")]),
    ("(x ARRAY<ARRAY<INT>>)", [("x", "ARRAY<ARRAY<INT>>")]),
    ("(x DECIMAL(10, 2))", [("x", "DECIMAL(10, 2)")]),
    ("(x ROW<a INT, b STRING>)", [("x", "ROW<a INT, b STRING>")]),
    ("(x MAP<STRING, ARRAY<INT>>)", [("x", "MAP<STRING, ARRAY<INT>>")]),
    ("(x VARCHAR(10), y CHAR(3))", [("x", "VARCHAR(10)"), ("y", "CHAR(3)")]),
    ("(x INT NOT NULL)", [("x", "INT NOT NULL")]),
    ("(x ARRAY<FLOAT> NOT NULL, y BYTES)", [("x", "ARRAY<FLOAT> NOT NULL"), ("y", "BYTES")]),
    ("(x TIMESTAMP(3) WITH LOCAL TIME ZONE)", [("x", "TIMESTAMP(3) WITH LOCAL TIME ZONE")]),
    ("(`my col` STRING, `INPUT` INT)", [("my col", "STRING"), ("INPUT", "INT")]),
    ("(INPUT__0 FLOAT)", [("INPUT__0", "FLOAT")]),
    ("(x   ARRAY < FLOAT >  )", [("x", "ARRAY < FLOAT >")]),
    ("(x ROW<a INT COMMENT 'inner', b STRING>)", [("x", "ROW<a INT COMMENT 'inner', b STRING>")]),
    ("(x ROW<`a b` ARRAY<INT>, c MAP<INT, ROW<d INT>>>, y INT)",
     [("x", "ROW<`a b` ARRAY<INT>, c MAP<INT, ROW<d INT>>>"), ("y", "INT")]),
])
def test_input_columns(declaration, columns):
    statement = model(f"CREATE MODEL m INPUT {declaration} {WITH}")
    assert statement.inputs == columns
    assert statement.outputs is None


def test_input_and_output():
    statement = model(
        "CREATE MODEL m INPUT (a ARRAY<FLOAT>, b DECIMAL(10, 2), c ROW<a INT, b STRING>) "
        f"OUTPUT (`out` ARRAY<DOUBLE>) {WITH}")
    assert statement.inputs == [("a", "ARRAY<FLOAT>"), ("b", "DECIMAL(10, 2)"),
                                ("c", "ROW<a INT, b STRING>")]
    assert statement.outputs == [("out", "ARRAY<DOUBLE>")]


def test_output_only():
    statement = model(f"CREATE MODEL m OUTPUT (y STRING) {WITH}")
    assert statement.inputs is None
    assert statement.outputs == [("y", "STRING")]


def test_several_outputs_are_parsed():
    assert model(f"CREATE MODEL m OUTPUT (a INT, b INT) {WITH}").outputs == [("a", "INT"),
                                                                            ("b", "INT")]


@pytest.mark.parametrize("comment", [
    "'the input'", "'with, comma'", "'with ) paren'", "'it''s'", "'a; b'", "''",
    "'ARRAY<'",
])
def test_column_comments_are_skipped(comment):
    statement = model(
        f"CREATE MODEL m INPUT (x ARRAY<FLOAT> COMMENT {comment}, y INT COMMENT {comment}) "
        f"OUTPUT (z STRING COMMENT {comment}) {WITH}")
    assert statement.inputs == [("x", "ARRAY<FLOAT>"), ("y", "INT")]
    assert statement.outputs == [("z", "STRING")]


@pytest.mark.parametrize("comment", ["'a model'", "'model; with /* no comment */'", "'it''s'"])
def test_model_comment(comment):
    statement = model(f"CREATE MODEL m INPUT (x INT) OUTPUT (y INT) COMMENT {comment} {WITH}")
    assert statement.inputs == [("x", "INT")]
    assert statement.outputs == [("y", "INT")]
    assert statement.options == {"provider": "triton"}


def test_full_statement():
    sql = """CREATE TEMPORARY MODEL IF NOT EXISTS `cat`.db.`My Model`
    INPUT (`text` STRING COMMENT 'raw text; utf-8', embedding ARRAY<ARRAY<FLOAT>>)
    OUTPUT (label STRING COMMENT 'it''s the label')
    COMMENT 'classifier; v2 /* x */'
    WITH (
      'provider' = 'triton', -- the provider
      'endpoint' = 'http://u:p@h:8000', /* gateway; */
      'custom-headers' = 'X-A:''quoted''',
      'model-name' = 'clf'
    );
    SELECT 1;"""
    statements = split_statements(sql)
    assert len(statements) == 2
    statement = parse_create_model(*statements[0])
    assert statement.name == "`cat`.db.`My Model`"
    assert statement.function_name == "My Model"
    assert (statement.temporary, statement.if_not_exists) == (True, True)
    assert statement.inputs == [("text", "STRING"), ("embedding", "ARRAY<ARRAY<FLOAT>>")]
    assert statement.outputs == [("label", "STRING")]
    assert statement.options == {
        "provider": "triton",
        "endpoint": "http://u:p@h:8000",
        "custom-headers": "X-A:'quoted'",
        "model-name": "clf",
    }
    assert parse_create_model(*statements[1]) is None


def test_repr_hides_statement_text():
    statement = model("CREATE MODEL m WITH ('auth-token' = 'x')")
    assert "text=" not in repr(statement)


# --- malformed CREATE MODEL ----------------------------------------------------------------------

@pytest.mark.parametrize("sql, fragment", [
    ("CREATE MODEL m", "ends too early"),
    ("CREATE MODEL", "ends too early"),
    ("CREATE MODEL m WITH", "ends too early"),
    ("CREATE MODEL m WITH (", "ends too early"),
    ("CREATE MODEL m WITH ('model-name'", "ends too early"),
    ("CREATE MODEL m WITH ('model-name' = 'v'", "ends too early"),
    ("CREATE MODEL m WITH ('model-name' = 'v',)", "ends too early"),
    ("CREATE MODEL m WITH ('timeout' = 1)", "string literals, found 'timeout' = 1"),
    ("CREATE MODEL m WITH (timeout = '1 s')", "string literals, found timeout = '1 s'"),
    ("CREATE MODEL m WITH ('api-key' = 1)", "string literals, found 'api-key' = ***"),
    ("CREATE MODEL m WITH ('model-name' = v)", "string literals"),
    ("CREATE MODEL m WITH ('model-name' = `v`)", "string literals"),
    ("CREATE MODEL m WITH ('model-name' 'v')", "expected ="),
    ("CREATE MODEL m WITH ('model-name' = 'v' 'timeout' = 'y')", "expected , or )"),
    ("CREATE MODEL m WITH ('model-name' = 'a', 'model-name' = 'b')",
     "option 'model-name' is given twice"),
    ("CREATE MODEL m WITH 'model-name' = 'v'", "expected ("),
    ("CREATE MODEL m ('model-name' = 'v')", "expected WITH"),
    ("CREATE MODEL m WITH ('model-name' = 'v') extra", "unexpected 'extra' after the WITH clause"),
    ("CREATE MODEL m WITH ('model-name' = 'v') ('timeout' = 'y')",
     "unexpected '(' after the WITH clause"),
    ("CREATE MODEL 'm' WITH ('model-name' = 'v')", "expected a name, found ''m''"),
    ("CREATE MODEL 42 WITH ('model-name' = 'v')", "expected a name, found '42'"),
    ("CREATE MODEL db. WITH ('model-name' = 'v')", "expected WITH"),
    ("CREATE MODEL IF EXISTS m WITH ('model-name' = 'v')", "expected NOT, found 'EXISTS'"),
    ("CREATE MODEL IF NOT m WITH ('model-name' = 'v')", "expected EXISTS, found 'm'"),
    ("CREATE MODEL m INPUT (x) WITH ('model-name' = 'v')", "column 'x' has no type"),
    ("CREATE MODEL m INPUT (x, y INT) WITH ('model-name' = 'v')", "column 'x' has no type"),
    ("CREATE MODEL m INPUT () WITH ('model-name' = 'v')", "expected a name, found ')'"),
    ("CREATE MODEL m INPUT (, x INT) WITH ('model-name' = 'v')", "expected a name, found ','"),
    ("CREATE MODEL m INPUT (x INT WITH ('model-name' = 'v')", "unclosed column list"),
    ("CREATE MODEL m INPUT (x ARRAY<INT) WITH ('model-name' = 'v')", "unclosed column list"),
    ("CREATE MODEL m INPUT x INT WITH ('model-name' = 'v')", "expected ("),
    ("CREATE MODEL m OUTPUT (y INT) INPUT (x INT) WITH ('model-name' = 'v')", "expected WITH"),
    ("CREATE MODEL m INPUT ('x' INT) WITH ('model-name' = 'v')", "expected a name"),
])
def test_malformed_create_model(sql, fragment):
    message = parse_error(sql)
    assert message.startswith("Cannot parse CREATE MODEL: ")
    assert fragment in message
    # The statement is shown for context, the values of options unknown here masked.
    assert sql.strip().replace("'api-key' = 1", "'api-key' = '***'") in message


def test_malformed_statement_error_is_a_value_error():
    with pytest.raises(ValueError):
        only("CREATE MODEL m WITH ('k' = 1)")


def test_malformed_statement_after_valid_ones_is_reported():
    statements = split_statements(f"CREATE MODEL a {WITH}; CREATE MODEL b WITH ('timeout' = 1)")
    assert parse_create_model(*statements[0]).name == "a"
    with pytest.raises(TritonConfigError, match="found 'timeout' = 1"):
        parse_create_model(*statements[1])


# --- the provider: Flink matches it exactly (issue 15) -------------------------------------------

class RecordingTableEnvironment:
    """Records the statements handed to Flink; nothing else is called for these tests."""

    def __init__(self) -> None:
        self.executed: list[str] = []

    def execute_sql(self, text: str) -> str:
        self.executed.append(text)
        return text


@pytest.mark.parametrize("provider", ["Triton", " triton", "triton ", "TRITON", "\ttriton\n"])
def test_execute_sql_refuses_a_provider_flink_would_not_match(provider):
    """Flink stores such a model and finds no provider for it: no function would exist."""
    other = "CREATE MODEL other WITH ('provider' = 'openai', 'task' = 'chat')"
    t_env = RecordingTableEnvironment()
    with pytest.raises(TritonConfigError) as info:
        execute_sql(t_env, f"{other}; CREATE MODEL `my model` WITH ('provider' = '{provider}')")
    message = str(info.value)
    assert message.startswith(f"Model '`my model`': with 'provider' = {provider!r}, ")
    assert "exactly and case-sensitively" in message
    assert "write 'triton'" in message
    assert t_env.executed == [other]  # other providers' models still go to Flink untouched


@pytest.mark.parametrize("sql, expected", [
    (f"CREATE MODEL m {WITH}", True),
    ("CREATE MODEL m WITH ('provider' = 'openai')", False),
    ("CREATE MODEL m WITH ('provider' = 'triton-x')", False),
    ("CREATE MODEL m WITH ('model-name' = 'm')", False),
    ("SELECT 1", False),
])
def test_is_triton_model(sql, expected):
    assert is_triton_model(only(sql)) is expected


# --- no secret in a parse error (issue 15) -------------------------------------------------------

@pytest.mark.parametrize("text", [
    "CREATE MODEL m WITH ('endpoint' = 'http://alice:hunter2@h:1', 'auth-token' = 'hunter2', "
    "'custom-headers' = 'X-Key:hunter2', 'k' = 1)",
    "CREATE MODEL m WITH ('auth-token' = 'hunter2') extra",
    "CREATE MODEL m WITH ('auth-token' = hunter2)",
    'CREATE MODEL m WITH ("auth-token" = "hunter2")',  # (double quotes: not SQL strings)
    "CREATE MODEL m WITH (auth_token = 'hunter2', 'x' = 1)",
    "CREATE MODEL m WITH ('provider' = 'openai', 'api-key' = 'hunter2') extra",
])
def test_a_parse_error_shows_the_statement_without_its_secrets(text):
    (statement, tokens), = split_statements(text)
    with pytest.raises(TritonConfigError) as info:
        parse_create_model(statement, tokens)
    message = str(info.value)
    assert "hunter2" not in message
    assert "Cannot parse CREATE MODEL" in message


@pytest.mark.parametrize("text", [
    "CREATE MODEL m WITH ('auth-token' = 'hunter2)",
    "CREATE MODEL m WITH ('auth-token' = 'hunter2', 'endpoint' = 'http://h)",
])
def test_an_unterminated_literal_echoes_nothing_around_it(text):
    with pytest.raises(TritonConfigError) as info:
        split_statements(text)
    assert "hunter2" not in str(info.value)
    assert "(line 1, column " in str(info.value)  # (where it is, instead)


def test_a_parse_error_shows_the_options_that_are_no_secret():
    (statement, tokens), = split_statements(
        "CREATE MODEL m WITH ('model-name' = 'add_one', 'timeout' = '5 s') extra")
    with pytest.raises(TritonConfigError) as info:
        parse_create_model(statement, tokens)
    assert "'model-name' = 'add_one', 'timeout' = '5 s'" in str(info.value)


# --- one bound for the async models of a table environment (issue 15) --------------------------

class AsyncTableEnvironment(RecordingTableEnvironment):
    """Also keeps the settings and the functions registered."""

    def __init__(self) -> None:
        super().__init__()
        self.settings: dict[str, str] = {}
        self.functions: list[str] = []

    def get_config(self) -> AsyncTableEnvironment:
        return self

    def set(self, key: str, value: str) -> None:
        self.settings[key] = value

    def list_user_defined_functions(self) -> list[str]:
        return self.functions

    def create_temporary_function(self, name: str, function: object) -> None:
        self.functions.append(name)

    def get_current_catalog(self) -> str:
        return "default_catalog"

    def get_current_database(self) -> str:
        return "default_database"


def async_model(name: str, bound: int) -> str:
    return (f"CREATE MODEL {name} INPUT (x DOUBLE) OUTPUT (y DOUBLE) WITH ("
            "'provider' = 'triton', 'endpoint' = 'http://h:8000', 'model-name' = 'add_one', "
            f"'mode' = 'async', 'max-concurrent-requests' = '{bound}')")


def test_async_models_of_one_environment_must_share_their_bound():
    """Every async model registered counts, not only the last: a, b (8), then b again with 16
    would silently give a 16."""
    t_env = AsyncTableEnvironment()
    execute_sql(t_env, f"{async_model('a', 8)}; {async_model('b', 8)}")
    assert t_env.settings["table.exec.async-scalar.max-concurrent-operations"] == "8"
    t_env.functions.remove("b")  # (dropped, to be created again)
    with pytest.raises(TritonConfigError) as info:
        execute_sql(t_env, async_model("b", 16))
    assert "'a' ('max-concurrent-requests' = 8) and 'b' (16)" in str(info.value)
    assert t_env.settings["table.exec.async-scalar.max-concurrent-operations"] == "8"
    assert t_env.executed.count(async_model("b", 16)) == 0  # nothing stored for the refused one
