"""The value parsers of the options: each turns the text of one option into its value, or
raises a ValueError whose text says what is wrong (``TritonOptions.from_dict`` adds the key and
what a valid value looks like). Parsers of secret values never show the value.

Only single values are judged here; how options combine is checked by the rule modules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

from .endpoint import Endpoints

# --- booleans, numbers and durations -----------------------------------------------------------

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


def format_duration(value: timedelta) -> str:
    """A duration as messages show it: in ms when whole, else in µs."""
    micros = value // timedelta(microseconds=1)
    return f"{micros // 1000} ms" if micros % 1000 == 0 else f"{micros} µs"


def parse_non_negative_int(text: str) -> int:
    if not re.fullmatch(r"\s*\+?\d+\s*", text):
        raise ValueError("not a non-negative integer")
    return int(text)


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


# --- texts and choices -------------------------------------------------------------------------

def parse_text(text: str) -> str:
    if not text.strip():
        raise ValueError("the value is empty")
    return text


def parse_any_text(text: str) -> str:
    return text  # parsed later, against something only known then (the output type)


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
parse_null_input = parse_choice("fail", "skip", what="NULL input behaviours")


# --- the server and the model ------------------------------------------------------------------

def parse_endpoint(text: str) -> Endpoints:
    return Endpoints.parse(text)


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


# --- lists in Flink's syntax -------------------------------------------------------------------

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


# --- HTTP headers (and gRPC metadata) ----------------------------------------------------------

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


def parse_header_name(text: str) -> str:
    """A header the client sets to a value of its own (the sequence ID)."""
    name = text.strip()
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError("not a valid HTTP header name (letters, digits and "
                         "!#$%&'*+-.^_`|~ only, no spaces)")
    lowered = name.lower()
    if lowered in _RESERVED_HEADERS or lowered in ("authorization", "connection",
                                                   "te", "user-agent"):
        raise ValueError(f"the header '{name}' is used by the client or the protocol itself")
    if lowered.startswith("grpc-"):
        raise ValueError("names starting with 'grpc-' are reserved by gRPC")
    return name


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
