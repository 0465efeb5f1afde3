"""Unit tests of the batch paths: batch codecs, how a vectorized call is cut into requests and
reassembled, and the HTTP request's requested outputs. The transport here is a stand-in that
echoes the request (pure logic: cutting, ordering, NULL handling); what a real Triton answers
is tested in tests/integration/test_modes.py."""

from __future__ import annotations

import decimal
import json
import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pyflink.table.utils
import pytest
from pyflink.table import DataTypes as D

from pyflink_triton.codecs.columns import TensorColumn
from pyflink_triton.codecs.signature import BoundSignature
from pyflink_triton.codecs.tensors import InputCodec, OutputCodec
from pyflink_triton.errors import TritonRequestError, TritonServerError
from pyflink_triton.flink.table import TritonVectorizedFunction
from pyflink_triton.options import TritonOptions
from pyflink_triton.policies.sequence import SequenceParams, SequencePolicy
from pyflink_triton.sessions.batches import ColumnBatch
from pyflink_triton.sessions.context import InstanceContext
from pyflink_triton.sessions.function import TritonInference
from pyflink_triton.sessions.metrics import InferenceMetrics
from pyflink_triton.sessions.reliable import RequestGuard
from pyflink_triton.sessions.servers import Servers
from pyflink_triton.sessions.vectorized import BatchInferenceSession
from pyflink_triton.wire.http import HttpTransport
from pyflink_triton.wire.request import InferRequest, ModelRef


def batch_codec(data_type, datatype: str, dims=(1,)) -> InputCodec:
    return InputCodec(TensorColumn("x", data_type), datatype, 0, tuple(dims), True, True)


# --- batch codecs -------------------------------------------------------------------------------

@pytest.mark.parametrize("data_type, datatype, values, dtype", [
    (D.DOUBLE(), "FP64", np.array([1.5, -2.0, 3.0]), np.float64),
    (D.DOUBLE(), "FP64", [1.5, -2.0, 3.0], np.float64),
    (D.BIGINT(), "INT64", np.array([1, 2**62, -3]), np.int64),
    (D.SMALLINT(), "UINT8", [0, 255, 7], np.uint8),
    (D.BOOLEAN(), "BOOL", [True, False, True], np.bool_),
    (D.FLOAT(), "FP32", np.array([0.5, 1.0, 2.0], dtype=np.float32), np.float32),
])
def test_encode_batch_of_scalars_is_one_tensor(data_type, datatype, values, dtype):
    tensor = batch_codec(data_type, datatype).encode_batch(values)
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", datatype, [3, 1])
    assert tensor.array.dtype == dtype
    assert tensor.array.reshape(-1).tolist() == list(np.asarray(values).tolist())


def test_encode_batch_of_strings_and_decimals():
    strings = batch_codec(D.STRING(), "BYTES").encode_batch(["a", "é", ""])
    assert strings.array.reshape(-1).tolist() == [b"a", "é".encode(), b""]
    numbers = batch_codec(D.DECIMAL(20, 0), "UINT64").encode_batch(
        [decimal.Decimal(2**64 - 1), decimal.Decimal(0)])
    assert numbers.array.reshape(-1).tolist() == [2**64 - 1, 0]


def test_encode_batch_checks_ranges_and_names_the_column():
    with pytest.raises(TritonRequestError, match=r"Column 'x'.*256 is outside the UINT8 range"):
        batch_codec(D.SMALLINT(), "UINT8").encode_batch([1, 256])


def test_encode_batch_of_arrays_stacks_equal_shapes_and_refuses_mixed_ones():
    codec = batch_codec(D.ARRAY(D.FLOAT()), "FP32", dims=(-1,))
    assert codec.encode_batch([[1.0, 2.0], np.array([3.0, 4.0])]).shape == [2, 2]
    assert [codec.value_shape(v) for v in ([1.0], [1.0, 2.0])] == [(1,), (2,)]
    with pytest.raises(TritonRequestError, match="different shapes"):
        codec.encode_batch([[1.0], [1.0, 2.0]])


def test_decode_batch_of_scalars_stays_an_array_and_checks_the_batch():
    codec = OutputCodec(TensorColumn("y", D.DOUBLE()), "FP64", True, True)
    decoded = codec.decode_batch(np.array([[1.0], [2.0]]), 2, "m")
    assert isinstance(decoded, np.ndarray) and decoded.tolist() == [1.0, 2.0]
    with pytest.raises(TritonRequestError, match="needs a batch of 3"):
        codec.decode_batch(np.array([[1.0], [2.0]]), 3, "m")
    text = OutputCodec(TensorColumn("s", D.STRING()), "BYTES", True, True)
    assert text.decode_batch(np.array([[b"a"], ["é".encode()]], dtype=object), 2, "m") == [
        "a", "é"]
    arrays = OutputCodec(TensorColumn("v", D.ARRAY(D.INT())), "INT32", True, True)
    assert arrays.decode_batch(np.array([[1, 2], [3, 4]], dtype=np.int32), 2, "m") == [
        [1, 2], [3, 4]]


