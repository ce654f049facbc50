"""The lake API: Delta tables named `layer.table` under one lake root.

Two backends produce the same standard Delta tables:

* `delta-rs` (this machine: no Delta jars). Spark's executors write the Parquet data files into a
  staging folder of the table, the driver moves them into the table's partition folders and delta-rs
  commits them in one atomic transaction of add (and remove) actions with per-file statistics read from
  the Parquet footers. Nothing but file metadata reaches the driver. Files of a failed write are never
  committed, so no reader sees them; `vacuum` deletes them. Reads list the snapshot's files through
  delta-rs (partition filters prune them) and hand them to Spark's Parquet reader.
* `delta-jvm`: `format("delta")` where Delta's JVM classes are on the classpath (a production cluster).

`auto` picks `delta-jvm` when its classes load, else `delta-rs`. Table metadata (schema, partition
columns, history) is read with delta-rs in both cases: it is small and backend-independent.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Sequence
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import StructType

from jobs.common.config import Settings

# (column, op, value) with op one of = != < <= > >= in "not in"; values as strings, dates or numbers.
PartitionFilter = tuple[str, str, Any]

STAGING_DIR = "_staging"
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


class LakeError(RuntimeError):
    """Base of the lake's errors; the message names the table."""


class LakeSchemaError(LakeError):
    """The data written does not match the table's schema."""


class LakeConflictError(LakeError):
    """Another writer committed a conflicting change first; the table is intact, the write can be rerun."""


class TableMissingError(LakeError):
    """The table (or the asked version) does not exist."""


@dataclass(frozen=True)
class CommitResult:
    table: str
    version: int
    files_added: int
    files_removed: int
    rows_added: int


def _literal(value: Any) -> str:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def _normalise_filters(filters: Sequence[PartitionFilter] | None) -> list[tuple[str, str, Any]] | None:
    if not filters:
        return None
    normalised = []
    for column, op, value in filters:
        if op in ("in", "not in"):
            normalised.append((column, op, [_literal(v) for v in value]))
        else:
            normalised.append((column, op, _literal(value)))
    return normalised


def filters_to_column(filters: Sequence[PartitionFilter]) -> Column:
    """The same partition filters as a Spark predicate (for the JVM backend and for row-level checks)."""
    ops = {"=": "__eq__", "!=": "__ne__", "<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__"}
    predicate = F.lit(True)
    for column, op, value in filters:
        col = F.col(column)
        if op == "in":
            term = col.isin([_literal(v) for v in value])
        elif op == "not in":
            term = ~col.isin([_literal(v) for v in value])
        else:
            term = getattr(col, ops[op])(F.lit(_literal(value)))
        predicate = predicate & term
    return predicate


def _filters_to_sql(filters: Sequence[PartitionFilter]) -> str:
    def quote(v: Any) -> str:
        return "'" + _literal(v).replace("'", "''") + "'"

    terms = []
    for column, op, value in filters:
        if op in ("in", "not in"):
            terms.append(f"`{column}` {op.upper()} ({', '.join(quote(v) for v in value)})")
        else:
            terms.append(f"`{column}` {op} {quote(value)}")
    return " AND ".join(terms)


def spark_to_delta_schema(schema: StructType) -> DeltaSchema:
    arrow = to_arrow_schema(schema, timestamp_utc=True)
    return DeltaSchema.from_arrow(arrow)


def delta_to_spark_schema(schema: DeltaSchema) -> StructType:
    # Delta's schema serialisation is Spark's StructType JSON.
    return StructType.fromJson(json.loads(schema.to_json()))


def _type_names(schema: StructType) -> dict[str, str]:
    return {f.name: f.dataType.simpleString() for f in schema.fields}


def _delta_jvm_available(spark: SparkSession) -> bool:
    try:
        spark._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")  # noqa: SLF001
        return True
    except Exception:  # py4j raises a generic Py4JJavaError when the class is not there
        return False


