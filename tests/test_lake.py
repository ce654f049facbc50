"""The lake API on real Spark and real Delta tables (delta-rs backend), in a fresh lake per test.

Every table written is also opened with delta-rs's own reader (`DeltaTable.to_pyarrow_table`), an
engine independent of Spark, and must hold exactly the rows Spark reads and the rows planted.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    DecimalType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from jobs.common.lake import Lake, LakeConflictError, LakeError, LakeSchemaError, TableMissingError

TXN_SCHEMA = StructType([
    StructField("txn_id", LongType()),
    StructField("customer_id", StringType()),
    StructField("txn_ts", TimestampType()),
    StructField("amount", DecimalType(18, 2)),
    StructField("channel", StringType()),
    StructField("batch_date", DateType()),
])
D1, D2, D3 = date(2026, 10, 1), date(2026, 10, 2), date(2026, 10, 3)


def _txns(day: date, start: int, count: int, channel: str = "app") -> list[tuple]:
    return [(start + i, f"C{(start + i) % 7:03d}", datetime(day.year, day.month, day.day, 9, i % 60, i % 60, 1000 * i),
             Decimal(f"{(start + i) * 3}.{i % 100:02d}"), channel, day) for i in range(count)]


def _frame(spark, rows, schema=TXN_SCHEMA, partitions: int = 1):
    return spark.createDataFrame(rows, schema).repartition(partitions)


def _plain(value):
    """delta-rs returns UTC-aware timestamps; Spark (session zone UTC) returns naive UTC ones."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _sorted_rows(rows) -> list[tuple]:
    return sorted((tuple(_plain(v) for v in row) for row in rows), key=repr)


def _spark_rows(lake: Lake, name: str, **kwargs) -> list[tuple]:
    return _sorted_rows(lake.read(name, **kwargs).collect())


def _delta_rs_rows(lake: Lake, name: str, version: int | None = None) -> list[tuple]:
    """The rows as delta-rs's own Parquet reader sees them, in the table's column order."""
    table = DeltaTable(lake.path(name), version=version)
    columns = [f.name for f in lake.schema(name).fields]
    arrow = table.to_pyarrow_table().select(columns)
    return _sorted_rows(zip(*(arrow.column(c).to_pylist() for c in columns), strict=True)) if arrow.num_rows else []


def _assert_readers_agree(lake: Lake, name: str, expected: list[tuple], version: int | None = None) -> None:
    expected_rows = _sorted_rows(expected)
    assert _spark_rows(lake, name, version=version) == expected_rows
    assert _delta_rs_rows(lake, name, version) == expected_rows
    pandas_rows = DeltaTable(lake.path(name), version=version).to_pandas()
    assert len(pandas_rows) == len(expected_rows)


def _data_files(lake: Lake, name: str) -> set[str]:
    """Every Parquet file under the table folder (committed or not), outside the log."""
    root = Path(lake.path(name))
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet") if "_delta_log" not in p.parts}


# ---------------------------------------------------------------- round trips
def test_append_new_partitioned_table_when_read_back_gives_planted_rows_in_both_readers(spark, lake):
    rows = _txns(D1, 0, 5) + _txns(D2, 100, 4)
    result = lake.append(_frame(spark, rows, partitions=2), "silver.transactions", partition_by=["batch_date"])

    assert (result.version, result.rows_added) == (0, 9)
    _assert_readers_agree(lake, "silver.transactions", rows)
    assert lake.partition_columns("silver.transactions") == ["batch_date"]
    assert lake.schema("silver.transactions") == TXN_SCHEMA
    assert lake.tables() == ["silver.transactions"]
    assert_df_equality(lake.read("silver.transactions"), spark.createDataFrame(rows, TXN_SCHEMA),
                       ignore_row_order=True, ignore_nullable=True)


