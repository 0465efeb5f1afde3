"""Unit tests of the shipping tools: what the job zip bundles (pyflink_triton.jobzip) and the
SQL-client rewrite (pyflink_triton.sql_client). Their cluster runs are in
tests/integration/test_cluster_shipping.py."""

from __future__ import annotations

import pytest

from pyflink_triton.errors import TritonConfigError
from pyflink_triton.jobzip import bundled_distributions, requirement_closure
from pyflink_triton.sql_client import export_for_sql_client

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
