"""Lake write/read cost against Spark's own Parquet writer and reader, on the same cached DataFrame.

Three writes of the same transaction-like rows (partitioned by a date with ~30 values):
  1. plain Parquet: `df.write.partitionBy(...).parquet(...)`, the peer;
  2. lake, Spark writer: `Lake.append` (the delta-rs backend as shipped: Spark's Parquet writer into a
     staging folder, files moved in, one delta-rs commit with footer statistics);
  3. lake, Arrow writer: the same commit, the files written by a Python data source
     (`DataSourceArrowWriter`, Spark 4.0) with pyarrow, which computes the statistics on the executors.
Then two full reads: plain `spark.read.parquet` vs `Lake.read`. Ratios are against the plain peer.

    .venv/bin/python benchmarks/lake_io.py --rows 10000000
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake.transaction import AddAction
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.datasource import DataSource, DataSourceArrowWriter, WriterCommitMessage

from jobs.common.config import load_settings
from jobs.common.lake import HIVE_NULL, STAGING_DIR, Lake, delta_stats
from jobs.common.spark import get_spark

ARROW_SOURCE = "crm_lake_arrow"
ROW_GROUP_ROWS = 1_000_000  # buffer per partition value: Arrow batches are 10k rows, row groups should not be
# Characters Spark escapes in partition folder names (ExternalCatalogUtils.escapePathName), as %XX.
_ESCAPED = {chr(c) for c in range(1, 32)} | set("\"#%'*/:=?\\\x7f{[]^")


def _escape(text: str) -> str:
    return "".join(f"%{ord(ch):02X}" if ch in _ESCAPED else ch for ch in text)


def _folder_value(value: Any) -> str:
    if value is None:
        return HIVE_NULL
    return _escape(value.isoformat() if isinstance(value, date) else str(value))


@dataclass
class StagedFiles(WriterCommitMessage):
    files: list[dict[str, Any]] = field(default_factory=list)


class ArrowLakeWriter(DataSourceArrowWriter):
    """Each task writes its rows' Parquet files straight into the table's partition folders.

    Nothing is visible until the driver commits the files; a failed write's files are deleted by
    `abort` (or, after a crash, by `Lake.vacuum`), exactly as for the staged Spark-written files.
    """

    def __init__(self, table_dir: str, partitions: list[str], write_id: str):
        self.table_dir = table_dir
        self.partitions = partitions
        self.write_id = write_id

    def write(self, iterator: Iterator[pa.RecordBatch]) -> StagedFiles:
        buffers: dict[tuple, list[pa.Table]] = {}
        writers: dict[tuple, tuple[str, pq.ParquetWriter]] = {}
        staged = StagedFiles()

        def flush(key: tuple) -> None:
            table = pa.concat_tables(buffers.pop(key))
            if key not in writers:
                folder = "/".join(f"{p}={_folder_value(v)}" for p, v in zip(self.partitions, key, strict=True))
                relative = f"{folder}/part-{self.write_id}-{uuid.uuid4().hex}.snappy.parquet".lstrip("/")
                Path(self.table_dir, relative).parent.mkdir(parents=True, exist_ok=True)
                writers[key] = (relative, pq.ParquetWriter(f"{self.table_dir}/{relative}", table.schema,
                                                           compression="snappy"))
            writers[key][1].write_table(table, row_group_size=len(table))

        for batch in iterator:
            table = pa.Table.from_batches([batch])
            data = table.drop_columns(self.partitions)
            if not self.partitions:
                groups = [((), data)]
            else:
                keys = table.select(self.partitions).group_by(self.partitions).aggregate([])
                groups = []
                for key in keys.to_pylist():
                    mask = None
                    for p in self.partitions:
                        term = (pc.is_null(table[p]) if key[p] is None else pc.equal(table[p], key[p]))
                        mask = term if mask is None else pc.and_(mask, term)
                    groups.append((tuple(key[p] for p in self.partitions), data.filter(mask)))
            for key, rows in groups:
                buffers.setdefault(key, []).append(rows)
                if sum(len(t) for t in buffers[key]) >= ROW_GROUP_ROWS:
                    flush(key)
        for key in list(buffers):
            flush(key)
        for key, (relative, writer) in writers.items():
            writer.close()
            path = Path(self.table_dir, relative)
            staged.files.append({
                "path": relative, "size": path.stat().st_size,
                "partition_values": {p: (None if v is None else v.isoformat() if isinstance(v, date) else str(v))
                                     for p, v in zip(self.partitions, key, strict=True)},
                "stats": delta_stats(pq.read_metadata(path)),
            })
        return staged

    def commit(self, messages: list[StagedFiles | None]) -> None:
        # Runs in a Python worker of the driver, not in the caller's process: hand over by a manifest.
        files = [f for m in messages if m is not None for f in m.files]
        manifest = Path(self.table_dir, STAGING_DIR, f"{self.write_id}.json")
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps(files), encoding="utf-8")

    def abort(self, messages: list[StagedFiles | None]) -> None:
        for message in messages:
            for f in (message.files if message else []):
                Path(self.table_dir, f["path"]).unlink(missing_ok=True)


class ArrowLakeSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return ARROW_SOURCE

    def writer(self, schema, overwrite: bool) -> ArrowLakeWriter:
        partitions = [p for p in self.options.get("partition_by", "").split(",") if p]
        return ArrowLakeWriter(self.options["table_dir"], partitions, self.options["write_id"])


class ArrowWriterLake(Lake):
    """The lake with its data files written by the Arrow data source instead of Spark's writer."""

    def _stage_and_publish(self, df: DataFrame, name: str, partitions) -> list[AddAction]:
        write_id = uuid.uuid4().hex
        table_dir = str(Path(self.path(name)).resolve())
        (df.write.format(ARROW_SOURCE).mode("append").option("table_dir", table_dir)
         .option("partition_by", ",".join(partitions)).option("write_id", write_id).save())
        manifest = Path(table_dir, STAGING_DIR, f"{write_id}.json")
        files = json.loads(manifest.read_text(encoding="utf-8"))
        manifest.unlink()
        now = int(time.time() * 1000)
        return [AddAction(f["path"], f["size"], f["partition_values"], now, True, f["stats"]) for f in files]