def test_append_twice_when_history_read_gives_both_commits_with_our_metadata(spark, lake):
    lake.append(_frame(spark, _txns(D1, 0, 3)), "silver.transactions", partition_by=["batch_date"])
    lake.append(_frame(spark, _txns(D2, 10, 2)), "silver.transactions", metadata={"run_id": "r2"})

    history = lake.history("silver.transactions")
    assert [h["version"] for h in history] == [1, 0]
    assert [h["operation"] for h in history] == ["WRITE", "CREATE TABLE"]
    assert history[0]["operationParameters"]["mode"] == "Append"
    assert history[0]["run_id"] == "r2" and history[0]["writer"] == "crm-pipeline"
    _assert_readers_agree(lake, "silver.transactions", _txns(D1, 0, 3) + _txns(D2, 10, 2))


def test_overwrite_when_old_version_read_gives_old_rows_time_travel(spark, lake):
    old, new = _txns(D1, 0, 4), _txns(D2, 50, 3)
    lake.overwrite(_frame(spark, old), "silver.customers_snapshot")
    result = lake.overwrite(_frame(spark, new), "silver.customers_snapshot")

    assert result.version == 1 and result.files_removed == 1
    _assert_readers_agree(lake, "silver.customers_snapshot", new)
    _assert_readers_agree(lake, "silver.customers_snapshot", old, version=0)
    assert lake.row_count("silver.customers_snapshot", version=0) == 4
    assert lake.history("silver.customers_snapshot", 1)[0]["operationParameters"]["mode"] == "Overwrite"


def test_replace_partitions_when_same_date_rerun_replaces_it_and_keeps_other_dates(spark, lake):
    name = "silver.transactions"
    lake.append(_frame(spark, _txns(D1, 0, 3) + _txns(D2, 10, 3)), name, partition_by=["batch_date"])
    rerun = _txns(D2, 20, 2, channel="branch")

    for _ in range(2):  # the same rerun twice: idempotent, no duplicates
        lake.replace_partitions(_frame(spark, rerun), name, [("batch_date", "=", D2)])

    _assert_readers_agree(lake, name, _txns(D1, 0, 3) + rerun)
    assert lake.version(name) == 2


def test_replace_partitions_when_spark_partitions_are_empty_commits_only_files_holding_rows(spark, lake):
    name = "silver.transactions"
    lake.append(_frame(spark, _txns(D1, 0, 3)), name, partition_by=["batch_date"])
    rows = _txns(D2, 10, 2)

    # Eight Spark partitions (no shuffle, which would coalesce them), the first one without rows; then
    # a replacement by no rows at all. Spark writes a file for the first task even when it is empty.
    spread = spark.createDataFrame(spark.sparkContext.parallelize([None] + rows, 8).filter(bool), TXN_SCHEMA)
    result = lake.replace_partitions(spread, name, [("batch_date", "=", D2)])
    emptied = lake.replace_partitions(_frame(spark, _txns(D1, 0, 2)).limit(0), name, [("batch_date", "=", D1)])

    assert (result.files_added, result.rows_added) == (2, 2)
    assert (emptied.files_added, emptied.files_removed) == (0, 1)
    _assert_readers_agree(lake, name, rows)
    assert not [p for p in _data_files(lake, name) if p.startswith("_staging")]  # the empty ones are gone
    assert DeltaTable(lake.path(name)).get_add_actions(flatten=False).column("num_records").to_pylist() == [1, 1]


def test_replace_partitions_when_rows_outside_filter_refuses_and_leaves_table_unchanged(spark, lake):
    name = "silver.transactions"
    planted = _txns(D1, 0, 3)
    lake.append(_frame(spark, planted), name, partition_by=["batch_date"])
    files_before = _data_files(lake, name)
    stray_null_date = [(99, "C001", datetime(2026, 10, 3, 1), Decimal("1.00"), "app", None)]

    for bad in (_txns(D1, 5, 2) + _txns(D3, 7, 1), stray_null_date):
        with pytest.raises(LakeError, match=r"silver\.transactions: rows outside the partitions"):
            lake.replace_partitions(_frame(spark, bad), name, [("batch_date", "=", D1)])

    assert lake.version(name) == 0
    assert _data_files(lake, name) == files_before  # the refused write's files are gone too
    _assert_readers_agree(lake, name, planted)


