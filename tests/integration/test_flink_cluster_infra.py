"""The standalone Flink cluster of the integration tests (tests/flink_cluster.py), on real
processes: a TaskManager killed by PID mid-job, the job recovering from its checkpoint with
exactly-once output, and ``stop()`` leaving nothing behind. No Triton needed."""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

from flink_cluster import FlinkCluster, committed_rows, descendants, marked

JOB = Path(__file__).resolve().parents[1] / "cluster_jobs" / "doubled.py"
ROWS = 2000
RATE = 100  # rows/s in all: the job streams for ~20 s, time to kill a TaskManager mid-way

log = logging.getLogger(__name__)


def test_job_survives_a_killed_taskmanager_exactly_once(flink_cluster: FlinkCluster,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "out"
    started = time.monotonic()
    job = flink_cluster.submit(JOB, out, ROWS, RATE)
    submitted = time.monotonic()
    flink_cluster.wait_for_checkpoints(job, 1, timeout=60)
    checkpointed = time.monotonic()
    [victim, *_] = flink_cluster.taskmanagers_of(job)
    assert victim.python_workers(), "a Python UDF runs in worker processes of the TaskManager"

    killed = flink_cluster.kill_taskmanager(victim)
    flink_cluster.wait_for_recovery(job, min_attempt=1, timeout=60)
    recovered = time.monotonic()
    assert victim not in flink_cluster.taskmanagers_of(job)
    assert flink_cluster.restored_checkpoint(job) is not None, "restarted from a checkpoint"
    flink_cluster.wait_until(lambda: (flink_cluster.num_restarts(job) or 0) >= 1, 10,
                             "the numRestarts metric")
    flink_cluster.wait_for_status(job, "FINISHED", timeout=90)
    finished = time.monotonic()

    assert not [p for p in killed if p.alive()], "the TaskManager and its workers are gone"
    assert flink_cluster.max_attempt(job) >= 1
    rows = committed_rows(out)
    counts = Counter(int(row[0]) for row in rows)
    assert sorted(counts) == list(range(1, ROWS + 1)), "no row lost"
    assert [i for i, n in counts.items() if n > 1] == [], "no row duplicated"
    assert all(int(doubled) == 2 * int(i) for i, doubled in rows)

    # The session cluster heals itself for the next test: a new TaskManager replaces the dead.
    flink_cluster.ensure_taskmanagers(2)
    healed = time.monotonic()
    alive = {tm.name for tm in flink_cluster.alive_taskmanagers()}
    assert victim.name not in alive
    assert flink_cluster.registered_taskmanagers() == alive and len(alive) == 2
    log.info("submit %.1f s, first checkpoint +%.1f s, running again %.1f s after the kill, "
             "finished +%.1f s, a new TaskManager registered in %.1f s",
             submitted - started, checkpointed - submitted, recovered - checkpointed,
             finished - recovered, healed - finished)


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    cluster = FlinkCluster(tmp_path / "cluster", task_managers=1)
    with cluster:
        job = cluster.submit(JOB, tmp_path / "out", 100_000, 50)
        cluster.wait_for_status(job, "RUNNING", timeout=60)
        [tm] = cluster.taskmanagers
        cluster.wait_until(lambda: len(tm.python_workers()) == 2, 60, "two Python workers")
        # Crash the TaskManager alone, as kill -9 would: its workers may outlive it as
        # orphans, which stop() must find without having been told about them.
        everything = {*cluster.processes(), *descendants(tm.pid)}
        tm.process.kill()
        tm.process.wait(10)
    assert {cluster.jobmanager.pid, tm.pid} <= {p.pid for p in everything}
    assert [p for p in everything if p.alive()] == []
    assert marked(cluster.marker) == []
    assert cluster.jobmanager.returncode is not None
    cluster.stop()  # idempotent
