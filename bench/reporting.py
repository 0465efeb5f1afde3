"""How the benchmark scripts run and report: in a scratch directory, numbers and errors in a
line, the JSON results, the exit status."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_in_scratch(run_all: Callable[[Path], dict[str, Any]], keep: Path | None,
                   prefix: str) -> dict[str, Any] | None:
    """The report of ``run_all(directory)``, whose table is printed: in ``keep`` (--scratch: a
    new directory, since the models' request logs are appended to, kept afterwards) or in a
    temporary directory named ``prefix...``. None after a Ctrl-C, which ``run_all`` stops
    Triton on."""
    try:
        if keep:
            keep.mkdir(parents=True)
            report = run_all(keep.resolve())
        else:
            with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
                report = run_all(Path(scratch))
    except KeyboardInterrupt:
        print("Interrupted; Triton stopped.", file=sys.stderr)
        return None
    print()
    print(report["table"])
    return report


def fmt(value: float | None, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def short_error(error: BaseException) -> str:
    """The message without the stack frames: a Py4JJavaError is hundreds of lines of Java (and
    Python, from the worker) stack; the lines that start in column 0 are the messages."""
    lines = [line for line in str(error).splitlines()
             if line.strip() and not line[0].isspace() and not line.startswith("Traceback")]
    lines = lines or [""]
    kept = lines if len(lines) <= 8 else [*lines[:2], "...", *lines[-6:]]
    return f"{type(error).__name__}: " + "\n".join(kept)[:3000]


def target_line(target: dict[str, Any]) -> str:
    """A target (status, what it asks, the ratio measured) in a line."""
    ratio = target["ratio"]
    return (f"Target: {target['status']}  {target['target']}: "
            + (f"{ratio:.2f}x" if ratio is not None else "not measured"))


def write_results(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def exit_status(failed: list[str], what: str = "wrong outputs, errors or timeouts") -> int:
    """1, naming the ``failed`` runs on stderr, if there are any; else 0."""
    if failed:
        print(f"FAILED ({what}): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def finish(report: dict[str, Any], path: Path, started: float) -> int:
    """Print the report's notes, write it to ``path`` and say so (with the time since
    ``started``, a time.monotonic()); the exit status of its ``failed_runs``."""
    for note in report["notes"]:
        print(f"Note: {note}")
    write_results(report, path)
    print(f"\nResults written to {path} ({time.monotonic() - started:.0f} s in all)")
    return exit_status(report["failed_runs"])
