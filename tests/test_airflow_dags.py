"""The Airflow DAGs: they import cleanly, have the expected graph and policies, and really run."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PIPELINE_SPARK_CONF, roots_env

pytest.importorskip("airflow", reason="the `airflow` extra is part of `make test`'s install")

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def dagbag():
    """The parsed DAG files. Parsing needs no metadata database; `DagBag.get_dag` would query one."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_dagbag_when_parsed_has_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"crm_nightly", "crm_retrain", "crm_maintenance"}


def test_every_task_when_parsed_has_retries_timeout_and_failure_callback(dagbag):
    for dag in dagbag.dags.values():
        assert dag.tags, dag.dag_id
        assert dag.max_active_runs == 1
        for task in dag.tasks:
            assert task.retries >= 1, task.task_id
            assert task.execution_timeout is not None, task.task_id
            assert task.on_failure_callback, task.task_id


def test_nightly_dag_when_parsed_has_the_pipeline_order(dagbag):
    dag = dagbag.dags["crm_nightly"]
    downstream = {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}
    assert downstream == {
        "ingest": ["clean"],
        "clean": ["features"],
        "features": ["churn_score", "kmeans_assign"],
        "kmeans_assign": ["apriori"],
        "apriori": ["push"],
        "churn_score": ["push"],
        "push": ["campaign_measure"],
        "campaign_measure": ["report"],
        "report": [],
    }
    outlets = {a.name for t in dag.tasks for a in t.outlets}
    assert {"gold.customer_features", "gold.churn_scores", "outbox"} <= outlets


def test_nightly_task_when_rendered_runs_the_cli_stage_for_the_business_date(dagbag):
    task = dagbag.dags["crm_nightly"].get_task("churn_score")
    assert "stage churn-score --date {{ params.business_date or ds }} --train-if-missing" in task.bash_command


def _lake_row_counts(lake_root: Path) -> dict[str, int]:
    from deltalake import DeltaTable

    counts = {}
    for log_dir in sorted(lake_root.glob("*/*/_delta_log")):
        table = log_dir.parent
        counts[f"{table.parent.name}.{table.name}"] = len(DeltaTable(str(table)).to_pyarrow_table())
    return counts


def test_airflow_dags_test_when_rerunning_a_date_rewrites_outbox_and_report_and_changes_no_counts(
        pipeline_run, tmp_path):
    """A real `airflow dags test` of crm_nightly reruns the date of the shared pipeline run (every
    nightly stage through the same entry points) on a copy of its landing zone and lake, without its
    outbox and report: they must be the DAG's doing, and the lake's row counts must not move."""
    settings, _, _, day = pipeline_run
    business_date = day.isoformat()
    shutil.copytree(settings.lake.root, tmp_path / "lake")
    shutil.copytree(settings.landing.root, tmp_path / "landing")
    env = {**os.environ, **roots_env(tmp_path),
           "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
           "CRM_SCHEDULING__CRM_PIPELINE": str(VENV_BIN / "crm-pipeline"),
           "CRM_SPARK__CONF__spark.sql.shuffle.partitions": "2",
           # Each task is a fresh JVM over little data: C2's optimising compiles never pay back there,
           # and skipping them took a fifth off a stage (features on this lake: 51-56 s -> 33-41 s).
           "CRM_SPARK__CONF__spark.driver.extraJavaOptions":
               PIPELINE_SPARK_CONF["spark.driver.extraJavaOptions"] + " -XX:TieredStopAtLevel=1",
           "CRM_SCHEDULING__RETRIES": "0",  # a failed task fails the run at once, no retry delay
           "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    first = _lake_row_counts(tmp_path / "lake")
    assert first["silver.transactions"] > 0 and first["gold.churn_scores"] > 0

    subprocess.run([str(VENV_BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
    done = subprocess.run([str(VENV_BIN / "airflow"), "dags", "test", "crm_nightly", business_date],
                          env=env, capture_output=True, text=True)
    log = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, log
    # `dags test` can exit 0 with failed tasks; the metadata database records what really happened
    with sqlite3.connect(tmp_path / "airflow" / "airflow.db") as db:
        (run_id, state), = db.execute("SELECT run_id, state FROM dag_run WHERE dag_id = 'crm_nightly'")
        tasks = dict(db.execute("SELECT task_id, state FROM task_instance WHERE run_id = ?", (run_id,)))
    assert state == "success" and len(tasks) == 9 and set(tasks.values()) == {"success"}, (tasks, log)

    manifest = tmp_path / "outbox" / business_date / "manifest.json"
    assert manifest.is_file() and (tmp_path / "outbox" / business_date / "_SUCCESS").is_file()
    assert json.loads(manifest.read_text())["files"] is not None
    assert (tmp_path / "reports" / business_date / "index.html").is_file()
    second = _lake_row_counts(tmp_path / "lake")
    # ops.stage_runs is written by the command line's stage runner, which the in-process pipeline_run
    # bypasses; every other table must keep its count (money features in cents make the value tiers, and
    # so FP-growth's itemsets and rules, identical between runs).
    assert {t: n for t, n in second.items() if t != "ops.stage_runs"} == first