class Lake:
    """Read and write Delta tables `layer.table` under `root`."""

    def __init__(self, spark: SparkSession, root: str, backend: str = "auto"):
        self.spark = spark
        self.root = root.rstrip("/")
        self._fs, fs_root = pafs.FileSystem.from_uri(self._uri(self.root))
        self._fs_root = fs_root.rstrip("/")
        if backend == "auto":
            backend = "delta-jvm" if _delta_jvm_available(spark) else "delta-rs"
        if backend not in ("delta-rs", "delta-jvm"):
            raise ValueError(f"unknown lake backend {backend!r}: use auto, delta-rs or delta-jvm")
        self.backend = backend

    @classmethod
    def from_settings(cls, spark: SparkSession, settings: Settings) -> "Lake":
        return cls(spark, settings.lake.root, settings.lake.backend)

    # ---------------------------------------------------------------- naming and metadata
    @staticmethod
    def _uri(path: str) -> str:
        if "://" in path:
            return path
        from pathlib import Path
        return Path(path).resolve().as_uri()

    @staticmethod
    def _split(name: str) -> tuple[str, str]:
        layer, sep, table = name.partition(".")
        if not sep or not layer or not table or "." in table or "/" in name:
            raise LakeError(f"table name {name!r}: expected 'layer.table', e.g. 'silver.transactions'")
        return layer, table

    def path(self, name: str) -> str:
        layer, table = self._split(name)
        return f"{self.root}/{layer}/{table}"

    def _fs_path(self, name: str) -> str:
        layer, table = self._split(name)
        return f"{self._fs_root}/{layer}/{table}"

    def _delta(self, name: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(self.path(name), version=version)
        except TableNotFoundError:
            raise TableMissingError(f"table {name} does not exist under {self.root}") from None
        except Exception as exc:  # delta-rs reports a missing version as a generic error
            if version is not None:
                raise TableMissingError(f"table {name} has no version {version}: {exc}") from None
            raise

    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(self.path(name))

    def tables(self) -> list[str]:
        """Every table under the root, as `layer.table`."""
        names = []
        selector = pafs.FileSelector(self._fs_root, allow_not_found=True, recursive=False)
        for layer in self._fs.get_file_info(selector):
            if layer.type != pafs.FileType.Directory or layer.base_name.startswith("_"):
                continue
            for table in self._fs.get_file_info(pafs.FileSelector(layer.path, recursive=False)):
                name = f"{layer.base_name}.{table.base_name}"
                if table.type == pafs.FileType.Directory and self.exists(name):
                    names.append(name)
        return sorted(names)

    def schema(self, name: str) -> StructType:
        return delta_to_spark_schema(self._delta(name).schema())

    def partition_columns(self, name: str) -> list[str]:
        return list(self._delta(name).metadata().partition_columns)

    def version(self, name: str) -> int:
        return self._delta(name).version()

    def row_count(self, name: str, version: int | None = None) -> int:
        """Rows of the snapshot, from the file statistics of the log (no data scan)."""
        actions = pa.table(self._delta(name, version).get_add_actions(flatten=True))
        return int(sum(v or 0 for v in actions.column("num_records").to_pylist()))

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits newest first: version, timestamp, operation, parameters, our custom metadata."""
        return self._delta(name).history(limit)

    # ---------------------------------------------------------------- reads
    def read(self, name: str, version: int | None = None,
             partition_filters: Sequence[PartitionFilter] | None = None) -> DataFrame:
        """The table (or a past version) as a DataFrame; partition filters prune files before Spark."""
        dt = self._delta(name, version)
        schema = delta_to_spark_schema(dt.schema())
        if self.backend == "delta-jvm":
            reader = self.spark.read.format("delta")
            if version is not None:
                reader = reader.option("versionAsOf", version)
            frame = reader.load(self.path(name))
            return frame.where(filters_to_column(partition_filters)) if partition_filters else frame
        files = dt.file_uris(_normalise_filters(partition_filters))
        if not files:
            return self.spark.createDataFrame([], schema)
        frame = (self.spark.read.schema(schema)
                 .option("basePath", self._uri(self.path(name)))
                 .parquet(*files))
        return frame.select(*schema.fieldNames())

    # ---------------------------------------------------------------- writes
    def append(self, df: DataFrame, name: str, partition_by: Sequence[str] | None = None,
               evolve: bool = False, metadata: dict[str, str] | None = None) -> CommitResult:
        return self._write(df, name, "append", partition_by, None, evolve, metadata)

    def overwrite(self, df: DataFrame, name: str, partition_by: Sequence[str] | None = None,
                  evolve: bool = False, metadata: dict[str, str] | None = None) -> CommitResult:
        return self._write(df, name, "overwrite", partition_by, None, evolve, metadata)

    def replace_partitions(self, df: DataFrame, name: str, partition_filters: Sequence[PartitionFilter],
                           partition_by: Sequence[str] | None = None, evolve: bool = False,
                           metadata: dict[str, str] | None = None) -> CommitResult:
        """Atomically replace the partitions matching the filters with `df` (the idempotent rerun).

        Every row of `df` must fall inside the filters, else the write is refused: a rerun of one date
        must never touch another date.
        """
        if not partition_filters:
            raise LakeError(f"{name}: replace_partitions needs partition filters; use overwrite for all")
        outside = df.where(~filters_to_column(partition_filters)).limit(1).count()
        if outside:
            raise LakeError(f"{name}: rows outside the partitions being replaced "
                            f"({_filters_to_sql(partition_filters)}); refusing to write them")
        return self._write(df, name, "overwrite", partition_by, partition_filters, evolve, metadata)

    def _check_schema(self, name: str, df: DataFrame, evolve: bool,
                      partition_by: Sequence[str] | None) -> tuple[DeltaTable | None, list[str]]:
        if not self.exists(name):
            return None, list(partition_by or [])
        dt = self._delta(name)
        table_partitions = list(dt.metadata().partition_columns)
        if partition_by is not None and list(partition_by) != table_partitions:
            raise LakeSchemaError(f"{name}: partitioned by {table_partitions}, "
                                  f"the write asks for {list(partition_by)}")
        table_types = _type_names(delta_to_spark_schema(dt.schema()))
        data_types = _type_names(df.schema)
        missing = sorted(set(table_types) - set(data_types))
        added = [c for c in data_types if c not in table_types]
        changed = sorted(f"{c} ({table_types[c]} in table, {data_types[c]} in data)"
                         for c in set(table_types) & set(data_types) if table_types[c] != data_types[c])
        problems = []
        if missing:
            problems.append(f"columns missing from the data: {', '.join(missing)}")
        if changed:
            problems.append(f"columns with another type: {', '.join(changed)}")
        if added and not evolve:
            problems.append(f"columns not in the table: {', '.join(added)} "
                            "(pass evolve=True to add them)")
        if problems:
            raise LakeSchemaError(f"schema mismatch writing {name}: " + "; ".join(problems))
        if added:
            new_fields = [f for f in spark_to_delta_schema(df.select(*added).schema).fields]
            dt.alter.add_columns(new_fields)
            dt = self._delta(name)
        return dt, table_partitions

    def _write(self, df: DataFrame, name: str, mode: str, partition_by: Sequence[str] | None,
               partition_filters: Sequence[PartitionFilter] | None, evolve: bool,
               metadata: dict[str, str] | None) -> CommitResult:
        dt, partitions = self._check_schema(name, df, evolve, partition_by)
        if dt is not None:
            # Keep the table's column order; the checks above guarantee the same set of columns.
            table_columns = delta_to_spark_schema(dt.schema()).fieldNames()
            df = df.select(*table_columns, *[c for c in df.columns if c not in table_columns])
        if self.backend == "delta-jvm":
            return self._write_jvm(df, name, mode, partitions, partition_filters, evolve)

        adds = self._stage_and_publish(df, name, partitions)
        replaced = 0
        if dt is not None and mode == "overwrite":
            replaced = len(dt.file_uris(_normalise_filters(partition_filters)))
        commit = CommitProperties(custom_metadata={"writer": "crm-pipeline", **(metadata or {})})
        schema = spark_to_delta_schema(df.schema)
        try:
            if dt is None:
                create_table_with_add_actions(self._uri(self.path(name)), schema, adds, mode="append",
                                              partition_by=partitions or None,
                                              commit_properties=commit)
            else:
                dt.create_write_transaction(adds, mode, schema, partitions or None,
                                            _normalise_filters(partition_filters),
                                            commit_properties=commit)
        except CommitFailedError as exc:
            raise LakeConflictError(
                f"{name}: another writer committed a conflicting change first ({exc}); nothing of "
                "this write is visible, rerun it") from None
        return CommitResult(name, self.version(name), len(adds), replaced,
                            sum(json.loads(a.stats)["numRecords"] for a in adds))

    def _stage_and_publish(self, df: DataFrame, name: str, partitions: Sequence[str]) -> list[AddAction]:
        """Executors write Parquet into a private staging folder; the driver moves the files in."""
        write_id = uuid.uuid4().hex
        staging = f"{self._fs_path(name)}/{STAGING_DIR}/{write_id}"
        try:
            (df.write.mode("error").partitionBy(*partitions)
             .parquet(f"{self._uri(self.path(name))}/{STAGING_DIR}/{write_id}"))
            return self._publish_staged_files(name, staging)
        finally:
            self._fs.delete_dir_contents(staging, missing_dir_ok=True)
            try:
                self._fs.delete_dir(staging)
            except FileNotFoundError:
                pass

    def _publish_staged_files(self, name: str, staging: str) -> list[AddAction]:
        """Move the staged data files into the table's partition folders; describe them as adds."""
        table_dir = self._fs_path(name)
        adds = []
        staged = self._fs.get_file_info(pafs.FileSelector(staging, recursive=True))
        for info in staged:
            if info.type != pafs.FileType.File or not info.base_name.endswith(".parquet"):
                continue
            relative = info.path[len(staging) + 1:]
            target = f"{table_dir}/{relative}"
            self._fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            self._fs.move(info.path, target)
            partition_values = {}
            for segment in relative.split("/")[:-1]:
                key, _, value = segment.partition("=")
                value = unquote(value)
                partition_values[unquote(key)] = None if value == HIVE_NULL else value
            adds.append(AddAction(
                path=relative,
                size=info.size,
                partition_values=partition_values,
                modification_time=int(time.time() * 1000),
                data_change=True,
                stats=self._file_stats(target),
            ))
        return adds

    def _file_stats(self, fs_path: str) -> str:
        """numRecords, and min/max/null counts of flat columns from the Parquet footer (cheap)."""
        with self._fs.open_input_file(fs_path) as handle:
            meta = pq.ParquetFile(handle).metadata
        mins: dict[str, Any] = {}
        maxs: dict[str, Any] = {}
        nulls: dict[str, int] = {}
        for col in range(meta.num_columns):
            column = meta.schema.column(col)
            if "." in column.path:  # nested: no stats
                continue
            lo = hi = None
            count = 0
            usable = True
            for rg in range(meta.num_row_groups):
                st = meta.row_group(rg).column(col).statistics
                if st is None or not st.has_min_max or column.logical_type.type in ("TIMESTAMP", "DECIMAL"):
                    usable = False
                else:
                    lo = st.min if lo is None else min(lo, st.min)
                    hi = st.max if hi is None else max(hi, st.max)
                if st is not None and st.has_null_count:
                    count += st.null_count
            nulls[column.path] = count
            if usable and lo is not None and not isinstance(lo, bytes):
                mins[column.path] = _literal(lo)
                maxs[column.path] = _literal(hi)
        return json.dumps({"numRecords": meta.num_rows, "minValues": mins, "maxValues": maxs,
                           "nullCount": nulls})

    def _write_jvm(self, df: DataFrame, name: str, mode: str, partitions: list[str],
                   partition_filters: Sequence[PartitionFilter] | None, evolve: bool) -> CommitResult:
        writer = df.write.format("delta").mode(mode).partitionBy(*partitions)
        if partition_filters:
            writer = writer.option("replaceWhere", _filters_to_sql(partition_filters))
        if evolve:
            writer = writer.option("mergeSchema", "true")
        try:
            writer.save(self.path(name))
        except Exception as exc:
            if "Concurrent" in type(exc).__name__ or "concurrent" in str(exc).lower():
                raise LakeConflictError(f"{name}: concurrent change, rerun the write: {exc}") from None
            raise
        after = self._delta(name)
        metrics = after.history(1)[0].get("operationMetrics", {})
        return CommitResult(name, after.version(), int(metrics.get("numFiles", 0)),
                            int(metrics.get("numRemovedFiles", 0)), int(metrics.get("numOutputRows", 0)))

    # ---------------------------------------------------------------- maintenance
    def compact(self, name: str, partition_filters: Sequence[PartitionFilter] | None = None,
                min_files: int = 8, small_file_mb: int = 64, target_file_mb: int = 128) -> CommitResult:
        """Rewrite each partition holding at least `min_files` small files into fewer, larger files.

        One transaction removes the small files and adds the new ones (data_change=false), so readers
        see the same rows before and after; Spark does the rewrite, the driver only commits.
        """
        dt = self._delta(name)
        schema = delta_to_spark_schema(dt.schema())
        partitions = list(dt.metadata().partition_columns)
        actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
        layer, table = self._split(name)
        allowed = {uri.split(f"/{layer}/{table}/", 1)[-1]
                   for uri in dt.file_uris(_normalise_filters(partition_filters))}
        small_limit = small_file_mb * 1024 * 1024
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for action in actions:
            if action["size_bytes"] >= small_limit:
                continue
            key = tuple(action.get(f"partition.{p}") for p in partitions)
            groups.setdefault(key, []).append(action)
        selected = [g for g in groups.values() if len(g) >= min_files and
                    any(a["path"] in allowed for a in g)]
        if not selected:
            return CommitResult(name, dt.version(), 0, 0, 0)
        removes, adds = [], []
        for group in selected:
            uris = [self._file_uri(name, a["path"]) for a in group]
            total = sum(a["size_bytes"] for a in group)
            n_files = max(1, -(-total // (target_file_mb * 1024 * 1024)))
            rows = (self.spark.read.schema(schema).option("basePath", self._uri(self.path(name)))
                    .parquet(*uris).select(*schema.fieldNames()).coalesce(n_files))
            new = self._stage_and_publish(rows, name, partitions)
            adds.extend(AddAction(a.path, a.size, a.partition_values, a.modification_time, False, a.stats)
                        for a in new)
            now = int(time.time() * 1000)
            removes.extend(RemoveAction(path=a["path"], data_change=False, deletion_timestamp=now,
                                        size=a["size_bytes"],
                                        partition_values={p: a.get(f"partition.{p}") for p in partitions})
                           for a in group)
        try:
            dt.create_write_transaction([*removes, *adds], "append", dt.schema(), partitions or None,
                                        commit_properties=CommitProperties(
                                            custom_metadata={"writer": "crm-pipeline",
                                                             "crm_operation": "compact"}))
        except CommitFailedError as exc:
            raise LakeConflictError(f"{name}: compaction lost a commit race ({exc}); rerun it") from None
        return CommitResult(name, self.version(name), len(adds), len(removes),
                            sum(json.loads(a.stats)["numRecords"] for a in adds))

    def _file_uri(self, name: str, relative: str) -> str:
        return f"{self._uri(self.path(name))}/{relative}"

    def vacuum(self, name: str, retention_hours: int) -> list[str]:
        """Delete files no version younger than the retention needs, and leftovers of failed writes."""
        dt = self._delta(name)
        deleted = dt.vacuum(retention_hours=retention_hours, dry_run=False,
                            enforce_retention_duration=False, full=True)
        staging = f"{self._fs_path(name)}/{STAGING_DIR}"
        cutoff = time.time() - retention_hours * 3600
        for info in self._fs.get_file_info(pafs.FileSelector(staging, allow_not_found=True)):
            if info.mtime is not None and info.mtime.timestamp() <= cutoff:
                self._fs.delete_dir(info.path)
                deleted.append(info.path)
        return deleted


