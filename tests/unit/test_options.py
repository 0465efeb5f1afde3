"""Unit tests of pyflink_triton.options: parsing, defaults, validation and messages."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

import pytest
from pyflink.table import DataTypes

from pyflink_triton.errors import TritonConfigError
from pyflink_triton.options import (
    PROVIDER,
    TritonOptions,
    option_specs,
    parse_bool,
    parse_headers,
    parse_null_input,
    parse_positive_duration,
    parse_tensor_names,
    reference_markdown,
)
from pyflink_triton.options.endpoint import Endpoint
from pyflink_triton.sessions.function import TritonInference

BASE = {"endpoint": "localhost:8000", "model-name": "m"}

ALL_KEYS = {
    "sequence-id-header",
    "protocol",
    "mode",
    "max-concurrent-requests",
    "batch-size",
    "endpoint",
    "model-name",
    "provider",
    "model-version",
    "timeout",
    "sequence-id",
    "sequence-id-auto-increment",
    "sequence-id-type",
    "sequence-start",
    "sequence-end",
    "priority",
    "auth-token",
    "custom-headers",
    "compression",
    "input-names",
    "output-names",
    "binary-data",
    "null-input",
    "half-precision-inputs",
    "flatten-batch-dim",
    # failure handling (issue 5)
    "max-retries",
    "retry-initial-backoff",
    "retry-max-backoff",
    "record-timeout",
    "default-value",
    "error-fields",
    "circuit-breaker-enabled",
    "circuit-breaker-failure-threshold",
    "circuit-breaker-timeout",
    "circuit-breaker-half-open-requests",
    "health-check-enabled",
    "health-check-interval",
    "tls-ca-cert",
    "tls-client-cert",
    "tls-client-key",
    "tls-verify",
    # failover sequences (issue 6)
    "sequence-id-counter-init-strategy",
    "sequence-idle-timeout",
    "sequence-replay-records",
    "sequence-slots",
}
BOOLEAN_KEYS = ["sequence-start", "sequence-end", "sequence-id-auto-increment", "binary-data",
                "half-precision-inputs", "flatten-batch-dim", "error-fields",
                "circuit-breaker-enabled", "health-check-enabled"]

AUTO_INCREMENT = {
    "sequence-id": "flink-job-123",
    "sequence-id-auto-increment": "true",
    "sequence-start": "true",
    "sequence-end": "true",
}


def parse(**extra: object) -> TritonOptions:
    return TritonOptions.from_dict({**BASE, **extra})


def parse_keys(options: dict[str, object]) -> TritonOptions:
    return TritonOptions.from_dict({**BASE, **options})


def config_error(options: dict[str, object], *, base: bool = True) -> str:
    with pytest.raises(TritonConfigError) as info:
        TritonOptions.from_dict({**BASE, **options} if base else options)
    return str(info.value)


# --- the set of options --------------------------------------------------------------------------

def test_option_keys_are_exactly_the_documented_ones():
    assert {spec.key for spec in option_specs()} == ALL_KEYS


def test_every_option_has_accepted_text_and_description():
    for spec in option_specs():
        assert spec.accepted.strip(), spec.key
        assert spec.description.strip(), spec.key


def test_only_endpoint_and_model_name_are_required():
    assert {spec.key for spec in option_specs() if spec.required} == {"endpoint", "model-name"}


def test_secret_options_are_auth_token_and_custom_headers():
    assert {spec.key for spec in option_specs() if spec.secret} == {"auth-token", "custom-headers"}


# --- defaults ------------------------------------------------------------------------------------

def test_defaults_with_only_required_options():
    options = parse()
    assert options.endpoint.servers == (Endpoint("http", "localhost", 8000),)
    assert options.model_name == "m"
    assert options.provider == PROVIDER == "triton"
    assert options.model_version is None
    assert options.timeout == timedelta(seconds=30)
    assert options.sequence_id is None
    assert options.sequence_id_auto_increment is False
    assert options.sequence_id_type == "string"
    assert options.sequence_start is False
    assert options.sequence_end is False
    assert options.priority is None
    assert options.auth_token is None
    assert options.custom_headers == ()
    assert options.compression is None
    assert options.input_names == ()
    assert options.output_names == ()
    assert options.binary_data is True
    assert options.null_input == "fail"
    assert options.half_precision_inputs is False
    assert options.flatten_batch_dim is False


def test_options_are_immutable():
    options = parse()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.model_name = "other"  # type: ignore[misc]


def test_parsed_options_compare_equal():
    assert parse(timeout="1 min") == parse(timeout="60s")


# --- every option parsed -------------------------------------------------------------------------

def test_all_options_together():
    options = parse_keys({
        "endpoint": "https://triton:8443/gw/v2/models",
        "model-name": "My_Model",
        "provider": "triton",
        "model-version": "3",
        "timeout": "45s",
        "sequence-id": "42",
        "sequence-id-type": "uint64",
        "sequence-start": "TRUE",
        "sequence-end": "False",
        "priority": "7",
        "auth-token": "tok",
        "custom-headers": "X-A:1,X-B:2",
        "compression": "gzip",
        "input-names": "x:INPUT__0,y:INPUT__1",
        "output-names": "OUTPUT__0",
        "binary-data": "false",
        "null-input": "skip",
        "half-precision-inputs": "true",
        "flatten-batch-dim": "true",
    })
    assert options.endpoint.servers == (Endpoint("https", "triton", 8443, "/gw"),)
    assert options.model_name == "My_Model"
    assert options.model_version == "3"
    assert options.timeout == timedelta(seconds=45)
    assert options.sequence_id == "42"
    assert options.sequence_id_type == "uint64"
    assert options.sequence_start is True
    assert options.sequence_end is False
    assert options.priority == 7
    assert options.auth_token == "tok"
    assert options.custom_headers == (("X-A", "1"), ("X-B", "2"))
    assert options.compression == "gzip"
    assert options.input_names == (("x", "INPUT__0"), ("y", "INPUT__1"))
    assert options.output_names == ((None, "OUTPUT__0"),)
    assert options.binary_data is False
    assert options.null_input == "skip"
    assert options.half_precision_inputs is True
    assert options.flatten_batch_dim is True


def test_model_name_is_case_sensitive():
    assert parse_keys({"model-name": "ResNet50_ONNX"}).model_name == "ResNet50_ONNX"


@pytest.mark.parametrize("text, expected", [
    ("localhost:8000", Endpoint("http", "localhost", 8000)),
    ("https://triton-server:8000/v2/models", Endpoint("https", "triton-server", 8000)),
    ("https://triton-server", Endpoint("https", "triton-server", 443)),
    ("http://gw:80/prefix/v2/", Endpoint("http", "gw", 80, "/prefix")),
])
def test_endpoint_option(text, expected):
    assert parse_keys({"endpoint": text}).endpoint.servers == (expected,)


def test_keys_are_stripped():
    options = TritonOptions.from_dict({" endpoint ": "h:1", "model-name ": "m", " timeout": "1s"})
    assert options.timeout == timedelta(seconds=1)


def test_provider_triton_accepted():
    assert parse(provider="triton").provider == "triton"


@pytest.mark.parametrize("provider", [" triton ", "triton\n", "Triton", "TRITON"])
def test_provider_must_be_exactly_triton(provider):
    """Flink's FactoryUtil.discoverFactory matches the identifier with equals(): no trimming,
    no lower-casing."""
    message = config_error({"provider": provider})
    assert message.startswith(f"Invalid value for option 'provider': {provider!r}: Flink "
                              "matches a model's 'provider' exactly and case-sensitively")
    assert "write 'triton'" in message


@pytest.mark.parametrize("version", ["1", "3", "12", " 7 "])
def test_model_version_positive_integer(version):
    assert parse_keys({"model-version": version}).model_version == version.strip()


@pytest.mark.parametrize("version", ["", "   "])
def test_model_version_empty_means_unset(version):
    assert parse_keys({"model-version": version}).model_version is None


@pytest.mark.parametrize("value", ["gzip", "GZIP", " Gzip "])
def test_compression_gzip(value):
    assert parse(compression=value).compression == "gzip"


def test_compression_empty_means_unset():
    assert parse(compression="").compression is None


@pytest.mark.parametrize("value, expected", [("0", 0), ("5", 5), (" 12 ", 12), ("+3", 3), (9, 9)])
def test_priority(value, expected):
    assert parse(priority=value).priority == expected


@pytest.mark.parametrize("value, expected", [
    ("string", "string"), ("STRING", "string"), ("uint64", "uint64"), ("UInt64", "uint64"),
])
def test_sequence_id_type(value, expected):
    options = parse_keys({"sequence-id": "5", "sequence-id-type": value})
    assert options.sequence_id_type == expected


def test_sequence_id_plain():
    options = parse_keys({"sequence-id": "flink-job-123"})
    assert options.sequence_id == "flink-job-123"
    assert options.sequence_id_auto_increment is False


def test_auto_increment_seed_options():
    options = parse_keys(AUTO_INCREMENT)
    assert options.sequence_id == "flink-job-123"
    assert options.sequence_id_auto_increment is True
    assert options.sequence_start is True
    assert options.sequence_end is True


def test_auth_token_kept_verbatim():
    assert parse_keys({"auth-token": "Bearer abc.def"}).auth_token == "Bearer abc.def"


# --- booleans ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("true", True), ("TRUE", True), ("True", True), ("tRuE", True), (" true ", True),
    ("false", False), ("FALSE", False), ("False", False), ("fAlSe", False), ("\tfalse\n", False),
    (True, True), (False, False),
])
@pytest.mark.parametrize("key", [k for k in BOOLEAN_KEYS if k != "sequence-id-auto-increment"])
def test_boolean_forms(key, text, expected):
    options = parse_keys({"sequence-id": "s", key: text})
    assert getattr(options, key.replace("-", "_")) is expected


@pytest.mark.parametrize("text", ["yes", "no", "1", "0", "t", "", "on", "truee"])
def test_parse_bool_rejects(text):
    with pytest.raises(ValueError):
        parse_bool(text)


@pytest.mark.parametrize("key", BOOLEAN_KEYS)
@pytest.mark.parametrize("text", ["yes", "1", "on", "enabled", ""])
def test_invalid_boolean_message(key, text):
    message = config_error({"sequence-id": "s", key: text})
    assert message == (f"Invalid value for option '{key}': {text!r}: not a boolean. Expected "
                       "true or false (any case).")


# --- durations -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("30s", timedelta(seconds=30)),
    ("30 s", timedelta(seconds=30)),
    ("500ms", timedelta(milliseconds=500)),
    ("500 ms", timedelta(milliseconds=500)),
    ("1 min", timedelta(minutes=1)),
    ("1min", timedelta(minutes=1)),
    ("1m", timedelta(minutes=1)),
    ("2 h", timedelta(hours=2)),
    ("2h", timedelta(hours=2)),
    ("2 hours", timedelta(hours=2)),
    ("1d", timedelta(days=1)),
    ("1 day", timedelta(days=1)),
    ("3 days", timedelta(days=3)),
    ("10 sec", timedelta(seconds=10)),
    ("10 secs", timedelta(seconds=10)),
    ("10 second", timedelta(seconds=10)),
    ("10 seconds", timedelta(seconds=10)),
    ("10 SECONDS", timedelta(seconds=10)),
    ("10 Min", timedelta(minutes=10)),
    ("5 minutes", timedelta(minutes=5)),
    ("250 milli", timedelta(milliseconds=250)),
    ("250 millis", timedelta(milliseconds=250)),
    ("250 milliseconds", timedelta(milliseconds=250)),
    ("1500", timedelta(milliseconds=1500)),
    ("100", timedelta(milliseconds=100)),
    (" 7s ", timedelta(seconds=7)),
    ("5000us", timedelta(milliseconds=5)),
    ("5000 µs", timedelta(milliseconds=5)),
    ("5000 micros", timedelta(milliseconds=5)),
    (250, timedelta(milliseconds=250)),
])
def test_timeout_durations(text, expected):
    assert parse(timeout=text).timeout == expected


@pytest.mark.parametrize("text, expected", [
    ("2000000ns", timedelta(milliseconds=2)),
    ("1000000 nanos", timedelta(milliseconds=1)),
    ("3000000000 nanoseconds", timedelta(seconds=3)),
])
def test_timeout_nanosecond_units(text, expected):
    """Flink's nanosecond labels are accepted; a whole number of microseconds is exact."""
    assert parse(timeout=text).timeout == expected


