"""Stage `ingest`: every complete landing batch dt=D into bronze.<source>, values as delivered.

Bronze never drops a row: every contract field and every unknown extra column is kept as a string,
plus lineage (batch_date, source_file, ingested_at, run_id). A rerun of D replaces D's partition, so
bronze holds each batch once however often it runs. ops.landing_files reports every file read (rows,
extra columns).
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from functools import reduce
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from jobs.common.context import RunContext
from jobs.common.contract import SourceSpec, load_contract
from jobs.common.errors import InputError
from jobs.common.lake import Lake
from jobs.common.spark import empty_frame
from jobs.ingest.landing import LandingFile, batch_files, batch_folder, is_complete
from jobs.ingest.readers import read_landing_file
from jobs.ingest.settings import IngestSettings
from jobs.ingest.transform import (
    LINEAGE_COLUMNS,
    align_to_table,
    conform_to_contract,
    extra_columns,
    missing_required,
    with_lineage,
)

log = logging.getLogger("crm.ingest")

LANDING_FILES = "ops.landing_files"
LANDING_FILES_SCHEMA = T.StructType([
    T.StructField("batch_date", T.DateType()),
    T.StructField("source", T.StringType()),
    T.StructField("source_file", T.StringType()),
    T.StructField("file_format", T.StringType()),
    T.StructField("rows", T.LongType()),
    T.StructField("extra_columns", T.ArrayType(T.StringType())),
    T.StructField("run_id", T.StringType()),
    T.StructField("ingested_at", T.TimestampType()),
])


def bronze_table(source_name: str) -> str:
    return f"bronze.{source_name}"


def read_batch(ctx: RunContext, spec: SourceSpec, files: list[LandingFile], conf: IngestSettings,
               ingested_at: datetime) -> tuple[DataFrame, dict[str, list[str]]]:
    """All files of one batch as bronze rows, and the extra columns found per file."""
    frames, extras = [], {}
    for file in files:
        frame = read_landing_file(ctx.spark, file, conf.csv_multiline)
        if not frame.columns:
            continue  # an empty JSON Lines file: no rows, no columns
        missing = missing_required(frame.columns, spec)
        if missing:
            raise InputError(f"{file.name}: required column {missing[0]!r} of source {spec.source} is "
                             f"missing" + (f" (also missing: {', '.join(missing[1:])})" if missing[1:]
                                           else ""),
                             hint=f"the landing contract (schemas/{spec.source}.yaml) requires "
                                  f"{', '.join(spec.required_fields)}")
        extras[file.name] = extra_columns(frame.columns, spec)
        reserved = sorted(set(extras[file.name]) & set(LINEAGE_COLUMNS))
        if reserved:
            raise InputError(f"{file.name}: column {reserved[0]!r} is reserved for bronze lineage")
        frames.append(frame.transform(conform_to_contract(spec))
                      .transform(with_lineage(ctx.business_date, file.name, ingested_at, ctx.run_id)))
    if not frames:
        empty = T.StructType([T.StructField(n, T.StringType()) for n in spec.field_names])
        frames = [empty_frame(ctx.spark, empty)
                  .transform(with_lineage(ctx.business_date, "", ingested_at, ctx.run_id))]
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames), extras


def write_bronze(lake: Lake, frame: DataFrame, source_name: str, batch_date: date, run_id: str) -> int:
    table = bronze_table(source_name)
    table_columns = lake.schema(table).fieldNames() if lake.exists(table) else []
    result = lake.replace_partitions(frame.transform(align_to_table(table_columns)), table,
                                     [("batch_date", "=", batch_date)], partition_by=["batch_date"],
                                     evolve=True, metadata={"run_id": run_id,
                                                            "batch_date": batch_date.isoformat()})
    return result.rows_added


def landing_file_rows(lake: Lake, spec: SourceSpec, files: list[LandingFile], extras: dict[str, list[str]],
                      batch_date: date, run_id: str, ingested_at: datetime) -> list[tuple]:
    """One ops.landing_files row per file of the batch (rows counted from bronze, a small aggregate)."""
    counts = {row["source_file"]: row["count"] for row in
              lake.read(bronze_table(spec.source), partition_filters=[("batch_date", "=", batch_date)])
              .groupBy("source_file").count().collect()}
    return [(batch_date, spec.source, f.name, f.format, int(counts.get(f.name, 0)), extras.get(f.name, []),
             run_id, ingested_at) for f in files]


def ingest_source(ctx: RunContext, conf: IngestSettings, spec: SourceSpec, ingested_at: datetime
                  ) -> tuple[int, list[tuple]] | None:
    """Batch D of one source into bronze: (rows written, its ops.landing_files rows); None when an
    optional source has no complete batch. A required source without one raises `InputError`."""
    landing_root = Path(ctx.settings.landing.root)
    folder = batch_folder(landing_root, spec.source, ctx.business_date)
    if not is_complete(folder, conf.ready_marker):
        why = f"{folder} has no {conf.ready_marker}" if folder.is_dir() else f"{folder} does not exist"
        if conf.is_required(spec.source):
            raise InputError(f"required source {spec.source} has no complete batch for "
                             f"{ctx.business_date} ({why})")
        log.warning("optional source %s skipped for %s: %s", spec.source, ctx.business_date, why)
        return None
    files = batch_files(folder, landing_root)
    frame, extras = read_batch(ctx, spec, files, conf, ingested_at)
    for file_name, columns in extras.items():
        if columns:
            log.warning("%s: extra columns kept in bronze.%s: %s", file_name, spec.source, ", ".join(columns))
    rows = write_bronze(ctx.lake, frame, spec.source, ctx.business_date, ctx.run_id)
    return rows, landing_file_rows(ctx.lake, spec, files, extras, ctx.business_date, ctx.run_id, ingested_at)


def run(ctx: RunContext) -> dict[str, int]:
    conf: IngestSettings = ctx.settings.job("ingest")
    ingested_at = datetime.now(UTC)
    contract = load_contract()
    # Sources side by side: a small source's time is mostly the driver's (listing, planning, commits).
    with ThreadPoolExecutor(conf.parallel_sources, thread_name_prefix="ingest") as pool:
        ingests = {name: pool.submit(ingest_source, ctx, conf, spec, ingested_at)
                   for name, spec in contract.items()}
    written: dict[str, int] = {}
    problems: list[str] = []
    ingested: list[str] = []
    landing_rows: list[tuple] = []
    for name, ingest in ingests.items():
        try:
            result = ingest.result()
        except InputError as exc:
            problems.append(str(exc))
            continue
        if result is not None:
            written[bronze_table(name)], rows = result
            ingested.append(name)
            landing_rows += rows
    if ingested:
        # One commit for every source ingested: sources running side by side would conflict on this table.
        frame = ctx.lake.spark.createDataFrame(landing_rows, LANDING_FILES_SCHEMA)
        written[LANDING_FILES] = ctx.lake.replace_partitions(
            frame, LANDING_FILES, [("batch_date", "=", ctx.business_date), ("source", "in", ingested)],
            partition_by=["batch_date", "source"], metadata={"run_id": ctx.run_id}).rows_added
    if problems:
        raise InputError(f"ingest {ctx.business_date}: " + "; ".join(problems),
                         hint="fix or deliver the landing batch and rerun; sources that were complete "
                              "are already in bronze and are replaced on the rerun")
    return written