# --- cutting a vectorized call into requests ----------------------------------------------------

class EchoTransport:
    """Stands in for Triton: answers each request with its input doubled, and records it."""

    def __init__(self) -> None:
        self.requests: list[InferRequest] = []
        self.refused: float | None = None  # refuse (HTTP 400) requests holding this value

    async def infer(self, request: InferRequest):
        self.requests.append(request)
        values = request.inputs[0].array
        if self.refused is not None and (values == self.refused).any():
            raise TritonServerError("HTTP 400: refused", 400)
        arrays = {"y": values * 2}

        class Response:
            def as_numpy(self, name: str):
                return arrays.get(name)

        return Response()

    async def close(self) -> None:
        pass


def batch_session(max_batch_size: int, dims=(1,), data_type=None, datatype: str = "FP64",
                  **options: str):
    options = {"endpoint": "http://h:8000", "model-name": "m", **options}
    inference = TritonInference.create(options, [("x", data_type or D.DOUBLE())],
                                       ("y", data_type or D.DOUBLE()))
    column_in, column_out = inference.signature.inputs[0], inference.signature.outputs[0]
    batched = max_batch_size > 0
    bound = BoundSignature((InputCodec(column_in, datatype, 0, tuple(dims), batched, True),),
                           (OutputCodec(column_out, datatype, batched, True),), False,
                           max_batch_size)
    guard = RequestGuard(inference.options, InferenceMetrics())
    context = InstanceContext(inference.model, inference.options, inference.results, bound,
                              SequencePolicy.from_options(inference.options).for_subtask(0),
                              guard, Servers(inference.options, InferenceMetrics()))
    transport = EchoTransport()
    return BatchInferenceSession(context, transport), transport


def test_rows_are_cut_by_max_batch_size_and_reassembled_in_order():
    session, transport = batch_session(4)
    values = np.arange(10, dtype=np.float64)
    (result,) = session.infer_many(ColumnBatch([values]))
    assert result.tolist() == (values * 2).tolist()
    assert [r.inputs[0].shape for r in transport.requests] == [[4, 1], [4, 1], [2, 1]]
    session.close()


def test_batch_size_option_cuts_smaller_requests():
    session, transport = batch_session(64, **{"batch-size": "3"})
    session.infer_many(ColumnBatch([np.arange(7, dtype=np.float64)]))
    assert [r.inputs[0].shape[0] for r in transport.requests] == [3, 3, 1]


def test_unbatched_model_gets_one_request_per_row():
    session, transport = batch_session(0)
    (result,) = session.infer_many(ColumnBatch([np.array([1.0, 2.0, 3.0])]))
    assert list(result) == [2.0, 4.0, 6.0]
    assert [r.inputs[0].shape for r in transport.requests] == [[1], [1], [1]]


def test_rows_of_different_shapes_go_in_separate_requests():
    session, transport = batch_session(8, dims=(-1,), data_type=D.ARRAY(D.DOUBLE()))
    values = [[1.0], [2.0, 3.0], [4.0], [5.0, 6.0], [7.0]]
    (result,) = session.infer_many(ColumnBatch([values]))
    assert result == [[2.0], [4.0, 6.0], [8.0], [10.0, 12.0], [14.0]]
    assert sorted(r.inputs[0].shape for r in transport.requests) == [[2, 2], [3, 1]]


def test_null_rows_fail_naming_the_column_or_are_skipped():
    session, transport = batch_session(8)
    values = np.array([1.0, 0.0, 3.0])
    nulls = np.array([False, True, False])
    with pytest.raises(TritonRequestError, match=r"Column\(s\) \['x'\] are NULL"):
        session.infer_many(ColumnBatch([values], [nulls]))
    assert transport.requests == []
    skipping, transport = batch_session(8, **{"null-input": "skip"})
    (result,) = skipping.infer_many(ColumnBatch([values], [nulls]))
    assert list(result) == [2.0, None, 6.0]
    assert [r.inputs[0].shape for r in transport.requests] == [[2, 1]]