def test_replace_partitions_when_filter_names_data_column_refuses(spark, lake):
    lake.append(_frame(spark, _txns(D1, 0, 2)), "silver.transactions", partition_by=["batch_date"])
    with pytest.raises(LakeError, match="not partition columns: channel"):
        lake.replace_partitions(_frame(spark, _txns(D1, 0, 2)), "silver.transactions",
                                [("channel", "=", "app")])


def test_read_when_table_or_version_missing_raises_table_missing(spark, lake):
    with pytest.raises(TableMissingError, match="silver.nothing does not exist"):
        lake.read("silver.nothing")
    lake.append(_frame(spark, _txns(D1, 0, 1)), "silver.transactions")
    with pytest.raises(TableMissingError, match="silver.transactions has no version 5"):
        lake.read("silver.transactions", version=5)
    with pytest.raises(LakeError, match="expected 'layer.table'"):
        lake.read("transactions")


def test_row_count_when_read_from_stats_matches_planted_rows_and_stats_bound_values(spark, lake):
    name = "silver.transactions"
    lake.append(_frame(spark, _txns(D1, 0, 7) + _txns(D2, 100, 5), partitions=3), name,
                partition_by=["batch_date"])
    lake.append(_frame(spark, _txns(D3, 200, 4)), name)

    assert lake.row_count(name) == 16
    assert lake.row_count(name, version=0) == 12
    assert lake.row_count(name, partition_filters=[("batch_date", "=", D2)]) == 5
    assert lake.row_count(name, partition_filters=[("batch_date", ">=", D2)]) == 9
    assert lake.row_count(name, version=0, partition_filters=[("batch_date", "in", [D1, D3])]) == 7
    # Per file, the min/max statistics bound the file's real values (data skipping relies on it).
    actions = pa.table(DeltaTable(lake.path(name)).get_add_actions(flatten=True)).to_pylist()
    for action in actions:
        ids = [r.txn_id for r in spark.read.parquet(f"{lake.path(name)}/{action['path']}").collect()]
        assert (action["min.txn_id"], action["max.txn_id"], action["num_records"]) == (min(ids), max(ids), len(ids))


def test_compact_when_many_small_files_gives_fewer_files_same_rows_and_old_version_readable(spark, lake):
    name = "silver.app_events"
    schema = StructType([StructField("event_id", IntegerType()), StructField("segment", StringType())])
    planted = []
    for i in range(6):  # six one-row commits per partition: six small files each
        rows = [(i, "a:b/c%d"), (100 + i, "plain")]
        planted += rows
        lake.append(_frame(spark, rows, schema), name, partition_by=["segment"])
    before = lake.version(name)
    assert len(DeltaTable(lake.path(name)).file_uris()) == 12

    result = lake.compact(name, partition_filters=[("segment", "in", ["a:b/c%d"])], min_files=4)

    assert (result.files_removed, result.files_added, result.rows_added) == (6, 1, 6)
    files = DeltaTable(lake.path(name)).file_uris()
    assert len(files) == 7  # the filtered partition is one file, the other is untouched
    _assert_readers_agree(lake, name, planted)
    _assert_readers_agree(lake, name, planted, version=before)  # readers of the old version
    assert lake.history(name, 1)[0]["crm_operation"] == "compact"
    assert lake.compact(name, min_files=7).files_added == 0  # nothing left with enough small files


def _compact_while(lake: Lake, name: str, concurrent_write) -> tuple[object, int]:
    """Run a compaction; once its Spark job writes, commit `concurrent_write` (delta-rs, no Spark)."""
    staging = Path(lake.path(name)) / "_staging"
    before = set(staging.iterdir())
    outcome: list[object] = []
    compaction = threading.Thread(target=lambda: outcome.append(_outcome(lambda: lake.compact(name, min_files=4))))
    compaction.start()
    deadline = time.monotonic() + 300
    while not set(staging.iterdir()) - before and compaction.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    concurrent_write(DeltaTable(lake.path(name)))
    written_at = DeltaTable(lake.path(name)).version()
    compaction.join(300)
    return outcome[0], written_at


