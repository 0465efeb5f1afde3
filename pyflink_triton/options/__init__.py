"""Every option of a Triton model function, declared once.

Each option is a field of :class:`TritonOptions` whose metadata holds its :class:`OptionSpec`:
the Flink key, how the string value is parsed, what a valid value looks like, the default and
a description. Parsing, validation, error messages, ``repr`` masking and the generated options
reference (``python -m pyflink_triton options-reference``) all read these specs, so keys,
defaults and docs cannot drift apart. All checks run in :meth:`TritonOptions.from_dict`, which
the adapters call at registration, before any job runs.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any, Literal

from ..errors import TritonConfigError
from .endpoint import Endpoint, redact_url_credentials

PROVIDER = "triton"


@dataclass(frozen=True)
class OptionSpec:
    key: str
    parse: Callable[[str], Any]  # raises ValueError whose text says what is wrong
    accepted: str  # what a valid value looks like, for error messages and the reference
    description: str
    default: Any = None
    required: bool = False
    secret: bool = False  # never echoed in errors, logs or repr


# --- value parsers -----------------------------------------------------------------------------

def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError("not a boolean")
    return lowered == "true"


_NANOS = {  # Flink's TimeUtils unit labels; a number without a unit is milliseconds
    **dict.fromkeys(("d", "day", "days"), 86_400 * 10**9),
    **dict.fromkeys(("h", "hour", "hours"), 3_600 * 10**9),
    **dict.fromkeys(("min", "m", "minute", "minutes"), 60 * 10**9),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 10**9),
    **dict.fromkeys(("", "ms", "milli", "millis", "millisecond", "milliseconds"), 10**6),
    **dict.fromkeys(("µs", "us", "micro", "micros", "microsecond", "microseconds"), 10**3),
    **dict.fromkeys(("ns", "nano", "nanos", "nanosecond", "nanoseconds"), 1),
}
_DURATION = re.compile(r"^\s*(\d+)\s*([^\d\s]*)\s*$")


def parse_positive_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not match or match.group(2).lower() not in _NANOS:
        raise ValueError("not a duration")
    micros = int(match.group(1)) * _NANOS[match.group(2).lower()] // 1000
    if micros <= 0:
        raise ValueError("the duration must be positive (at least 1 µs)")
    try:
        return timedelta(microseconds=micros)
    except OverflowError:
        raise ValueError("the duration is too long") from None


def parse_non_negative_int(text: str) -> int:
    if not re.fullmatch(r"\s*\+?\d+\s*", text):
        raise ValueError("not a non-negative integer")
    return int(text)


def parse_text(text: str) -> str:
    if not text.strip():
        raise ValueError("the value is empty")
    return text


# Triton 2.51 refuses longer string sequence IDs (HTTP 501 / gRPC UNIMPLEMENTED "string
# correlation ID cannot be longer than 128 characters"; it counts UTF-8 bytes, measured).
MAX_SEQUENCE_ID_BYTES = 128
# What auto-increment appends: "-{subtask}-{counter}", a subtask index of at most 5 digits
# (Flink's largest max parallelism is 32768) and a counter of at most 20 (nano-time: 19).
AUTO_INCREMENT_SUFFIX_BYTES = 1 + 5 + 1 + 20
# What a keyed sequence appends: "-{key}-{incarnation}-{n}", at least room for a hashed key
# (sha256: and 32 hex digits), a 12-hex-digit incarnation and n of at most 20 digits.
KEYED_SUFFIX_BYTES = 1 + 39 + 1 + 12 + 1 + 20


def parse_sequence_id(text: str) -> str:
    if not text.strip():
        raise ValueError("the value is empty")
    if "\0" in text:
        raise ValueError("Triton cuts a string sequence ID at a NUL character, merging sequences")
    if len(text.encode()) > MAX_SEQUENCE_ID_BYTES:
        raise ValueError(f"Triton refuses sequence IDs longer than {MAX_SEQUENCE_ID_BYTES} "
                         "bytes (UTF-8)")
    return text


def sequence_id_room(base: str, suffix_bytes: int, what: str) -> None:
    """Raise unless IDs of ``base`` plus up to ``suffix_bytes`` fit Triton's limit."""
    room = MAX_SEQUENCE_ID_BYTES - suffix_bytes
    if len(base.encode()) > room:
        raise TritonConfigError(
            f"'sequence-id' = '{base}' is {len(base.encode())} bytes; {what} append up to "
            f"{suffix_bytes} bytes to it, and Triton refuses sequence IDs longer than "
            f"{MAX_SEQUENCE_ID_BYTES} bytes: use at most {room} bytes.")


