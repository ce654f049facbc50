"""Benchmark: the ingest + clean stages against a bare copy of the same landing files, in one run.

Peer = Spark reading the batch's landing files (CSV/CSV.gz with a header, JSON Lines, Parquet) and
writing them as Parquet, nothing else: the floor of any landing -> lake step. Ours = `ingest` then
`clean` for the batch (bronze with lineage, typed silver, quarantine, batch audit, Great Expectations).
Both run in the same Spark session after a warm-up read of every file. Prints rows/s of both and the
ratio (goal: at most 3x). `--repeat N` alternates the two N times (the lake and the copy written afresh
each time) and prints every pair's ratio and their median: on a shared 2-core machine the speed drifts
by a fifth between minutes, more than a single pair can tell apart.

The landing zone is the generator's (one initial-load batch), written under --root and reused by later
runs with the same arguments. About 13 transactions per customer and month:

    .venv/bin/python benchmarks/ingest_clean.py                       # 72,000 customers: ~10 M transactions
    .venv/bin/python benchmarks/ingest_clean.py --customers 2000      # quick
    .venv/bin/python benchmarks/ingest_clean.py --repeat 3            # three alternating pairs, median
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from datetime import date
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from jobs.common.config import load_settings
from jobs.common.context import RunContext
from jobs.common.spark import get_spark
from jobs.generate.generator import generate
from jobs.ingest.landing import batch_files, batch_folder
from jobs.stages import load_stage

END_DATE = date(2026, 6, 30)
SEED = 7


def landing_zone(root: Path, customers: int, months: int, settings) -> Path:
    landing = root / f"landing-{customers}-{months}"
    if not (landing.parent / f"{landing.name}.truth" / "summary.json").is_file():
        shutil.rmtree(landing, ignore_errors=True)
        started = time.monotonic()
        generate(customers=customers, months=months, end_date=END_DATE, seed=SEED, landing=landing,
                 settings=settings)
        print(f"generated {landing} in {time.monotonic() - started:.0f}s", flush=True)
    return landing


def read_file(spark: SparkSession, location: str, fmt: str) -> DataFrame:
    if fmt.startswith("csv"):
        return spark.read.option("header", True).csv(location)
    if fmt.startswith("jsonl"):
        return spark.read.json(location)
    return spark.read.parquet(location)


def bare_copy(spark: SparkSession, landing: Path, sources: list[str], out: Path) -> None:
    for name in sources:
        for file in batch_files(batch_folder(landing, name, END_DATE), landing):
            (read_file(spark, file.location, file.format)
             .write.mode("overwrite").parquet(str(out / file.name)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=72_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--root", default="benchmarks/out/ingest_clean")
    parser.add_argument("--repeat", type=int, default=1, help="alternating pairs of bare copy and ours")
    args = parser.parse_args()

    root = Path(args.root).resolve()
    lake_root, copy_root = root / "lake", root / "bare_copy"
    probe = load_settings()
    landing = landing_zone(root, args.customers, args.months, probe)
    settings = load_settings(env={**os.environ, "CRM_LAKE__ROOT": str(lake_root),
                                  "CRM_LANDING__ROOT": str(landing)})
    spark = get_spark(settings, app_name="benchmark-ingest-clean")
    sources = sorted(p.name for p in landing.iterdir() if p.is_dir())

    for name in sources:   # warm-up: JVM, file system cache
        for file in batch_files(batch_folder(landing, name, END_DATE), landing):
            read_file(spark, file.location, file.format).count()

    summary = json.loads((landing.parent / f"{landing.name}.truth" / "summary.json").read_text())
    print(f"landing: {landing} ({summary.get('parameters', {})}); load average {os.getloadavg()[0]:.1f}")
    ratios = []
    for run in range(1, args.repeat + 1):
        shutil.rmtree(copy_root, ignore_errors=True)
        started = time.monotonic()
        bare_copy(spark, landing, sources, copy_root)
        bare = time.monotonic() - started

        shutil.rmtree(lake_root, ignore_errors=True)
        ctx = RunContext(settings, END_DATE, spark_session=spark)
        started = time.monotonic()
        load_stage("ingest")(ctx)
        ingested = time.monotonic()
        load_stage("clean")(ctx)
        finished = time.monotonic()
        ours = finished - started

        rows = {name: ctx.lake.row_count(f"bronze.{name}") for name in sources}
        total, txns = sum(rows.values()), rows["transactions"]
        ratios.append(ours / bare)
        print(f"run {run} of {args.repeat}: rows: {total:,} in all sources, {txns:,} transactions")
        print(f"bare copy (read files, write Parquet): {bare:8.1f}s  {total / bare:12,.0f} rows/s  "
              f"({txns / bare:,.0f} transactions/s)")
        print(f"ingest + clean:                        {ours:8.1f}s  {total / ours:12,.0f} rows/s  "
              f"({txns / ours:,.0f} transactions/s; ingest {ingested - started:.1f}s, "
              f"clean {finished - ingested:.1f}s)")
        cold = " (the first run also imports Great Expectations, once per process)" if run == 1 < args.repeat else ""
        print(f"ratio ingest+clean / bare copy: {ours / bare:.2f}x (goal: at most 3x){cold}", flush=True)
    if args.repeat > 1:
        print(f"ratios: {', '.join(f'{r:.2f}x' for r in ratios)}; median {statistics.median(ratios):.2f}x "
              "(goal: at most 3x)")


if __name__ == "__main__":
    main()