def test_compact_when_another_writer_deletes_the_partition_meanwhile_never_resurrects_rows(spark, lake):
    name = "silver.app_events"
    schema = StructType([StructField("event_id", IntegerType()), StructField("segment", StringType())])
    for i in range(4):
        lake.append(_frame(spark, [(i, "old"), (10 + i, "kept")], schema), name, partition_by=["segment"])

    def delete_old(table: DeltaTable) -> None:
        try:
            table.delete("segment = 'old'")
        except CommitFailedError:  # the compaction committed first: a writer reruns on the new version
            DeltaTable(lake.path(name)).delete("segment = 'old'")

    outcome, deleted_at = _compact_while(lake, name, delete_old)

    # Whatever the interleaving, the deleted rows stay deleted: either the compaction noticed the
    # files it rewrote were gone (conflict), or it had committed before the delete.
    assert isinstance(outcome, LakeConflictError) or outcome.version < deleted_at, outcome
    _assert_readers_agree(lake, name, [(10 + i, "kept") for i in range(4)])


def test_compact_when_another_writer_appends_meanwhile_commits_both(spark, lake):
    name = "silver.app_events"
    schema = StructType([StructField("event_id", IntegerType()), StructField("segment", StringType())])
    for i in range(4):
        lake.append(_frame(spark, [(i, "old")], schema), name, partition_by=["segment"])
    new_rows = pa.table({"event_id": pa.array([99], pa.int32()), "segment": ["new"]})

    outcome, _ = _compact_while(lake, name, lambda table: write_deltalake(table, new_rows, mode="append"))

    assert not isinstance(outcome, Exception), outcome
    assert (outcome.files_removed, outcome.files_added) == (4, 1)
    _assert_readers_agree(lake, name, [(i, "old") for i in range(4)] + [(99, "new")])


def _outcome(action) -> object:
    try:
        return action()
    except Exception as exc:  # the outcome under test
        return exc


def test_vacuum_when_files_unreferenced_or_left_by_crash_deletes_them_and_keeps_current(spark, lake):
    name = "silver.transactions"
    lake.append(_frame(spark, _txns(D1, 0, 3)), name, partition_by=["batch_date"])
    lake.overwrite(_frame(spark, _txns(D1, 10, 2)), name)
    table = Path(lake.path(name))
    # What a driver crashing mid-write leaves: a published but never committed file, staged files.
    crashed = table / "batch_date=2026-10-01" / "part-00000-crashed.c000.snappy.parquet"
    crashed.write_bytes(b"not committed")
    staged = table / "_staging" / "deadbeef" / "batch_date=2026-10-01"
    staged.mkdir(parents=True)
    (staged / "part-00000-staged.parquet").write_bytes(b"staged")
    current = {Path(u).name for u in DeltaTable(lake.path(name)).file_uris()}
    old = {Path(u).name for u in DeltaTable(lake.path(name), version=0).file_uris()}

    deleted = lake.vacuum(name, retention_hours=0)

    assert {Path(p).name for p in _data_files(lake, name)} == current
    assert not (table / "_staging" / "deadbeef").exists()
    assert {Path(d).name for d in deleted} >= old | {crashed.name, "deadbeef"}
    _assert_readers_agree(lake, name, _txns(D1, 10, 2))


def test_write_when_spark_job_fails_midway_leaves_table_unchanged_and_no_files(spark, lake):
    name = "silver.transactions"
    planted = _txns(D1, 0, 3)
    lake.append(_frame(spark, planted), name, partition_by=["batch_date"])
    files_before = _data_files(lake, name)

    @F.udf(StringType())
    def fail_on_last_row(customer_id, txn_id):
        if txn_id == 29:
            raise ValueError("planted failure")
        return customer_id

    failing = _frame(spark, _txns(D2, 0, 30), partitions=2).withColumn(
        "customer_id", fail_on_last_row("customer_id", "txn_id"))
    with pytest.raises(Exception, match="planted failure"):
        lake.append(failing, name)

    assert lake.version(name) == 0
    assert _data_files(lake, name) == files_before
    assert not list((Path(lake.path(name)) / "_staging").iterdir())
    _assert_readers_agree(lake, name, planted)