@pytest.mark.parametrize("text", [
    "abc", "", " ", "s", "1.5s", "-1s", "1 h 30 min", "30 sx", "ten seconds", "1,000ms",
])
def test_timeout_not_a_duration(text):
    message = config_error({"timeout": text})
    assert "'timeout'" in message
    assert repr(text) in message
    assert "positive duration" in message
    assert "30s" in message


@pytest.mark.parametrize("text", ["0", "0s", "0 ms", "0 min"])
def test_timeout_must_be_positive(text):
    message = config_error({"timeout": text})
    assert "'timeout'" in message
    assert repr(text) in message
    assert "positive" in message


def test_parse_positive_duration_direct():
    assert parse_positive_duration("2 h") == timedelta(hours=2)
    with pytest.raises(ValueError, match="positive"):
        parse_positive_duration("0")


@pytest.mark.parametrize("text", ["99999999999d", "99999999999999999999999999 ms"])
def test_timeout_too_large_is_a_config_error(text):
    message = config_error({"timeout": text})
    assert "'timeout'" in message


# --- null-input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("fail", "fail"), ("FAIL", "fail"), (" Fail ", "fail"),
    ("skip", "skip"), ("SKIP", "skip"), ("\tskip\n", "skip"),
])
def test_null_input(text, expected):
    assert parse_null_input(text) == expected
    assert parse(**{"null-input": text}).null_input == expected


@pytest.mark.parametrize("text", ["", "ignore", "null", "skipped", "true", "fail,skip"])
def test_null_input_invalid(text):
    message = config_error({"null-input": text})
    assert message == (f"Invalid value for option 'null-input': {text!r}: not one of the NULL "
                       "input behaviours. Expected fail or skip.")


# --- input-names / output-names ------------------------------------------------------------------

TENSOR_NAME_KEYS = ["input-names", "output-names"]


@pytest.mark.parametrize("text, expected", [
    # positional: the n-th column feeds (or the n-th field is) the n-th tensor
    ("INPUT__0", ((None, "INPUT__0"),)),
    ("INPUT__0,INPUT__1", ((None, "INPUT__0"), (None, "INPUT__1"))),
    (" a , b ", ((None, "a"), (None, "b"))),
    ("a,", ((None, "a"),)),  # a trailing comma is ignored, as in Flink's map syntax
    # by column name
    ("x:INPUT__0", (("x", "INPUT__0"),)),
    ("x:INPUT__0,y:INPUT__1", (("x", "INPUT__0"), ("y", "INPUT__1"))),
    (" x : A , y:B ", (("x", "A"), ("y", "B"))),
    ("y:B,x:A", (("y", "B"), ("x", "A"))),  # order kept
    ("x:y,y:x", (("x", "y"), ("y", "x"))),  # a swap
    ("Label:label", (("Label", "label"),)),  # case-sensitive names
    ("a b:c d", (("a b", "c d"),)),
    # quoting, as Flink's StructuredOptionsSplitter: a name containing ',' is quoted; one
    # containing ':' is quoted and then its whole entry too (with the other quote character)
    ("'a,b'", ((None, "a,b"),)),
    ("'a,b',c", ((None, "a,b"), (None, "c"))),
    ("\"'a:b'\"", ((None, "a:b"),)),
    ("\"'my:col':T\"", (("my:col", "T"),)),
    ("'x:\"T:0\"'", (("x", "T:0"),)),
    ("\"x:'a,b'\",y:c", (("x", "a,b"), ("y", "c"))),
    ("'x',\"y\"", ((None, "x"), (None, "y"))),
])
@pytest.mark.parametrize("key", TENSOR_NAME_KEYS)
def test_tensor_names(key, text, expected):
    assert parse_tensor_names(text) == expected
    assert getattr(parse(**{key: text}), key.replace("-", "_")) == expected


