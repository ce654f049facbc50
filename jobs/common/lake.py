"""The lake API: Delta tables named `layer.table` under one lake root.

Two backends produce the same standard Delta tables:

* `delta-rs` (this machine: no Delta jars). Spark's executors write the Parquet data files into a
  staging folder of the table, the driver moves them into the table's partition folders and delta-rs
  commits them in one atomic transaction of add (and remove) actions with per-file statistics read from
  the Parquet footers. A replacement of one partition (the nightly rerun of a date) is written straight
  into that partition's folder, without the sort Spark puts in front of a partitioned write. Nothing but
  file metadata reaches the driver. Files of a failed write are never committed, so no reader sees them;
  the write deletes them, `vacuum` deletes what a crash left. Reads list the snapshot's files through
  delta-rs (partition filters prune them) and hand them to Spark's Parquet reader with the table's
  schema.
* `delta-jvm`: `format("delta")` where Delta's JVM classes are on the classpath (a production cluster).

`auto` picks `delta-jvm` when its classes load, else `delta-rs`. Table metadata (schema, partition
columns, history) is read with delta-rs in both cases: it is small and backend-independent.

Concurrency (delta-rs backend): every commit is optimistic. The write remembers the snapshot it was
planned on (or `read_version`, the version its inputs were read at) and commits only on top of the
newest version after checking what was committed in between: a schema change, or any change to the
files of the partitions an overwrite replaces (or to the files a compaction rewrites), is a conflict
(`LakeConflictError`, nothing of the write visible, rerun it). Blind appends never conflict with each
other: when another commit lands first they are retried on top of it. delta-rs's own conflict checker
is not enough on its own: two replacements of a partition that was empty both pass it and the
partition ends up with both writes' rows.
"""
from __future__ import annotations

import json
import operator
import random
import re
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import reduce
from typing import Any
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    IntegralType,
    MapType,
    StructField,
    StructType,
)

from jobs.common.config import Settings
from jobs.common.spark import empty_frame

# (column, op, value) with op one of = != < <= > >= in "not in"; values as strings, dates or numbers.
PartitionFilter = tuple[str, str, Any]

STAGING_DIR = "_staging"
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
COMMIT_ATTEMPTS = 20  # blind appends racing other commits; each retry re-checks for conflicts
FILE_IO_THREADS = 8  # footer reads and renames are I/O bound (object stores: one request each)
MAX_STRING_STAT = 256  # longer strings get no min/max: stats stay small, bounds stay exact

# What a stray row's error carries before the row's partition values (see `_write_pinned`).
STRAY_ROW = "crm-lake: row outside the partition being written: "

_OPS = {"=": "__eq__", "!=": "__ne__", "<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__"}


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


# ---------------------------------------------------------------- partition filters
def _literal(value: Any) -> str:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def _check_filters(filters: Sequence[PartitionFilter]) -> None:
    for column, op, value in filters:
        if op not in _OPS and op not in ("in", "not in"):
            raise LakeError(f"partition filter on {column!r}: unknown operator {op!r}")
        values = value if op in ("in", "not in") else [value]
        if any(v is None for v in values):
            raise LakeError(f"partition filter on {column!r}: null values cannot be matched by a filter")


def _normalise_filters(filters: Sequence[PartitionFilter] | None) -> list[tuple[str, str, Any]] | None:
    """The filters in delta-rs's form: values as strings, which it parses with the column's type."""
    if not filters:
        return None
    _check_filters(filters)
    normalised = []
    for column, op, value in filters:
        if op in ("in", "not in"):
            normalised.append((column, op, [_literal(v) for v in value]))
        else:
            normalised.append((column, op, _literal(value)))
    return normalised


def filters_to_column(filters: Sequence[PartitionFilter]) -> Column:
    """The same partition filters as a Spark predicate (for the JVM backend)."""
    predicate = F.lit(True)
    for column, op, value in filters:
        col = F.col(column)
        if op == "in":
            term = col.isin([_literal(v) for v in value])
        elif op == "not in":
            term = ~col.isin([_literal(v) for v in value])
        else:
            term = getattr(col, _OPS[op])(F.lit(_literal(value)))
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


