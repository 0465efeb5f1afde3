"""The inference core used directly (no Flink job): logging, secrets, the SQL file runner."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys

import pytest

from pyflink_triton.server import LocalTritonServer, free_port
from pyflink_triton.sessions.batches import ColumnBatch
from pyflink_triton.sessions.function import TritonInference

from jobs import BASE_ID, stateful_options
from servers import MODEL_REPOSITORY


def test_open_logs_base_and_subtask_and_debug_logs_each_id_never_the_token(triton, caplog):
    caplog.set_level(logging.DEBUG, logger="pyflink_triton")
    inference = TritonInference.create(stateful_options(triton, **{"auth-token": "tok-s3cr3t"}))
    assert "tok-s3cr3t" not in repr(inference)

    session = inference.open(subtask_index=4, attempt=1)
    try:
        reports = [json.loads(session.infer([value])) for value in (5, 6)]
    finally:
        session.close()

    assert [r["sequence_id"] for r in reports] == [f"{BASE_ID}-4-0", f"{BASE_ID}-4-1"]
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(f"{BASE_ID}-4-<counter>" in m and "subtask 4" in m for m in info), info
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert f"sequence ID {BASE_ID}-4-1" in debug
    assert "tok-s3cr3t" not in caplog.text


@pytest.mark.parametrize("mode", ["sync", "async", "vectorized"])
def test_every_mode_answers_records_one_by_one_and_many_at_once_alike(triton, mode):
    """The session contract against the real add_one: infer() of each record and infer_many()
    of them all give the same results, in the records' order."""
    inference = TritonInference.create(
        {"endpoint": triton.http_endpoint, "model-name": "add_one"},
        inputs=[("x", "DOUBLE")], output=("y", "DOUBLE"), mode=mode)
    values = [1.0, 41.0, -2.5]
    session = inference.open(0, mode=mode)
    if mode == "async":
        async def run() -> tuple[list[float], list[float]]:
            try:
                return ([await session.infer([x]) for x in values],
                        await session.infer_many([[x] for x in values]))
            finally:
                await session.close()

        one_by_one, many = asyncio.run(run())
    else:
        try:
            one_by_one = [session.infer([x]) for x in values]
            if mode == "vectorized":
                [field] = session.infer_many(ColumnBatch.of_rows([[x] for x in values]))
                many = list(field)
            else:
                many = session.infer_many([[x] for x in values])
        finally:
            session.close()
    assert one_by_one == many == [2.0, 42.0, -1.5]


def test_the_sql_file_command_prints_every_row(triton, tmp_path):
    script = tmp_path / "job.sql"
    script.write_text(f"""
        CREATE MODEL add_one WITH ('provider' = 'triton', 'endpoint' = '{triton.http_endpoint}',
                                   'model-name' = 'add_one');
        SELECT x, add_one(x) AS y FROM (VALUES (1.0), (41.0)) AS t(x);""")
    run = subprocess.run([sys.executable, "-m", "pyflink_triton", "sql", str(script),
                          "--parallelism", "1"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert lines[0] == "x\ty"
    assert sorted(lines[1:]) == ["1.0\t2.0", "41.0\t42.0"]


def test_a_connection_closed_by_a_server_restart_is_replaced_before_sending(tmp_path):
    """After Triton restarts, the idle keep-alive socket is dead: the next record opens a new
    connection instead of failing (and nothing is sent on the dead one)."""
    repository = tmp_path / "repository"
    shutil.copytree(MODEL_REPOSITORY / "add_one", repository / "add_one")
    port = free_port()
    inference = TritonInference.create(
        {"endpoint": f"http://127.0.0.1:{port}", "model-name": "add_one"},
        inputs=[("x", "DOUBLE")], output=("y", "DOUBLE"))

    with LocalTritonServer(repository, http_port=port, grpc_port=free_port()):
        session = inference.open(subtask_index=0)
        assert session.infer([1.0]) == 2.0
    with LocalTritonServer(repository, http_port=port, grpc_port=free_port()):
        assert session.infer([2.0]) == 3.0
    session.close()