# ---------------------------------------------------------------- schemas
def test_append_when_schema_differs_raises_naming_table_and_columns(spark, lake):
    name = "silver.transactions"
    lake.append(_frame(spark, _txns(D1, 0, 2)), name, partition_by=["batch_date"])
    good = _frame(spark, _txns(D2, 5, 2))
    cases = [
        (good.drop("channel"), None,
         r"schema mismatch writing silver\.transactions: columns missing from the data: channel"),
        (good.withColumn("amount", F.col("amount").cast("double")), None,
         r"columns with another type: amount \(decimal\(18,2\) in table, double in data\)"),
        (good.withColumn("branch", F.lit("x")), None, r"columns not in the table: branch \(pass evolve=True"),
        (good, ["channel"], r"silver\.transactions: partitioned by \['batch_date'\], the write asks for \['channel'\]"),
    ]
    for frame, partition_by, message in cases:
        with pytest.raises(LakeSchemaError, match=message):
            lake.append(frame, name, partition_by=partition_by)

    assert lake.version(name) == 0
    assert lake.schema(name) == TXN_SCHEMA
    assert len(_data_files(lake, name)) == 1  # nothing was staged for a refused write


def test_append_when_evolve_adds_column_old_rows_read_null(spark, lake):
    name = "silver.transactions"
    old = _txns(D1, 0, 2)
    lake.append(_frame(spark, old), name, partition_by=["batch_date"])
    new = [(*row, "Shanghai") for row in _txns(D2, 10, 2)]
    schema = StructType([*TXN_SCHEMA.fields, StructField("branch", StringType())])

    lake.append(_frame(spark, new, schema), name, evolve=True)

    assert lake.schema(name) == schema
    _assert_readers_agree(lake, name, [(*row, None) for row in old] + new)


# ---------------------------------------------------------------- reads
def test_read_when_partition_filters_given_reads_only_that_partitions_files(spark, lake):
    name = "silver.transactions"
    lake.append(_frame(spark, _txns(D1, 0, 4) + _txns(D2, 10, 4) + _txns(D3, 20, 4), partitions=2), name,
                partition_by=["batch_date"])
    d2_files = {Path(u).name for u in DeltaTable(lake.path(name)).file_uris(
        file_pruning_predicate=[("batch_date", "=", "2026-10-02")])}

    frame = lake.read(name, partition_filters=[("batch_date", "=", D2)])
    read_files = {Path(r.f).name for r in frame.select(F.input_file_name().alias("f")).distinct().collect()}

    assert read_files == d2_files and len(d2_files) >= 1
    assert _sorted_rows(frame.collect()) == _sorted_rows(_txns(D2, 10, 4))
    in_filter = lake.read(name, partition_filters=[("batch_date", "in", [D1, D3])])
    assert _sorted_rows(in_filter.collect()) == _sorted_rows(_txns(D1, 0, 4) + _txns(D3, 20, 4))
    assert lake.read(name, partition_filters=[("batch_date", ">", D3)]).count() == 0


def test_round_trip_when_edge_values_and_special_partition_values_are_exact(spark, lake):
    schema = StructType([
        StructField("id", IntegerType()),
        StructField("ts", TimestampType()),
        StructField("amount", DecimalType(38, 10)),
        StructField("open_end", DateType()),
        StructField("note", StringType()),
        StructField("segment", StringType()),
    ])
    special = ["a b", "a:b", "a%b", "a/b", "x=y", "ümlaut €", "a%3Ab", "q?#", "'quoted'", None]
    rows = [(i, datetime(1900, 1, 1, 0, 0, 0, i) if i % 2 else datetime(2262, 4, 12, 23, 59, 59, 999999),
             Decimal("-12345678901234567890.1234567890") if i % 3 else Decimal("0.0000000001"),
             date(9999, 12, 31) if i % 2 else date(1, 1, 1), None if i % 4 == 0 else f"n{i}", seg)
            for i, seg in enumerate(special)]
    rows.append((99, None, None, None, None, None))

    lake.append(_frame(spark, rows, schema, partitions=2), "gold.edge_cases", partition_by=["segment"])

    _assert_readers_agree(lake, "gold.edge_cases", rows)
    only = lake.read("gold.edge_cases", partition_filters=[("segment", "=", "a:b")]).collect()
    assert [r.id for r in only] == [1]


