"""Cluster job: a .sql file run the way Flink's SQL client runs ``sql-client.sh -f``, which the
apache-flink wheel lacks: statements end with ``;`` at the end of a line, ``SET 'k' = 'v'``
sets the configuration and ``RESET 'k'`` unsets it, every other statement goes to Flink's own
``execute_sql`` (nothing of pyflink_triton is called here), and the last statement's rows are
printed tab-separated.

Usage: ``flink run -pyfs <job zip>,<module> -py plain_sql.py FILE.sql``.
"""

from __future__ import annotations

import re
import sys

from pyflink.table import EnvironmentSettings, TableEnvironment

_END = re.compile(r";[ \t]*$", re.MULTILINE)
_COMMENT_LINES = re.compile(r"\A(?:[ \t]*(?:--[^\n]*)?\n)*")
_SET = re.compile(r"SET\s+'([^']+)'\s*=\s*'([^']*)'\Z", re.IGNORECASE)
_RESET = re.compile(r"RESET\s+'([^']+)'\Z", re.IGNORECASE)


def run_sql_client_file(t_env, text: str):
    """Run the statements of ``text`` as the SQL client does; the last one's TableResult."""
    statements = [s for s in (_COMMENT_LINES.sub("", p).strip() for p in _END.split(text)) if s]
    result = None
    for statement in statements:
        setting, reset = _SET.match(statement), _RESET.match(statement)
        if setting:
            t_env.get_config().set(*setting.groups())
        elif reset:
            t_env.get_config().get_configuration().remove_config(reset.group(1))
        else:
            result = t_env.execute_sql(statement)
    return result


def main(path: str) -> None:
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    with open(path, encoding="utf-8") as f:
        result = run_sql_client_file(t_env, f.read())
    print("\t".join(result.get_resolved_schema().get_column_names()))
    with result.collect() as rows:
        for row in rows:
            print("\t".join(str(value) for value in row))


if __name__ == "__main__":
    main(sys.argv[1])
