"""gold.customer_tags, the label system shared by every job.

One row per customer, tag and as-of date: `customer_id`, `tag` (e.g. `age_band`, `segment`),
`value`, `source` (`statistical`, `rule` or `model`), `written_by` (the job), `as_of_date`. The table
is partitioned by (`as_of_date`, `written_by`) so each job replaces only its own tags for a date.
"""
from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.common.lake import Lake

TAGS_TABLE = "gold.customer_tags"
TAG_SOURCES = ("statistical", "rule", "model")


def tags_from_columns(frame: DataFrame, columns: dict[str, Column | str], source: str) -> DataFrame:
    """Melt `frame` (one row per customer) into tag rows: tag name -> column holding its value.

    Rows whose value is null carry no tag.
    """
    if source not in TAG_SOURCES:
        raise ValueError(f"tag source {source!r} is not one of {TAG_SOURCES}")
    pairs = [F.struct(F.lit(tag).alias("tag"), (F.col(c) if isinstance(c, str) else c)
                      .cast("string").alias("value")) for tag, c in columns.items()]
    return (frame.select("customer_id", F.explode(F.array(*pairs)).alias("t"))
            .select("customer_id", "t.tag", "t.value")
            .where(F.col("value").isNotNull())
            .withColumn("source", F.lit(source)))


def write_tags(lake: Lake, tags: DataFrame, written_by: str, as_of: date,
               run_id: str | None = None) -> int:
    """Replace this job's tags for `as_of` (idempotent rerun); returns the rows written."""
    rows = (tags.select("customer_id", "tag", "value", "source")
            .withColumn("written_by", F.lit(written_by))
            .withColumn("as_of_date", F.lit(as_of).cast("date")))
    result = lake.replace_partitions(
        rows, TAGS_TABLE,
        [("as_of_date", "=", as_of), ("written_by", "=", written_by)],
        partition_by=["as_of_date", "written_by"],
        metadata={"run_id": run_id or "", "job": written_by})
    return result.rows_added
