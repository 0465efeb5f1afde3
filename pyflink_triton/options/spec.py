"""The options, declared once: each is a field of :class:`OptionValues` whose metadata holds its
:class:`OptionSpec` (the Flink key, how the text is parsed, what a valid value looks like, the
default and a description). Parsing, error messages, ``repr`` masking and the generated reference
(docs/options.md) all read these specs, so keys, defaults and docs cannot drift apart.

The rules on how the values combine (the ``*_rules`` modules and ``modes``) read an
:class:`OptionValues`; ``TritonOptions.from_dict`` (in ``triton_options``) parses the texts with
the specs, then runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from datetime import timedelta
from typing import Any, Literal

from .endpoint import Endpoints
from .provider import PROVIDER, parse_provider
from .sequence_ids import MAX_SEQUENCE_ID_BYTES, parse_sequence_id
from .values import (
    MAX_CONCURRENT_REQUESTS,
    parse_any_text,
    parse_auth_token,
    parse_bool,
    parse_compression,
    parse_counter_init_strategy,
    parse_endpoint,
    parse_fraction,
    parse_header_name,
    parse_headers,
    parse_int_between,
    parse_mode,
    parse_model_version,
    parse_non_negative_int,
    parse_null_input,
    parse_positive_duration,
    parse_positive_int,
    parse_protocol,
    parse_sequence_id_type,
    parse_tensor_names,
    parse_text,
)


@dataclass(frozen=True)
class OptionSpec:
    """One option: everything the parser, the messages and the reference say about it."""

    key: str
    parse: Callable[[str], Any]  # raises ValueError whose text says what is wrong
    accepted: str  # what a valid value looks like, for error messages and the reference
    description: str
    default: Any = None
    required: bool = False
    secret: bool = False  # never echoed in errors, logs or repr


def _option(key: str, parse: Callable[[str], Any], accepted: str, description: str,
            default: Any = None, required: bool = False, secret: bool = False) -> Any:
    """The dataclass field of an option, its spec in the metadata (a required option has no
    default, so that constructing the options without it fails)."""
    spec = OptionSpec(key, parse, accepted, description, default, required, secret)
    if required:
        return field(metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


_BOOLEAN = "true or false (any case)"
_DURATION_TEXT = "a positive duration such as 30s, 500ms or 1 min (no unit means ms)"


@dataclass(frozen=True)
class OptionValues:
    """The value of every option, one field each, declared with its spec. A
    :class:`~.triton_options.TritonOptions` (built by its ``from_dict``) is these values
    parsed from Flink's texts and checked against each other; the rules read them as this."""

    endpoint: Endpoints = _option(
        "endpoint", parse_endpoint,
        "an http or https URL (or host:port; a trailing /v2 or /v2/models is accepted), or "
        "grpc:// / grpcs:// host:port; several servers of one scheme separated by commas",
        "Base URL of the Triton server's HTTP/REST (KServe v2) endpoint. user:password@ in "
        "the URL is sent as HTTP basic auth and redacted in every message. Several servers "
        "(replicas serving the same model) are balanced: requests without a sequence go to "
        "the one with the fewest in flight, each sequence stays on one server chosen by a "
        "hash of its ID (docs/replicas.md).", required=True)
    model_name: str = _option(
        "model-name", parse_text, "a non-empty model name",
        "Name of the model in Triton's model repository (case-sensitive).", required=True)
    provider: str = _option(
        "provider", parse_provider, f"'{PROVIDER}'",
        "Model provider; required in CREATE MODEL, optional in the Python API.", PROVIDER)
    model_version: str | None = _option(
        "model-version", parse_model_version, "a positive integer, or unset",
        "Model version to call. Unset calls /v2/models/<name>/infer and the server picks "
        "the version (never 'latest': Triton answers 404 to it).")
    timeout: timedelta = _option(
        "timeout", parse_positive_duration, _DURATION_TEXT,
        "Bound on each HTTP request: connecting, sending and waiting for the answer.",
        timedelta(seconds=30))
    sequence_id: str | None = _option(
        "sequence-id", parse_sequence_id,
        f"a non-empty string of at most {MAX_SEQUENCE_ID_BYTES} bytes, without NUL",
        "Triton sequence ID sent with every request as the sequence_id parameter; with "
        "sequence-id-auto-increment, the base of the generated IDs.")
    sequence_id_auto_increment: bool = _option(
        "sequence-id-auto-increment", parse_bool, _BOOLEAN,
        "Give every request its own sequence ID {sequence-id}-{subtask-index}-{counter}; the "
        "counter starts in open() of each parallel subtask (see "
        "sequence-id-counter-init-strategy). Requires sequence-id, sequence-start = true and "
        "sequence-end = true.", False)
    sequence_id_counter_init_strategy: Literal["zero", "nano-time"] = _option(
        "sequence-id-counter-init-strategy", parse_counter_init_strategy, "zero or nano-time",
        "Where the auto-increment counter starts in each open(): 'zero' (Flink's Java "
        "provider; a restarted or resubmitted job sends the same IDs again, each a complete "
        "one-request sequence) or 'nano-time' (the wall-clock time in nanoseconds, so a "
        "job's IDs never repeat across its failovers and resubmits, in the same format). Needs "
        "sequence-id-auto-increment.", "zero")
    sequence_id_type: Literal["string", "uint64"] = _option(
        "sequence-id-type", parse_sequence_id_type, "string or uint64",
        "How the sequence ID is sent: as a string, or as an unsigned integer for models whose "
        "CORRID control input is numeric (then sequence-id must be all digits below 2^63, and "
        "auto-increment is not available). Triton treats 42 and \"42\" as different "
        "sequences.", "string")
    sequence_start: bool = _option(
        "sequence-start", parse_bool, _BOOLEAN,
        "Send sequence_start = true with every request (needs sequence-id).", False)
    sequence_end: bool = _option(
        "sequence-end", parse_bool, _BOOLEAN,
        "Send sequence_end = true with every request (needs sequence-id).", False)
    sequence_idle_timeout: timedelta | None = _option(
        "sequence-idle-timeout", parse_positive_duration, _DURATION_TEXT,
        "Keyed sequences only: a key without records for this long gets an explicit END (a "
        "Flink processing-time timer), so the model is told and the Triton slot is freed. "
        "Must be below the model's max_sequence_idle_microseconds, after which Triton drops "
        "the sequence without telling the model; unset, half of it.")
    sequence_replay_records: int = _option(
        "sequence-replay-records", parse_non_negative_int, "a non-negative integer",
        "Keyed sequences only: keep each key's last N inputs in Flink state and, when the "
        "key's sequence has to start again (after a failover, a request that failed for good "
        "or may have reached the model, or a sequence Triton reaped or lost in a restart), "
        "send them into the new sequence first (outputs discarded), so a model with bounded "
        "memory resumes in an equivalent state. 0: such a sequence starts from scratch.", 0)
    sequence_slots: int | None = _option(
        "sequence-slots", parse_positive_int, "a positive integer, or unset",
        "Keyed sequences only: how many sequences each subtask holds open at most (its slot "
        "budget). A key that needs a new sequence when the budget is full first ENDs the "
        "least recently used one (an END flagged like the idle END); that key, when it "
        "returns, starts a new sequence warmed up with 'sequence-replay-records'. Unset: the "
        "model's sequence slots (Direct: instances x max(1, max_batch_size); Oldest: "
        "instances x max_candidate_sequences) divided by the parallelism. Set it lower when "
        "other jobs share the model.")
    priority: int | None = _option(
        "priority", parse_int_between(0, 2**64 - 1),
        "an integer from 0 to 2^64-1 (an unsigned 64-bit integer on the wire)",
        "Request priority sent as the priority parameter (0 is the model's default; lower "
        "values are served first when the model enables priority levels).")
    auth_token: str | None = _option(
        "auth-token", parse_auth_token, "a non-empty token",
        "Sent as 'Authorization: Bearer <token>' (a value that already starts with 'Bearer ' "
        "is sent as is). Never logged.", secret=True)
    custom_headers: tuple[tuple[str, str], ...] = _option(
        "custom-headers", parse_headers,
        "Flink map syntax NAME:value,NAME2:value2; as in Flink, quote a value containing ':' "
        "and then its whole entry: 'X-Url:\"http://h:1\"'",
        "Extra HTTP headers sent with every request. Values are never logged.", (),
        secret=True)
    sequence_id_header: str | None = _option(
        "sequence-id-header", parse_header_name,
        "an HTTP header name (letters, digits and !#$%&'*+-.^_`|~), or unset",
        "Also send each request's sequence ID in this HTTP header (gRPC: metadata key, in "
        "lower case), so that a load balancer in front of several replicas can keep a "
        "sequence on one of them (nginx 'hash $http_<name> consistent', Envoy's header "
        "hash). Requests without a sequence do not carry it.")
    compression: str | None = _option(
        "compression", parse_compression, "gzip, or unset",
        "Compress request bodies with gzip (Content-Encoding: gzip).")
    protocol: Literal["http", "grpc"] | None = _option(
        "protocol", parse_protocol, "http or grpc, or unset",
        "KServe v2 over HTTP/REST or over gRPC. Unset: gRPC for a grpc:// or grpcs:// "
        "endpoint, HTTP otherwise. gRPC always sends tensors as raw bytes, so it does not take "
        "'binary-data' = 'false'.")

    max_retries: int = _option(
        "max-retries", parse_non_negative_int, "a non-negative integer",
        "How many times a request that failed transiently (connection refused or reset, no "
        "answer within 'timeout', HTTP 5xx, gRPC UNAVAILABLE) is sent again, with the same "
        "sequence ID; 2 means up to 3 attempts. Other failures (4xx, schema errors, an open "
        "circuit breaker) are never retried.", 0)
    retry_initial_backoff: timedelta = _option(
        "retry-initial-backoff", parse_positive_duration, _DURATION_TEXT,
        "Wait before the first retry. The n-th retry waits a random time between d/2 and d, "
        "where d = min(retry-initial-backoff * 2^(n-1), retry-max-backoff).",
        timedelta(milliseconds=100))
    retry_max_backoff: timedelta = _option(
        "retry-max-backoff", parse_positive_duration, _DURATION_TEXT,
        "Longest wait between two attempts (at least 'retry-initial-backoff').",
        timedelta(seconds=30))
    record_timeout: timedelta | None = _option(
        "record-timeout", parse_positive_duration, _DURATION_TEXT + ", or unset",
        "Bound on one record, all its attempts and the waits between them included: no "
        "attempt starts, and no wait ends, after it; an attempt's own bound is the smaller of "
        "'timeout' and the time left. Unset: (max-retries + 1) * timeout plus the longest "
        "waits the backoff allows.")
    default_value: str | None = _option(
        "default-value", parse_any_text,
        "for a single output: the value as text (STRING: the text itself; numbers, booleans "
        "and ARRAYs as JSON such as -1, true or [0.0, 0.0]); for a ROW result: a JSON object "
        "of its fields; 'null' for SQL NULL",
        "Result of a record whose request failed for good (retries exhausted, a non-retryable "
        "error, or an open circuit breaker), instead of failing the job. Checked against the "
        "output type at registration.")
    error_fields: bool = _option(
        "error-fields", parse_bool, _BOOLEAN,
        "Return ROW(<output fields...>, ok BOOLEAN, error STRING): ok is false and error holds "
        "the reason for a record whose request failed for good (its values are then "
        "'default-value', or NULL), so that failures can be routed to a side table. A failed "
        "record then never fails the job.", False)
    circuit_breaker_enabled: bool = _option(
        "circuit-breaker-enabled", parse_bool, _BOOLEAN,
        "Stop sending requests to a server while it fails: per parallel subtask and server, "
        "the breaker opens when at least 10 attempts were counted and the share of failures "
        "reaches 'circuit-breaker-failure-threshold'. While open, the server gets no "
        "requests: they go to another server of 'endpoint', or, when every server's breaker "
        "is open, records fail at once (not retried; 'default-value' applies). After "
        "'circuit-breaker-timeout' it lets 'circuit-breaker-half-open-requests' requests "
        "through and closes when they all succeed. Every attempt counts; only transient "
        "failures count as failures.", False)
    circuit_breaker_failure_threshold: float = _option(
        "circuit-breaker-failure-threshold", parse_fraction, "a number in (0, 1]",
        "Share of failed requests at which the circuit breaker opens.", 0.5)
    circuit_breaker_timeout: timedelta = _option(
        "circuit-breaker-timeout", parse_positive_duration, _DURATION_TEXT,
        "How long the circuit breaker stays open before it lets trial requests through.",
        timedelta(seconds=60))
    circuit_breaker_half_open_requests: int = _option(
        "circuit-breaker-half-open-requests", parse_positive_int, "a positive integer",
        "Trial requests let through after 'circuit-breaker-timeout'; when all succeed, the "
        "breaker closes, when one fails, it opens again.", 3)
    health_check_enabled: bool = _option(
        "health-check-enabled", parse_bool, _BOOLEAN,
        "Probe each server every 'health-check-interval' (GET /v2/health/live, then "
        "/v2/health/ready if not live; gRPC ServerLive/ServerReady) from a background thread. "
        "Probe results count as samples of the server's circuit breaker when it is enabled (a "
        "failed probe reopens a half-open breaker; probes alone never close it). With several "
        "servers, one failing its probe gets no requests until a probe passes; with one "
        "server and no breaker, changes of health are logged only.", False)
    health_check_interval: timedelta = _option(
        "health-check-interval", parse_positive_duration, _DURATION_TEXT,
        "Time between two health probes.", timedelta(seconds=30))
    tls_ca_cert: str | None = _option(
        "tls-ca-cert", parse_text, "a path to a PEM file",
        "CA certificate(s) to verify an https:// or grpcs:// server with. Unset: the "
        "system's CAs over HTTP, the roots bundled with grpcio over gRPC. The file is read "
        "where the function runs (in open(); also at registration when the columns are "
        "taken from the server).")
    tls_client_cert: str | None = _option(
        "tls-client-cert", parse_text, "a path to a PEM file",
        "Client certificate for servers that ask for one (mutual TLS); with "
        "'tls-client-key' unless the file holds the key too.")
    tls_client_key: str | None = _option(
        "tls-client-key", parse_text, "a path to a PEM file (not encrypted)",
        "Private key of 'tls-client-cert'.")
    tls_verify: bool = _option(
        "tls-verify", parse_bool, _BOOLEAN,
        "'false' accepts any server certificate and host name (HTTP only; logged as a "
        "warning in every open()): for tests, never in production.", True)

    mode: Literal["sync", "async", "vectorized"] | None = _option(
        "mode", parse_mode, "sync, async or vectorized, or unset (sync)",
        "How create_model and CREATE MODEL call the model. 'sync': a ScalarFunction, one "
        "blocking request per row. 'async': an AsyncScalarFunction, one request per row with "
        "up to 'max-concurrent-requests' in flight, results in input order. 'vectorized': a "
        "pandas UDF that sends each Arrow batch as requests of up to 'batch-size' rows "
        "(models with max_batch_size > 0; others get one request per row), "
        "'max-concurrent-requests' at a time; no sequence options. The Python classes "
        "(TritonScalarFunction, TritonAsyncScalarFunction, TritonVectorizedFunction) are the "
        "modes themselves.")
    max_concurrent_requests: int = _option(
        "max-concurrent-requests", parse_int_between(1, MAX_CONCURRENT_REQUESTS),
        f"an integer from 1 to {MAX_CONCURRENT_REQUESTS}",
        "Requests in flight per parallel subtask in the 'async' and 'vectorized' modes; also "
        "the size of the connection pool. Keyed sequences: keys with a request in flight per "
        "subtask (each key's requests stay one at a time, in order). For 'async', "
        "create_model and CREATE MODEL set PyFlink's "
        "table.exec.async-scalar.max-concurrent-operations to it (and its timeout to 0, off: "
        "each row's request is bounded by 'timeout' instead, without PyFlink's timer thread "
        "per row).", 16)
    batch_size: int | None = _option(
        "batch-size", parse_positive_int, "a positive integer, or unset",
        "Rows per request in the 'vectorized' mode. Unset: the model's max_batch_size. "
        "open() fails when it exceeds the model's max_batch_size.")

    input_names: tuple[tuple[str | None, str], ...] = _option(
        "input-names", parse_tensor_names,
        "col:TENSOR,col2:TENSOR2 (by column name) or TENSOR,TENSOR2 (by position); quote a "
        "name containing ',' or ':' as in 'custom-headers'",
        "Input tensor of each argument column, when the names differ. Unset: each column "
        "feeds the input tensor of its own name (case-sensitive). When the columns are not "
        "declared, they are the model's required inputs, named after their tensors or as "
        "mapped here (positional entries list the inputs to use).", ())
    output_names: tuple[tuple[str | None, str], ...] = _option(
        "output-names", parse_tensor_names,
        "field:TENSOR,field2:TENSOR2 (by field name) or TENSOR,TENSOR2 (by position)",
        "Output tensor of each result field, when the names differ. Unset: each declared "
        "output column is the tensor of its own name. When the result is not declared, it is "
        "the outputs listed here (a ROW when several), or else all the model's outputs. Only "
        "the result's outputs are requested from the server.", ())
    binary_data: bool = _option(
        "binary-data", parse_bool, _BOOLEAN,
        "Send and receive tensors with the KServe binary tensor extension (raw little-endian "
        "bytes after the JSON header). 'false' sends them as JSON text, for debugging: slower, "
        "BYTES values must be UTF-8, FP16/BF16 tensors are refused, and Triton may return "
        "FP64 values a few ulp off.", True)
    null_input: Literal["fail", "skip"] = _option(
        "null-input", parse_null_input, "fail or skip",
        "What a SQL NULL argument does: 'fail' fails the record with an error naming the "
        "column; 'skip' sends no request (and draws no sequence ID) and returns NULL (Table "
        "API and SQL only: a DataStream element cannot be null). A NULL element inside an "
        "ARRAY always fails.", "fail")
    half_precision_inputs: bool = _option(
        "half-precision-inputs", parse_bool, _BOOLEAN,
        "Let FLOAT columns feed FP16 and BF16 input tensors, rounding each value to the "
        "nearest representable one (FP16 turns magnitudes of 65520 and more into infinity). Off, a "
        "FLOAT column for an FP16/BF16 input fails at open(), so precision is never lost "
        "silently. FP16/BF16 outputs are always returned as FLOAT (exactly).", False)
    flatten_batch_dim: bool = _option(
        "flatten-batch-dim", parse_bool, _BOOLEAN,
        "Compatibility with Flink's Java provider, which sends an ARRAY as [1, N] unless this "
        "is true. Here shapes follow the model's config (a batch dimension only when "
        "max_batch_size > 0), so it is never needed; 'true' asserts that the model takes "
        "each value in its own shape, and open() fails if the model's config adds a batch "
        "dimension or leading dims of 1.", False)

    def differs_from_default(self, key: str) -> bool:
        """Whether the option ``key`` was given a value other than its default."""
        for f, spec in fields_with_specs():
            if spec.key == key:
                return getattr(self, f.name) != spec.default
        raise KeyError(key)

    @property
    def effective_protocol(self) -> Literal["http", "grpc"]:
        """'protocol', or else the one the endpoint's scheme implies."""
        return self.protocol or self.endpoint.protocol  # type: ignore[return-value]

    def __repr__(self) -> str:
        shown = []
        for f, spec in fields_with_specs():
            value = getattr(self, f.name)
            if value is None or value == spec.default:
                continue
            if spec.secret:
                value = "***"
            shown.append(f"{spec.key}={value!s}")
        return f"{type(self).__name__}({', '.join(shown)})"

    __str__ = __repr__


def fields_with_specs() -> list[tuple[Field[Any], OptionSpec]]:
    """Each option's dataclass field and spec, in declaration order."""
    return [(f, f.metadata["spec"]) for f in fields(OptionValues)]


def option_specs() -> list[OptionSpec]:
    """All option specs, in declaration order."""
    return [spec for _, spec in fields_with_specs()]
