"""CREATE MODEL statements: which are this package's (``'provider' = 'triton'``), and their
name, columns and options.

Accepted: ``CREATE [TEMPORARY] MODEL [IF NOT EXISTS] [cat.][db.]name
[INPUT (col type, ...)] [OUTPUT (col type, ...)] [COMMENT '...'] WITH ('key' = 'value', ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeGuard

from ..errors import TritonConfigError
from ..flink.table import TritonFunction, function_for
from ..options import PROVIDER, PROVIDER_SPELLING, is_provider_misspelled, option_specs
from ..options.endpoint import redact_url_credentials
from .tokens import Token, TokenCursor


@dataclass
class CreateModel:
    name: str  # as written, e.g. my_model or `cat`.`db`.`my_model`
    name_parts: tuple[str, ...]  # without quotes, e.g. ("cat", "db", "my_model")
    options: dict[str, str]
    inputs: list[tuple[str, str]] | None = None  # (column, SQL type) from INPUT (...)
    outputs: list[tuple[str, str]] | None = None  # from OUTPUT (...)
    if_not_exists: bool = False
    temporary: bool = False
    text: str = field(default="", repr=False)

    @property
    def function_name(self) -> str:
        """The name of the function the model becomes: the last part of the model's."""
        return self.name_parts[-1]

    def adapter(self) -> TritonFunction:
        """The function the model's options ask for (validated; undeclared columns are taken
        from the served model). Several OUTPUT columns make a ROW result."""
        outputs = self.outputs
        output = outputs if outputs is None or len(outputs) > 1 else outputs[0]
        return function_for(self.options, self.inputs, output)


class _Parser(TokenCursor):
    def __init__(self, text: str, tokens: list[Token]) -> None:
        super().__init__(tokens)
        self.text = text

    def error(self, what: str) -> TritonConfigError:
        return TritonConfigError(
            f"Cannot parse CREATE MODEL: {what}.\n{_redacted(self.text, self.tokens)}")

    def string_literal(self, after: str) -> str:
        token = self.take()
        if token.kind != "string":
            raise self.error(f"expected a string literal after {after}, found '{token.text}'")
        return token.value

    def columns(self) -> list[tuple[str, str]]:
        """``(name type [COMMENT '...'], ...)``: types are kept as written, for Flink's parser."""
        self.expect("(")
        columns = []
        while True:
            name = self.identifier().value
            start, depth = self.position, 0
            while True:
                token = self.peek()
                if token is None:
                    raise self.error("unclosed column list")
                if depth == 0 and (token.text in (",", ")") or token.is_word("COMMENT")):
                    break
                depth += token.text in ("(", "<")
                depth -= token.text in (")", ">")
                self.position += 1
            if self.position == start:
                raise self.error(f"column '{name}' has no type")
            type_text = self.text[self.tokens[start].start - self.tokens[0].start:
                                  self.tokens[self.position - 1].end - self.tokens[0].start]
            if self.accept("COMMENT"):
                self.string_literal("COMMENT")
            columns.append((name, type_text))
            if self.expect(",", ")").text == ")":
                return columns

    def properties(self) -> dict[str, str]:
        self.expect("(")
        options: dict[str, str] = {}
        if self.accept(")"):
            return options
        while True:
            key, _, value = self.take(), self.expect("="), self.take()
            if key.kind != "string" or value.kind != "string":
                shown = value.text if key.value in _SHOWN_OPTIONS else "***"
                raise self.error(f"WITH options are 'key' = 'value' string literals, found "
                                 f"{key.text} = {shown}")
            if key.value in options:
                raise self.error(f"option '{key.value}' is given twice")
            options[key.value] = value.value
            if self.expect(",", ")").text == ")":
                return options


def _redacted(text: str, tokens: list[Token]) -> str:
    """The statement ``text`` (of ``tokens``) for a message, every option value masked but
    those of this package's options that are no secret (an endpoint without its credentials):
    a statement that does not parse may hold any provider's secrets, in any quoting."""
    pieces, offset, position = [], tokens[0].start if tokens else 0, 0
    for index, token in enumerate(tokens):
        if not (token.kind == "symbol" and token.text == "="):
            continue
        key = tokens[index - 1] if index else None
        value = _value_tokens(tokens, index + 1)
        if not value:
            continue
        if key is not None and key.kind != "symbol" and key.value in _SHOWN_OPTIONS:
            continue
        shown = "'***'"
        if (key is not None and key.kind == "string" and key.value == "endpoint"
                and len(value) == 1 and value[0].kind == "string"):
            shown = "'" + redact_url_credentials(value[0].value).replace("'", "''") + "'"
        pieces += [text[position:value[0].start - offset], shown]
        position = value[-1].end - offset
    return "".join(pieces) + text[position:]


def _value_tokens(tokens: list[Token], start: int) -> list[Token]:
    """The tokens of an option's value from ``start``: up to the next ',' or ')' outside
    brackets."""
    depth, end = 0, start
    while end < len(tokens):
        text = tokens[end].text if tokens[end].kind == "symbol" else ""
        if depth == 0 and text in (",", ")"):
            break
        depth += text in ("(", "[")
        depth -= text in (")", "]")
        end += 1
    return tokens[start:end]


# The option values a message may show.
_SHOWN_OPTIONS = frozenset(spec.key for spec in option_specs()
                           if not spec.secret and spec.key != "endpoint")


def parse_create_model(text: str, tokens: list[Token]) -> CreateModel | None:
    """The CREATE MODEL statement in ``tokens``, or None if it is another statement."""
    parser = _Parser(text, tokens)
    if not parser.accept("CREATE"):
        return None
    temporary = parser.accept("TEMPORARY")
    if not parser.accept("MODEL"):
        return None
    if_not_exists = parser.accept("IF") and bool(parser.expect("NOT")) and bool(
        parser.expect("EXISTS"))
    parts = parser.dotted_name()
    name = text[parts[0].start - tokens[0].start:parts[-1].end - tokens[0].start]
    statement = CreateModel(name, tuple(part.value for part in parts), {},
                            if_not_exists=if_not_exists, temporary=temporary, text=text)
    if parser.accept("INPUT"):
        statement.inputs = parser.columns()
    if parser.accept("OUTPUT"):
        statement.outputs = parser.columns()
    if parser.accept("COMMENT"):
        parser.string_literal("COMMENT")
    parser.expect("WITH")
    statement.options = parser.properties()
    if parser.peek() is not None:
        raise parser.error(f"unexpected '{parser.peek().text}' after the WITH clause")
    return statement


def is_triton_model(statement: CreateModel | None) -> TypeGuard[CreateModel]:
    """Whether ``statement`` is a CREATE MODEL of this package's provider, which
    :func:`execute_sql` and the SQL-client export turn into a function. Other providers' models
    are Flink's; one whose provider differs from ours only in case or spaces raises."""
    if statement is None:
        return False
    provider = statement.options.get("provider")
    if provider is not None and is_provider_misspelled(provider):
        raise TritonConfigError(
            f"Model '{statement.name}': with 'provider' = {provider!r}, Flink would store the "
            "model and no function would call it, so the queries using it would fail. "
            f"{PROVIDER_SPELLING}.")
    return provider == PROVIDER
