"""The sync, async and vectorized modes, over HTTP and gRPC, in real PyFlink jobs.

Each job reads ids 1..N from a ``datagen`` sequence with parallelism 2. That source deals the
ids out round robin (subtask k gets k+1, k+3, ...), and the function runs chained behind it, so
the ids of one parity went through one function instance, in ascending order; a mode that
reordered results would break that order in the collected output.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.table import DataTypes, StreamTableEnvironment

from pyflink_triton import (
    TritonAsyncFunction,
    TritonConfigError,
    TritonMapFunction,
    TritonScalarFunction,
    TritonVectorizedFunction,
    async_map,
    create_model,
    execute_sql,
    vectorized_map,
)

from jobs import (
    assert_one_shot_sequences_per_subtask,
    sequence_source,
    stateful_options,
    table_env,
)

ROWS = 10_000
MIXED_ROWS = 3_000  # multi_io is slower (3 outputs, arrays, strings); 3k rows cover the mixes
MODES = ["sync", "async", "vectorized"]
PROTOCOLS = ["http", "grpc"]

# multi_io (max_batch_size 8): ARRAY values of 1 to 3 elements (so a vectorized batch mixes
# shapes), a string label, and a ROW of three outputs.
MULTI_IO_QUERY = """
    SELECT id, f(CASE MOD(id, 3) WHEN 0 THEN ARRAY[CAST(id AS FLOAT)]
                                 WHEN 1 THEN ARRAY[CAST(id AS FLOAT), CAST(0.5 AS FLOAT)]
                                 ELSE ARRAY[CAST(id AS FLOAT), CAST(1 AS FLOAT),
                                            CAST(2 AS FLOAT)] END,
                 CONCAT('row-', CAST(id AS STRING), '-é'))
    FROM src"""


def endpoint(triton, protocol: str) -> str:
    return triton.grpc_endpoint if protocol == "grpc" else triton.http_endpoint


def run_job(t_env, query: str) -> list[Row]:
    return list(t_env.sql_query(query).execute().collect())


def run_large_job(t_env, query: str) -> list[tuple]:
    """The rows in arrival order, fetched as Arrow batches (``collect()`` makes a py4j call per
    row: ~3 ms each). A ROW value comes back as a tuple. No NULLs expected."""
    frame = t_env.sql_query(query).to_pandas()
    return [tuple(tuple(v.values()) if isinstance(v, dict) else v.item()
                  if hasattr(v, "item") else v for v in row)
            for row in frame.itertuples(index=False)]


def assert_in_order_per_subtask(ids: list[int]) -> None:
    for parity in (0, 1):
        seen = [i for i in ids if i % 2 == parity]
        assert seen == sorted(seen), "results of one subtask came out of input order"


def mode_job(triton, protocol: str, mode: str, model: str, query: str,
             rows: int) -> list[tuple]:
    t_env = table_env(parallelism=2)
    sequence_source(t_env, rows)
    create_model(t_env, "f", {"endpoint": endpoint(triton, protocol), "model-name": model,
                              "mode": mode})
    return run_large_job(t_env, query)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_mode_returns_what_sync_returns_for_10k_rows(triton, protocol):
    query = "SELECT id, f(CAST(id AS DOUBLE) / 8) FROM src"
    results = {mode: mode_job(triton, protocol, mode, "add_one", query, ROWS)
               for mode in MODES}

    expected = [(i, i / 8 + 1) for i in range(1, ROWS + 1)]
    assert sorted((r[0], r[1]) for r in results["sync"]) == expected
    for mode in MODES:
        ids = [r[0] for r in results[mode]]
        assert_in_order_per_subtask(ids)
        assert dict((r[0], r[1]) for r in results[mode]) == dict(expected), mode
        assert len(ids) == ROWS, mode


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_mode_returns_what_sync_returns_for_arrays_strings_and_rows(triton, protocol):
    results = {mode: mode_job(triton, protocol, mode, "multi_io", MULTI_IO_QUERY, MIXED_ROWS)
               for mode in MODES}

    by_id = {mode: {r[0]: tuple(r[1]) for r in rows} for mode, rows in results.items()}
    assert len(by_id["sync"]) == MIXED_ROWS
    assert by_id["sync"][4] == (4.5, "ROW-4-É", 2)
    for mode in ("async", "vectorized"):
        assert_in_order_per_subtask([r[0] for r in results[mode]])
        assert len(results[mode]) == MIXED_ROWS
        assert by_id[mode] == by_id["sync"], mode


def test_async_mode_draws_sequence_ids_in_arrival_order(triton, t_env):
    t_env.get_config().set("parallelism.default", "2")
    sequence_source(t_env, 300)
    create_model(t_env, "my_triton_model", stateful_options(triton, mode="async"))

    rows = run_job(t_env, "SELECT id, my_triton_model(id) FROM src")

    reports = [(r[0], json.loads(r[1])) for r in rows]
    assert_one_shot_sequences_per_subtask(reports, 300, 2)
    for subtask in (0, 1):  # the n-th row of a subtask got counter n
        mine = [(i, int(r["sequence_id"].rsplit("-", 1)[1])) for i, r in reports
                if r["sequence_id"].split("-")[-2] == str(subtask)]
        assert [c for _, c in sorted(mine)] == list(range(len(mine)))


def test_async_mode_from_create_model_sql_sets_pyflinks_bounds(triton, t_env):
    execute_sql(t_env, f"""
        CREATE MODEL f WITH ('provider' = 'triton', 'endpoint' = '{triton.grpc_endpoint}',
          'model-name' = 'add_one', 'mode' = 'async', 'max-concurrent-requests' = '7')""")
    config = t_env.get_config()
    assert config.get("table.exec.async-scalar.max-concurrent-operations", "") == "7"
    assert config.get("table.exec.async-scalar.timeout", "") == "0 ms"  # 'timeout' bounds f
    assert config.get("table.exec.async-scalar.retry-strategy", "") == "NO_RETRY"
    t_env.execute_sql("CREATE TEMPORARY VIEW src AS SELECT * FROM (VALUES (1.0), (2.0)) AS t(x)")

    assert sorted(r[0] for r in run_job(t_env, "SELECT f(x) FROM src")) == [2.0, 3.0]


def test_vectorized_mode_skips_null_rows_and_falls_back_to_one_row_per_request(triton, t_env):
    # identity_int64 has max_batch_size 0: one request per row, several in flight.
    create_model(t_env, "f", {"endpoint": triton.http_endpoint, "model-name": "identity_int64",
                              "mode": "vectorized", "null-input": "skip"})
    values = [(1,), (None,), (2**62,), (-5,), (None,)]
    table = t_env.from_elements(values, DataTypes.ROW([DataTypes.FIELD("v", DataTypes.BIGINT())]))
    t_env.create_temporary_view("src", table)

    rows = run_job(t_env, "SELECT v, f(v) FROM src")

    assert sorted((r[0] is None, r[0] or 0, r[1]) for r in rows) == sorted(
        (v is None, v or 0, v) for (v,) in values)


# Integers of every integer datatype next to NULLs, some beyond float64's exact range (2**53):
# (model, Flink input type, values the model takes, a value its input refuses or None). The
# results are of the model's derived type (UINT64: DECIMAL(20, 0)).
EXACT_INTEGERS = [
    ("identity_int64", DataTypes.BIGINT(), [2**53 + 1, 2**62 + 3, -(2**63) + 1, 2**63 - 1],
     None),
    ("identity_uint64", DataTypes.BIGINT(), [2**53 + 1, 2**62 + 3, 2**63 - 1], -(2**63) + 1),
    ("identity_uint64", DataTypes.DECIMAL(20, 0), [Decimal(2**64 - 1), Decimal(2**53 + 1)],
     None),
    ("identity_int32", DataTypes.INT(), [-(2**31), 2**31 - 1], None),
    ("identity_int16", DataTypes.SMALLINT(), [-(2**15), 2**15 - 1], None),
    ("identity_int8", DataTypes.TINYINT(), [-(2**7), 2**7 - 1], None),
    ("identity_uint32", DataTypes.BIGINT(), [0, 2**32 - 1], -1),
    ("identity_uint16", DataTypes.INT(), [0, 2**16 - 1], -1),
    ("identity_uint8", DataTypes.SMALLINT(), [0, 2**8 - 1], -1),
]
DEFAULT_VALUE = -7  # what a refused row returns


def test_vectorized_mode_keeps_integers_next_to_null_and_failed_rows_exact(triton):
    # PyFlink hands a pandas UDF an integer column with NULLs as float64, and a result list
    # with None would become float64 too: both round integers beyond 2**53.
    t_env = table_env(parallelism=1)  # one batch holds the NULLs and the large values
    columns = [f"c{i}" for i in range(len(EXACT_INTEGERS))]
    sent = [[*values, refused] if refused is not None else values
            for _, _, values, refused in EXACT_INTEGERS]
    rows = [tuple(None if r % 2 else column[r // 2 % len(column)] for column in sent)
            for r in range(2 * max(len(column) for column in sent))]  # every other row NULL
    t_env.create_temporary_view("src", t_env.from_elements(rows, DataTypes.ROW(
        [DataTypes.FIELD(c, t) for c, (_, t, _, _) in zip(columns, EXACT_INTEGERS,
                                                          strict=True)])))
    for column, (model, data_type, _, _) in zip(columns, EXACT_INTEGERS, strict=True):
        create_model(t_env, f"f_{column}", {
            "endpoint": triton.http_endpoint, "model-name": model, "mode": "vectorized",
            "null-input": "skip", "default-value": str(DEFAULT_VALUE)},
            inputs=[("INPUT0", data_type)])

    results = run_job(t_env, f"SELECT {', '.join(columns)}, "
                             f"{', '.join(f'f_{c}({c})' for c in columns)} FROM src")

    assert len(results) == len(rows)
    for result in results:
        for (model, _, _, refused), before, after in zip(
                EXACT_INTEGERS, result[:len(columns)], result[len(columns):], strict=True):
            expected = (None if before is None else DEFAULT_VALUE if before == refused
                        else int(before))
            assert (None if after is None else int(after)) == expected, (model, before, after)


def test_vectorized_mode_names_the_null_column(triton, t_env):
    create_model(t_env, "f", {"endpoint": triton.http_endpoint, "model-name": "multi_io",
                              "mode": "vectorized"}, output="Count")
    table = t_env.from_elements(
        [([1.0], "a"), ([2.0], None)],
        DataTypes.ROW([DataTypes.FIELD("v", DataTypes.ARRAY(DataTypes.FLOAT())),
                       DataTypes.FIELD("label", DataTypes.STRING())]))
    t_env.create_temporary_view("src", table)

    with pytest.raises(Exception, match=r"Column\(s\) \['Label'\] are NULL"):
        run_job(t_env, "SELECT f(v, label) FROM src")


def test_vectorized_mode_refuses_sequence_options(triton):
    with pytest.raises(TritonConfigError, match="one sequence ID"):
        TritonVectorizedFunction(stateful_options(triton))


def test_a_class_refuses_another_mode(triton):
    with pytest.raises(TritonConfigError, match="use TritonAsyncScalarFunction"):
        TritonScalarFunction({"endpoint": triton.http_endpoint, "model-name": "add_one",
                              "mode": "async"})


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_datastream_async_and_vectorized_return_what_map_returns(triton, stream_env,
                                                                protocol):
    stream_env.set_parallelism(2)
    options = {"endpoint": endpoint(triton, protocol), "model-name": "add_one"}
    values = [float(i) / 4 for i in range(ROWS)]

    def source():
        return stream_env.from_collection(values, type_info=Types.DOUBLE())

    sync = TritonMapFunction(options)
    expected = sorted(source().map(sync, output_type=sync.output_type).execute_and_collect())
    outputs = sorted(async_map(source(), TritonAsyncFunction(options)).execute_and_collect())
    t_env = StreamTableEnvironment.create(stream_env)
    batched = sorted(vectorized_map(t_env, source(), TritonVectorizedFunction(options))
                     .execute_and_collect())

    assert expected == [v + 1 for v in sorted(values)]
    assert outputs == expected
    assert batched == expected
