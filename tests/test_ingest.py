"""Ingest: landing batches -> bronze, on small handmade landing folders (every format, bad deliveries)."""
from __future__ import annotations

import logging
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from test_ingest_fixtures import product, small_bank, txn, write_bank, write_batch

from jobs.common.config import load_settings
from jobs.common.context import RunContext
from jobs.common.contract import load_contract
from jobs.common.errors import InputError
from jobs.ingest.job import run as ingest

DAY = date(2026, 3, 1)
D = DAY.isoformat()


def only_sources(tmp_path, *required: str, **extra_env: str):
    """Settings where only `required` sources must be delivered (the rest optional)."""
    env = {"CRM_LAKE__ROOT": str(tmp_path / "lake"), "CRM_LANDING__ROOT": str(tmp_path / "landing"),
           **{f"CRM_INGEST__SOURCE_REQUIRED__{name.upper()}": str(name in required).lower()
              for name in load_contract()}, **extra_env}
    return load_settings(env=env)


def bronze_values(lake, table: str, columns: list[str]) -> list[tuple]:
    return sorted(tuple(r) for r in lake.read(table).select(*columns).collect())


def test_ingest_every_format_in_one_batch_lands_every_row_as_delivered(spark, tmp_path):
    settings = only_sources(tmp_path, "transactions")
    landing = tmp_path / "landing"
    write_batch(landing, "transactions", D, {
        "a.csv": [txn("T1", "A1", "C1", f"{D}T09:00:00", amount="10.50")],
        "b.csv.gz": [txn("T2", "A1", "C1", f"{D}T09:01:00", amount=" 20 ", channel=" Mobile ")],
        "c.jsonl": [txn("T3", "A1", "C1", f"{D}T09:02:00", amount="30")],
        "d.jsonl.gz": [txn("T4", "A1", "C1", f"{D}T09:03:00", amount="40", counterparty='He said "hi", ok')],
    })
    # A typed Parquet export: numbers and a zone-less timestamp, rendered as text in bronze.
    typed = pa.table({"TXN_ID": ["T5"], "account_id": ["A1"], "customer_id": ["C1"],
                      "txn_ts": pa.array([datetime(2026, 3, 1, 9, 4)], pa.timestamp("us")),
                      "amount": [50.25], "direction": ["debit"], "currency": ["CNY"], "txn_type": ["fee"],
                      "balance_after": pa.array([7], pa.int64())})
    pq.write_table(typed, landing / "transactions" / f"dt={D}" / "e.parquet")
    ctx = RunContext(settings, DAY, spark_session=spark)

    written = ingest(ctx)

    assert written == {"bronze.transactions": 5, "ops.landing_files": 5}
    assert bronze_values(ctx.lake, "bronze.transactions",
                         ["txn_id", "amount", "txn_ts", "channel", "counterparty", "balance_after"]) == [
        ("T1", "10.50", f"{D}T09:00:00", "mobile", "Shop", "900.00"),
        ("T2", " 20 ", f"{D}T09:01:00", " Mobile ", "Shop", "900.00"),
        ("T3", "30", f"{D}T09:02:00", "mobile", "Shop", "900.00"),
        ("T4", "40", f"{D}T09:03:00", "mobile", 'He said "hi", ok', "900.00"),
        ("T5", "50.25", f"{D} 09:04:00", None, None, "7"),
    ]
    lineage = ctx.lake.read("bronze.transactions").select("txn_id", "batch_date", "source_file", "run_id")
    assert sorted(tuple(r) for r in lineage.collect()) == [
        (f"T{i}", DAY, f"transactions/dt={D}/{name}", ctx.run_id)
        for i, name in enumerate(["a.csv", "b.csv.gz", "c.jsonl", "d.jsonl.gz", "e.parquet"], start=1)]
    assert set(ctx.lake.schema("bronze.transactions").fieldNames()) == {
        *load_contract()["transactions"].field_names, "batch_date", "source_file", "ingested_at", "run_id"}
    files = ctx.lake.read("ops.landing_files").select("source_file", "file_format", "rows").collect()
    assert sorted(tuple(r) for r in files) == [
        (f"transactions/dt={D}/a.csv", "csv", 1), (f"transactions/dt={D}/b.csv.gz", "csv.gz", 1),
        (f"transactions/dt={D}/c.jsonl", "jsonl", 1), (f"transactions/dt={D}/d.jsonl.gz", "jsonl.gz", 1),
        (f"transactions/dt={D}/e.parquet", "parquet", 1)]