# ---------------------------------------------------------------- concurrency
def test_replace_partitions_when_two_writers_read_same_version_second_conflicts(spark, lake, settings):
    name = "silver.transactions"
    lake.append(_frame(spark, _txns(D1, 0, 2)), name, partition_by=["batch_date"])
    other_writer = Lake.from_settings(spark, settings)
    for day in (D1, D2):  # a partition that had rows, and one that was still empty
        read_at = lake.version(name)
        first = _txns(day, 100, 3, channel="first")
        lake.replace_partitions(_frame(spark, first), name, [("batch_date", "=", day)], read_version=read_at)
        version = lake.version(name)

        with pytest.raises(LakeConflictError, match=r"silver\.transactions: another writer changed the partitions"):
            other_writer.replace_partitions(_frame(spark, _txns(day, 200, 3, channel="second")), name,
                                            [("batch_date", "=", day)], read_version=read_at)

        assert lake.version(name) == version
        assert lake.read(name, partition_filters=[("batch_date", "=", day)]).count() == 3
    _assert_readers_agree(lake, name, _txns(D1, 100, 3, "first") + _txns(D2, 100, 3, "first"))


def test_replace_partitions_when_concurrent_commit_touched_other_date_succeeds(spark, lake, settings):
    name = "silver.transactions"
    lake.append(_frame(spark, _txns(D1, 0, 2) + _txns(D2, 10, 2)), name, partition_by=["batch_date"])
    read_at = lake.version(name)
    lake.replace_partitions(_frame(spark, _txns(D1, 20, 1)), name, [("batch_date", "=", D1)])

    Lake.from_settings(spark, settings).replace_partitions(
        _frame(spark, _txns(D2, 30, 1)), name, [("batch_date", "=", D2)], read_version=read_at)

    _assert_readers_agree(lake, name, _txns(D1, 20, 1) + _txns(D2, 30, 1))


def test_overwrite_when_append_landed_after_read_version_conflicts(spark, lake):
    name = "silver.customers_snapshot"
    lake.overwrite(_frame(spark, _txns(D1, 0, 2)), name)
    read_at = lake.version(name)
    lake.append(_frame(spark, _txns(D1, 10, 1)), name)

    with pytest.raises(LakeConflictError, match="another writer changed the table being overwritten"):
        lake.overwrite(_frame(spark, _txns(D1, 20, 5)), name, read_version=read_at)

    _assert_readers_agree(lake, name, _txns(D1, 0, 2) + _txns(D1, 10, 1))


def _barrier_frame(spark, rows, marker_dir: Path, me: str, other: str):
    """Rows whose Spark job waits until the other writer's job runs too: both write at the same time."""
    marker_dir = str(marker_dir)

    @F.udf(StringType())
    def meet(customer_id):
        Path(marker_dir, me).touch()
        deadline = time.monotonic() + 120
        while not Path(marker_dir, other).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return customer_id

    return _frame(spark, rows).withColumn("customer_id", meet("customer_id"))


