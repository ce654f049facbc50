"""The one SparkSession factory: `local[*]` by default, any master and Spark setting from configuration.

Under `spark-submit` a session already exists (or the submitter set `spark.master`); then the
configured master is not forced, so the same job code runs unchanged on a cluster.
"""
from __future__ import annotations

import os

from pyspark.sql import SparkSession

from jobs.common.config import Settings


def _submitted_by_spark_submit() -> bool:
    # spark-submit launches Python with these set; a plain `python`/`crm-pipeline` start has neither.
    return "PYSPARK_GATEWAY_PORT" in os.environ or "SPARK_SUBMIT_OPTS" in os.environ


def get_spark(settings: Settings, app_name: str | None = None,
              extra_conf: dict[str, str] | None = None) -> SparkSession:
    """Build (or join) the session with the configured master and `spark.conf` settings."""
    builder = SparkSession.builder.appName(app_name or settings.spark.app_name)
    active = SparkSession.getActiveSession()
    if active is None and not _submitted_by_spark_submit():
        builder = builder.master(settings.spark.master)
    for key, value in {**settings.spark.conf, **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