@pytest.mark.parametrize("text, reason", [
    ("", "the value is empty"),
    ("   ", "the value is empty"),
    (",", "'' is neither column:TENSOR nor TENSOR"),
    ("a,,b", "'' is neither column:TENSOR nor TENSOR"),
    (",a", "'' is neither column:TENSOR nor TENSOR"),
    (":X", "':X' is neither column:TENSOR nor TENSOR"),
    ("a::b", "'a::b' is neither column:TENSOR nor TENSOR"),
    ("a:b:c", "'a:b:c' is neither column:TENSOR nor TENSOR"),
    ("'',X", "'' is neither column:TENSOR nor TENSOR"),
    ("x:A,B", "mix of column:TENSOR and positional entries; use one form"),
    ("A,x:B", "mix of column:TENSOR and positional entries; use one form"),
    ("x:A,x:B", "column x appears twice"),
    ("x:A,y:A", "tensor A appears twice"),
    ("A,A", "tensor A appears twice"),
    ("A,B,A,B", "tensor A, B appears twice"),
    ("'my:col':T", "illegal quoting at position 7"),
    ("a'b", "illegal quoting at position 1"),
    ("'a", "a quote is not closed"),
    ("\"x:'a\"", "a quote is not closed"),
])
@pytest.mark.parametrize("key", TENSOR_NAME_KEYS)
def test_tensor_names_invalid(key, text, reason):
    message = config_error({key: text})
    assert message.startswith(f"Invalid value for option '{key}': {text!r}: {reason}. Expected ")
    assert "(by position)" in message
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_tensor_names(text)


def test_tensor_names_messages_name_the_mapping_forms():
    message = config_error({"input-names": "x:A,B"})
    assert message.endswith("Expected col:TENSOR,col2:TENSOR2 (by column name) or "
                            "TENSOR,TENSOR2 (by position); quote a name containing ',' or ':' "
                            "as in 'custom-headers'.")
    message = config_error({"output-names": "x:A,B"})
    assert message.endswith("Expected field:TENSOR,field2:TENSOR2 (by field name) or "
                            "TENSOR,TENSOR2 (by position).")


def test_input_and_output_names_are_independent():
    options = parse(**{"input-names": "a:X", "output-names": "X"})
    assert options.input_names == (("a", "X"),)
    assert options.output_names == ((None, "X"),)


@pytest.mark.parametrize("text", ["a:", "values:,Label:"])
def test_tensor_names_entry_with_empty_tensor(text):
    with pytest.raises(ValueError, match="neither column:TENSOR nor TENSOR"):
        parse_tensor_names(text)


# --- custom headers ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("X-A:1", (("X-A", "1"),)),
    ("X-A:1,X-B:2", (("X-A", "1"), ("X-B", "2"))),
    (" X-A : 1 , X-B:2 ", (("X-A", "1"), ("X-B", "2"))),
    ("X-A:1,", (("X-A", "1"),)),
    ("", ()),
    # As in Flink's StructuredOptionsSplitter, a quote may only open a whole part: a value
    # with ':' is quoted, and then its entry is quoted too (with the other quote character).
    ("'X-Url:\"http://h:1\"'", (("X-Url", "http://h:1"),)),
    ("\"X-Url:'http://h:1'\"", (("X-Url", "http://h:1"),)),
    ("'X-List:a,b',X-C:c", (("X-List", "a,b"), ("X-C", "c"))),
    ("\"X-List:a,b\"", (("X-List", "a,b"),)),
    ("\"X-Q:'it''s'\"", (("X-Q", "it's"),)),
    ("'X-Q:\"say \"\"hi\"\"\"'", (("X-Q", 'say "hi"'),)),
    ("\"X-Empty:''\"", (("X-Empty", ""),)),
    ("X-Tilde~!#$%&*+.^_`|:v", (("X-Tilde~!#$%&*+.^_`|", "v"),)),
    ("Authorization:Bearer abc", (("Authorization", "Bearer abc"),)),
])
def test_custom_headers_flink_map_syntax(text, expected):
    assert parse_headers(text) == expected
    assert parse_keys({"custom-headers": text}).custom_headers == expected


@pytest.mark.parametrize("name", [
    "Content-Length", "content-type", "CONTENT-ENCODING", "Inference-Header-Content-Length",
    "Host", "Transfer-Encoding",
])
def test_custom_headers_reserved(name):
    message = config_error({"custom-headers": f"{name}:verysecretvalue"})
    assert "'custom-headers'" in message
    assert name in message
    assert "set by the client" in message
    assert "verysecretvalue" not in message


@pytest.mark.parametrize("text, fragment", [
    ("bad name:verysecretvalue", "entry 1: the name is not a valid HTTP header name"),
    ("X(A):verysecretvalue", "entry 1: the name is not a valid HTTP header name"),
    ("verysecretvalue", "entry 1: it is not NAME:value"),
    ("X-A:verysecretvalue:other", "entry 1: it is not NAME:value"),
    ("X-A:'verysecretvalue", "entry 1: illegal quoting"),
    ("X-B:\"verysecret,value\"", "entry 1: illegal quoting"),
    ("'X-A:verysecretvalue", "entry 1: a quote is not closed"),
    ("'X-A:verysecret'value", "entry 1: illegal quoting"),
    ("X-Empty:", "entry 1: it is not NAME:value"),
    ("X-A:1,X-B:2,bad name:verysecretvalue", "entry 3: the name is not a valid"),
    ("X-A:1,'X-B:verysecretvalue", "entry 2: a quote is not closed"),
    ("X-A:1,X-B:'verysecretvalue'x", "entry 2: illegal quoting"),
    ("X-A:1,\"X-B:'verysecretvalue\"", "entry 2: a quote is not closed"),
])
def test_custom_headers_invalid(text, fragment):
    message = config_error({"custom-headers": text})
    assert "'custom-headers'" in message
    assert fragment in message
    assert "verysecretvalue" not in message
    assert "(secret value not shown)" in message
    assert "Flink map syntax" in message


@pytest.mark.parametrize("text, number", [
    # a header name made of a token fragment, as when the ':' went to the wrong place
    ("Authorization Bearer verysecretvalue:x", 1),
    ("X-A:1,Authorization Bearer verysecretvalue:x", 2),
    ("X-A:1,Bearer verysecretvalue", 2),
    ("verysecretvalue'x:y", 1),
    ("X-A:verysecretvalue'x", 1),
])
def test_custom_headers_reasons_never_echo_the_value(text, number):
    message = config_error({"custom-headers": text})
    assert "verysecret" not in message
    assert "Bearer" not in message
    assert f": entry {number}: " in message


@pytest.mark.parametrize("text, number, kind", [
    ("X-A:abc\r\nX-Injected", 1, "a line break (CR or LF)"),
    ("'X-A:\"verysecretvalue\r\nX-Injected: 1\"'", 1, "a line break (CR or LF)"),
    ("X-A:1,X-B:verysecret\nvalue", 2, "a line break (CR or LF)"),
    ("X-A:verysecret\x00value", 1, "a NUL character"),
    ("X-A:verysecret\tvalue", 1, "a control character"),
    ("X-A:verysecret\x7fvalue", 1, "a control character"),
    ("X-A:verysecretvalu\u00e9", 1, "a non-ASCII character"),
    ("X-A:verysecret\u20acvalue", 1, "a non-ASCII character"),
])
def test_custom_headers_values_must_be_printable_ascii(text, number, kind):
    """http1.py writes header lines as latin-1 text: a CR LF in a value would add a header."""
    message = config_error({"custom-headers": text})
    assert f"entry {number}: the value contains {kind}" in message
    assert "printable ASCII only (0x20-0x7E)" in message
    assert "verysecret" not in message
    assert "Injected" not in message


