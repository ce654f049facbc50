"""ops.stage_runs: one row per business date and stage (the latest run), read by the run report."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime

from pyspark.sql import types as T

from jobs.common.lake import Lake

STAGE_RUNS = "ops.stage_runs"
SCHEMA = T.StructType([
    T.StructField("business_date", T.DateType()),
    T.StructField("stage", T.StringType()),
    T.StructField("run_id", T.StringType()),
    T.StructField("started_at", T.TimestampType()),
    T.StructField("duration_s", T.DoubleType()),
    T.StructField("status", T.StringType()),
    T.StructField("rows_written", T.StringType()),  # JSON {table: rows}
    T.StructField("error", T.StringType()),
])


def record_stage_run(lake: Lake, business_date: date, stage: str, run_id: str, started_at: datetime,
                     duration_s: float, status: str, rows_written: dict[str, int],
                     error: str | None = None) -> None:
    """Replace the record of (business_date, stage): reruns keep one row per stage and date."""
    row = (business_date, stage, run_id, started_at.astimezone(UTC).replace(tzinfo=None),
           float(duration_s), status, json.dumps(rows_written, sort_keys=True), error)
    frame = lake.spark.createDataFrame([row], SCHEMA)
    lake.replace_partitions(frame, STAGE_RUNS,
                            [("business_date", "=", business_date), ("stage", "=", stage)],
                            partition_by=["business_date", "stage"], metadata={"run_id": run_id})
