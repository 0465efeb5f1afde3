"""Shipping to a real standalone cluster whose Python has apache-flink but not this package.

The cluster (tests/flink_cluster.py, started from the apache-flink wheel's own scripts) runs
its client and Python workers on a virtual environment that holds exactly apache-flink and
what it requires, nothing of ours: ``python -m pyflink_triton job-zip`` must supply the rest
through ``flink run -pyfs``. Both ways of using the package on a cluster run against the real
Triton: the example job (``-py examples/cluster_job.py``) and the seed's SQL file through our
SQL runner (``-pym pyflink_triton sql sql/seed_example.sql``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import venv
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyflink_triton.jobzip import RUNTIME, requirement_closure

from flink_cluster import FlinkCluster, committed_json_rows

ROOT = Path(__file__).resolve().parents[2]
SEQUENCE_ID = re.compile(r"flink-job-123-(\d+)-(\d+)")


def flink_only_python(target: Path) -> Path:
    """A virtual environment whose site-packages links exactly apache-flink's distributions
    (and their requirements) from this one: what a cluster that runs PyFlink jobs has."""
    venv.EnvBuilder(with_pip=False).create(target)
    site = next(target.glob("lib/python*/site-packages"))
    linked: set[str] = set()
    for distribution in requirement_closure(RUNTIME).values():
        for file in distribution.files or []:
            top = file.parts[0]
            if top != ".." and top not in linked:
                linked.add(top)
                (site / top).symlink_to(Path(str(distribution.locate_file(top))))
    return target / "bin" / "python"


def imports(python: Path, module: str) -> bool:
    return subprocess.run([str(python), "-c", f"import {module}"], cwd=python.parents[2],
                          capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    python = flink_only_python(tmp_path_factory.mktemp("flink-only-venv"))
    assert imports(python, "pyflink.table"), "the cluster's Python must run PyFlink"
    for ours in ("pyflink_triton", "tritonclient", "geventhttpclient"):
        assert not imports(python, ours), f"{ours} must come from the job zip"
    return python


@pytest.fixture(scope="module")
def job_zip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("job-zip") / "pyflink-triton-job.zip"
    subprocess.run([sys.executable, "-m", "pyflink_triton", "job-zip", "-o", str(path)],
                   check=True, cwd=ROOT)
    return path


@pytest.fixture(scope="module")
def bare_cluster(tmp_path_factory, bare_python) -> Iterator[FlinkCluster]:
    """A JobManager and one TaskManager (2 slots); client and workers run ``bare_python``."""
    with FlinkCluster(tmp_path_factory.mktemp("bare-cluster"), task_managers=1,
                      python=str(bare_python)) as cluster:
        yield cluster


def assert_seed_results(reports: dict[int, dict], rows: int) -> None:
    """Each id went to Triton as its own START+END sequence flink-job-123-<subtask>-<n>, the
    counters of both subtasks run 0, 1, 2... without a gap, and each total is the id."""
    assert sorted(reports) == list(range(1, rows + 1))
    counters: dict[str, list[int]] = defaultdict(list)
    for row_id, report in reports.items():
        match = SEQUENCE_ID.fullmatch(report["sequence_id"])
        assert match, report
        assert (report["start"], report["end"], report["total"]) == (True, True, row_id)
        counters[match.group(1)].append(int(match.group(2)))
    assert sorted(counters) == ["0", "1"]
    for subtask_counters in counters.values():
        assert sorted(subtask_counters) == list(range(len(subtask_counters)))


def test_the_job_zip_carries_what_apache_flink_lacks(job_zip: Path) -> None:
    names = set(zipfile.ZipFile(job_zip).namelist())
    package = {f"pyflink_triton/{p.relative_to(ROOT / 'pyflink_triton').as_posix()}"
               for p in (ROOT / "pyflink_triton").rglob("*.py")}
    assert package <= names
    assert any(n.startswith("tritonclient/http/") for n in names)
    assert any(n.startswith("rapidjson") and n.endswith(".so") for n in names)
    assert not any(n.startswith(("pyflink/", "numpy/", "apache_beam/", "grpc/")) for n in names)
    assert not any("__pycache__" in n for n in names)


def test_the_example_job_runs_on_a_cluster_with_the_job_zip(bare_cluster, job_zip, triton,
                                                            tmp_path) -> None:
    output = tmp_path / "results"
    job_id = bare_cluster.submit(ROOT / "examples" / "cluster_job.py",
                                 "--endpoint", triton.http_endpoint, "--rows", 200,
                                 "--output", output, pyfs=[job_zip], parallelism=2)
    bare_cluster.wait_for_status(job_id, "FINISHED", timeout=120)
    rows = committed_json_rows(output)
    assert len(rows) == 200
    assert_seed_results({r["id"]: json.loads(r["what_triton_saw"]) for r in rows}, 200)


# The seed's SQL file, with the function call and with ML_PREDICT (the model's output column
# is its tensor's name, OUTPUT0).
SEED_SQL_FILES = {"seed_example.sql": "id\twhat_triton_saw",
                  "seed_ml_predict.sql": "id\tOUTPUT0"}


def printed_reports(client_output: str, header_line: str = "id\twhat_triton_saw"
                    ) -> dict[int, dict]:
    """The rows a SQL runner printed after its ``id<TAB><report column>`` header."""
    lines = client_output.splitlines()
    header = lines.index(header_line)
    return {int(row_id): json.loads(report) for row_id, report in
            (line.split("\t", 1) for line in lines[header + 1:] if "\t" in line)}


def finished_jobs(cluster: FlinkCluster) -> dict[str, str]:
    return {j["jid"]: j["state"] for j in cluster._get("/jobs/overview")["jobs"]}


@pytest.mark.parametrize("sql_file", SEED_SQL_FILES)
def test_the_seed_sql_file_runs_on_a_cluster_through_the_sql_runner(bare_cluster, job_zip,
                                                                    triton, sql_file) -> None:
    before = finished_jobs(bare_cluster)
    text = bare_cluster.flink_run(
        ["-p", 2, "-pyfs", job_zip, "-pym", "pyflink_triton",
         "sql", ROOT / "sql" / sql_file, "--endpoint", triton.http_endpoint],
        timeout=180)
    assert_seed_results(printed_reports(text, SEED_SQL_FILES[sql_file]), 10)
    # The rows came from a job of the cluster, not from a mini-cluster in the client.
    jobs = {jid: state for jid, state in finished_jobs(bare_cluster).items() if jid not in before}
    assert list(jobs.values()) == ["FINISHED"], jobs


@pytest.mark.parametrize("sql_file", SEED_SQL_FILES)
def test_the_seed_sql_file_rewritten_for_flinks_sql_client_runs_on_a_cluster(
        bare_cluster, job_zip, triton, tmp_path, sql_file) -> None:
    """sql-client-files: the CREATE MODEL kept, a CREATE TEMPORARY FUNCTION ... LANGUAGE
    PYTHON added, ML_PREDICT translated, the module generated; run as the SQL client would,
    by Flink alone."""
    subprocess.run([sys.executable, "-m", "pyflink_triton", "sql-client-files",
                    ROOT / "sql" / sql_file, "-o", tmp_path,
                    "--endpoint", triton.http_endpoint], check=True, cwd=ROOT)
    rewritten = tmp_path / sql_file
    assert ("CREATE TEMPORARY FUNCTION my_triton_model AS 'triton_models.my_triton_model' "
            "LANGUAGE PYTHON;") in rewritten.read_text()
    assert "ML_PREDICT" not in rewritten.read_text().split("LANGUAGE PYTHON;", 1)[1]
    before = finished_jobs(bare_cluster)
    text = bare_cluster.flink_run(
        ["-p", 2, "-pyfs", f"{job_zip},{tmp_path / 'triton_models.py'}",
         "-py", ROOT / "tests" / "cluster_jobs" / "plain_sql.py", rewritten], timeout=180)
    assert_seed_results(printed_reports(text, SEED_SQL_FILES[sql_file]), 10)
    jobs = {jid: state for jid, state in finished_jobs(bare_cluster).items() if jid not in before}
    assert list(jobs.values()) == ["FINISHED"], jobs
