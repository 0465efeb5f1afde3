"""The user docs (MkDocs, docs/): the site builds in strict mode, and every error message that
docs/troubleshooting.md explains is still produced by the package.

The convention of docs/troubleshooting.md: each entry is a ``### `` heading followed, after a
blank line, by a fenced block with the info string ``text`` holding the message as the package
words it. ``<...>`` marks what the code fills in (a model, an option, a value, a cause...).
Everything else must appear in the package source: the message is cut at the placeholders and
at line breaks, and each remaining fragment must be part of one string literal (or of the
literal text of one f-string) in pyflink_triton/**/*.py, or the end of one such literal
followed by the start of another (a message composed of two). Messages of other software (Flink,
Python, tritonclient) are quoted in ``plaintext`` blocks, which this test does not check.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"
PACKAGE = ROOT / "pyflink_triton"

ENTRY = re.compile(r"^### (?P<title>[^\n]+)\n\n```text\n(?P<message>.*?)\n```$",
                   re.MULTILINE | re.DOTALL)
PLACEHOLDER = re.compile(r"<[^<>\n]+>")


def test_mkdocs_builds_the_site_in_strict_mode(tmp_path):
    assert importlib.util.find_spec("mkdocs") is not None, (
        "mkdocs is not installed: pip install -e '.[test]'")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
         str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, (
        f"mkdocs build --strict failed (exit {build.returncode}):\n"
        f"{build.stdout}\n{build.stderr}")
    for page in ("index", "concepts", "options", "troubleshooting", "migration"):
        built = tmp_path / "site" / ("index.html" if page == "index" else f"{page}/index.html")
        assert built.exists(), f"{built} was not built"


def troubleshooting_entries() -> list[tuple[str, str]]:
    text = TROUBLESHOOTING.read_text(encoding="utf-8")
    entries = [(m["title"], m["message"]) for m in ENTRY.finditer(text)]
    # Every ```text block must belong to an entry, or it would escape the check.
    assert len(entries) == text.count("```text\n"), (
        "each ```text block in docs/troubleshooting.md must directly follow a '### ' heading "
        "and a blank line")
    return entries


@cache
def source_literals() -> tuple[str, ...]:
    """The text of every string literal in the package: plain strings (implicit
    concatenation already joined by the parser) and each literal run of an f-string. A
    module-level constant interpolated in an f-string (``{PROVIDER}``) counts as literal."""
    literals: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        constants = {
            node.targets[0].id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str | int)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                literals.append(node.value)
            elif isinstance(node, ast.JoinedStr):
                run = ""
                for part in node.values:
                    if isinstance(part, ast.Constant):
                        run += str(part.value)
                    elif (isinstance(part, ast.FormattedValue) and part.conversion == -1
                          and part.format_spec is None and isinstance(part.value, ast.Name)
                          and part.value.id in constants):
                        run += str(constants[part.value.id])
                    else:
                        literals.append(run)
                        run = ""
                literals.append(run)
    return tuple(literal for literal in literals if literal)


def fragments(message: str) -> list[str]:
    """The fixed text of a message: cut at placeholders and line breaks, stripped."""
    return [piece.strip() for part in PLACEHOLDER.split(message)
            for piece in part.split("\n") if piece.strip()]


def in_source(fragment: str) -> bool:
    """Whether ``fragment`` is part of one literal, or spans two literals joined at run time
    (the end of one, e.g. ``"Model {model}: "``, and the start of the next, e.g. the text of
    an error passed in)."""
    literals = source_literals()
    if any(fragment in literal for literal in literals):
        return True
    return any(any(literal.endswith(fragment[:i]) for literal in literals)
               and any(literal.startswith(fragment[i:]) for literal in literals)
               for i in range(1, len(fragment)))


def missing_fragments(message: str) -> list[str]:
    return [f for f in fragments(message) if not in_source(f)]


def test_troubleshooting_lists_enough_messages():
    entries = troubleshooting_entries()
    assert len(entries) >= 15, [title for title, _ in entries]
    titles = [title for title, _ in entries]
    assert len(set(titles)) == len(titles), "two entries have the same heading"


@pytest.mark.parametrize("title, message", troubleshooting_entries(),
                         ids=[title for title, _ in troubleshooting_entries()])
def test_troubleshooting_message_is_produced_by_the_package(title, message):
    assert fragments(message), f"{title}: the message has no fixed text"
    missing = missing_fragments(message)
    assert not missing, (
        f"docs/troubleshooting.md, entry {title!r}: no string in pyflink_triton/ contains "
        f"{missing}. The message changed in the code; update the entry (text the code fills "
        "in is written <...>).")


def test_the_message_check_finds_changed_messages():
    # The check is not vacuous: a real message passes, one with altered wording does not.
    real = "Missing required option(s) for provider 'triton': <keys>."
    assert not missing_fragments(real)
    assert missing_fragments(real.replace("required", "mandatory"))
    assert fragments("A <x> b\nc <y>") == ["A", "b", "c"]