@pytest.mark.parametrize("error_fields", ["false", "true"])
def test_an_empty_batch_gives_empty_result_fields_without_a_request(error_fields):
    session, transport = batch_session(4, **{"error-fields": error_fields})
    results = session.infer_many(ColumnBatch([np.array([], dtype=np.float64)]))
    assert [len(r) for r in results] == [0] * (3 if error_fields == "true" else 1)
    assert transport.requests == []


# --- a vectorized call's integers: PyFlink's pandas form, kept exact ---------------------------

# Beyond float64's exact integers (2**53), and still in range when EchoTransport doubles them.
LARGE_INTEGERS = [2**53 + 1, None, 2**61 + 3, -(2**62) + 1, None, 2**62 - 1]


def pandas_column(values: list, arrow_type=None, flink_type=None) -> pd.Series:
    """The Series a pandas UDF gets from PyFlink's worker for an Arrow column of ``values``
    (float64 for integers with NULLs); BIGINT unless said."""
    batch = pa.RecordBatch.from_arrays([pa.array(values, type=arrow_type or pa.int64())],
                                       names=["v"])
    (series,) = pyflink.table.utils.arrow_to_pandas("UTC", [flink_type or D.BIGINT()], [batch])
    return series


def sent_to_flink(result: pd.Series | pd.DataFrame, flink_type, arrow_type) -> list:
    """The values of a pandas UDF's result as PyFlink's worker converts them for Flink."""
    batch = pyflink.table.utils.pandas_to_arrow(pa.schema([("r", arrow_type)]), "UTC",
                                                [flink_type], [result])
    return batch.column(0).to_pylist()


def vectorized_echo(max_batch_size: int, **options: str):
    """A BIGINT -> BIGINT vectorized function whose session doubles its inputs
    (EchoTransport), and that transport."""
    function = TritonVectorizedFunction(
        {"endpoint": "http://h:8000", "model-name": "m", **options}, [("x", D.BIGINT())],
        ("y", D.BIGINT()))
    function._session, transport = batch_session(max_batch_size, data_type=D.BIGINT(),
                                                 datatype="INT64", **options)
    return function, transport


def doubled(values: list) -> list:
    return [None if v is None else 2 * v for v in values]


@pytest.mark.parametrize("max_batch_size", [0, 4])  # results as Python ints / numpy arrays
def test_vectorized_integers_next_to_null_rows_stay_exact(max_batch_size):
    function, _ = vectorized_echo(max_batch_size, **{"null-input": "skip"})
    result = function.eval(pandas_column(LARGE_INTEGERS))
    assert sent_to_flink(result, D.BIGINT(), pa.int64()) == doubled(LARGE_INTEGERS)


def test_vectorized_row_result_next_to_a_failed_row_stays_exact():
    function, transport = vectorized_echo(
        0, **{"null-input": "skip", "default-value": "-7", "error-fields": "true"})
    transport.refused = 5
    values = [2**53 + 1, None, 5, 2**62 - 1]
    result = function.eval(pandas_column(values))
    row = pa.struct([("y", pa.int64()), ("ok", pa.bool_()), ("error", pa.string())])
    rows = sent_to_flink(result, function.result_type, row)
    assert [r["y"] for r in rows] == [2**54 + 2, None, -7, 2**63 - 2]
    assert [r["ok"] for r in rows] == [True, None, False, True]


def test_vectorized_integers_rounded_by_pyflink_are_refused_not_sent():
    function, transport = vectorized_echo(0, **{"null-input": "skip"})
    # Without the exact values (the workaround not applied, or a Series derived from
    # PyFlink's, which carries its attrs along), a value that may have been rounded fails.
    for rounded in (pd.Series([1.0, np.nan, 2.0**53]),
                    pandas_column(LARGE_INTEGERS).iloc[::-1].reset_index(drop=True)):
        with pytest.raises(TritonRequestError, match=r"Column 'x'.*rounded"):
            function.eval(rounded)
    assert transport.requests == []
    exact = pd.Series([2.0**53 - 1, np.nan, -(2.0**53) + 1])  # every one exact in float64
    assert sent_to_flink(function.eval(exact), D.BIGINT(), pa.int64()) == doubled(
        [2**53 - 1, None, -(2**53) + 1])


