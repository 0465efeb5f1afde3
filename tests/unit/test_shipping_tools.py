"""Unit tests of the shipping tools: what the job zip bundles (pyflink_triton.jobzip) and the
SQL-client rewrite (pyflink_triton.sql.client). Their cluster runs are in
tests/integration/test_cluster_shipping.py."""

from __future__ import annotations

import ast

import pytest

from pyflink_triton.errors import TritonConfigError
from pyflink_triton.jobzip import bundled_distributions, requirement_closure
from pyflink_triton.sql.client import export_for_sql_client

MODEL = """CREATE MODEL {name} INPUT (x DOUBLE) OUTPUT (y DOUBLE) WITH (
  'provider' = 'triton', 'endpoint' = 'http://localhost:8000', 'model-name' = 'add_one'{extra})"""
TABLE = "CREATE TEMPORARY TABLE t (x DOUBLE) WITH ('connector' = 'datagen')"
QUERY = "SELECT add_one(x) FROM t"


def sql(*statements: str) -> str:
    return ";\n".join(statements) + ";\n"


def statements_of(text: str) -> list[str]:
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return [s.strip().removesuffix(";") for s in body.split(";\n") if s.strip()]


def test_the_closure_follows_extras_and_markers() -> None:
    ours = requirement_closure("pyflink-triton")
    # tritonclient[grpc,http]: both extras' requirements are in.
    assert {"apache-flink", "tritonclient", "geventhttpclient", "grpcio"} <= set(ours)
    assert "perf-analyzer" not in ours  # tritonclient's [perf_analyzer] extra is not asked for


def test_the_zip_bundles_what_apache_flink_does_not_bring() -> None:
    bundled = {d.metadata["Name"].lower().replace("_", "-") for d in bundled_distributions()}
    assert {"tritonclient", "python-rapidjson", "geventhttpclient", "gevent"} <= bundled
    flinks = set(requirement_closure("apache-flink"))
    assert not bundled & flinks
    assert "pyflink-triton" not in bundled  # its files come from the package folder


def test_a_missing_distribution_is_named() -> None:
    with pytest.raises(TritonConfigError, match=r"'no-such-dist' .* is not installed"):
        requirement_closure("no-such-dist")


def test_each_triton_model_is_followed_by_a_python_function() -> None:
    files = export_for_sql_client(sql(MODEL.format(name="add_one", extra=""), TABLE, QUERY),
                                  "models", "job.sql")
    assert files.functions == ["add_one"]
    assert statements_of(files.sql) == [
        MODEL.format(name="add_one", extra=""),
        "CREATE TEMPORARY FUNCTION add_one AS 'models.add_one' LANGUAGE PYTHON",
        TABLE, QUERY]
    namespace: dict = {}
    exec(compile(files.module, "models.py", "exec"), namespace)
    function = namespace["add_one"]
    assert function._name == "add_one"
    assert [t.type_name() for t in function._input_types] == ["DOUBLE"]
    assert function._result_type.type_name() == "DOUBLE"


def test_names_if_not_exists_endpoint_and_async_settings() -> None:
    text = sql(MODEL.format(name="IF NOT EXISTS cat.db.add_one",
                            extra=", 'mode' = 'async', 'max-concurrent-requests' = '4'"))
    files = export_for_sql_client(text, "m", model_options={"endpoint": "http://triton:8000"})
    assert statements_of(files.sql) == [
        "SET 'table.exec.async-scalar.max-concurrent-operations' = '4'",
        "SET 'table.exec.async-scalar.timeout' = '0 ms'",
        "SET 'table.exec.async-scalar.retry-strategy' = 'NO_RETRY'",
        text.strip().rstrip(";"),
        "CREATE TEMPORARY FUNCTION IF NOT EXISTS cat.db.add_one AS 'm.add_one' "
        "LANGUAGE PYTHON"]
    assert '"endpoint": "http://triton:8000"' in files.module
    assert '"mode": "async"' in files.module


@pytest.mark.parametrize(("text", "module", "message"), [
    (sql(TABLE, QUERY), "m", "job.sql has no CREATE MODEL"),
    (sql(MODEL.format(name="add_one", extra=""), MODEL.format(name="db.add_one", extra="")),
     "m", "defines a Triton model of that name twice"),
    (sql(MODEL.format(name="add_one", extra="")), "my-models", "not a Python identifier"),
    (sql(MODEL.format(name="add_one", extra=", 'sequence-idd' = 'x'")), "m", "sequence-idd"),
])
def test_refused(text: str, module: str, message: str) -> None:
    with pytest.raises(TritonConfigError, match=message):
        export_for_sql_client(text, module, "job.sql")


