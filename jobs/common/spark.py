"""The one SparkSession factory: `local[*]` by default, any master and Spark setting from configuration.

Under `spark-submit` a session already exists (or the submitter set `spark.master`); then the
configured master is not forced, so the same job code runs unchanged on a cluster.
"""
from __future__ import annotations

import os
import sys

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from jobs.common.config import Settings
from jobs.common.paths import CONF_DIR

DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"
ALLOCATION_FILE = "spark.scheduler.allocation.file"


def _submitted_by_spark_submit() -> bool:
    # spark-submit starts the Python driver with the JVM's gateway port set; a plain
    # `python`/`crm-pipeline` start launches its own JVM instead.
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(settings: Settings, app_name: str | None = None,
              extra_conf: dict[str, str] | None = None) -> SparkSession:
    """Build (or join) the session with the configured master and `spark.conf` settings."""
    builder = SparkSession.builder.appName(app_name or settings.spark.app_name)
    conf = {**settings.spark.conf, **(extra_conf or {})}
    active = SparkSession.getActiveSession()
    if active is None and not _submitted_by_spark_submit():
        builder = builder.master(settings.spark.master)
        # Python workers default to `python3` on PATH, which for an un-activated virtualenv is
        # another interpreter without the pipeline's packages: use the driver's own.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # The JVM this process starts logs errors only (conf/log4j2.properties), not Spark's warnings;
        # configured driver options come after that one instead of replacing it.
        log4j = f"-Dlog4j2.configurationFile={CONF_DIR / 'log4j2.properties'}"
        conf[DRIVER_JAVA_OPTIONS] = " ".join(filter(None, [log4j, conf.get(DRIVER_JAVA_OPTIONS)]))
        conf.setdefault(ALLOCATION_FILE, str(CONF_DIR / "fairscheduler.xml"))
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def empty_frame(spark: SparkSession, schema: StructType | str) -> DataFrame:
    """No rows, in a plan Spark knows is empty, so joins with it and filters over it fold away when the
    query is planned (a frame of an empty list is a scan Spark has to run to find that out)."""
    return spark.createDataFrame([], schema).limit(0)