def test_custom_header_name_with_a_final_line_break_is_refused():
    """A quoted name keeps its line break; re.match's $ used to let it through."""
    message = config_error({"custom-headers": "\"'X-A\n':v\""})
    assert "entry 1: the name is not a valid HTTP header name" in message


def test_custom_headers_accept_all_of_printable_ascii():
    value = "".join(chr(code) for code in range(0x20, 0x7F))
    entry = "X-All:'" + value.replace("'", "''") + "'"  # quoted value, then quoted entry
    assert parse_headers('"' + entry.replace('"', '""') + '"') == (("X-All", value),)


# --- invalid values: the message names key, value and what is expected ---------------------------

@pytest.mark.parametrize("key, value, expected_text", [
    ("provider", "openai", "'triton'"),
    ("model-version", "0", "positive integer"),
    ("model-version", "-1", "positive integer"),
    ("model-version", "v1", "positive integer"),
    ("model-version", "1.0", "positive integer"),
    ("priority", "-1", "non-negative integer"),
    ("priority", "high", "non-negative integer"),
    ("priority", "1.5", "non-negative integer"),
    ("compression", "br", "gzip"),
    ("compression", "deflate", "gzip"),
    ("sequence-id-type", "int", "string or uint64"),
    ("sequence-id-type", "uint32", "string or uint64"),
    ("model-name", "", "non-empty"),
    ("model-name", "   ", "non-empty"),
    ("sequence-id", "", "non-empty"),
    ("endpoint", "ftp://h:1", "http or https"),
    ("endpoint", "http://h:notaport", "http or https"),
    ("timeout", "forever", "positive duration"),
    ("binary-data", "binary", "true or false"),
    ("half-precision-inputs", "fp16", "true or false"),
    ("flatten-batch-dim", "yes", "true or false"),
    ("null-input", "drop", "fail or skip"),
    ("input-names", "a:b,c", "col:TENSOR,col2:TENSOR2"),
    ("output-names", "", "field:TENSOR,field2:TENSOR2"),
])
def test_invalid_value_message(key, value, expected_text):
    message = config_error({"sequence-id": "s", key: value})
    assert message.startswith(f"Invalid value for option '{key}': {value!r}")
    assert "Expected" in message
    assert expected_text in message


def test_all_invalid_values_reported_together():
    message = config_error({"timeout": "x", "priority": "-3", "compression": "zip",
                            "input-names": "a:A,B", "null-input": "no"})
    assert "'timeout'" in message
    assert "'priority'" in message
    assert "'compression'" in message
    assert "'input-names'" in message
    assert "'null-input'" in message
    assert len(message.splitlines()) == 5


def test_provider_message_explains_only_triton():
    message = config_error({"provider": "openai"})
    assert "'triton' provider only" in message


def test_model_version_latest_rejected_with_explanation():
    for text in ("latest", "LATEST", " Latest "):
        message = config_error({"model-version": text})
        assert "'model-version'" in message
        assert "404" in message
        assert "'latest'" in message
        assert "leave 'model-version' unset" in message


# --- secrets -------------------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["", "   "])
def test_empty_auth_token_message_hides_value(token):
    message = config_error({"auth-token": token})
    assert "'auth-token'" in message
    assert "(secret value not shown)" in message
    assert "non-empty token" in message


@pytest.mark.parametrize("token, kind", [
    ("abc\r\nX-Injected: 1", "a line break (CR or LF)"),
    ("abc\nX-Injected: 1", "a line break (CR or LF)"),
    ("Bearer abc\rX-Injected: 1", "a line break (CR or LF)"),
    ("abc\x00X-Injected", "a NUL character"),
    ("abc\tX-Injected", "a control character"),
    ("abc\x1bX-Injected", "a control character"),
    ("abcX-Injected\u00e9", "a non-ASCII character"),
    ("abc\u2028X-Injected", "a non-ASCII character"),
])
def test_auth_token_must_be_printable_ascii(token, kind):
    """It becomes the Authorization header (gRPC: metadata, printable ASCII only)."""
    message = config_error({"auth-token": token})
    assert message.startswith("Invalid value for option 'auth-token': (secret value not "
                              f"shown): the token contains {kind}")
    assert "printable ASCII only (0x20-0x7E)" in message
    assert "abc" not in message
    assert "Injected" not in message


def test_auth_token_may_be_any_printable_ascii():
    token = "".join(chr(code) for code in range(0x20, 0x7F))
    assert parse_keys({"auth-token": token}).auth_token == token


@pytest.mark.parametrize("endpoint", [
    "http://alice:pw-SECRET-7@triton\r\n:8000",
    "http://alice:pw-SECRET-7\n@triton:8000",
    "http://alice:pw-SECRET-7@tri\tton:8000",
    "http://alice:pw-SECRET-7@triton\x00:8000",
    "http://alice:pw%0D%0A-SECRET-7@triton:8000",
    "http://alice:pw-SECRET-7%00@triton:8000",
    "alice:pw-SECRET-7@triton/x://y",
])
def test_endpoint_refusals_never_echo_the_credentials(endpoint):
    message = config_error({"endpoint": endpoint})
    assert message.startswith("Invalid value for option 'endpoint': ")
    assert "SECRET" not in message
    assert "alice" not in message


def test_auth_token_never_echoed_in_other_errors():
    message = config_error({
        "auth-token": "tok-SECRET-123",
        "custom-headers": "Authorization:Bearer hdr-SECRET-456",
    })
    assert "tok-SECRET-123" not in message
    assert "hdr-SECRET-456" not in message


def test_repr_masks_auth_token_and_header_values():
    options = parse_keys({
        "auth-token": "tok-SECRET-2",
        "custom-headers": "X-Api-Key:hdr-SECRET-3,X-Other:hdr-SECRET-4",
    })
    text = repr(options)
    assert "tok-SECRET-2" not in text
    assert "hdr-SECRET-3" not in text
    assert "hdr-SECRET-4" not in text
    assert "auth-token=***" in text
    assert "custom-headers=***" in text
    assert str(options) == text


def test_repr_redacts_endpoint_credentials():
    options = parse_keys({"endpoint": "https://alice:pw-SECRET-1@h:1"})
    text = repr(options)
    assert "pw-SECRET-1" not in text
    assert "alice" not in text
    assert "endpoint=https://***@h:1" in text


def test_repr_shows_non_default_values_only():
    text = repr(parse(timeout="30s", priority="2", compression="gzip"))
    assert text.startswith("TritonOptions(")
    assert "endpoint=http://localhost:8000" in text
    assert "model-name=m" in text
    assert "priority=2" in text
    assert "compression=gzip" in text
    assert "timeout" not in text  # 30s is the default
    assert "sequence" not in text
    assert "provider" not in text
    for key in ("input-names", "output-names", "binary-data", "null-input",
                "half-precision-inputs", "flatten-batch-dim"):
        assert key not in text


def test_repr_shows_non_default_new_options():
    text = repr(parse_keys({"binary-data": "false", "null-input": "skip",
                            "half-precision-inputs": "true", "input-names": "x:IN"}))
    assert "binary-data=False" in text
    assert "null-input=skip" in text
    assert "half-precision-inputs=True" in text
    assert "input-names=" in text and "'IN'" in text
    assert "flatten-batch-dim" not in text
    assert "output-names" not in text
    assert repr(parse(**{"binary-data": "true", "null-input": "FAIL"})) == (
        "TritonOptions(endpoint=http://localhost:8000, model-name=m)")


# --- unknown and missing keys --------------------------------------------------------------------

def test_unknown_key_lists_supported_options():
    message = config_error({"foo": "1", "timout": "2s"})
    assert "Unsupported options" in message
    assert "foo" in message
    assert "timout (did you mean 'timeout'?)" in message
    supported = message.split("Supported options:", 1)[1]
    for key in ALL_KEYS:
        assert key in supported.split()
    assert "foo" not in supported


def test_unknown_key_without_close_match_has_no_suggestion():
    message = config_error({"zzzzzz": "1"})
    assert "zzzzzz\n" in message
    assert "did you mean" not in message