def test_ingest_small_bank_every_source_in_its_format_lands_every_row(spark, settings):
    bank = small_bank(D)
    write_bank(Path(settings.landing.root), D, bank)
    ctx = RunContext(settings, DAY, spark_session=spark)

    written = ingest(ctx)

    expected = {f"bronze.{s}": sum(len(rows) for rows in files.values()) for s, files in bank.items()}
    assert written == {**expected, "ops.landing_files": sum(len(files) for files in bank.values())}
    assert {t: ctx.lake.row_count(t) for t in expected} == expected


def test_ingest_missing_required_column_fails_naming_file_and_column(spark, tmp_path):
    settings = only_sources(tmp_path, "products", "transactions")
    landing = tmp_path / "landing"
    write_batch(landing, "products", D, {"catalog.csv": [product("P1")]},
                columns=["product_id", "product_name", "product_type", "active"])   # risk_level missing
    write_batch(landing, "transactions", D, {"t.csv": [txn("T1", "A1", "C1", f"{D}T09:00:00")]})
    ctx = RunContext(settings, DAY, spark_session=spark)

    with pytest.raises(InputError) as failure:
        ingest(ctx)

    message = str(failure.value)
    assert f"products/dt={D}/catalog.csv" in message
    assert "required column 'risk_level'" in message
    assert failure.value.exit_code == 2
    # The failing source fails alone: the complete one is in bronze and its file is reported.
    assert ctx.lake.row_count("bronze.transactions") == 1
    assert not ctx.lake.exists("bronze.products")
    assert [(r["source"], r["source_file"], r["rows"]) for r in ctx.lake.read("ops.landing_files").collect()] == [
        ("transactions", f"transactions/dt={D}/t.csv", 1)]


def test_ingest_extra_column_kept_and_reported_then_null_in_a_later_batch(spark, tmp_path, caplog):
    settings = only_sources(tmp_path, "products")
    landing = tmp_path / "landing"
    write_batch(landing, "products", D, {"p.jsonl": [product("P1", legacy_code="X7")]})
    write_batch(landing, "products", "2026-03-02", {"p.csv": [product("P1")]})

    with caplog.at_level(logging.WARNING, logger="crm.ingest"):
        ingest(RunContext(settings, DAY, spark_session=spark))
    ctx = RunContext(settings, date(2026, 3, 2), spark_session=spark)
    ingest(ctx)

    assert bronze_values(ctx.lake, "bronze.products", ["batch_date", "legacy_code"]) == [
        (DAY, "X7"), (date(2026, 3, 2), None)]
    reported = ctx.lake.read("ops.landing_files").select("batch_date", "extra_columns").collect()
    assert sorted(tuple(r) for r in reported) == [(DAY, ["legacy_code"]), (date(2026, 3, 2), [])]
    assert "legacy_code" in caplog.text


def test_ingest_missing_required_source_stops_with_a_clear_message(spark, tmp_path):
    settings = only_sources(tmp_path, "customers", "products")
    write_batch(tmp_path / "landing", "products", D, {"p.jsonl": [product("P1")]})
    (tmp_path / "landing" / "customers" / f"dt={D}").mkdir(parents=True)   # no _READY yet

    with pytest.raises(InputError) as failure:
        ingest(RunContext(settings, DAY, spark_session=spark))

    assert "required source customers has no complete batch for 2026-03-01" in str(failure.value)
    assert "_READY" in str(failure.value)
    assert "products" not in str(failure.value)


