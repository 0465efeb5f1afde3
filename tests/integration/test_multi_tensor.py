"""Several inputs and outputs, ROW results and tensor-name mapping, against the real server.

``multi_io`` (batched) takes ``values`` FP32 [-1] and ``Label`` BYTES [1] and returns ``TOTAL``
(the sum), ``label_Upper`` and ``Count``: lower-case, Mixed-case and UPPER-case names.
"""

from __future__ import annotations

import pytest
from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.table import DataTypes

from pyflink_triton import TritonMapFunction, TritonScalarFunction, execute_sql
from pyflink_triton.sessions.function import TritonInference
from pyflink_triton.wire import http1
from pyflink_triton.wire.http import HttpTransport
from pyflink_triton.wire.request import InferRequest

from jobs import open_session

ROWS = [([1.5, 2.5, -1.0], "hello"), ([], "straße"), ([0.25] * 4, "ǆ émile ✓")]


def expected(values: list[float], label: str) -> tuple[float, str, int]:
    return sum(values), label.upper(), len(values)


def readings(t_env, name: str = "readings") -> None:
    t_env.create_temporary_view(name, t_env.from_elements(
        [(i, values, label) for i, (values, label) in enumerate(ROWS)],
        DataTypes.ROW([DataTypes.FIELD("id", DataTypes.BIGINT()),
                       DataTypes.FIELD("v", DataTypes.ARRAY(DataTypes.FLOAT())),
                       DataTypes.FIELD("label", DataTypes.STRING())])))


def test_sql_with_a_row_result_and_mapped_names(triton, t_env):
    readings(t_env)
    execute_sql(t_env, f"""
        CREATE MODEL summarize
          INPUT (v ARRAY<FLOAT>, label STRING)
          OUTPUT (total DOUBLE, shout STRING)
        WITH (
          'provider' = 'triton', 'endpoint' = '{triton.http_endpoint}', 'model-name' = 'multi_io',
          'input-names' = 'v:values,label:Label',
          'output-names' = 'TOTAL,label_Upper'
        )""")

    result = execute_sql(t_env, """
        SELECT id, r, r.total, r.shout
        FROM (SELECT id, summarize(v, label) AS r FROM readings)""")
    with result.collect() as rows:
        by_id = {row[0]: list(row)[1:] for row in rows}

    assert sorted(by_id) == [0, 1, 2]
    for i, (values, label) in enumerate(ROWS):
        total, shout, _ = expected(values, label)
        row, field_total, field_shout = by_id[i]
        assert tuple(row) == (total, shout)
        assert (field_total, field_shout) == (total, shout)  # fields by their declared names


def test_undeclared_columns_give_a_row_of_all_outputs(triton, t_env):
    readings(t_env)
    execute_sql(t_env, f"""
        CREATE MODEL multi_io WITH (
          'provider' = 'triton', 'endpoint' = '{triton.http_endpoint}', 'model-name' = 'multi_io')
        """)
    function = TritonScalarFunction({"endpoint": triton.http_endpoint, "model-name": "multi_io"})
    assert function.input_types == [DataTypes.ARRAY(DataTypes.FLOAT()), DataTypes.STRING()]
    assert function.result_type == DataTypes.ROW([
        DataTypes.FIELD("TOTAL", DataTypes.DOUBLE()),
        DataTypes.FIELD("label_Upper", DataTypes.STRING()),
        DataTypes.FIELD("Count", DataTypes.BIGINT())])

    result = execute_sql(t_env, "SELECT id, multi_io(v, label) FROM readings")
    with result.collect() as rows:
        by_id = {row[0]: row[1] for row in rows}

    for i, (values, label) in enumerate(ROWS):
        assert tuple(by_id[i]) == expected(values, label)


def test_positional_input_names_from_the_table_api(triton, t_env):
    readings(t_env)
    function = TritonScalarFunction(
        {"endpoint": triton.http_endpoint, "model-name": "multi_io",
         "input-names": "values,Label", "output-names": "n:Count"},
        inputs=[("a", "ARRAY<FLOAT>"), ("b", "STRING")], output=("n", "BIGINT"))
    t_env.create_temporary_function("count_values", function.as_udf())

    rows = list(t_env.sql_query("SELECT id, count_values(v, label) FROM readings")
                .execute().collect())

    assert sorted((r[0], r[1]) for r in rows) == [(i, len(v)) for i, (v, _) in enumerate(ROWS)]