def test_unknown_key_reported_before_invalid_values():
    message = config_error({"bogus-key": "1", "timeout": "nope"})
    assert "bogus-key" in message
    assert "Unsupported options" in message


@pytest.mark.parametrize("options, missing", [
    ({}, ["endpoint", "model-name"]),
    ({"endpoint": "h:1"}, ["model-name"]),
    ({"model-name": "m"}, ["endpoint"]),
    ({"model-name": "m", "timeout": "1s"}, ["endpoint"]),
])
def test_missing_required_options(options, missing):
    message = config_error(options, base=False)
    assert "Missing required option" in message
    for key in missing:
        assert key in message
    for key in {"endpoint", "model-name"} - set(missing):
        assert key not in message


# --- cross-option checks -------------------------------------------------------------------------

def test_auto_increment_without_sequence_id_names_both_keys():
    message = config_error({"sequence-id-auto-increment": "true", "sequence-start": "true",
                            "sequence-end": "true"})
    assert "'sequence-id-auto-increment'" in message
    assert "'sequence-id'" in message
    assert "flink-job-123" in message


@pytest.mark.parametrize("start, end, named", [
    ("false", "false", ["'sequence-start'", "'sequence-end'"]),
    ("true", "false", ["'sequence-end'"]),
    ("false", "true", ["'sequence-start'"]),
])
def test_auto_increment_requires_start_and_end(start, end, named):
    message = config_error({**AUTO_INCREMENT, "sequence-start": start, "sequence-end": end})
    assert "'sequence-id-auto-increment'" in message
    for key in named:
        assert key in message
    assert "slot" in message
    assert "uninitialised" in message
    if len(named) == 1:
        other = ({"'sequence-start'", "'sequence-end'"} - set(named)).pop()
        assert other not in message


def test_auto_increment_requires_start_and_end_when_unset():
    message = config_error({"sequence-id": "b", "sequence-id-auto-increment": "true"})
    assert "'sequence-start' and 'sequence-end' = 'true'" in message


def test_auto_increment_with_uint64_rejected():
    message = config_error({**AUTO_INCREMENT, "sequence-id": "42", "sequence-id-type": "uint64"})
    assert "'sequence-id-auto-increment'" in message
    assert "uint64" in message


@pytest.mark.parametrize("sequence_id", ["1", "42", str(2**63 - 1), "0007"])
def test_uint64_sequence_id_accepted(sequence_id):
    options = parse_keys({"sequence-id": sequence_id, "sequence-id-type": "uint64"})
    assert options.sequence_id == sequence_id
    assert options.sequence_id_type == "uint64"


@pytest.mark.parametrize("sequence_id", [
    "0", "00", str(2**63), str(2**64), "-1", "abc", "12a", "1.0", "flink-job-123",
])
def test_uint64_sequence_id_rejected(sequence_id):
    message = config_error({"sequence-id": sequence_id, "sequence-id-type": "uint64"})
    assert f"'sequence-id' = '{sequence_id}'" in message
    assert "'uint64'" in message
    assert "2^63-1" in message


def test_uint64_type_without_sequence_id_is_allowed():
    assert parse_keys({"sequence-id-type": "uint64"}).sequence_id is None


@pytest.mark.parametrize("flags, named", [
    ({"sequence-start": "true"}, ["'sequence-start'"]),
    ({"sequence-end": "true"}, ["'sequence-end'"]),
    ({"sequence-start": "true", "sequence-end": "true"}, ["'sequence-start'", "'sequence-end'"]),
])
def test_sequence_flags_without_sequence_id(flags, named):
    message = config_error(flags)
    for key in named:
        assert key in message
    assert "needs 'sequence-id'" in message


def test_sequence_flags_false_without_sequence_id_are_fine():
    options = parse_keys({"sequence-start": "false", "sequence-end": "false"})
    assert options.sequence_start is False
    assert options.sequence_end is False


def test_auto_increment_false_needs_nothing():
    assert parse_keys({"sequence-id-auto-increment": "false"}).sequence_id_auto_increment is False


@pytest.mark.parametrize("options, named", [
    ({"endpoint": "http://u:pw-SECRET@h:1", "auth-token": "tok-SECRET"},
     ["user:password@ in 'endpoint'", "'auth-token'"]),
    ({"endpoint": "http://u:pw-SECRET@h:1", "custom-headers": "Authorization:hdr-SECRET"},
     ["user:password@ in 'endpoint'", "Authorization header in 'custom-headers'"]),
    ({"auth-token": "tok-SECRET", "custom-headers": "authorization:hdr-SECRET"},
     ["'auth-token'", "Authorization header in 'custom-headers'"]),
    ({"auth-token": "tok-SECRET", "custom-headers": "X-A:1,AUTHORIZATION:hdr-SECRET"},
     ["'auth-token'", "Authorization header in 'custom-headers'"]),
    ({"endpoint": "http://u:pw-SECRET@h:1", "auth-token": "tok-SECRET",
      "custom-headers": "Authorization:hdr-SECRET"},
     ["user:password@ in 'endpoint'", "'auth-token'",
      "Authorization header in 'custom-headers'"]),
])
def test_credentials_given_twice(options, named):
    message = config_error(options)
    for what in named:
        assert what in message
    assert "keep one of them" in message
    assert "SECRET" not in message


@pytest.mark.parametrize("options", [
    {"endpoint": "http://u:pw@h:1"},
    {"auth-token": "tok"},
    {"custom-headers": "Authorization:Basic abc"},
    {"endpoint": "http://u:pw@h:1", "custom-headers": "X-Api-Key:k"},
])
def test_single_credential_is_fine(options):
    assert isinstance(parse_keys(options), TritonOptions)


# --- endpoint passwords never appear in messages -------------------------------------------------

@pytest.mark.parametrize("endpoint", [
    "http://alice:hunter2pass@h:notaport",
    "https://alice:hunter2pass@h:99999",
    "ftp://alice:hunter2pass@h:1",
    "http://alice:hunter2pass@h:1/v2?x=1",
    "http://alice:hunter2pass@h:1#frag",
    "http://alice:hunter2pass@",
    "http://alice:hunter2pass@[::1:80",
    "HTTP://alice:hunter2pass@h:-1",
])
def test_endpoint_password_never_in_message(endpoint):
    message = config_error({"endpoint": endpoint})
    assert "'endpoint'" in message
    assert "hunter2pass" not in message
    assert "***@" in message


@pytest.mark.parametrize("endpoint", [
    "alice:hunter2pass@h:notaport",  # host:port form, no scheme
    "http://alice:top@hunter2pass@h:notaport",  # raw '@' inside the password
    "http://alice:hunter2 pass@h:notaport",  # raw space inside the password
    "http://alice:hunter2\uff03pass@h:8000",  # rejected by urlsplit's NFKC netloc check
])
def test_endpoint_unusual_password_never_in_message(endpoint):
    message = config_error({"endpoint": endpoint})
    assert "'endpoint'" in message
    assert "hunter2" not in message
    assert "pass@" not in message


# --- reference -----------------------------------------------------------------------------------

def test_reference_markdown_mentions_every_key():
    markdown = reference_markdown()
    assert markdown.startswith("# Options reference")
    for key in ALL_KEYS:
        assert f"| `{key}` |" in markdown


def test_reference_markdown_rows_match_specs():
    markdown = reference_markdown()
    rows = [line for line in markdown.splitlines() if line.startswith("| `")]
    assert len(rows) == len(option_specs())
    by_key = {row.split("`")[1]: row for row in rows}
    assert "(required)" in by_key["endpoint"]
    assert "(required)" in by_key["model-name"]
    assert "| 30s |" in by_key["timeout"]
    assert "| false |" in by_key["sequence-start"]
    assert "| string |" in by_key["sequence-id-type"]
    assert "| triton |" in by_key["provider"]
    assert "| (none) |" in by_key["custom-headers"]
    assert "| (none) |" in by_key["auth-token"]
    assert "| (none) |" in by_key["input-names"]
    assert "| (none) |" in by_key["output-names"]
    assert "| true |" in by_key["binary-data"]
    assert "| fail |" in by_key["null-input"]
    assert "| false |" in by_key["half-precision-inputs"]
    assert "| false |" in by_key["flatten-batch-dim"]
    assert markdown.endswith("\n")


