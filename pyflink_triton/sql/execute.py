"""SQL helper: run SQL text in which ``CREATE MODEL ... WITH ('provider' = 'triton', ...)``
statements define functions that call Triton.

Flink parses and stores CREATE MODEL itself, but no Triton model provider exists for PyFlink, so
``ML_PREDICT`` cannot use it. :func:`execute_sql` therefore handles each Triton CREATE MODEL:
it validates the options, lets Flink store the model in its catalog as usual (``SHOW MODELS``,
``DESCRIBE MODEL`` keep working) and registers a temporary function named after the model,
so ``SELECT my_model(col) FROM t`` works. Every other statement goes to Flink unchanged.

Accepted: ``CREATE [TEMPORARY] MODEL [IF NOT EXISTS] [cat.][db.]name
[INPUT (col type, ...)] [OUTPUT (col type, ...)] [COMMENT '...'] WITH ('key' = 'value', ...)``,
``--`` and ``/* */`` comments, and several statements separated by ``;``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from ..errors import TritonConfigError
from ..flink.table import TritonFunction, check_async_model, configure_async, function_for
from ..options import PROVIDER, PROVIDER_SPELLING, is_provider_misspelled, option_specs
from ..options.endpoint import redact_url_credentials

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


def _tokens(sql: str) -> Iterator[Token]:
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
    for token in _tokens(sql):
        if token.text == ";" and token.kind == "symbol":
            statements.append(current)
            current = []
        else:
            current.append(token)
    statements.append(current)
    return [(sql[ts[0].start:ts[-1].end], ts) for ts in statements if ts]


@dataclass
class CreateModel:
    name: str  # as written, e.g. my_model or `cat`.`db`.`my_model`
    function_name: str  # the last part of the name
    options: dict[str, str]
    inputs: list[tuple[str, str]] | None = None  # (column, SQL type) from INPUT (...)
    outputs: list[tuple[str, str]] | None = None  # from OUTPUT (...)
    if_not_exists: bool = False
    temporary: bool = False
    text: str = field(default="", repr=False)

    def adapter(self) -> TritonFunction:
        """The function the model's options ask for (validated; undeclared columns are taken
        from the served model). Several OUTPUT columns make a ROW result."""
        outputs = self.outputs
        output = outputs if outputs is None or len(outputs) > 1 else outputs[0]
        return function_for(self.options, self.inputs, output)


class _Parser:
    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text, self.tokens, self.position = text, tokens, 0

    def peek(self) -> Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise self.error("the statement ends too early")
        self.position += 1
        return token

    def accept(self, *words: str) -> bool:
        token = self.peek()
        if token is not None and (token.is_word(*words) or token.text in words):
            self.position += 1
            return True
        return False

    def expect(self, *words: str) -> Token:
        token = self.take()
        if not (token.is_word(*words) or token.text in words):
            raise self.error(f"expected {' or '.join(words)}, found '{token.text}'")
        return token

    def error(self, what: str) -> TritonConfigError:
        return TritonConfigError(
            f"Cannot parse CREATE MODEL: {what}.\n{_redacted(self.text, self.tokens)}")

    def identifier(self) -> Token:
        token = self.take()
        if token.kind not in ("word", "quoted"):
            raise self.error(f"expected a name, found '{token.text}'")
        return token

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
    parts = [parser.identifier()]
    while parser.accept("."):
        parts.append(parser.identifier())
    name = text[parts[0].start - tokens[0].start:parts[-1].end - tokens[0].start]
    statement = CreateModel(name, parts[-1].value, {}, if_not_exists=if_not_exists,
                            temporary=temporary, text=text)
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


def execute_sql(t_env: Any, sql_text: str,
                model_options: Mapping[str, str] | None = None) -> Any:
    """Run one or more ``;``-separated statements; return the last statement's TableResult.

    Triton CREATE MODEL statements register a function named after the model (see the module
    docstring); everything else is passed to ``t_env.execute_sql``. ``model_options`` override
    the options of every Triton model's function, e.g. the endpoint where a file written for
    ``localhost`` runs (Flink's catalog keeps the statement's own options).
    """
    result = None
    for text, tokens in split_statements(sql_text):
        statement = parse_create_model(text, tokens)
        if not is_triton_model(statement):
            result = t_env.execute_sql(text)
        else:
            statement.options.update(model_options or {})
            result = _create_triton_model(t_env, statement)
    return result


def _create_triton_model(t_env: Any, statement: CreateModel) -> Any:
    exists = statement.function_name in t_env.list_user_defined_functions()
    if exists and statement.if_not_exists:
        return t_env.execute_sql(statement.text)  # Flink's own IF NOT EXISTS no-op
    if exists:
        raise TritonConfigError(
            f"Model '{statement.name}': a function named '{statement.function_name}' already "
            "exists, and CREATE MODEL registers a function of the model's name. Use IF NOT "
            "EXISTS, or drop the function first.")
    # Validate (and derive undeclared columns) before Flink stores anything.
    adapter = statement.adapter()
    function = adapter.as_udf(statement.function_name)
    if adapter.MODE == "async":
        check_async_model(t_env, statement.name, adapter.inference.options)
    result = t_env.execute_sql(statement.text)
    t_env.create_temporary_function(statement.name, function)
    if adapter.MODE == "async":
        configure_async(t_env, statement.name, adapter.inference.options)
    return result

