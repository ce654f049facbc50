"""Building blocks of the Airflow 3 DAGs in dags/: one task per pipeline stage, same entry points as the CLI.

Two modes, chosen by `scheduling.mode`:
* local: a BashOperator runs `crm-pipeline [--conf F] stage NAME --date D` in the task's environment;
* cluster: a SparkSubmitOperator submits `jobs/cli.py stage NAME --date D` with the package zip
  (`--py-files`) and conf/ + schemas/ (`--archives …#crm`, found through CRM_HOME=./crm), built by
  `make dist`.
The business date D is the run's `ds` (interval timetable: the run after midnight processes the day
that ended) unless the `business_date` param is given.
"""
from __future__ import annotations

import json
import shlex
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import Asset, Param
from airflow.timetables.interval import CronDataIntervalTimetable

from jobs.common.config import Settings, load_settings

BUSINESS_DATE = "{{ params.business_date or ds }}"


def settings() -> Settings:
    return load_settings()


def table_asset(settings: Settings, table: str) -> Asset:
    layer, name = table.split(".")
    return Asset(name=table, uri=f"file://{Path(settings.lake.root).resolve()}/{layer}/{name}")


def outbox_asset(settings: Settings) -> Asset:
    return Asset(name="outbox", uri=f"file://{Path(settings.outbox.root).resolve()}")


def timetable(settings: Settings, cron: str) -> CronDataIntervalTimetable:
    return CronDataIntervalTimetable(cron, timezone=settings.scheduling.timezone)


def start_date(settings: Settings) -> pendulum.DateTime:
    return pendulum.parse(settings.scheduling.start_date, tz=settings.scheduling.timezone)


def business_date_params() -> dict[str, Param]:
    return {"business_date": Param(None, type=["null", "string"], format="date",
                                   description="business date YYYY-MM-DD; empty: the run's ds")}


def record_failure(context: dict[str, Any]) -> None:
    """Failure callback: append an alert record; pipe it to `scheduling.alert_command` when set."""
    conf = settings()
    alert_dir = Path(conf.scheduling.alert_dir or Path(conf.lake.root) / "_ops" / "alerts")
    alert_dir.mkdir(parents=True, exist_ok=True)
    task_instance = context.get("task_instance") or context.get("ti")
    record = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dag_id": getattr(task_instance, "dag_id", None),
        "task_id": getattr(task_instance, "task_id", None),
        "run_id": context.get("run_id"),
        "logical_date": str(context.get("logical_date")),
        "try_number": getattr(task_instance, "try_number", None),
        "error": str(context.get("exception"))[:2000],
    }
    line = json.dumps(record, sort_keys=True)
    with (alert_dir / "alerts.jsonl").open("a", encoding="utf-8") as alerts:
        alerts.write(line + "\n")
    if conf.scheduling.alert_command:
        subprocess.run(conf.scheduling.alert_command, shell=True, input=line, text=True, check=False,
                       timeout=60)


def default_args(settings: Settings) -> dict[str, Any]:
    sched = settings.scheduling
    return {
        "owner": "crm-data-engineering",
        "retries": sched.retries,
        "retry_delay": timedelta(minutes=sched.retry_delay_minutes),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=sched.retry_delay_minutes * 8),
        "execution_timeout": timedelta(minutes=sched.task_timeout_minutes),
        "on_failure_callback": record_failure,
    }


def crm_dag(settings: Settings, dag_id: str, description: str, cron: str, tags: list[str],
            catchup: bool = False):
    """A DAG with the pipeline's policies: one run at a time, retries, timeouts, failure records."""
    from airflow.sdk import DAG

    return DAG(dag_id=dag_id, description=description, schedule=timetable(settings, cron),
               start_date=start_date(settings), catchup=catchup, max_active_runs=1,
               default_args=default_args(settings), params=business_date_params(), tags=tags)


def stage_task(settings: Settings, stage: str, *extra_args: str, outlets: list[Asset] | None = None):
    """The operator running one pipeline stage for the business date."""
    task_id = stage.replace("-", "_")
    args = ["stage", stage, "--date", BUSINESS_DATE, *extra_args]
    sched = settings.scheduling
    if sched.mode == "cluster":
        from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

        conf_args = ["--conf", sched.conf_file] if sched.conf_file else []
        return SparkSubmitOperator(
            task_id=task_id, application=sched.spark_submit.application,
            py_files=sched.spark_submit.py_files, archives=sched.spark_submit.archives,
            conn_id=sched.spark_submit.conn_id, conf=dict(sched.spark_submit.conf),
            env_vars={"CRM_HOME": "./crm"}, application_args=[*conf_args, *args],
            name=f"crm-{stage}", outlets=outlets or [])
    from airflow.providers.standard.operators.bash import BashOperator

    conf_args = f"--conf {shlex.quote(sched.conf_file)} " if sched.conf_file else ""
    command = f"{shlex.quote(sched.crm_pipeline)} {conf_args}" + " ".join(
        a if a == BUSINESS_DATE else shlex.quote(a) for a in args)
    return BashOperator(task_id=task_id, bash_command=command, outlets=outlets or [])
