"""Analysts reach the same Delta tables through the CLI's Spark SQL and without Spark."""
from __future__ import annotations

import pytest

from jobs.analyst import bind_tables, query, table_catalogue, write_result
from jobs.common.errors import InputError


def test_sql_when_table_named_layer_dot_table_counts_like_delta_rs(pipeline_run):
    _, lake, _, business_date = pipeline_run
    from deltalake import DeltaTable

    by_band = {r["risk_band"]: r["n"] for r in query(
        lake, "SELECT risk_band, count(*) AS n FROM gold.churn_scores GROUP BY risk_band").collect()}
    scores = DeltaTable(lake.path("gold.churn_scores")).to_pandas()
    assert by_band == scores.groupby("risk_band").size().to_dict()


def test_bind_tables_when_name_is_not_a_lake_table_leaves_it_alone(pipeline_run):
    _, lake, _, _ = pipeline_run
    statement = "SELECT s.customer_id FROM gold.customer_segments s WHERE s.segment_id = 1"
    assert bind_tables(lake, statement) == (
        "SELECT s.customer_id FROM gold__customer_segments s WHERE s.segment_id = 1")


def test_sql_when_table_is_unknown_raises_input_error_with_hint(pipeline_run):
    _, lake, _, _ = pipeline_run
    with pytest.raises(InputError, match="SQL error"):
        query(lake, "SELECT * FROM gold.no_such_table")


def test_sql_out_when_csv_writes_every_row(pipeline_run, tmp_path):
    _, lake, _, _ = pipeline_run
    out = write_result(query(lake, "SELECT customer_id FROM gold.customer_features"), tmp_path / "ids.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "customer_id"
    assert len(lines) - 1 == lake.read("gold.customer_features").count()


def test_tables_when_listed_match_row_counts_of_each_table(pipeline_run):
    _, lake, _, _ = pipeline_run
    catalogue = {row["table"]: row for row in table_catalogue(lake)}
    assert {"silver.transactions", "gold.customer_features", "gold.churn_scores"} <= set(catalogue)
    assert catalogue["silver.transactions"]["rows"] == lake.read("silver.transactions").count()


def test_duckdb_and_polars_when_reading_a_gold_table_without_spark_see_the_same_rows(pipeline_run):
    _, lake, _, _ = pipeline_run
    duckdb = pytest.importorskip("duckdb")
    polars = pytest.importorskip("polars")
    path = lake.path("gold.customer_features")
    expected = lake.read("gold.customer_features").count()
    connection = duckdb.connect()
    try:
        connection.execute("INSTALL delta; LOAD delta;")
        assert connection.execute(f"SELECT count(*) FROM delta_scan('{path}')").fetchone()[0] == expected
    except duckdb.Error as exc:  # the delta extension is downloaded; without network read the snapshot's files
        from deltalake import DeltaTable

        files = DeltaTable(path).file_uris()
        assert connection.execute(f"SELECT count(*) FROM read_parquet({files!r})").fetchone()[0] == expected, exc
    assert polars.read_delta(path).height == expected
