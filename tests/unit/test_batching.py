"""Unit tests of the batch paths: batch codecs, how a vectorized call is cut into requests and
reassembled, and the HTTP request's requested outputs. The transport here is a stand-in that
echoes the request (pure logic: cutting, ordering, NULL handling); what a real Triton answers
is tested in tests/integration/test_modes.py."""

from __future__ import annotations

import decimal
import json

import numpy as np
import pytest
from pyflink.table import DataTypes as D

from pyflink_triton.codec import InputCodec, OutputCodec, TensorColumn
from pyflink_triton.errors import TritonRequestError, TritonServerError
from pyflink_triton.http_transport import HttpTransport
from pyflink_triton.inference import BatchInferenceSession, RecordCodec, TritonInference
from pyflink_triton.metrics import InferenceMetrics
from pyflink_triton.options import TritonOptions
from pyflink_triton.reliable import RequestGuard
from pyflink_triton.sequence import SequencePolicy
from pyflink_triton.signature import BoundSignature
from pyflink_triton.transport import InferRequest, ModelRef


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


def batch_session(max_batch_size: int, dims=(1,), data_type=None, **options: str):
    options = {"endpoint": "http://h:8000", "model-name": "m", **options}
    inference = TritonInference.create(options, [("x", data_type or D.DOUBLE())],
                                       ("y", data_type or D.DOUBLE()))
    column_in, column_out = inference.signature.inputs[0], inference.signature.outputs[0]
    batched = max_batch_size > 0
    datatype = "FP64"
    bound = BoundSignature((InputCodec(column_in, datatype, 0, tuple(dims), batched, True),),
                           (OutputCodec(column_out, datatype, batched, True),), False,
                           max_batch_size)
    guard = RequestGuard(inference.options, InferenceMetrics())
    records = RecordCodec(inference, bound, SequencePolicy.from_options(
        inference.options).for_subtask(0), guard, None)
    transport = EchoTransport()
    return BatchInferenceSession(records, transport, inference.options), transport


def test_rows_are_cut_by_max_batch_size_and_reassembled_in_order():
    session, transport = batch_session(4)
    values = np.arange(10, dtype=np.float64)
    (result,) = session.infer_columns([values])
    assert result.tolist() == (values * 2).tolist()
    assert [r.inputs[0].shape for r in transport.requests] == [[4, 1], [4, 1], [2, 1]]
    session.close()


def test_batch_size_option_cuts_smaller_requests():
    session, transport = batch_session(64, **{"batch-size": "3"})
    session.infer_columns([np.arange(7, dtype=np.float64)])
    assert [r.inputs[0].shape[0] for r in transport.requests] == [3, 3, 1]


def test_unbatched_model_gets_one_request_per_row():
    session, transport = batch_session(0)
    (result,) = session.infer_columns([np.array([1.0, 2.0, 3.0])])
    assert list(result) == [2.0, 4.0, 6.0]
    assert [r.inputs[0].shape for r in transport.requests] == [[1], [1], [1]]


def test_rows_of_different_shapes_go_in_separate_requests():
    session, transport = batch_session(8, dims=(-1,), data_type=D.ARRAY(D.DOUBLE()))
    values = [[1.0], [2.0, 3.0], [4.0], [5.0, 6.0], [7.0]]
    (result,) = session.infer_columns([values])
    assert result == [[2.0], [4.0, 6.0], [8.0], [10.0, 12.0], [14.0]]
    assert sorted(r.inputs[0].shape for r in transport.requests) == [[2, 2], [3, 1]]


def test_null_rows_fail_naming_the_column_or_are_skipped():
    session, transport = batch_session(8)
    values = np.array([1.0, 0.0, 3.0])
    nulls = np.array([False, True, False])
    with pytest.raises(TritonRequestError, match=r"Column\(s\) \['x'\] are NULL"):
        session.infer_columns([values], [nulls])
    assert transport.requests == []
    skipping, transport = batch_session(8, **{"null-input": "skip"})
    (result,) = skipping.infer_columns([values], [nulls])
    assert list(result) == [2.0, None, 6.0]
    assert [r.inputs[0].shape for r in transport.requests] == [[2, 1]]


# --- the HTTP request -------------------------------------------------------------------------

@pytest.mark.parametrize("binary", ["true", "false"])
def test_http_request_asks_for_the_outputs_in_the_chosen_form(binary):
    options = TritonOptions.from_dict({"endpoint": "http://h:8000/gw", "model-name": "m",
                                       "binary-data": binary})
    transport = HttpTransport.for_options(options)
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
    results = session.infer_columns([values], [nulls])
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
    assert session._records.guard.metrics.fallbacks.value == 3


def test_a_failed_request_without_a_fallback_fails_the_call():
    session, transport = batch_session(64, **{"batch-size": "2"})
    transport.refused = 6.0
    with pytest.raises(TritonServerError, match="refused"):
        session.infer_columns([np.arange(10, dtype=np.float64)])