def _partition_parser(data_type: DataType) -> Callable[[str], Any]:
    """Parse a partition value as written in a folder name into a value comparable in Python."""
    if isinstance(data_type, DateType):
        return date.fromisoformat
    if isinstance(data_type, IntegralType):
        return int
    if isinstance(data_type, DecimalType):
        return Decimal
    if isinstance(data_type, BooleanType):
        return lambda text: text.lower() == "true"
    return str


def _partition_matches(values: dict[str, str | None], filters: Sequence[PartitionFilter],
                       types: dict[str, DataType]) -> bool:
    """Whether a file's partition values satisfy every filter (SQL semantics: null matches nothing)."""
    for column, op, value in filters:
        raw = values.get(column)
        if raw is None:
            return False
        parse = _partition_parser(types[column])
        actual = parse(raw)
        if op in ("in", "not in"):
            found = actual in {parse(_literal(v)) for v in value}
            if found != (op == "in"):
                return False
        elif not getattr(actual, _OPS[op])(parse(_literal(value))):
            return False
    return True


# ---------------------------------------------------------------- schemas
def _as_nullable(data_type: DataType) -> DataType:
    if isinstance(data_type, StructType):
        return StructType([StructField(f.name, _as_nullable(f.dataType), True, f.metadata)
                           for f in data_type.fields])
    if isinstance(data_type, ArrayType):
        return ArrayType(_as_nullable(data_type.elementType), True)
    if isinstance(data_type, MapType):
        return MapType(_as_nullable(data_type.keyType), _as_nullable(data_type.valueType), True)
    return data_type


def spark_to_delta_schema(schema: StructType) -> DeltaSchema:
    # Every column nullable, as Spark's own file writer does: a NOT NULL column in the Delta schema is
    # a constraint other engines enforce, and no Spark DataFrame's nullability is a promise.
    arrow = to_arrow_schema(_as_nullable(schema), timestamp_utc=True)
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


# Parquet column types whose footer min/max become Delta stats: integers, dates and strings. Not
# timestamps (Delta wants millisecond bounds), decimals, floats (NaN is left out of min/max), booleans.
_STAT_TYPES = {"INT32": {"NONE", "INT", "DATE"}, "INT64": {"NONE", "INT"}, "BYTE_ARRAY": {"STRING"}}