def test_ingest_missing_optional_source_is_skipped_and_logged(spark, tmp_path, caplog):
    settings = only_sources(tmp_path, "products")
    write_batch(tmp_path / "landing", "products", D, {"p.jsonl": [product("P1")]})
    write_batch(tmp_path / "landing", "loans", D, {"l.jsonl": []}, ready=False)

    with caplog.at_level(logging.WARNING, logger="crm.ingest"):
        written = ingest(RunContext(settings, DAY, spark_session=spark))

    assert written == {"bronze.products": 1, "ops.landing_files": 1}
    assert "optional source loans skipped" in caplog.text
    assert "optional source app_events skipped" in caplog.text


def test_ingest_contract_decides_which_sources_are_required(tmp_path):
    conf = load_settings(env={"CRM_LAKE__ROOT": str(tmp_path)}).job("ingest")
    overridden = load_settings(env={"CRM_INGEST__SOURCE_REQUIRED__LOANS": "true"}).job("ingest")

    assert [conf.is_required(s) for s in ("customers", "transactions", "loans", "app_events")] == [
        True, True, False, False]
    assert overridden.is_required("loans")


def test_ingest_rerun_replaces_the_batch_without_duplicates(spark, tmp_path):
    settings = only_sources(tmp_path, "transactions")
    landing = tmp_path / "landing"
    rows = [txn(f"T{i}", "A1", "C1", f"{D}T09:00:00") for i in range(4)]
    folder = write_batch(landing, "transactions", D, {"a.csv": rows[:3], "b.jsonl": rows[3:]})
    write_batch(landing, "transactions", "2026-03-02", {"a.csv": rows[:1]})
    ingest(RunContext(settings, date(2026, 3, 2), spark_session=spark))
    ctx = RunContext(settings, DAY, spark_session=spark)
    ingest(ctx)
    first = ctx.lake.read("bronze.transactions").drop("ingested_at", "run_id")

    ingest(RunContext(settings, DAY, spark_session=spark))
    again = ctx.lake.read("bronze.transactions").drop("ingested_at", "run_id")
    (folder / "b.jsonl").unlink()      # the source re-delivers D without the second file
    ingest(RunContext(settings, DAY, spark_session=spark))

    assert_df_equality(again, first, ignore_row_order=True)
    assert first.count() == 5
    counts = {r["batch_date"]: r["count"] for r in
              ctx.lake.read("bronze.transactions").groupBy("batch_date").count().collect()}
    assert counts == {DAY: 3, date(2026, 3, 2): 1}
    reported = sorted((r["batch_date"], r["source_file"], r["rows"])
                      for r in ctx.lake.read("ops.landing_files").collect())
    assert reported == [(DAY, f"transactions/dt={D}/a.csv", 3),
                        (date(2026, 3, 2), "transactions/dt=2026-03-02/a.csv", 1)]


def test_ingest_file_of_an_unknown_type_fails_naming_it(spark, tmp_path):
    settings = only_sources(tmp_path, "products")
    folder = write_batch(tmp_path / "landing", "products", D, {"p.jsonl": [product("P1")]})
    (folder / "p.xlsx").write_bytes(b"PK")

    with pytest.raises(InputError, match=f"products/dt={D}/p.xlsx: not a landing file format"):
        ingest(RunContext(settings, DAY, spark_session=spark))


def test_ingest_empty_files_give_an_empty_batch(spark, tmp_path):
    settings = only_sources(tmp_path, "products")
    folder = write_batch(tmp_path / "landing", "products", D, {"p.jsonl": [], "q.csv": []})
    ctx = RunContext(settings, DAY, spark_session=spark)

    written = ingest(ctx)

    assert written == {"bronze.products": 0, "ops.landing_files": 2}
    assert ctx.lake.read("bronze.products").where(F.col("batch_date") == DAY).count() == 0
    assert (folder / "q.csv").read_text().startswith("product_id,")
