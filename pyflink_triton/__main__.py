"""``python -m pyflink_triton <command>``: the package's command-line tools."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

DEFAULT_JOB_ZIP = "dist/pyflink-triton-job.zip"


def under_flink_run() -> bool:
    """True when ``flink run`` started this process: it hands over its gateway's port."""
    return "PYFLINK_GATEWAY_PORT" in os.environ


def run_sql_file(path: str, parallelism: int | None, endpoint: str | None) -> int:
    """Run a SQL file (Triton CREATE MODEL statements included) and print its last result.

    Started by ``flink run -pym pyflink_triton sql FILE``, the statements go to that cluster;
    otherwise to an embedded mini-cluster.
    """
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from .sql.execute import execute_sql
    from .sql.tokens import split_statements

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    if not under_flink_run():
        # The mini-cluster starts its Python workers with 'python' from PATH unless told.
        t_env.get_config().set("python.executable", sys.executable)
    if parallelism:
        t_env.get_config().set("parallelism.default", str(parallelism))
    with open(path, encoding="utf-8") as f:
        sql_text = f.read()
    result = execute_sql(t_env, sql_text, {"endpoint": endpoint} if endpoint else None)
    if result is None:
        return 0
    if split_statements(sql_text)[-1][1][0].is_word("INSERT", "EXECUTE"):
        # Its result is only the job. Like Flink's SQL client, leave a cluster job running;
        # a mini-cluster ends with this process, so wait for the job there.
        print(f"Job {result.get_job_client().get_job_id()} submitted.")
        if not under_flink_run():
            result.wait()
        return 0
    # Not result.print(): its table cuts every value at 30 characters.
    print("\t".join(result.get_resolved_schema().get_column_names()))
    with result.collect() as rows:
        for row in rows:
            print("\t".join(str(value) for value in row))
    return 0


def build_job_zip(output: str) -> int:
    from .jobzip import build_job_zip

    job_zip = build_job_zip(output)
    size = job_zip.path.stat().st_size / 2**20
    bundled = ", ".join(f"{name} {version}" for name, version in job_zip.distributions)
    print(f"Wrote {job_zip.path} ({size:.1f} MiB): pyflink_triton and {bundled}.\n"
          f"Its compiled parts are for {job_zip.python}: the cluster's Python must match.\n"
          f"Ship it with the job, e.g.\n"
          f"  flink run -pyfs {job_zip.path} -py examples/cluster_job.py "
          "--endpoint http://<triton-host>:8000\n"
          f"  flink run -pyfs {job_zip.path} -pym pyflink_triton sql job.sql "
          "--endpoint http://<triton-host>:8000")
    return 0


def write_sql_client_files(path: str, output_dir: str, module: str,
                           endpoint: str | None) -> int:
    from pathlib import Path

    from .sql.client import export_for_sql_client

    source = Path(path)
    files = export_for_sql_client(source.read_text(encoding="utf-8"), module, source.name,
                                  {"endpoint": endpoint} if endpoint else None)
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / source.name).write_text(files.sql, encoding="utf-8")
    (directory / f"{module}.py").write_text(files.module, encoding="utf-8")
    print(f"Wrote {directory / source.name} and {directory / module}.py "
          f"(functions: {', '.join(files.functions)}). Run them with\n"
          f"  sql-client.sh -f {directory / source.name} "
          f"-pyfs {DEFAULT_JOB_ZIP},{directory / module}.py")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyflink_triton",
                                     description="pyflink-triton command-line tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sql = commands.add_parser(
        "sql", help="run a .sql file (with Triton CREATE MODEL statements) and print its last "
                    "result; on a cluster: flink run -pyfs JOB_ZIP -pym pyflink_triton sql FILE")
    sql.add_argument("file")
    sql.add_argument("--parallelism", type=int, help="parallelism.default of the job")
    sql.add_argument("--endpoint", help="the endpoint of every Triton model in the file, instead "
                                        "of the one its CREATE MODEL gives")
    job_zip = commands.add_parser(
        "job-zip", help="build the zip that flink run -pyfs needs to run this package on a "
                        "cluster")
    job_zip.add_argument("-o", "--output", default=DEFAULT_JOB_ZIP,
                         help=f"where to write it (default: {DEFAULT_JOB_ZIP})")
    client_files = commands.add_parser(
        "sql-client-files", help="rewrite a .sql file for Flink's SQL client or SQL Gateway: "
                                 "its Triton CREATE MODELs become Python functions of a "
                                 "generated module")
    client_files.add_argument("file")
    client_files.add_argument("-o", "--output-dir", required=True,
                              help="where to write the rewritten file and the module")
    client_files.add_argument("--module", default="triton_models",
                              help="the generated module's name (default: triton_models)")
    client_files.add_argument("--endpoint", help="the endpoint of every Triton model in the "
                                                 "file, instead of the one its CREATE MODEL gives")
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
        return run_sql_file(args.file, args.parallelism, args.endpoint)
    if args.command == "job-zip":
        return build_job_zip(args.output)
    if args.command == "sql-client-files":
        return write_sql_client_files(args.file, args.output_dir, args.module, args.endpoint)
    from .options import reference_markdown

    print(reference_markdown(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
