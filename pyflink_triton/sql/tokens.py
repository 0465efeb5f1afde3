"""The SQL text as tokens: statements split at ``;``, strings, quoted names and comments
told apart, so that the CREATE MODEL and ML_PREDICT parsers never look inside a literal."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..errors import TritonConfigError

_TOKEN = re.compile(r"""
    (?P<space>\s+|--[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>`(?:[^`]|``)*`)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<number>\d+(?:\.\d*)?)
  | (?P<unterminated>['`]|/\*)
  | (?P<symbol>.)
""", re.VERBOSE | re.DOTALL)


@dataclass(frozen=True)
class Token:
    kind: str  # string, quoted, word, number, symbol
    text: str
    start: int
    end: int

    @property
    def value(self) -> str:
        """A string literal or quoted identifier without its quotes; a word as written."""
        if self.kind == "string":
            return self.text[1:-1].replace("''", "'")
        if self.kind == "quoted":
            return self.text[1:-1].replace("``", "`")
        return self.text

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words


def tokenize(sql: str) -> Iterator[Token]:
    position = 0
    while position < len(sql):
        match = _TOKEN.match(sql, position)
        assert match is not None  # the symbol alternative matches any character
        if match.lastgroup == "unterminated":  # (no text around it: it may hold a secret)
            line = sql.count("\n", 0, position) + 1
            column = position - (sql.rfind("\n", 0, position) + 1) + 1
            raise TritonConfigError(
                f"Unterminated {match.group()} at offset {position} in SQL (line {line}, "
                f"column {column}).")
        if match.lastgroup != "space":
            yield Token(match.lastgroup or "symbol", match.group(), match.start(), match.end())
        position = match.end()


def split_statements(sql: str) -> list[tuple[str, list[Token]]]:
    """The statements of a SQL text (without the ``;``), each with its tokens."""
    statements, current = [], []
    for token in tokenize(sql):
        if token.text == ";" and token.kind == "symbol":
            statements.append(current)
            current = []
        else:
            current.append(token)
    statements.append(current)
    return [(sql[ts[0].start:ts[-1].end], ts) for ts in statements if ts]


class TokenCursor:
    """Reads a statement's tokens left to right. A parser subclasses it and says in
    :meth:`error` how its messages look."""

    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens, self.position = list(tokens), 0

    def peek(self, ahead: int = 0) -> Token | None:
        index = self.position + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise self.error("the statement ends too early")
        self.position += 1
        return token

    def accept(self, *words: str) -> bool:
        """Step over the next token if it is one of ``words`` (a keyword, any case, or a
        symbol)."""
        token = self.peek()
        if token is not None and (token.is_word(*words) or (
                token.kind == "symbol" and token.text in words)):
            self.position += 1
            return True
        return False

    def expect(self, *words: str) -> Token:
        token = self.take()
        if not (token.is_word(*words) or (token.kind == "symbol" and token.text in words)):
            raise self.error(f"expected {' or '.join(words)}, found '{token.text}'")
        return token

    def identifier(self) -> Token:
        token = self.take()
        if token.kind not in ("word", "quoted"):
            raise self.error(f"expected a name, found '{token.text}'")
        return token

    def dotted_name(self) -> list[Token]:
        """``a``, ``a.b`` or ``a.b.c`` (each part a word or a quoted name)."""
        parts = [self.identifier()]
        while self.accept("."):
            parts.append(self.identifier())
        return parts

    def error(self, what: str) -> TritonConfigError:
        return TritonConfigError(f"Cannot parse the SQL statement: {what}.")