# --- names written into the generated files (issue 15) -------------------------------------------

EVIL_SOURCE = 'job"""\nimport os\nDROP TABLE t;\n.sql'


def test_names_are_escaped_in_comments_docstring_and_sql() -> None:
    """Quoted SQL names and the file name may hold line breaks and quotes: written into a
    comment or the docstring, they must stay text and never become code or statements."""
    name = "`cat\nimport os`.`db'''\n\"\"\"`.add_one"
    model = (f"CREATE MODEL {name} INPUT (`x\nimport os #` DOUBLE) "
             "OUTPUT (`y\"\"\"\nraise SystemExit` DOUBLE) WITH ('provider' = 'triton', "
             "'endpoint' = 'http://localhost:8000', 'model-name' = 'add_one')")
    files = export_for_sql_client(sql(model, TABLE), "models", EVIL_SOURCE)
    tree = ast.parse(files.module)
    # The docstring, the import and one assignment per model: nothing else became code.
    assert [type(statement) for statement in tree.body] == [ast.Expr, ast.ImportFrom, ast.Assign]
    assert [target.id for target in tree.body[2].targets] == ["add_one"]
    assert ast.get_docstring(tree) == (
        f"The Triton models of {EVIL_SOURCE} as PyFlink functions, for\n"
        "CREATE TEMPORARY FUNCTION ... AS 'models.<model>' LANGUAGE PYTHON.\n\n"
        "Generated by python -m pyflink_triton sql-client-files; the column types were "
        "resolved then.")
    namespace: dict = {}
    exec(compile(files.module, "models.py", "exec"), namespace)
    assert namespace["add_one"]._name == "add_one"
    header = files.sql.splitlines()[:3]
    assert all(line.startswith("-- ") for line in header)
    assert "\\nDROP TABLE t;\\n" in header[0]
    assert statements_of(files.sql) == [
        model, f"CREATE TEMPORARY FUNCTION {name} AS 'models.add_one' LANGUAGE PYTHON", TABLE]


@pytest.mark.parametrize(("name", "why"), [
    ("`my model`", "is not a Python identifier"),
    ("`add_one\nimport os`", "is not a Python identifier"),
    ("cat.db.`my-model`", "is not a Python identifier"),
    ("`2fast`", "is not a Python identifier"),
    ("`add_one'`", "is not a Python identifier"),
    ("`\ufb01t`", "is not a Python identifier"),  # NFKC turns the ligature 'ﬁ' into 'fi'
    ("`class`", "is a Python keyword"),
    ("`None`", "is a Python keyword"),
    ("function_for", "is a name the generated module uses itself"),
])
def test_a_model_name_that_is_no_python_name_is_refused(name: str, why: str) -> None:
    with pytest.raises(TritonConfigError) as info:
        export_for_sql_client(sql(MODEL.format(name=name, extra="")), "m", "job.sql")
    message = str(info.value)
    assert message.startswith(f"Model {name!r}: ")
    assert why in message
    assert "plain name such as my_model" in message


@pytest.mark.parametrize("provider", ["Triton", " triton", "triton ", "TRITON"])
def test_a_provider_flink_would_not_match_is_refused(provider: str) -> None:
    text = sql(MODEL.format(name="add_one", extra="").replace("'triton'", f"'{provider}'"))
    with pytest.raises(TritonConfigError) as info:
        export_for_sql_client(text, "m", "job.sql")
    message = str(info.value)
    assert f"Model 'add_one': with 'provider' = {provider!r}" in message
    assert "exactly and case-sensitively" in message
    assert "write 'triton'" in message


# --- one bound for the async models of a job (issue 15) ------------------------------------------

def async_model(name: str, bound: str) -> str:
    return MODEL.format(name=name, extra=f", 'mode' = 'async', 'max-concurrent-requests' = "
                                         f"'{bound}'")


def test_two_async_models_with_different_bounds_are_refused() -> None:
    """Their SET lines would set PyFlink's one setting twice: the last would silently win."""
    with pytest.raises(TritonConfigError) as info:
        export_for_sql_client(sql(async_model("a", "8"), async_model("b", "16")), "m")
    message = str(info.value)
    assert "'a' ('max-concurrent-requests' = 8)" in message and "'b' (16)" in message
    assert "table.exec.async-scalar.max-concurrent-operations" in message


def test_two_async_models_with_one_bound_are_fine() -> None:
    files = export_for_sql_client(sql(async_model("a", "8"), async_model("b", "8")), "m")
    assert files.functions == ["a", "b"]
    sets = [s for s in statements_of(files.sql) if s.startswith("SET")]
    assert sets.count("SET 'table.exec.async-scalar.max-concurrent-operations' = '8'") == 1
