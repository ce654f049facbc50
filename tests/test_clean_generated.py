"""Ingest and clean on the generator's dirty data, in the shared nightly pipeline run (`pipeline_run`).

The generator adds EXTRA rows with exactly one defect each and writes their counts to dirty_counts.json
beside the landing zone (its truth, independent of the clean job). Re-sent transactions across batch
dates are covered by the handmade two-batch scenario in test_clean.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.csv as pacsv
from pyspark.sql import functions as F

from jobs.common.contract import load_contract

PII_FIELDS = ("full_name", "id_number", "phone", "email")


def quarantine_counts(lake) -> dict[str, dict[str, int]]:
    return {source: {r["reason"]: r["count"] for r in
                     lake.read(f"quarantine.{source}").groupBy("reason").count().collect()}
            for source in load_contract()}


def delivered_pii(landing: Path) -> set[str]:
    """Every identity value the generator delivered, as written in the landing files."""
    values: set[str] = set()
    for path in landing.glob("customers/dt=*/*.csv*"):
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={f: "string" for f in PII_FIELDS}))
        for field in PII_FIELDS:
            values |= {v for v in table.column(field).to_pylist() if v}
    return values


def pii_cells(lake, tables: list[str], values: set[str]) -> dict[str, int]:
    """Cells equal to one of `values`, per table, over every column cast to text."""
    wanted = lake.spark.createDataFrame([(v,) for v in sorted(values)], "value string")
    found = {}
    for table in tables:
        frame = lake.read(table)
        cells = frame.select(F.explode(F.array(*[F.col(c).cast("string") for c in frame.columns]))
                             .alias("value"))
        found[table] = cells.join(wanted, "value").count()
    return found


def test_pipeline_every_source_and_batch_reconciles(pipeline_run):
    _, lake, _, day = pipeline_run
    batches = [day.isoformat()]

    audit = lake.read("ops.batch_audit").collect()

    assert {(r["source"], r["batch_date"].isoformat()) for r in audit} == {
        (s, b) for s in load_contract() for b in batches}
    assert all(r["balanced"] for r in audit)
    assert all(r["rows_in"] == r["rows_to_silver"] + r["rows_quarantined"] + r["duplicates_dropped"]
               for r in audit)
    bronze = {(r["source"], r["batch_date"]): r["rows_in"] for r in audit}
    for source in load_contract():
        counts = {r["batch_date"]: r["count"] for r in
                  lake.read(f"bronze.{source}").groupBy("batch_date").count().collect()}
        assert {(source, d): n for d, n in counts.items()} == {
            k: v for k, v in bronze.items() if k[0] == source and v}


def test_pipeline_extra_columns_reported_as_the_generator_wrote_them(pipeline_run):
    _, lake, truth_dir, _ = pipeline_run
    truth = json.loads((truth_dir / "dirty_counts.json").read_text())

    reported = {}
    for row in lake.read("ops.landing_files").where(F.size("extra_columns") > 0).collect():
        reported.setdefault(row["source"], set()).update(row["extra_columns"])

    assert reported == {s: set(cols) for s, cols in truth["extra_columns"].items()}


def test_pipeline_pii_absent_from_silver_and_gold_tables(pipeline_run):
    """The shared nightly run (every stage): no table downstream of clean carries a raw PII value."""
    settings, lake, _, _ = pipeline_run
    landing = Path(settings.landing.root)
    values = delivered_pii(landing)
    values |= {r[f] for r in lake.read("silver.customer_pii").collect() for f in PII_FIELDS if r[f]}
    tables = [t for t in lake.tables() if t.startswith(("silver.", "gold.")) and t != "silver.customer_pii"]

    found = pii_cells(lake, tables, values)

    assert any(t.startswith("gold.") for t in tables)
    assert found == {t: 0 for t in tables}


def test_pipeline_quarantine_equals_the_injected_rows(pipeline_run):
    _, lake, truth_dir, _ = pipeline_run
    truth = json.loads((truth_dir / "dirty_counts.json").read_text())

    assert sum(truth["transactions"].values()) > 0
    assert quarantine_counts(lake) == {source: truth.get(source, {}) for source in load_contract()}