def test_reference_markdown_lists_options_in_declaration_order():
    keys = [row.split("`")[1] for row in reference_markdown().splitlines()
            if row.startswith("| `")]
    assert keys == [spec.key for spec in option_specs()]
    assert keys[:2] == ["endpoint", "model-name"]


def test_reference_markdown_escapes_pipes():
    for row in reference_markdown().splitlines():
        if row.startswith("| `"):
            cells = row.replace("\\|", "").strip("|").split("|")
            assert len(cells) == 4, row


# --- throughput options: protocol, mode, concurrency, batching ----------------------------------

@pytest.mark.parametrize("endpoint, protocol, expected", [
    ("localhost:8000", None, "http"),
    ("http://h:8000", None, "http"),
    ("grpc://h:8001", None, "grpc"),
    ("grpcs://h", None, "grpc"),
    ("h:8001", "grpc", "grpc"),
    ("http://h:8001", "GRPC", "grpc"),
    ("grpc://h:8001", "grpc", "grpc"),
])
def test_protocol_follows_the_option_then_the_scheme(endpoint, protocol, expected):
    extra = {} if protocol is None else {"protocol": protocol}
    options = TritonOptions.from_dict({**BASE, "endpoint": endpoint, **extra})
    assert options.effective_protocol == expected


@pytest.mark.parametrize("options, message", [
    ({"endpoint": "grpc://h:8001", "protocol": "http"}, "'protocol' = 'http' does not fit"),
    ({"endpoint": "http://gw/triton", "protocol": "grpc"}, "cannot use the path"),
    ({"endpoint": "grpc://h", "binary-data": "false"}, "exists only over HTTP"),
    ({"protocol": "grpc", "binary-data": "false"}, "exists only over HTTP"),
    ({"protocol": "soap"}, "option 'protocol': 'soap': not one of the protocols"),
    ({"mode": "batch"}, "option 'mode': 'batch': not one of the modes"),
    ({"max-concurrent-requests": "0"}, "'max-concurrent-requests'"),
    ({"max-concurrent-requests": "-3"}, "'max-concurrent-requests'"),
    ({"batch-size": "0"}, "'batch-size'"),
    ({"mode": "vectorized", "sequence-id": "s"}, "one sequence ID"),
])
def test_throughput_option_errors(options, message):
    with pytest.raises(TritonConfigError) as info:
        TritonOptions.from_dict({**BASE, **options})
    assert message in str(info.value)


def test_throughput_option_defaults_and_values():
    default = TritonOptions.from_dict(BASE)
    assert (default.mode, default.max_concurrent_requests, default.batch_size) == (None, 16, None)
    options = TritonOptions.from_dict({**BASE, "mode": "Async", "max-concurrent-requests": "64",
                                       "batch-size": "32"})
    assert (options.mode, options.max_concurrent_requests, options.batch_size) == (
        "async", 64, 32)


# --- failure handling: retries, circuit breaker, health check, fallback results, TLS -----------

RETRY = {"max-retries": "2"}
BREAKER_ON = {"circuit-breaker-enabled": "true"}
HTTPS = {"endpoint": "https://triton:8443"}


def test_failure_handling_defaults():
    options = parse()
    assert options.max_retries == 0
    assert options.retry_initial_backoff == timedelta(milliseconds=100)
    assert options.retry_max_backoff == timedelta(seconds=30)
    assert options.record_timeout is None
    assert options.default_value is None
    assert options.error_fields is False
    assert options.circuit_breaker_enabled is False
    assert options.circuit_breaker_failure_threshold == 0.5
    assert options.circuit_breaker_timeout == timedelta(seconds=60)
    assert options.circuit_breaker_half_open_requests == 3
    assert options.health_check_enabled is False
    assert options.health_check_interval == timedelta(seconds=30)
    assert options.tls_ca_cert is None
    assert options.tls_client_cert is None
    assert options.tls_client_key is None
    assert options.tls_verify is True


def test_failure_handling_options_together():
    options = parse_keys({
        **HTTPS,
        "max-retries": "4",
        "retry-initial-backoff": "250ms",
        "retry-max-backoff": "2 s",
        "record-timeout": "1 min",
        "default-value": "[0.0, 0.0]",
        "error-fields": "TRUE",
        "circuit-breaker-enabled": "true",
        "circuit-breaker-failure-threshold": "0.25",
        "circuit-breaker-timeout": "90s",
        "circuit-breaker-half-open-requests": "5",
        "health-check-enabled": "true",
        "health-check-interval": "10s",
        "tls-ca-cert": "/etc/ssl/ca.pem",
        "tls-client-cert": "/etc/ssl/client.pem",
        "tls-client-key": "/etc/ssl/client.key",
    })
    assert options.max_retries == 4
    assert options.retry_initial_backoff == timedelta(milliseconds=250)
    assert options.retry_max_backoff == timedelta(seconds=2)
    assert options.record_timeout == timedelta(minutes=1)
    assert options.default_value == "[0.0, 0.0]"  # parsed against the output type later
    assert options.error_fields is True
    assert options.circuit_breaker_enabled is True
    assert options.circuit_breaker_failure_threshold == 0.25
    assert options.circuit_breaker_timeout == timedelta(seconds=90)
    assert options.circuit_breaker_half_open_requests == 5
    assert options.health_check_enabled is True
    assert options.health_check_interval == timedelta(seconds=10)
    assert options.tls_ca_cert == "/etc/ssl/ca.pem"
    assert options.tls_client_cert == "/etc/ssl/client.pem"
    assert options.tls_client_key == "/etc/ssl/client.key"
    assert options.tls_verify is True