def parse_endpoint(text: str) -> Endpoint:
    return Endpoint.parse(text)


# Flink's FactoryUtil.discoverFactory compares factoryIdentifier().equals(provider): no
# trimming, no lower-casing. A CREATE MODEL with 'Triton' is stored and finds no provider.
PROVIDER_SPELLING = ("Flink matches a model's 'provider' exactly and case-sensitively "
                     f"(no trimming, no lower-casing); write '{PROVIDER}'")


def is_provider_misspelled(text: str) -> bool:
    """Whether ``text`` means this provider (' Triton ') but is not what Flink matches."""
    return text != PROVIDER and text.strip().lower() == PROVIDER


def parse_provider(text: str) -> str:
    if is_provider_misspelled(text):
        raise ValueError(PROVIDER_SPELLING)
    if text != PROVIDER:
        raise ValueError(f"this package implements the '{PROVIDER}' provider only")
    return PROVIDER


def parse_model_version(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    if text.lower() == "latest":
        raise ValueError("Triton answers 404 to 'latest'; leave 'model-version' unset to let "
                         "the server pick the version its version policy serves")
    if not text.isdigit() or int(text) < 1:
        raise ValueError("a model version is a positive integer")
    return text


def parse_compression(text: str) -> str | None:
    lowered = text.strip().lower()
    if lowered not in ("gzip", ""):
        raise ValueError("only gzip is supported")
    return lowered or None


def parse_choice(*choices: str, what: str) -> Callable[[str], str]:
    """A parser accepting one of ``choices``, in any case."""
    def parse(text: str) -> str:
        lowered = text.strip().lower()
        if lowered not in choices:
            raise ValueError(f"not one of the {what}")
        return lowered
    return parse


parse_sequence_id_type = parse_choice("string", "uint64", what="sequence ID types")
parse_counter_init_strategy = parse_choice("zero", "nano-time",
                                           what="counter initialisation strategies")
parse_protocol = parse_choice("http", "grpc", what="protocols")
parse_mode = parse_choice("sync", "async", "vectorized", what="modes")


def parse_positive_int(text: str) -> int:
    if not re.fullmatch(r"\s*\+?\d+\s*", text) or int(text) < 1:
        raise ValueError("not a positive integer")
    return int(text)


def parse_int_between(low: int, high: int) -> Callable[[str], int]:
    """A parser of an integer from ``low`` to ``high``, both included."""
    def parse(text: str) -> int:
        if not re.fullmatch(r"\s*\+?\d+\s*", text):
            raise ValueError("not a non-negative integer")
        if not low <= int(text) <= high:
            raise ValueError(f"the value must be from {low} to {high}")
        return int(text)
    return parse


# Requests a subtask may have in flight: each holds a connection (a file descriptor) of the
# Python worker, whose default limit is 1024 in all.
MAX_CONCURRENT_REQUESTS = 512


def parse_fraction(text: str) -> float:
    """A number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError("not a number") from None
    if not 0.0 < value <= 1.0:  # (NaN fails this too)
        raise ValueError("the value must be greater than 0 and at most 1")
    return value


def parse_any_text(text: str) -> str:
    return text  # parsed later, against something only known then (the output type)


def _unsendable_character(text: str) -> str | None:
    """The kind of the first character of ``text`` that an HTTP header value or gRPC metadata
    (printable ASCII, 0x20-0x7E) cannot carry, or None. Never the character itself: the texts
    checked here are secrets."""
    for char in text:
        if char in "\r\n":
            return "a line break (CR or LF), which would start another header line"
        if char == "\0":
            return "a NUL character"
        if char < " " or char == "\x7f":
            return "a control character"
        if char > "~":
            return "a non-ASCII character"
    return None


_PRINTABLE_ASCII_ONLY = "HTTP headers and gRPC metadata carry printable ASCII only (0x20-0x7E)"


def parse_auth_token(text: str) -> str:
    token = parse_text(text)
    unsendable = _unsendable_character(token)
    if unsendable is not None:
        raise ValueError(f"the token contains {unsendable}; it is sent as the Authorization "
                         f"header, and {_PRINTABLE_ASCII_ONLY}")
    return token


# Headers that the transport computes itself; a user value would corrupt the request.
_RESERVED_HEADERS = {"content-length", "content-type", "content-encoding",
                     "inference-header-content-length", "host", "transfer-encoding"}
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token; fullmatch it


class _QuotingError(ValueError):
    """A quoting mistake found by :func:`_split_escaped`. Its text gives the character position
    (useful for names); ``reason`` and ``part`` (the 1-based number of the part it is in) let
    the parsers of secret values say what is wrong without pointing into the value."""

    def __init__(self, reason: str, part: int, position: int | None = None) -> None:
        super().__init__(reason if position is None else f"{reason} at position {position}")
        self.reason = reason
        self.part = part


def _split_escaped(text: str, delimiter: str) -> list[str]:
    """Split as Flink's StructuredOptionsSplitter does: a part may be quoted whole with ' or "
    (a doubled quote inside stands for itself); a quote inside an unquoted part is an error."""
    parts: list[str] = []
    position, expect_part = 0, True
    while position < len(text):
        char = text[position]
        if char == delimiter:
            if expect_part:
                parts.append("")
            position, expect_part = position + 1, True
        elif char.isspace():
            position += 1
        elif not expect_part:
            raise _QuotingError("illegal quoting", len(parts), position - 1)
        elif char in "'\"":
            end, chunk = position + 1, []
            while True:
                if end >= len(text):
                    raise _QuotingError("a quote is not closed", len(parts) + 1)
                if text[end] == char and text[end + 1:end + 2] == char:
                    chunk.append(char)
                    end += 2
                elif text[end] == char:
                    break
                else:
                    chunk.append(text[end])
                    end += 1
            parts.append("".join(chunk))
            position, expect_part = end + 1, False
        else:
            end = position
            while end < len(text) and text[end] != delimiter:
                if text[end] in "'\"":
                    raise _QuotingError("illegal quoting", len(parts) + 1, end)
                end += 1
            parts.append(text[position:end].strip())
            position, expect_part = end, False
    return parts


def parse_tensor_names(text: str) -> tuple[tuple[str | None, str], ...]:
    """``col:TENSOR,col2:TENSOR2`` (by column name) or ``TENSOR,TENSOR2`` (by position)."""
    entries = []
    for entry in _split_escaped(text, ","):
        pair = _split_escaped(entry, ":")
        if len(pair) == 1 and pair[0] and not entry.rstrip().endswith(":"):
            entries.append((None, pair[0]))
        elif len(pair) == 2 and all(pair):
            entries.append((pair[0], pair[1]))
        else:
            raise ValueError(f"'{entry}' is neither column:TENSOR nor TENSOR")
    if not entries:
        raise ValueError("the value is empty")
    if len({column is None for column, _ in entries}) > 1:
        raise ValueError("mix of column:TENSOR and positional entries; use one form")
    for position in (0, 1):
        names = [e[position] for e in entries if e[position] is not None]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            what = "column" if position == 0 else "tensor"
            raise ValueError(f"{what} {', '.join(repeated)} appears twice")
    return tuple(entries)


parse_null_input = parse_choice("fail", "skip", what="NULL input behaviours")


def parse_headers(text: str) -> tuple[tuple[str, str], ...]:
    """``NAME:value,NAME2:value2``. A reason names the entry by its number and never shows its
    text: the values are secrets, and a malformed entry may well be a token."""
    try:
        entries = _split_escaped(text, ",")
    except _QuotingError as e:
        raise ValueError(f"entry {e.part}: {e.reason}") from None
    headers = []
    for number, entry in enumerate(entries, start=1):
        try:
            headers.append(_parse_header(entry))
        except ValueError as e:
            raise ValueError(f"entry {number}: {e}") from None
    return tuple(headers)


def _parse_header(entry: str) -> tuple[str, str]:
    """One ``NAME:value`` entry; the ValueError's text shows no part of it but a reserved name."""
    try:
        pair = _split_escaped(entry, ":")
    except _QuotingError as e:
        raise ValueError(e.reason) from None
    if len(pair) != 2:
        raise ValueError("it is not NAME:value")
    name, value = pair
    if not _HEADER_NAME.fullmatch(name):  # (match would let a final LF through its $)
        raise ValueError("the name is not a valid HTTP header name (letters, digits and "
                         "!#$%&'*+-.^_`|~ only, no spaces)")
    if name.lower() in _RESERVED_HEADERS:  # a fixed known word, safe to show
        raise ValueError(f"the header '{name}' is set by the client itself")
    unsendable = _unsendable_character(value)
    if unsendable is not None:
        raise ValueError(f"the value contains {unsendable}; {_PRINTABLE_ASCII_ONLY}")
    return name, value


VECTORIZED_SEQUENCE_ERROR = (
    "The 'vectorized' mode sends many rows in one request, and a request carries one sequence "
    "ID, so per-row sequence semantics ('sequence-id' and its flags) cannot be kept. Use "
    "'mode' = 'async' (one request per row, many in flight) or 'sync' for stateful models.")


# --- the options -------------------------------------------------------------------------------

def _option(key: str, parse: Callable[[str], Any], accepted: str, description: str,
            default: Any = None, required: bool = False, secret: bool = False) -> Any:
    spec = OptionSpec(key, parse, accepted, description, default, required, secret)
    if required:
        return field(metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


_BOOLEAN = "true or false (any case)"
_DURATION_TEXT = "a positive duration such as 30s, 500ms or 1 min (no unit means ms)"


@dataclass(frozen=True)
class TritonOptions:
    endpoint: Endpoint = _option(
        "endpoint", parse_endpoint,
        "an http or https URL (or host:port); a trailing /v2 or /v2/models is accepted",
        "Base URL of the Triton server's HTTP/REST (KServe v2) endpoint. user:password@ in "
        "the URL is sent as HTTP basic auth and redacted in every message.", required=True)
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
        "Stop sending requests while the server fails: per parallel subtask, the breaker opens "
        "when at least 10 requests were counted and the share of failures reaches "
        "'circuit-breaker-failure-threshold'. While open, records fail at once (not retried; "
        "'default-value' applies). After 'circuit-breaker-timeout' it lets "
        "'circuit-breaker-half-open-requests' requests through and closes when they all "
        "succeed. A record counts once, however many attempts it took; only transient "
        "failures count.", False)
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
        "Probe the server every 'health-check-interval' (GET /v2/health/live, then "
        "/v2/health/ready if not live; gRPC ServerLive/ServerReady) from a background thread. "
        "Probe results count as samples of the circuit breaker when it is enabled (a failed "
        "probe reopens a half-open breaker; probes alone never close it); without it, changes "
        "of health are logged only.", False)
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
        "the size of the connection pool. For 'async', create_model and CREATE MODEL set "
        "PyFlink's table.exec.async-scalar.max-concurrent-operations to it (and its timeout "
        "to 0, off: each row's request is bounded by 'timeout' instead, without PyFlink's "
        "timer thread per row).", 16)
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

    @classmethod
    def from_dict(cls, options: Mapping[str, object]) -> TritonOptions:
        """Parse and validate Flink-style options; raises ``TritonConfigError`` on any problem."""
        raw = {str(k).strip(): _as_text(v) for k, v in options.items()}
        specs = {spec.key: (f.name, spec) for f, spec in _fields_with_specs()}
        unknown = sorted(set(raw) - set(specs))
        if unknown:
            raise TritonConfigError(_unsupported_message(unknown, sorted(specs)))
        missing = [key for key, (_, spec) in specs.items() if spec.required and key not in raw]
        if missing:
            raise TritonConfigError(
                f"Missing required option(s) for provider '{PROVIDER}': {', '.join(missing)}.")
        values, problems = {}, []
        for key, text in raw.items():
            name, spec = specs[key]
            try:
                values[name] = spec.parse(text)
            except ValueError as e:
                problems.append(_invalid_value_message(spec, text, str(e)))
        if problems:
            raise TritonConfigError("\n".join(problems))
        parsed = cls(**values)
        parsed._check_combinations()
        return parsed

    def _check_combinations(self) -> None:
        if self.sequence_id_auto_increment:
            if self.sequence_id is None:
                raise TritonConfigError(
                    "'sequence-id-auto-increment' = 'true' requires 'sequence-id': the "
                    "generated IDs are {sequence-id}-{subtask-index}-{counter}. Set "
                    "'sequence-id' to a base such as 'flink-job-123'.")
            if self.sequence_id_type == "uint64":
                raise TritonConfigError(
                    "'sequence-id-auto-increment' = 'true' generates string IDs and cannot be "
                    "combined with 'sequence-id-type' = 'uint64'.")
            sequence_id_room(self.sequence_id, AUTO_INCREMENT_SUFFIX_BYTES,
                             "auto-incremented IDs")
            unset = " and ".join(repr(key) for key, value in (
                ("sequence-start", self.sequence_start), ("sequence-end", self.sequence_end))
                if not value)
            if unset:
                raise TritonConfigError(
                    f"'sequence-id-auto-increment' = 'true' requires {unset} = 'true'. Every "
                    "auto-incremented ID is a one-request sequence: without START the model's "
                    "state for it is uninitialised (Triton rejects the request), and without END "
                    "each request holds a Triton sequence slot until the model's idle timeout, so "
                    "slots run out silently and later requests queue.")
        elif self._differs_from_default("sequence-id-counter-init-strategy"):
            raise TritonConfigError(
                "'sequence-id-counter-init-strategy' has no effect without "
                "'sequence-id-auto-increment' = 'true'; set it or remove the strategy.")
        if not self.sequence_id_auto_increment and self.sequence_id is None:
            flags = [k for k, v in (("sequence-start", self.sequence_start),
                                    ("sequence-end", self.sequence_end)) if v]
            if flags:
                raise TritonConfigError(
                    f"{' and '.join(repr(k) for k in flags)} = 'true' needs 'sequence-id': "
                    "Triton ignores sequence flags on a request without a sequence ID.")
        if self.sequence_id_type == "uint64" and self.sequence_id is not None and not (
                self.sequence_id.isdigit() and 0 < int(self.sequence_id) < 2**63):
            raise TritonConfigError(
                f"'sequence-id' = '{self.sequence_id}' is not valid with 'sequence-id-type' = "
                "'uint64': expected an integer between 1 and 2^63-1 (Triton rejects 0, negative "
                "and larger values).")
        if self.protocol == "http" and self.endpoint.protocol == "grpc":
            raise TritonConfigError(
                f"'protocol' = 'http' does not fit the gRPC endpoint '{self.endpoint}'; use an "
                "http:// endpoint (Triton's HTTP port, 8000 by default) or 'protocol' = 'grpc'.")
        if self.protocol == "grpc" and self.endpoint.base_path:
            raise TritonConfigError(
                f"'protocol' = 'grpc' cannot use the path of endpoint '{self.endpoint}': a gRPC "
                "endpoint is host:port (Triton's gRPC port, 8001 by default).")
        if self.effective_protocol == "grpc" and not self.binary_data:
            raise TritonConfigError(
                "'binary-data' = 'false' (JSON tensors) exists only over HTTP; gRPC always "
                "sends raw tensors. Remove it or use 'protocol' = 'http'.")
        if self.mode == "vectorized":  # (one function takes it; the others are checked when
            self.check_mode(self.mode)  # the function is created: 'sync' may be a keyed one)
        self._check_reliability()
        self._check_tls()
        credentials = [what for what, present in (
            ("user:password@ in 'endpoint'", self.endpoint.has_credentials),
            ("'auth-token'", self.auth_token is not None),
            ("an Authorization header in 'custom-headers'",
             any(name.lower() == "authorization" for name, _ in self.custom_headers)),
        ) if present]
        if len(credentials) > 1:
            raise TritonConfigError(
                f"{' and '.join(credentials)} are all sent as the Authorization header; keep "
                "one of them.")

    def check_mode(self, mode: Mode) -> None:
        """Refuse options that do nothing, or something wrong, when the model is called in
        ``mode``: 'sync', 'async' or 'vectorized', or 'keyed' for keyed sequences."""
        self.check_sequence_scope(mode == "keyed")
        if self.mode not in (None, mode) and mode != "keyed":
            raise TritonConfigError(
                f"'mode' = '{self.mode}' does not fit this function, which calls the model in "
                f"{_MODE_NAMES[mode]}; remove 'mode', or use the function of that mode.")
        unused: dict[tuple[Mode, ...], list[str]] = {}
        for key, modes in MODE_ONLY_OPTIONS.items():
            if mode not in modes and self._differs_from_default(key):
                unused.setdefault(modes, []).append(repr(key))
        for modes, keys in unused.items():
            where = " and ".join(_MODE_NAMES[m] for m in modes)
            raise TritonConfigError(
                f"{', '.join(keys)} appl{'y' if len(keys) > 1 else 'ies'} only to {where}, and "
                f"this function calls the model in {_MODE_NAMES[mode]}; remove "
                f"{'them' if len(keys) > 1 else 'it'}.")
        if self.sequence_id is None or mode == "keyed":
            return
        if mode == "vectorized":
            raise TritonConfigError(VECTORIZED_SEQUENCE_ERROR)
        if mode == "async" and not self.sequence_id_auto_increment:
            raise TritonConfigError(
                f"'mode' = 'async' with the fixed 'sequence-id' = '{self.sequence_id}' would "
                "send up to 'max-concurrent-requests' requests of one Triton sequence at once, "
                "on separate connections, so the model would get its steps in any order. Use "
                "'sequence-id-auto-increment' = 'true' (a sequence per request), keyed "
                "sequences (one sequence per key, TritonKeyedSequenceFunction) or the 'sync' "
                "mode.")

    def check_sequence_scope(self, keyed: bool) -> None:
        """Refuse options of the other kind of function: keyed sequences (one sequence per
        key, opened and ended by the function) versus per-record functions."""
        if not keyed:
            keyed_only = [repr(k) for k in _KEYED_ONLY if self._differs_from_default(k)]
            if keyed_only:
                raise TritonConfigError(
                    f"{', '.join(keyed_only)} apply only to keyed sequences "
                    "(TritonKeyedSequenceFunction on a keyed DataStream); remove them here.")
            return
        if self.sequence_id is None:
            raise TritonConfigError(
                "Keyed sequences need 'sequence-id': each key's sequence ID is "
                "{sequence-id}-{key}-{incarnation}-{n}. Set it to a base such as 'sensors'.")
        sequence_id_room(self.sequence_id, KEYED_SUFFIX_BYTES, "keyed sequences")
        managed = [repr(k) for k in ("sequence-id-auto-increment", "sequence-start",
                                     "sequence-end", "sequence-id-type",
                                     "sequence-id-counter-init-strategy")
                   if self._differs_from_default(k)]
        if managed:
            raise TritonConfigError(
                f"A keyed-sequence function sends START and END and forms string IDs itself; "
                f"remove {', '.join(managed)}.")
        if self.mode not in (None, "sync"):
            raise TritonConfigError(
                f"'mode' = '{self.mode}' does not apply to keyed sequences: each subtask sends "
                "its keys' requests one at a time, in order, as a sequence needs. Remove it.")

    def _check_reliability(self) -> None:
        if self.retry_max_backoff < self.retry_initial_backoff:
            raise TritonConfigError(
                f"'retry-max-backoff' ({format_duration(self.retry_max_backoff)}) must be at least "
                f"'retry-initial-backoff' ({format_duration(self.retry_initial_backoff)}).")
        for switch, on, keys in (
                ("max-retries", self.max_retries > 0,
                 ("retry-initial-backoff", "retry-max-backoff")),
                ("circuit-breaker-enabled", self.circuit_breaker_enabled,
                 ("circuit-breaker-failure-threshold", "circuit-breaker-timeout",
                  "circuit-breaker-half-open-requests")),
                ("health-check-enabled", self.health_check_enabled,
                 ("health-check-interval",))):
            changed = [key for key in keys if not on and self._differs_from_default(key)]
            if changed:
                wanted = "> 0" if switch == "max-retries" else "= 'true'"
                raise TritonConfigError(
                    f"{', '.join(repr(k) for k in changed)} has no effect without '{switch}' "
                    f"{wanted}; set '{switch}' or remove it.")

    def _check_tls(self) -> None:
        tls_keys = [key for key in ("tls-ca-cert", "tls-client-cert", "tls-client-key",
                                    "tls-verify") if self._differs_from_default(key)]
        if tls_keys and not self.endpoint.use_tls:
            raise TritonConfigError(
                f"{', '.join(repr(k) for k in tls_keys)} need(s) a TLS endpoint (https:// or "
                f"grpcs://), and '{self.endpoint}' is not one.")
        if self.tls_client_key is not None and self.tls_client_cert is None:
            raise TritonConfigError("'tls-client-key' needs 'tls-client-cert' (the certificate "
                                    "the key belongs to).")
        if not self.tls_verify:
            if self.tls_ca_cert is not None:
                raise TritonConfigError(
                    "'tls-verify' = 'false' ignores 'tls-ca-cert'; keep one of them.")
            if self.effective_protocol == "grpc":
                raise TritonConfigError(
                    "'tls-verify' = 'false' exists only over HTTP: gRPC always verifies the "
                    "server. Give the server's CA with 'tls-ca-cert' instead.")

    def _differs_from_default(self, key: str) -> bool:
        for f, spec in _fields_with_specs():
            if spec.key == key:
                return getattr(self, f.name) != spec.default
        raise KeyError(key)

    @property
    def effective_protocol(self) -> Literal["http", "grpc"]:
        return self.protocol or self.endpoint.protocol  # type: ignore[return-value]

    def __repr__(self) -> str:
        shown = []
        for f, spec in _fields_with_specs():
            value = getattr(self, f.name)
            if value is None or value == spec.default:
                continue
            if spec.secret:
                value = "***"
            shown.append(f"{spec.key}={value!s}")
        return f"TritonOptions({', '.join(shown)})"

    __str__ = __repr__


