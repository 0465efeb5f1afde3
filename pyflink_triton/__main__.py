"""``python -m pyflink_triton <command>``: the package's command-line tools."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def run_sql_file(path: str, parallelism: int | None) -> int:
    """Run a SQL file (Triton CREATE MODEL statements included) on the embedded mini-cluster."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from .sql import execute_sql

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    t_env.get_config().set("python.executable", sys.executable)
    if parallelism:
        t_env.get_config().set("parallelism.default", str(parallelism))
    with open(path, encoding="utf-8") as f:
        result = execute_sql(t_env, f.read())
    if result is not None:
        # Not result.print(): its table cuts every value at 30 characters.
        print("\t".join(result.get_resolved_schema().get_column_names()))
        with result.collect() as rows:
            for row in rows:
                print("\t".join(str(value) for value in row))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyflink_triton",
                                     description="pyflink-triton command-line tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    sql = commands.add_parser("sql", help="run a .sql file and print its last result")
    sql.add_argument("file")
    sql.add_argument("--parallelism", type=int, help="parallelism.default of the job")
    commands.add_parser("server", add_help=False,
                        help="run a local Triton (same as python -m pyflink_triton.server)")
    commands.add_parser("options-reference", help="print the options reference (Markdown)")
    args, rest = parser.parse_known_args(argv)

    if args.command == "server":
        from .server.__main__ import main as server_main

        return server_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "sql":
        return run_sql_file(args.file, args.parallelism)
    from .options import reference_markdown

    print(reference_markdown(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