def test_datastream_with_named_row_elements_and_a_row_result(triton, stream_env):
    stream_env.set_parallelism(2)
    model = TritonMapFunction({"endpoint": triton.http_endpoint, "model-name": "multi_io"})
    assert model.output_type == Types.ROW_NAMED(
        ["TOTAL", "label_Upper", "Count"], [Types.DOUBLE(), Types.STRING(), Types.LONG()])
    elements = stream_env.from_collection(
        [Row(Label=label, values=values) for values, label in ROWS],
        type_info=Types.ROW_NAMED(["Label", "values"],
                                  [Types.STRING(), Types.PRIMITIVE_ARRAY(Types.FLOAT())]))

    outputs = list(elements.map(model, output_type=model.output_type).execute_and_collect())

    assert sorted(tuple(o) for o in outputs) == sorted(expected(v, label) for v, label in ROWS)


def test_only_requested_outputs_are_transferred(triton):
    options = {"endpoint": triton.http_endpoint, "model-name": "multi_io"}
    inference = TritonInference.create(options, output=["TOTAL", "Count"])
    transport = HttpTransport.for_options(inference.options,
                                          inference.options.endpoint.servers[0])
    try:
        model = inference.model
        bound = inference.signature.bind(model, transport.model_metadata(model),
                                         transport.model_config(model), inference.options)
        tensors = [codec.encode(value) for codec, value in zip(bound.inputs, ROWS[0],
                                                                strict=True)]
        result = transport.infer(InferRequest(model, tensors, ("TOTAL", "Count")))
    finally:
        transport.close()

    assert [o["name"] for o in result.get_response()["outputs"]] == ["TOTAL", "Count"]


@pytest.mark.parametrize(("model", "inputs", "output", "value", "result"), [
    ("add_one", ["x"], "y", 1.5, 2.5),  # lower case
    ("identity_int64", ["INPUT0"], "OUTPUT0", 7, 7),  # UPPER case
    ("multi_io", ["values", "Label"], "label_Upper", ([1.0], "mIxEd"), "MIXED"),  # Mixed
])
def test_tensor_names_keep_their_case(triton, model, inputs, output, value, result):
    with open_session(triton, model, inputs, output) as session:
        values = list(value) if isinstance(value, tuple) else [value]
        assert session.infer(values) == result


def test_one_megabyte_fp32_tensor_per_record_through_a_flink_job(triton, t_env):
    elements = 262_144  # 1 MiB of FP32
    records = [[float(i + r) for i in range(elements)] for r in range(3)]
    function = TritonScalarFunction(
        {"endpoint": triton.http_endpoint, "model-name": "identity_fp32_array"})
    t_env.create_temporary_function("identity", function.as_udf())
    table = t_env.from_elements(
        [(r, values) for r, values in enumerate(records)],
        DataTypes.ROW([DataTypes.FIELD("r", DataTypes.BIGINT()),
                       DataTypes.FIELD("v", DataTypes.ARRAY(DataTypes.FLOAT()))]))

    rows = list(table.select(function.as_udf()(table.v).alias("out"), table.r)
                .execute().collect())

    assert sorted(row[1] for row in rows) == [0, 1, 2]
    for out, r in rows:
        assert out == records[r]


def test_the_binary_form_sends_raw_tensor_bytes(triton, monkeypatch):
    """1 MiB of FP32 travels as ~1 MiB of raw bytes, not as ~3x that in JSON text."""
    sent: list[int] = []
    original = http1.Connection.send

    def recording(self, request):
        if request.startswith(b"POST"):
            sent.append(len(request.partition(b"\r\n\r\n")[2]))  # the body
        return original(self, request)

    monkeypatch.setattr(http1.Connection, "send", recording)
    values = [float(i) + 0.123456 for i in range(262_144)]
    for binary in ("true", "false"):
        with open_session(triton, "identity_fp32_array",
                          **{"binary-data": binary}) as session:
            assert session.infer([values]) == pytest.approx(values, rel=1e-7)
    binary_size, json_size = sent
    assert 4 * 262_144 <= binary_size < 4 * 262_144 + 1024
    assert json_size > 2 * binary_size