Mode = Literal["sync", "async", "vectorized", "keyed"]
_MODE_NAMES: dict[Mode, str] = {
    "sync": "the 'sync' mode", "async": "the 'async' mode", "vectorized": "the 'vectorized' mode",
    "keyed": "keyed sequences (TritonKeyedSequenceFunction on a keyed DataStream)"}

# The options that only some ways of calling the model use (every mode takes the others): in
# any other, an option would do nothing while seeming to, so it is refused.
MODE_ONLY_OPTIONS: dict[str, tuple[Mode, ...]] = {
    "max-concurrent-requests": ("async", "vectorized"),
    "batch-size": ("vectorized",),
    "sequence-idle-timeout": ("keyed",),
    "sequence-replay-records": ("keyed",),
}
_KEYED_ONLY = tuple(k for k, modes in MODE_ONLY_OPTIONS.items() if modes == ("keyed",))


def _fields_with_specs():
    return [(f, f.metadata["spec"]) for f in fields(TritonOptions)]


def option_specs() -> list[OptionSpec]:
    """All option specs, in declaration order."""
    return [spec for _, spec in _fields_with_specs()]


def format_duration(value: timedelta) -> str:
    micros = value // timedelta(microseconds=1)
    return f"{micros // 1000} ms" if micros % 1000 == 0 else f"{micros} µs"


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unsupported_message(unknown: list[str], supported: list[str]) -> str:
    lines = [f"Unsupported options found for '{PROVIDER}'.", "", "Unsupported options:", ""]
    for key in unknown:
        close = difflib.get_close_matches(key, supported, n=1)
        lines.append(f"{key}" + (f" (did you mean '{close[0]}'?)" if close else ""))
    lines += ["", "Supported options:", "", *supported]
    return "\n".join(lines)