def transactions(spark: SparkSession, rows: int, days: int) -> DataFrame:
    """Card/transfer transactions: ids, a timestamp, decimals, strings and the business date."""
    h = F.xxhash64("id")
    return (spark.range(rows)
            .withColumn("txn_id", F.col("id") + 10_000_000_000)
            .withColumn("account_id", F.abs(h % 2_000_000) + 1)
            .withColumn("customer_id", F.format_string("C%08d", F.abs(h % 800_000)))
            .withColumn("batch_date", F.date_add(F.lit(date(2026, 10, 1)), (F.col("id") % days).cast("int")))
            .withColumn("txn_ts", (F.unix_timestamp(F.col("batch_date").cast("timestamp"))
                                   + F.abs(F.xxhash64("id", F.lit(1)) % 86_400)).cast("timestamp"))
            .withColumn("amount", (F.abs(F.xxhash64("id", F.lit(2)) % 5_000_000) / 100).cast("decimal(18,2)"))
            .withColumn("balance_after", (F.abs(F.xxhash64("id", F.lit(3)) % 900_000_000) / 100)
                        .cast("decimal(18,2)"))
            .withColumn("currency", F.lit("CNY"))
            .withColumn("channel", F.element_at(F.array(*map(F.lit, ["app", "web", "branch", "atm", "pos"])),
                                                (F.abs(h % 5) + 1).cast("int")))
            .withColumn("txn_type", F.element_at(F.array(*map(F.lit, ["debit", "credit", "fee", "interest"])),
                                                 (F.abs(F.xxhash64("id", F.lit(4)) % 4) + 1).cast("int")))
            .withColumn("merchant", F.format_string("M%06d", F.abs(F.xxhash64("id", F.lit(5)) % 50_000)))
            .drop("id"))


def _timed(label: str, action) -> float:
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    print(f"  {label:<42} {seconds:8.1f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows to write and read (default 10,000,000)")
    parser.add_argument("--days", type=int, default=30, help="distinct batch_date values (default 30)")
    parser.add_argument("--partitions", type=int, default=8, help="Spark partitions of the input (default 8)")
    parser.add_argument("--workdir", help="folder for the written data (default: a temporary folder)")
    args = parser.parse_args()

    settings = load_settings()
    spark = get_spark(settings, app_name="bench-lake-io")
    spark.dataSource.register(ArrowLakeSource)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-lake-io-"))
    shutil.rmtree(work, ignore_errors=True)
    try:
        frame = transactions(spark, args.rows, args.days).repartition(args.partitions).cache()
        rows = frame.count()  # materialise: generation is not measured
        print(f"lake I/O: {rows:,} rows, {args.days} dates, {args.partitions} input partitions, "
              f"master {spark.sparkContext.master}, {spark.sparkContext.defaultParallelism} cores", flush=True)
        spark_lake = Lake(spark, str(work / "lake"), "delta-rs")
        arrow_lake = ArrowWriterLake(spark, str(work / "lake_arrow"), "delta-rs")
        writes = {
            "plain": lambda out, df: df.write.partitionBy("batch_date").parquet(str(out / "plain")),
            "spark": lambda out, df: Lake(spark, str(out / "lake"), "delta-rs").append(
                df, "silver.transactions", partition_by=["batch_date"]),
            "arrow": lambda out, df: ArrowWriterLake(spark, str(out / "lake_arrow"), "delta-rs").append(
                df, "silver.transactions", partition_by=["batch_date"]),
        }
        # Warm-up on a slice, not measured: JIT, Python workers, class loading hit the first run only.
        for write in writes.values():
            write(work / "warmup", frame.limit(10_000))

        print("write")
        parquet_w = _timed("plain Parquet (Spark writer)", lambda: writes["plain"](work, frame))
        lake_w = _timed("lake, Spark Parquet writer + delta-rs commit", lambda: writes["spark"](work, frame))
        arrow_w = _timed("lake, Arrow data source writer + commit", lambda: writes["arrow"](work, frame))
        for lake in (spark_lake, arrow_lake):  # both lakes hold every row, once
            assert lake.row_count("silver.transactions") == rows
            assert lake.read("silver.transactions").count() == rows

        print("read (every column, every row)")
        parquet_r = _timed("plain Parquet (Spark reader)",
                           lambda: spark.read.parquet(str(work / "plain")).write.format("noop").mode("overwrite").save())
        lake_r = _timed("lake (snapshot file list -> Spark reader)",
                        lambda: spark_lake.read("silver.transactions").write.format("noop").mode("overwrite").save())

        files = len(list((work / "lake" / "silver" / "transactions").rglob("*.parquet")))
        print(f"ratios against plain Parquet ({files} data files per table; goal: lake write <= 1.5x)")
        print(f"  write, lake with Spark writer   {lake_w / parquet_w:5.2f}x")
        print(f"  write, lake with Arrow writer   {arrow_w / parquet_w:5.2f}x")
        print(f"  read,  lake                     {lake_r / parquet_r:5.2f}x")
        faster = "Arrow data source" if arrow_w < lake_w else "Spark Parquet"
        print(f"faster lake writer here: {faster} ({min(lake_w, arrow_w):.1f} s vs {max(lake_w, arrow_w):.1f} s)")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
        spark.stop()


if __name__ == "__main__":
    main()