def _json_stat(value: Any) -> Any:
    """A footer min/max as Delta stats JSON, or None where it would not be a compact, exact bound."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and len(value) > MAX_STRING_STAT:
        return None
    return value


def delta_stats(meta: pq.FileMetaData) -> str:
    """A data file's Delta statistics from its Parquet footer (cheap: no data read).

    numRecords, null counts and min/max of flat columns; min/max only where exact (see _STAT_TYPES).
    """
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for col in range(meta.num_columns):
        column = meta.schema.column(col)
        if "." in column.path:  # nested: no stats
            continue
        stats = [meta.row_group(rg).column(col).statistics for rg in range(meta.num_row_groups)]
        if all(st is not None and st.has_null_count for st in stats):
            nulls[column.path] = sum(st.null_count for st in stats)
        kept = _STAT_TYPES.get(column.physical_type)
        if kept is None or column.logical_type.type not in kept:
            continue  # timestamps, decimals, floats, booleans, binary: see _STAT_TYPES
        bounds = [(st.min, st.max) for st in stats if st is not None and st.has_min_max]
        if len(bounds) != len(stats) or not bounds:
            continue
        lo = _json_stat(min(b[0] for b in bounds))
        hi = _json_stat(max(b[1] for b in bounds))
        if lo is not None and hi is not None:
            mins[column.path] = lo
            maxs[column.path] = hi
    return json.dumps({"numRecords": meta.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls})


@dataclass
class _Plan:
    """What a write was planned on: the table snapshot (None: new table) and the schema to commit."""

    base: DeltaTable | None
    schema: StructType  # the table's schema after the write (with evolved columns)
    partitions: list[str]
    added_columns: list[str]


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
        if backend == "delta-rs":
            # Spark's default INT96 timestamps read back through delta-rs/Arrow as nanoseconds, which
            # overflow for far dates (9999-12-31 "open end" dates are common in bank data).
            spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")

    @classmethod
    def from_settings(cls, spark: SparkSession, settings: Settings) -> Lake:
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
            if version is not None and self.exists(name):
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

    def row_count(self, name: str, version: int | None = None,
                  partition_filters: Sequence[PartitionFilter] | None = None) -> int:
        """Rows of the snapshot (of its partitions that pass `partition_filters`), from the file
        statistics of the log (a scan only for files without)."""
        dt = self._delta(name, version)
        actions = pa.table(dt.get_add_actions(flatten=True))
        if partition_filters:
            self._require_partition_columns(name, partition_filters, dt.metadata().partition_columns)
            _check_filters(partition_filters)
            if actions.num_rows:
                actions = actions.filter(pq.filters_to_expression(
                    [(f"partition.{column}", op, value) for column, op, value in partition_filters]))
        counts = actions.column("num_records").to_pylist() if actions.num_rows else []
        if any(c is None for c in counts):  # a file written without statistics by another engine
            return self.read(name, version, partition_filters).count()
        return int(sum(counts))

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits newest first: version, timestamp, operation, parameters, our custom metadata."""
        return self._delta(name).history(limit)

    # ---------------------------------------------------------------- reads
    def read(self, name: str, version: int | None = None,
             partition_filters: Sequence[PartitionFilter] | None = None) -> DataFrame:
        """The table (or a past version) as a DataFrame; partition filters prune files before Spark."""
        dt = self._delta(name, version)
        schema = delta_to_spark_schema(dt.schema())
        if partition_filters:
            self._require_partition_columns(name, partition_filters, dt.metadata().partition_columns)
        if self.backend == "delta-jvm":
            reader = self.spark.read.format("delta")
            if version is not None:
                reader = reader.option("versionAsOf", version)
            frame = reader.load(self.path(name))
            return frame.where(filters_to_column(partition_filters)) if partition_filters else frame
        files = dt.file_uris(file_pruning_predicate=_normalise_filters(partition_filters))
        if not files:
            return empty_frame(self.spark, schema)
        frame = (self.spark.read.schema(schema)
                 .option("basePath", self._uri(self.path(name)))
                 .parquet(*files))
        return frame.select(*schema.fieldNames())

    @staticmethod
    def _require_partition_columns(name: str, filters: Sequence[PartitionFilter],
                                   partitions: Sequence[str]) -> None:
        others = sorted({column for column, _, _ in filters} - set(partitions))
        if others:
            raise LakeError(f"{name}: partition filters name columns that are not partition columns: "
                            f"{', '.join(others)} (partitioned by {list(partitions)})")

    # ---------------------------------------------------------------- writes
    def append(self, df: DataFrame, name: str, partition_by: Sequence[str] | None = None,
               evolve: bool = False, metadata: dict[str, str] | None = None) -> CommitResult:
        """Add the rows; concurrent appends all land (a lost commit race is retried)."""
        return self._write(df, name, "append", partition_by, None, evolve, metadata, None)

    def overwrite(self, df: DataFrame, name: str, partition_by: Sequence[str] | None = None,
                  evolve: bool = False, metadata: dict[str, str] | None = None,
                  read_version: int | None = None) -> CommitResult:
        """Replace every row of the table with `df` in one commit.

        `read_version`: the version the inputs were read at (read-modify-write); the write conflicts if
        any data changed since, instead of silently discarding that change.
        """
        return self._write(df, name, "overwrite", partition_by, None, evolve, metadata, read_version)

    def replace_partitions(self, df: DataFrame, name: str, partition_filters: Sequence[PartitionFilter],
                           partition_by: Sequence[str] | None = None, evolve: bool = False,
                           metadata: dict[str, str] | None = None,
                           read_version: int | None = None) -> CommitResult:
        """Atomically replace the partitions matching the filters with `df` (the idempotent rerun).

        Every row of `df` must fall inside the filters, else the write is refused: a rerun of one date
        must never touch another date. `read_version` as for `overwrite`, limited to these partitions.
        """
        if not partition_filters:
            raise LakeError(f"{name}: replace_partitions needs partition filters; use overwrite for all")
        _check_filters(partition_filters)
        return self._write(df, name, "overwrite", partition_by, partition_filters, evolve, metadata,
                           read_version)

    def _plan(self, name: str, df: DataFrame, evolve: bool, partition_by: Sequence[str] | None,
              partition_filters: Sequence[PartitionFilter] | None,
              read_version: int | None) -> _Plan:
        """Check the data against the table (nothing is changed yet) and remember the snapshot."""
        if not self.exists(name):
            partitions = list(partition_by or [])
            missing = [p for p in partitions if p not in df.columns]
            if missing:
                raise LakeSchemaError(f"{name}: partition columns not in the data: {', '.join(missing)}")
            if partition_filters:
                self._require_partition_columns(name, partition_filters, partitions)
            return _Plan(None, _as_nullable(df.schema), partitions, [])
        base = self._delta(name, read_version)
        current = self._delta(name) if read_version is not None else base
        partitions = list(current.metadata().partition_columns)
        if partition_by is not None and list(partition_by) != partitions:
            raise LakeSchemaError(f"{name}: partitioned by {partitions}, the write asks for {list(partition_by)}")
        if partition_filters:
            self._require_partition_columns(name, partition_filters, partitions)
        table_schema = delta_to_spark_schema(current.schema())
        table_types = _type_names(table_schema)
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
            problems.append(f"columns not in the table: {', '.join(added)} (pass evolve=True to add them)")
        if problems:
            raise LakeSchemaError(f"schema mismatch writing {name}: " + "; ".join(problems))
        schema = StructType([*table_schema.fields,
                             *_as_nullable(StructType([df.schema[c] for c in added])).fields])
        return _Plan(base, schema, partitions, added)

    def _write(self, df: DataFrame, name: str, mode: str, partition_by: Sequence[str] | None,
               partition_filters: Sequence[PartitionFilter] | None, evolve: bool,
               metadata: dict[str, str] | None, read_version: int | None) -> CommitResult:
        plan = self._plan(name, df, evolve, partition_by, partition_filters, read_version)
        df = df.select(*plan.schema.fieldNames())  # the table's column order, new columns last
        if self.backend == "delta-jvm":
            return self._write_jvm(df, name, mode, plan, partition_filters, evolve)

        adds = self._stage_and_publish(df, name, plan.partitions, partition_filters)
        try:
            if partition_filters:
                types = {f.name: f.dataType for f in plan.schema.fields}
                outside = sorted({json.dumps(a.partition_values, sort_keys=True) for a in adds
                                  if not _partition_matches(a.partition_values, partition_filters, types)})
                if outside:
                    raise _rows_outside(name, partition_filters, outside[0])
            if plan.base is None:
                version, replaced = self._create(name, plan, adds, mode, metadata)
            else:
                if plan.added_columns:
                    self._add_columns(name, plan)
                version, replaced = self._commit(name, plan, adds, mode, partition_filters, metadata)
        except (LakeError, CommitFailedError):
            self._discard(name, adds)  # never committed: no reader can see them
            raise
        return CommitResult(name, version, len(adds), replaced,
                            sum(json.loads(a.stats)["numRecords"] for a in adds))

    def _commit_properties(self, metadata: dict[str, str] | None) -> CommitProperties:
        # No retries inside delta-rs: its checker lets conflicting partition replacements through;
        # every retry goes through `_check_concurrent` instead.
        return CommitProperties(custom_metadata={"writer": "crm-pipeline", **(metadata or {})},
                                max_commit_retries=0)

    def _create(self, name: str, plan: _Plan, adds: list[AddAction], mode: str,
                metadata: dict[str, str] | None) -> tuple[int, int]:
        try:
            create_table_with_add_actions(self._uri(self.path(name)), spark_to_delta_schema(plan.schema),
                                          adds, mode="error", partition_by=plan.partitions or None,
                                          commit_properties=self._commit_properties(metadata))
            return 0, 0
        except DeltaError:
            if not self.exists(name):
                raise
        # Another writer created the table first. An append lands on top of it if the schemas agree;
        # an overwrite would silently replace rows it never saw.
        created = self._delta(name)
        same = (delta_to_spark_schema(created.schema()) == plan.schema
                and list(created.metadata().partition_columns) == plan.partitions)
        if mode != "append" or not same:
            raise LakeConflictError(f"{name}: another writer created the table first; rerun the write")
        plan.base = created
        return self._commit(name, plan, adds, mode, None, metadata)

    def _add_columns(self, name: str, plan: _Plan) -> None:
        """Schema evolution: one metadata commit adding the new (nullable) columns; old rows read null."""
        latest = self._delta(name)
        new_fields = [f for f in spark_to_delta_schema(plan.schema).fields if f.name in plan.added_columns]
        if any(f.name in plan.added_columns for f in latest.schema().fields):
            raise LakeConflictError(f"{name}: another writer changed the schema first; rerun the write")
        try:
            latest.alter.add_columns(new_fields, commit_properties=CommitProperties(
                custom_metadata={"writer": "crm-pipeline"}, max_commit_retries=0))
        except CommitFailedError:
            raise LakeConflictError(f"{name}: another writer committed while the schema was being "
                                    "evolved; rerun the write") from None

    def _commit(self, name: str, plan: _Plan, actions: list[AddAction | RemoveAction], mode: str,
                partition_filters: Sequence[PartitionFilter] | None,
                metadata: dict[str, str] | None, rewritten: set[str] | None = None) -> tuple[int, int]:
        """Commit on top of the newest version, after checking nothing conflicting landed since the plan.

        Returns the committed version and the number of files the commit removed.
        """
        filters = _normalise_filters(partition_filters)
        for attempt in range(COMMIT_ATTEMPTS):
            latest = self._delta(name)
            self._check_concurrent(name, plan, latest, mode, filters, rewritten)
            replaced = len(latest.file_uris(file_pruning_predicate=filters)) if mode == "overwrite" else 0
            try:
                # The table's own schema (checked equal to the plan's): no metadata action is added.
                latest.create_write_transaction(actions, mode, latest.schema(), plan.partitions or None,
                                                filters,
                                                commit_properties=self._commit_properties(metadata))
                return latest.version() + 1, replaced
            except CommitFailedError:
                # Someone committed after `latest`: check their commit too, then try again.
                time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
        raise LakeConflictError(f"{name}: lost the commit race {COMMIT_ATTEMPTS} times; rerun the write")

    def _check_concurrent(self, name: str, plan: _Plan, latest: DeltaTable, mode: str,
                          filters: list[tuple[str, str, Any]] | None, rewritten: set[str] | None) -> None:
        """Raise LakeConflictError if a commit after the plan's snapshot conflicts with this write."""
        base = plan.base
        if latest.version() == base.version():
            return
        since = f"committed after version {base.version()} (now {latest.version()})"
        if (latest.metadata().id != base.metadata().id
                or list(latest.metadata().partition_columns) != plan.partitions
                or delta_to_spark_schema(latest.schema()) != plan.schema):
            raise LakeConflictError(f"{name}: another writer changed the table's schema or metadata "
                                    f"({since}); nothing was written, rerun the write")
        if mode == "overwrite":
            before = set(base.file_uris(file_pruning_predicate=filters))
            if before != set(latest.file_uris(file_pruning_predicate=filters)):
                scope = "the partitions being replaced" if filters else "the table being overwritten"
                raise LakeConflictError(f"{name}: another writer changed {scope} ({since}); nothing "
                                        "was written, rerun the write")
        if rewritten and not rewritten <= set(latest.file_uris()):  # as file_uris() names them
            raise LakeConflictError(f"{name}: files being compacted were removed by another writer "
                                    f"({since}); nothing was written, rerun the compaction")

    def _stage_and_publish(self, df: DataFrame, name: str, partitions: Sequence[str],
                           partition_filters: Sequence[PartitionFilter] | None = None) -> list[AddAction]:
        """Executors write Parquet into a private staging folder; the driver moves the files in."""
        write_id = uuid.uuid4().hex
        staging = f"{self._fs_path(name)}/{STAGING_DIR}/{write_id}"
        target = f"{self._uri(self.path(name))}/{STAGING_DIR}/{write_id}"
        pinned = _pinned_partition(partitions, partition_filters)
        try:
            if pinned and len(df.columns) > len(pinned):
                self._write_pinned(df, name, pinned, target, partition_filters or [])
            else:
                df.write.mode("error").partitionBy(*partitions).parquet(target)
            return self._publish_staged_files(name, staging)
        finally:
            self._fs.delete_dir_contents(staging, missing_dir_ok=True)
            try:
                self._fs.delete_dir(staging)
            except FileNotFoundError:
                pass

    @staticmethod
    def _write_pinned(df: DataFrame, name: str, pinned: dict[str, Any], target: str,
                      partition_filters: Sequence[PartitionFilter]) -> None:
        """Rows of one known partition, written straight into its folder.

        Spark sorts the rows of a partitioned write by the partition columns first, even when they are
        one literal (2.5 s of 14 s for 10 M silver transactions). Here the partition values leave the
        rows, and a row outside the partition fails the write; where the values are literals, the test
        folds away.
        """
        inside = reduce(operator.and_, [F.col(c) == F.lit(v) for c, v in pinned.items()])
        values = [c for c in df.columns if c not in pinned]
        stray = F.raise_error(F.concat(F.lit(STRAY_ROW), F.to_json(F.struct(*pinned))))
        rows = df.select(F.when(inside, F.col(values[0])).otherwise(stray).alias(values[0]), *values[1:])
        folder = "/".join(f"{quote(c, safe='')}={quote(_partition_string(v), safe='')}"
                          for c, v in pinned.items())
        try:
            rows.write.mode("error").parquet(f"{target}/{folder}")
        except Exception as exc:
            found = re.search(re.escape(STRAY_ROW) + r"(\{.*?\})", str(exc))
            if found is None:
                raise
            raise _rows_outside(name, partition_filters, found.group(1)) from None

    def _publish_staged_files(self, name: str, staging: str) -> list[AddAction]:
        """Move the staged data files that hold rows into the table's partition folders; describe them
        as adds. Spark's first task writes a file even when it has no rows: such files stay behind."""
        table_dir = self._fs_path(name)
        staged = [info for info in self._fs.get_file_info(pafs.FileSelector(staging, recursive=True))
                  if info.type == pafs.FileType.File and info.base_name.endswith(".parquet")]
        with ThreadPoolExecutor(FILE_IO_THREADS) as pool:
            stats = list(pool.map(self._file_stats, [info.path for info in staged]))
        holding_rows = [(info, info.path[len(staging) + 1:], stat) for info, stat in zip(staged, stats, strict=True)
                        if json.loads(stat)["numRecords"] > 0]
        for folder in sorted({r.rsplit("/", 1)[0] for _, r, _ in holding_rows if "/" in r}):
            self._fs.create_dir(f"{table_dir}/{folder}", recursive=True)

        def publish(staged_file: tuple[pafs.FileInfo, str, str]) -> AddAction:
            info, relative, stat = staged_file
            self._fs.move(info.path, f"{table_dir}/{relative}")
            partition_values = {}
            for segment in relative.split("/")[:-1]:
                key, _, value = segment.partition("=")
                value = unquote(value)  # Spark escapes special characters as %XX in folder names
                partition_values[unquote(key)] = None if value == HIVE_NULL else value
            # The raw relative path: delta-rs percent-encodes it for the log, as the protocol wants.
            return AddAction(path=relative, size=info.size, partition_values=partition_values,
                             modification_time=int(time.time() * 1000), data_change=True, stats=stat)

        with ThreadPoolExecutor(FILE_IO_THREADS) as pool:
            return list(pool.map(publish, holding_rows))

    def _file_stats(self, fs_path: str) -> str:
        with self._fs.open_input_file(fs_path) as handle:
            return delta_stats(pq.ParquetFile(handle).metadata)

    def _discard(self, name: str, adds: Sequence[AddAction]) -> None:
        table_dir = self._fs_path(name)
        for add in adds:
            try:
                self._fs.delete_file(f"{table_dir}/{add.path}")
            except FileNotFoundError:
                pass

    def _write_jvm(self, df: DataFrame, name: str, mode: str, plan: _Plan,
                   partition_filters: Sequence[PartitionFilter] | None, evolve: bool) -> CommitResult:
        if plan.base is not None and plan.base.version() != self.version(name):
            # Delta checks conflicts from the version it reads at write time; `read_version` is older.
            self._check_concurrent(name, plan, self._delta(name), mode,
                                   _normalise_filters(partition_filters), None)
        writer = df.write.format("delta").mode(mode).partitionBy(*plan.partitions)
        if partition_filters:
            # Delta refuses rows outside the predicate itself (DELTA_REPLACE_WHERE_MISMATCH).
            writer = writer.option("replaceWhere", _filters_to_sql(partition_filters))
        if evolve:
            writer = writer.option("mergeSchema", "true")
        try:
            writer.save(self.path(name))
        except Exception as exc:
            text = str(exc)
            if "DeltaConcurrentModificationException" in text or "io.delta.exceptions.Concurrent" in text \
                    or "MetadataChangedException" in text or "ProtocolChangedException" in text:
                raise LakeConflictError(f"{name}: concurrent change, rerun the write: "
                                        f"{text.splitlines()[0]}") from None
            if "REPLACE_WHERE_MISMATCH" in text:
                raise _rows_outside(name, partition_filters or [], None) from None
            raise
        after = self._delta(name)
        entry = after.history(1)[0]
        metrics = entry.get("operationMetrics", {})
        return CommitResult(name, entry.get("version", after.version()), int(metrics.get("numFiles", 0)),
                            int(metrics.get("numRemovedFiles", 0)), int(metrics.get("numOutputRows", 0)))

    # ---------------------------------------------------------------- maintenance
    def compact(self, name: str, partition_filters: Sequence[PartitionFilter] | None = None,
                min_files: int = 8, small_file_mb: int = 64, target_file_mb: int = 128) -> CommitResult:
        """Rewrite each partition holding at least `min_files` small files into fewer, larger files.

        One transaction removes the small files and adds the new ones (data_change=false), so readers
        see the same rows before and after, and readers of older versions keep their files until
        `vacuum`. Spark does the rewrite in one job, the driver only commits.
        """
        dt = self._delta(name)
        if self.backend == "delta-jvm":
            raise LakeError(f"{name}: on the delta-jvm backend use Delta's OPTIMIZE for compaction")
        schema = delta_to_spark_schema(dt.schema())
        partitions = list(dt.metadata().partition_columns)
        if partition_filters:
            self._require_partition_columns(name, partition_filters, partitions)
        depth = len(partitions) + 1

        def relative(uri: str) -> str:
            # file_uris gives the table location + the file's raw relative path (no "/" inside values).
            return "/".join(uri.split("/")[-depth:])

        in_scope = {relative(u): u for u in dt.file_uris(file_pruning_predicate=_normalise_filters(partition_filters))}
        actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
        small_limit = small_file_mb * 1024 * 1024
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for action in actions:
            path = unquote(action["path"])  # the log's path is percent-encoded
            if action["size_bytes"] < small_limit and path in in_scope:
                key = tuple(action.get(f"partition.{p}") for p in partitions)
                groups.setdefault(key, []).append({**action, "path": path, "uri": in_scope[path]})
        selected = [g for g in groups.values() if len(g) >= min_files]
        if not selected:
            return CommitResult(name, dt.version(), 0, 0, 0)

        rewrites = []
        for group in selected:
            n_files = max(1, -(-sum(a["size_bytes"] for a in group) // (target_file_mb * 1024 * 1024)))
            rewrites.append(self.spark.read.schema(schema).option("basePath", self._uri(self.path(name)))
                            .parquet(*[a["uri"] for a in group])
                            .select(*schema.fieldNames()).coalesce(n_files))
        new = self._stage_and_publish(reduce(DataFrame.unionAll, rewrites), name, partitions)
        adds = [AddAction(a.path, a.size, a.partition_values, a.modification_time, False, a.stats)
                for a in new]
        now = int(time.time() * 1000)
        removes = [RemoveAction(path=a["path"], data_change=False, deletion_timestamp=now, size=a["size_bytes"],
                                partition_values={p: _partition_string(a.get(f"partition.{p}"))
                                                  for p in partitions})
                   for group in selected for a in group]
        plan = _Plan(dt, schema, partitions, [])
        try:
            version, _ = self._commit(name, plan, [*removes, *adds], "append", None,
                                      {"crm_operation": "compact"},
                                      rewritten={a["uri"] for group in selected for a in group})
        except (LakeError, CommitFailedError):
            self._discard(name, adds)
            raise
        return CommitResult(name, version, len(adds), len(removes),
                            sum(json.loads(a.stats)["numRecords"] for a in adds))

    def vacuum(self, name: str, retention_hours: int) -> list[str]:
        """Delete files no version younger than the retention needs, and leftovers of failed writes.

        A write in flight publishes its files before it commits: keep the retention longer than the
        longest write (the default of a week is), never 0 while writers run.
        """
        dt = self._delta(name)
        deleted = dt.vacuum(retention_hours=retention_hours, dry_run=False,
                            enforce_retention_duration=False, full=True)
        staging = f"{self._fs_path(name)}/{STAGING_DIR}"
        cutoff = time.time() - retention_hours * 3600
        for info in self._fs.get_file_info(pafs.FileSelector(staging, allow_not_found=True)):
            if info.mtime is not None and info.mtime.timestamp() <= cutoff:
                if info.type == pafs.FileType.Directory:
                    self._fs.delete_dir(info.path)
                else:
                    self._fs.delete_file(info.path)
                deleted.append(info.path)
        return deleted


def _pinned_partition(partitions: Sequence[str],
                      filters: Sequence[PartitionFilter] | None) -> dict[str, Any] | None:
    """column -> value when `filters` fix every partition column to one date, string or integer."""
    equal = {column: value for column, op, value in filters or [] if op == "="}
    if not partitions or set(partitions) - set(equal):
        return None
    # A timestamp's or a float's folder name has other forms in Spark and Delta: left to Spark.
    if any(isinstance(equal[c], datetime) or not isinstance(equal[c], (date, str, int)) for c in partitions):
        return None
    return {c: equal[c] for c in partitions}


def _rows_outside(name: str, filters: Sequence[PartitionFilter], example: str | None) -> LakeError:
    """The refusal of a partition replacement whose rows fall outside its filters."""
    found = f", e.g. partition {example}" if example else ""
    return LakeError(f"{name}: rows outside the partitions being replaced ({_filters_to_sql(filters)}){found}; "
                     "refusing to write them")


def _partition_string(value: Any) -> str | None:
    """A typed partition value from delta-rs's add-action table back in the log's string form."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return _literal(value)