def test_other_pandas_functions_see_what_pyflink_gave_them_before():
    import pyflink.fn_execution.coder_impl_fast
    import pyflink.fn_execution.coder_impl_slow

    series = pandas_column(LARGE_INTEGERS)
    pd.testing.assert_series_equal(series, pa.array(LARGE_INTEGERS, pa.int64()).to_pandas()
                                   .rename("v"))
    assert series.dtype == np.float64
    # pandas compares the attrs of concatenated Series (numpy arrays there would raise), and
    # pickles them with the Series.
    assert pd.concat([series, pandas_column(LARGE_INTEGERS)], axis=1).shape == (6, 2)
    pd.testing.assert_series_equal(pickle.loads(pickle.dumps(series)), series)
    assert pandas_column([1, None], pa.int8(), D.TINYINT()).attrs == {}  # exact as float64
    for module in (pyflink.table.utils, pyflink.fn_execution.coder_impl_fast,
                   pyflink.fn_execution.coder_impl_slow):  # what the worker's decoders call
        assert module.arrow_to_pandas.keeps_exact_int64, module


# --- the HTTP request -------------------------------------------------------------------------

@pytest.mark.parametrize("binary", ["true", "false"])
def test_http_request_asks_for_the_outputs_in_the_chosen_form(binary):
    options = TritonOptions.from_dict({"endpoint": "http://h:8000/gw", "model-name": "m",
                                       "binary-data": binary})
    transport = HttpTransport.for_options(options, options.endpoint.servers[0])
    codec = InputCodec(TensorColumn("x", D.FLOAT()), "FP32", 0, (1,), False, binary == "true")
    wire = transport._post(InferRequest(ModelRef("m"), [codec.encode(1.0)], ("OUT_A", "OUT_B")))
    head, _, body = wire.partition(b"\r\n\r\n")
    request_line, *lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    size = headers.get("Inference-Header-Content-Length")
    header = json.loads(body[:int(size)] if size else body)
    assert request_line == "POST /gw/v2/models/m/infer HTTP/1.1"
    assert headers["Host"] == "h:8000" and int(headers["Content-Length"]) == len(body)
    assert header["outputs"] == [{"name": n, "parameters": {"binary_data": binary == "true"}}
                                 for n in ("OUT_A", "OUT_B")]


def test_the_sequence_id_header_carries_the_id_of_a_sequence_request_only():
    options = TritonOptions.from_dict({"endpoint": "http://h:8000", "model-name": "m",
                                       "sequence-id-header": "X-Sequence-Id"})
    transport = HttpTransport.for_options(options, options.endpoint.servers[0])
    codec = InputCodec(TensorColumn("x", D.FLOAT()), "FP32", 0, (1,), False, True)

    def headers(sequence: SequenceParams | None) -> dict[str, str]:
        wire = transport._post(InferRequest(ModelRef("m"), [codec.encode(1.0)], ("Y",),
                                            sequence))
        lines = wire.partition(b"\r\n\r\n")[0].decode().split("\r\n")[1:]
        return dict(line.split(": ", 1) for line in lines)

    assert headers(SequenceParams("key 7-ü", False, False))["X-Sequence-Id"] == "key%207-%C3%BC"
    assert headers(SequenceParams(42, True, True))["X-Sequence-Id"] == "42"
    assert "X-Sequence-Id" not in headers(None)


@pytest.mark.parametrize("error_fields", [False, True])
def test_a_failed_request_gives_its_rows_the_fallback_in_place(error_fields):
    options = {"default-value": "-1", "batch-size": "2"}
    if error_fields:
        options["error-fields"] = "true"
    session, transport = batch_session(64, **options)
    transport.refused = 6.0
    values = np.arange(10, dtype=np.float64)
    nulls = np.zeros(10, dtype=bool)
    nulls[1] = True  # a NULL input fails its row too ('null-input' = 'fail')
    results = session.infer_many(ColumnBatch([values], [nulls]))
    # Requests of rows [0, 2], [3, 4], [5, 6], [7, 8], [9]: the one with 6 is refused.
    expected = [0.0, -1.0, 4.0, 6.0, 8.0, -1.0, -1.0, 14.0, 16.0, 18.0]
    assert list(results[0]) == expected
    if error_fields:
        ok, errors = results[1], results[2]
        assert list(ok) == [y != -1.0 for y in expected]
        assert [e is None for e in errors] == list(ok)
        assert "are NULL" in errors[1]
        assert "refused" in errors[5] and "refused" in errors[6]
    else:
        assert len(results) == 1
    assert session.context.guard.metrics.fallbacks.value == 3


def test_a_failed_request_without_a_fallback_fails_the_call():
    session, transport = batch_session(64, **{"batch-size": "2"})
    transport.refused = 6.0
    with pytest.raises(TritonServerError, match="refused"):
        session.infer_many(ColumnBatch([np.arange(10, dtype=np.float64)]))