def _invalid_value_message(spec: OptionSpec, text: str, reason: str) -> str:
    shown = "(secret value not shown)" if spec.secret else repr(redact_url_credentials(text))
    return (f"Invalid value for option '{spec.key}': {shown}: {reason}. "
            f"Expected {spec.accepted}.")


def reference_markdown() -> str:
    """The options reference (docs/options.md), generated from the specs."""
    def default(spec: OptionSpec) -> str:
        if spec.required:
            return "(required)"
        if spec.default in (None, ()):
            return "(none)"
        if isinstance(spec.default, bool):
            return str(spec.default).lower()
        if isinstance(spec.default, timedelta):
            return f"{int(spec.default.total_seconds())}s"
        return str(spec.default)

    lines = [
        "# Options reference",
        "",
        "<!-- Generated by `python -m pyflink_triton options-reference`; "
        "a test checks it is current. -->",
        "",
        "Options are given in `CREATE MODEL ... WITH (...)` or as the dict passed to",
        "`TritonScalarFunction`, `TritonMapFunction` and `create_model`. Unknown keys and",
        "invalid values are rejected when the function is registered.",
        "",
        "| Key | Default | Accepted values | Description |",
        "|---|---|---|---|",
    ]
    for spec in option_specs():
        cells = [f"`{spec.key}`", default(spec), spec.accepted, spec.description]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"