@pytest.mark.parametrize("options, keys", [
    # values that do not parse
    ({"max-retries": "-1"}, ["max-retries"]),
    ({"max-retries": "abc"}, ["max-retries"]),
    ({"max-retries": "1.5"}, ["max-retries"]),
    ({"max-retries": ""}, ["max-retries"]),
    ({**RETRY, "retry-initial-backoff": "0"}, ["retry-initial-backoff"]),
    ({**RETRY, "retry-initial-backoff": "-5ms"}, ["retry-initial-backoff"]),
    ({**RETRY, "retry-initial-backoff": "abc"}, ["retry-initial-backoff"]),
    ({**RETRY, "retry-max-backoff": "0"}, ["retry-max-backoff"]),
    ({**RETRY, "retry-max-backoff": "-5ms"}, ["retry-max-backoff"]),
    ({**RETRY, "retry-max-backoff": "abc"}, ["retry-max-backoff"]),
    ({"record-timeout": "0"}, ["record-timeout"]),
    ({"record-timeout": "0 s"}, ["record-timeout"]),
    ({"record-timeout": "-1s"}, ["record-timeout"]),
    ({"record-timeout": "soon"}, ["record-timeout"]),
    ({"error-fields": "yes"}, ["error-fields"]),
    ({"circuit-breaker-enabled": "on"}, ["circuit-breaker-enabled"]),
    ({**BREAKER_ON, "circuit-breaker-failure-threshold": "0"},
     ["circuit-breaker-failure-threshold"]),
    ({**BREAKER_ON, "circuit-breaker-failure-threshold": "-0.5"},
     ["circuit-breaker-failure-threshold"]),
    ({**BREAKER_ON, "circuit-breaker-failure-threshold": "1.0000001"},
     ["circuit-breaker-failure-threshold"]),
    ({**BREAKER_ON, "circuit-breaker-failure-threshold": "1.5"},
     ["circuit-breaker-failure-threshold"]),
    ({**BREAKER_ON, "circuit-breaker-failure-threshold": "nan"},
     ["circuit-breaker-failure-threshold"]),
    ({**BREAKER_ON, "circuit-breaker-failure-threshold": "inf"},
     ["circuit-breaker-failure-threshold"]),
    ({**BREAKER_ON, "circuit-breaker-failure-threshold": "abc"},
     ["circuit-breaker-failure-threshold"]),
    ({**BREAKER_ON, "circuit-breaker-failure-threshold": ""},
     ["circuit-breaker-failure-threshold"]),
    ({**BREAKER_ON, "circuit-breaker-failure-threshold": "50%"},
     ["circuit-breaker-failure-threshold"]),
    ({**BREAKER_ON, "circuit-breaker-timeout": "0"}, ["circuit-breaker-timeout"]),
    ({**BREAKER_ON, "circuit-breaker-timeout": "abc"}, ["circuit-breaker-timeout"]),
    ({**BREAKER_ON, "circuit-breaker-half-open-requests": "0"},
     ["circuit-breaker-half-open-requests"]),
    ({**BREAKER_ON, "circuit-breaker-half-open-requests": "-1"},
     ["circuit-breaker-half-open-requests"]),
    ({**BREAKER_ON, "circuit-breaker-half-open-requests": "1.5"},
     ["circuit-breaker-half-open-requests"]),
    ({"health-check-enabled": "true", "health-check-interval": "0"}, ["health-check-interval"]),
    ({"health-check-enabled": "true", "health-check-interval": "often"},
     ["health-check-interval"]),
    ({**HTTPS, "tls-ca-cert": ""}, ["tls-ca-cert"]),
    ({**HTTPS, "tls-verify": "no"}, ["tls-verify"]),
    # combinations
    ({**RETRY, "retry-initial-backoff": "2s", "retry-max-backoff": "1s"},
     ["retry-max-backoff", "retry-initial-backoff"]),
    ({**RETRY, "retry-initial-backoff": "1 min"},  # the default max is 30 s
     ["retry-max-backoff", "retry-initial-backoff"]),
    ({"retry-initial-backoff": "1s"}, ["retry-initial-backoff", "max-retries"]),
    ({"retry-max-backoff": "10s"}, ["retry-max-backoff", "max-retries"]),
    ({"max-retries": "0", "retry-initial-backoff": "1s", "retry-max-backoff": "10s"},
     ["retry-initial-backoff", "retry-max-backoff", "max-retries"]),
    ({"circuit-breaker-failure-threshold": "0.3"},
     ["circuit-breaker-failure-threshold", "circuit-breaker-enabled"]),
    ({"circuit-breaker-timeout": "10s"}, ["circuit-breaker-timeout", "circuit-breaker-enabled"]),
    ({"circuit-breaker-half-open-requests": "1"},
     ["circuit-breaker-half-open-requests", "circuit-breaker-enabled"]),
    ({"circuit-breaker-enabled": "false", "circuit-breaker-timeout": "10s"},
     ["circuit-breaker-timeout", "circuit-breaker-enabled"]),
    ({"health-check-interval": "5s"}, ["health-check-interval", "health-check-enabled"]),
    ({"health-check-enabled": "false", "health-check-interval": "5s"},
     ["health-check-interval", "health-check-enabled"]),
    ({"tls-ca-cert": "/ca.pem"}, ["tls-ca-cert"]),
    ({"tls-client-cert": "/c.pem"}, ["tls-client-cert"]),
    ({"tls-client-cert": "/c.pem", "tls-client-key": "/c.key"},
     ["tls-client-cert", "tls-client-key"]),
    ({"tls-verify": "false"}, ["tls-verify"]),
    ({"endpoint": "http://triton:8000", "tls-ca-cert": "/ca.pem"}, ["tls-ca-cert"]),
    ({"endpoint": "grpc://triton:8001", "tls-ca-cert": "/ca.pem"}, ["tls-ca-cert"]),
    ({**HTTPS, "tls-client-key": "/c.key"}, ["tls-client-key", "tls-client-cert"]),
    ({**HTTPS, "tls-verify": "false", "tls-ca-cert": "/ca.pem"}, ["tls-verify", "tls-ca-cert"]),
    ({"endpoint": "grpcs://triton:8001", "tls-verify": "false"}, ["tls-verify"]),
    ({**HTTPS, "protocol": "grpc", "tls-verify": "false"}, ["tls-verify"]),
])
def test_failure_handling_option_errors(options, keys):
    message = config_error(options)
    for key in keys:
        assert f"'{key}'" in message


@pytest.mark.parametrize("options, expected", [
    ({"max-retries": "-1"}, "Invalid value for option 'max-retries': '-1': not a non-negative "
                            "integer. Expected a non-negative integer."),
    ({**BREAKER_ON, "circuit-breaker-failure-threshold": "1.0000001"},
     "Invalid value for option 'circuit-breaker-failure-threshold': '1.0000001': the value must "
     "be greater than 0 and at most 1. Expected a number in (0, 1]."),
    ({**BREAKER_ON, "circuit-breaker-failure-threshold": "abc"},
     "Invalid value for option 'circuit-breaker-failure-threshold': 'abc': not a number. "
     "Expected a number in (0, 1]."),
    ({**RETRY, "retry-initial-backoff": "2s", "retry-max-backoff": "1500ms"},
     "'retry-max-backoff' (1500 ms) must be at least 'retry-initial-backoff' (2000 ms)."),
    ({"circuit-breaker-timeout": "10s"},
     "'circuit-breaker-timeout' has no effect without 'circuit-breaker-enabled' = 'true'; set "
     "'circuit-breaker-enabled' or remove it."),
    ({"retry-initial-backoff": "1s"},
     "'retry-initial-backoff' has no effect without 'max-retries' > 0; set 'max-retries' or "
     "remove it."),
    ({"tls-ca-cert": "/ca.pem"},
     "'tls-ca-cert' need(s) a TLS endpoint (https:// or grpcs://), and 'http://localhost:8000' "
     "is not one."),
    ({"endpoint": "grpcs://triton:8001", "tls-verify": "false"},
     "'tls-verify' = 'false' exists only over HTTP: gRPC always verifies the server. Give the "
     "server's CA with 'tls-ca-cert' instead."),
])
def test_failure_handling_option_messages(options, expected):
    assert config_error(options) == expected


@pytest.mark.parametrize("text, expected", [
    ("1.0", 1.0), ("1", 1.0), (" 0.5 ", 0.5), ("0.01", 0.01), ("1e-3", 0.001),
    ("0.999999", 0.999999),
])
def test_failure_threshold_accepted(text, expected):
    options = parse_keys({**BREAKER_ON, "circuit-breaker-failure-threshold": text})
    assert options.circuit_breaker_failure_threshold == expected


@pytest.mark.parametrize("options", [
    {"max-retries": "0"},
    {"max-retries": "10"},
    {"max-retries": " +3 "},
    {**RETRY, "retry-initial-backoff": "1s", "retry-max-backoff": "1s"},  # equal is fine
    {**RETRY, "retry-initial-backoff": "1ms"},
    {"record-timeout": "5s"},  # bounds a single attempt too: no retries needed
    {**BREAKER_ON, "circuit-breaker-half-open-requests": "1", "circuit-breaker-timeout": "1ms"},
    {"health-check-enabled": "true", "health-check-interval": "1"},
    {"health-check-enabled": "true"},  # without a breaker: changes are logged only
    {**HTTPS, "tls-ca-cert": "/ca.pem"},
    {**HTTPS, "tls-client-cert": "/both.pem"},  # the file may hold the key too
    {**HTTPS, "tls-verify": "false"},
    {"endpoint": "grpcs://triton:8001", "tls-ca-cert": "/ca.pem", "tls-client-cert": "/c.pem",
     "tls-client-key": "/c.key"},
    {"tls-verify": "true"},  # the default: no TLS needed
    {"default-value": "anything at all"},  # checked against the output type, later
    {"default-value": ""},
    {"error-fields": "true"},
])
def test_failure_handling_options_accepted(options):
    assert isinstance(parse_keys(options), TritonOptions)


