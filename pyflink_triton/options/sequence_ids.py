"""What Triton accepts as a sequence ID, and the room the IDs this package generates need: the
value of 'sequence-id' is a whole ID, or the base that auto-increment and keyed sequences append
to."""

from __future__ import annotations

from ..errors import TritonConfigError

# Triton 2.51 refuses longer string sequence IDs (HTTP 501 / gRPC UNIMPLEMENTED "string
# correlation ID cannot be longer than 128 characters"; it counts UTF-8 bytes, measured).
MAX_SEQUENCE_ID_BYTES = 128
# What auto-increment appends: "-{subtask}-{counter}", a subtask index of at most 5 digits
# (Flink's largest max parallelism is 32768) and a counter of at most 20 (nano-time: 19).
AUTO_INCREMENT_SUFFIX_BYTES = 1 + 5 + 1 + 20
# What a keyed sequence appends: "-{key}-{incarnation}-{n}", at least room for a hashed key
# (sha256: and 32 hex digits), an incarnation of 12 hex digits and n of at most 20 digits.
KEYED_INCARNATION_HEX = 12
KEYED_NUMBER_DIGITS = 20
KEYED_SUFFIX_BYTES = 1 + 39 + 1 + KEYED_INCARNATION_HEX + 1 + KEYED_NUMBER_DIGITS


def parse_sequence_id(text: str) -> str:
    if not text.strip():
        raise ValueError("the value is empty")
    if "\0" in text:
        raise ValueError("Triton cuts a string sequence ID at a NUL character, merging sequences")
    if len(text.encode()) > MAX_SEQUENCE_ID_BYTES:
        raise ValueError(f"Triton refuses sequence IDs longer than {MAX_SEQUENCE_ID_BYTES} "
                         "bytes (UTF-8)")
    return text


def check_sequence_id_room(base: str, suffix_bytes: int, what: str) -> None:
    """Raise unless IDs of ``base`` plus up to ``suffix_bytes`` fit Triton's limit."""
    room = MAX_SEQUENCE_ID_BYTES - suffix_bytes
    if len(base.encode()) > room:
        raise TritonConfigError(
            f"'sequence-id' = '{base}' is {len(base.encode())} bytes; {what} append up to "
            f"{suffix_bytes} bytes to it, and Triton refuses sequence IDs longer than "
            f"{MAX_SEQUENCE_ID_BYTES} bytes: use at most {room} bytes.")