def _run_concurrently(*writes) -> list[object]:
    outcomes: list[object] = [None] * len(writes)

    def run(i, write):
        try:
            outcomes[i] = write()
        except Exception as exc:  # the outcome under test
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(writes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return outcomes


def test_replace_partitions_when_two_threads_replace_same_date_exactly_one_wins(spark, lake, settings, tmp_path):
    name = "silver.transactions"
    lake.append(_frame(spark, _txns(D1, 0, 2)), name, partition_by=["batch_date"])
    other_writer = Lake.from_settings(spark, settings)
    a_rows, b_rows = _txns(D2, 100, 3, "a"), _txns(D2, 200, 4, "b")

    outcomes = _run_concurrently(
        lambda: lake.replace_partitions(_barrier_frame(spark, a_rows, tmp_path, "a", "b"), name,
                                        [("batch_date", "=", D2)]),
        lambda: other_writer.replace_partitions(_barrier_frame(spark, b_rows, tmp_path, "b", "a"), name,
                                                [("batch_date", "=", D2)]))

    conflicts = [o for o in outcomes if isinstance(o, LakeConflictError)]
    winners = [i for i, o in enumerate(outcomes) if not isinstance(o, Exception)]
    assert len(conflicts) == 1 and len(winners) == 1, outcomes
    assert lake.version(name) == 1
    _assert_readers_agree(lake, name, _txns(D1, 0, 2) + (a_rows, b_rows)[winners[0]])
    assert len(_data_files(lake, name)) == len(DeltaTable(lake.path(name)).file_uris())  # loser cleaned up


def test_append_when_two_threads_append_blindly_both_land(spark, lake, settings, tmp_path):
    name = "silver.transactions"
    lake.append(_frame(spark, _txns(D1, 0, 2)), name, partition_by=["batch_date"])
    other_writer = Lake.from_settings(spark, settings)
    a_rows, b_rows = _txns(D2, 100, 3, "a"), _txns(D2, 200, 4, "b")

    outcomes = _run_concurrently(
        lambda: lake.append(_barrier_frame(spark, a_rows, tmp_path, "a", "b"), name),
        lambda: other_writer.append(_barrier_frame(spark, b_rows, tmp_path, "b", "a"), name))

    assert sorted(o.version for o in outcomes) == [1, 2], outcomes
    _assert_readers_agree(lake, name, _txns(D1, 0, 2) + a_rows + b_rows)


# ---------------------------------------------------------------- executors in other JVMs
CLUSTER_SCRIPT = """
import json
import sys
from datetime import date
from pyspark.sql import SparkSession
from jobs.common.lake import Lake

spark = (SparkSession.builder.master("local-cluster[2,1,1024]").appName("lake-cluster-test")
         .config("spark.ui.enabled", "false").config("spark.executor.memory", "512m")
         .config("spark.sql.session.timeZone", "UTC").getOrCreate())
lake = Lake(spark, sys.argv[1])
rows = [(i, f"C{i % 5}", date(2026, 10, 1 + i % 3)) for i in range(60)]
frame = spark.createDataFrame(rows, "txn_id long, customer_id string, batch_date date").repartition(4)
lake.append(frame, "silver.transactions", partition_by=["batch_date"])
lake.replace_partitions(frame.where("batch_date = date'2026-10-02'").withColumn("txn_id", frame.txn_id + 1000),
                        "silver.transactions", [("batch_date", "=", date(2026, 10, 2))])
executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1
got = sorted([r.txn_id, r.customer_id, r.batch_date.isoformat()] for r in lake.read("silver.transactions").collect())
print("EXECUTORS", executors)
print("ROWS", json.dumps(got))
spark.stop()
"""


def test_lake_when_executors_run_in_separate_jvms_round_trips(tmp_path):
    pyspark_home = Path(__import__("pyspark").__file__).parent
    # A SPARK_HOME of links into the pyspark package: executors find the jars there, and the workers'
    # scratch folder (<SPARK_HOME>/work) lands in tmp_path instead of inside the installed package.
    spark_home = tmp_path / "spark_home"
    spark_home.mkdir()
    for part in ("bin", "jars", "python"):
        (spark_home / part).symlink_to(pyspark_home / part)
    env = {**os.environ, "SPARK_HOME": str(spark_home), "PYSPARK_PYTHON": sys.executable,
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    done = subprocess.run([sys.executable, "-c", CLUSTER_SCRIPT, str(tmp_path / "lake")], env=env,
                          capture_output=True, text=True, timeout=900)

    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.startswith(("EXECUTORS", "ROWS")))
    assert int(lines["EXECUTORS"]) == 2
    expected = sorted([i + 1000 if i % 3 == 1 else i, f"C{i % 5}", date(2026, 10, 1 + i % 3)] for i in range(60))
    assert json.loads(lines["ROWS"]) == [[i, c, d.isoformat()] for i, c, d in expected]
    table = DeltaTable(str(tmp_path / "lake" / "silver" / "transactions"))
    assert sorted(list(r.values()) for r in table.to_pyarrow_table().to_pylist()) == expected
    assert json.loads(table.history(1)[0]["operationParameters"]["partitionBy"]) == ["batch_date"]