def test_repr_shows_failure_handling_options():
    text = repr(parse_keys({**RETRY, **BREAKER_ON, "default-value": "-1"}))
    assert "max-retries=2" in text
    assert "circuit-breaker-enabled=True" in text
    assert "default-value=-1" in text
    assert "circuit-breaker-timeout" not in text  # default


# --- 'default-value' and 'error-fields' checked when the function is created (no server) --------

OutputDeclaration = tuple[str, object] | list[tuple[str, object]]


def create_function(options: dict[str, object],
                    output: OutputDeclaration | None = None) -> TritonInference:
    """TritonInference.create with declared columns: needs no server."""
    return TritonInference.create({**BASE, **options}, [("x", DataTypes.DOUBLE())],
                                  output if output is not None else ("y", DataTypes.DOUBLE()))


def create_error(options: dict[str, object], output: OutputDeclaration | None = None) -> str:
    with pytest.raises(TritonConfigError) as info:
        create_function(options, output)
    return str(info.value)


def test_default_value_checked_against_the_declared_output():
    inference = create_function({"default-value": "-1"})
    assert inference.results.default == (-1.0,)
    message = create_error({"default-value": "abc"})
    assert "'default-value'" in message
    assert "'abc'" in message
    assert "DOUBLE" in message


def test_default_value_checked_against_a_declared_row():
    output = [("label", DataTypes.STRING()), ("score", DataTypes.FLOAT())]
    inference = create_function({"default-value": '{"label": "?", "score": -1}'}, output)
    assert inference.results.default == ("?", -1.0)
    message = create_error({"default-value": '{"lable": "?"}'}, output)
    assert "'default-value'" in message
    assert "['lable']" in message
    message = create_error({"default-value": "?"}, output)
    assert "'default-value'" in message


def test_error_fields_shape_the_result_type():
    inference = create_function({"error-fields": "true"})
    assert inference.result_type == DataTypes.ROW([
        DataTypes.FIELD("y", DataTypes.DOUBLE()),
        DataTypes.FIELD("ok", DataTypes.BOOLEAN()),
        DataTypes.FIELD("error", DataTypes.STRING())])
    assert create_function({}).result_type == DataTypes.DOUBLE()


@pytest.mark.parametrize("name", ["ok", "error"])
def test_error_fields_refuse_an_output_with_their_names(name):
    message = create_error({"error-fields": "true"}, (name, DataTypes.DOUBLE()))
    assert "'error-fields'" in message
    assert f"['{name}']" in message
    # fine without 'error-fields'
    assert create_function({}, (name, DataTypes.DOUBLE())).results.field_names is None


def test_error_fields_with_a_default_value_checks_both():
    message = create_error({"error-fields": "true", "default-value": "[1]"})
    assert "'default-value'" in message
    inference = create_function({"error-fields": "true", "default-value": "0.5"})
    assert inference.results.default == (0.5,)
    assert inference.results.error_fields is True


# --- which options each mode takes (issue 15) ----------------------------------------------------

def mode_error(function_mode: str, **extra: str) -> str:
    with pytest.raises(TritonConfigError) as info:
        TritonOptions.from_dict({**BASE, **extra}).check_mode(function_mode)
    return str(info.value)


@pytest.mark.parametrize("mode, extra, named", [
    ("sync", {"batch-size": "8"}, "'batch-size' applies only to the 'vectorized' mode"),
    ("async", {"batch-size": "8"}, "'batch-size' applies only to the 'vectorized' mode"),
    ("keyed", {"sequence-id": "s", "batch-size": "8"}, "'batch-size' applies only"),
    ("sync", {"max-concurrent-requests": "4"},
     "'max-concurrent-requests' applies only to the 'async' mode and the 'vectorized' mode"),
])
def test_an_option_that_does_nothing_in_the_mode_is_refused(mode, extra, named):
    message = mode_error(mode, **extra)
    assert named in message
    assert "remove it" in message


@pytest.mark.parametrize("mode, extra", [
    ("vectorized", {"batch-size": "8", "max-concurrent-requests": "4"}),
    ("async", {"max-concurrent-requests": "4"}),
    ("async", {"sequence-id": "s", "sequence-id-auto-increment": "true",
               "sequence-start": "true", "sequence-end": "true"}),
    ("sync", {"sequence-id": "s"}),
    ("keyed", {"sequence-id": "s", "sequence-replay-records": "2"}),
])
def test_the_options_of_a_mode_are_accepted(mode, extra):
    TritonOptions.from_dict({**BASE, **extra}).check_mode(mode)


def test_a_mode_option_that_does_not_fit_the_function_is_refused():
    assert "'mode' = 'async' does not fit this function" in mode_error("sync", mode="async")


@pytest.mark.parametrize("value, ok", [("1", True), ("512", True), ("513", False),
                                       ("100000", False)])
def test_max_concurrent_requests_has_an_upper_bound(value, ok):
    raw = {**BASE, "max-concurrent-requests": value}
    if ok:
        assert TritonOptions.from_dict(raw).max_concurrent_requests == int(value)
    else:
        assert "from 1 to 512" in config_error(raw, base=False)


@pytest.mark.parametrize("value, ok", [("0", True), (str(2**64 - 1), True),
                                       (str(2**64), False), (str(10**30), False)])
def test_priority_is_what_the_wire_carries(value, ok):
    """An unsigned 64-bit integer: beyond it, gRPC's protobuf raised a raw ValueError per
    record, after registration had accepted the value."""
    raw = {**BASE, "priority": value}
    if ok:
        assert TritonOptions.from_dict(raw).priority == int(value)
    else:
        message = config_error(raw, base=False)
        assert "'priority'" in message and "from 0 to 18446744073709551615" in message


# --- several servers, and the sequence-ID header ---------------------------------------------

def test_an_endpoint_list_is_accepted_and_shown_redacted():
    options = parse_keys({"endpoint": "http://a:8000,http://user:hunter2@b:8000"})
    assert len(options.endpoint) == 2
    assert "hunter2" not in repr(options) and "hunter2" not in str(options.endpoint)


def test_grpc_protocol_refuses_a_list_with_a_path():
    message = config_error({"endpoint": "http://a:8001,http://b:8001/gw", "protocol": "grpc"})
    assert "'protocol' = 'grpc' cannot use the path" in message


@pytest.mark.parametrize("name", ["X-Sequence-Id", "x_seq", "Sticky"])
def test_sequence_id_header_takes_a_header_name(name):
    assert parse_keys({"sequence-id-header": f" {name} "}).sequence_id_header == name


@pytest.mark.parametrize("name, fragment", [
    ("X Sequence", "not a valid HTTP header name"),
    ("X-Seq:1", "not a valid HTTP header name"),
    ("", "not a valid HTTP header name"),
    ("Content-Type", "the header 'Content-Type' is used by the client"),
    ("authorization", "the header 'authorization' is used by the client"),
    ("grpc-timeout", "reserved by gRPC"),
])
def test_sequence_id_header_refuses_what_cannot_carry_the_id(name, fragment):
    message = config_error({"sequence-id-header": name})
    assert "'sequence-id-header'" in message and fragment in message


def test_sequence_id_header_is_not_also_a_custom_header():
    message = config_error({"sequence-id-header": "X-Seq", "custom-headers": "x-seq:1"})
    assert "'sequence-id-header' = 'X-Seq' is also set in 'custom-headers'" in message


@pytest.mark.parametrize("extra, what", [
    ({"sequence-id-header": "x!seq"}, "'sequence-id-header' 'x!seq'"),
    ({"sequence-id-header": "x-seq-bin"}, "'sequence-id-header' 'x-seq-bin'"),
    ({"custom-headers": "X~Team:ml"}, "a header name in 'custom-headers' 'X~Team'"),
])
def test_over_grpc_header_names_must_be_metadata_keys(extra, what):
    message = config_error({"endpoint": "grpc://triton:8001", **extra})
    assert what in message and "cannot be a gRPC metadata key" in message
    parse_keys({"endpoint": "http://triton:8000", **extra})  # (fine over HTTP)
