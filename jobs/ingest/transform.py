"""Pure steps from a landing file's string columns to bronze rows: contract columns, extras, lineage."""
from __future__ import annotations

from datetime import date, datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.common.contract import SourceSpec

LINEAGE_COLUMNS = ("batch_date", "source_file", "ingested_at", "run_id")


def missing_required(columns: list[str], spec: SourceSpec) -> list[str]:
    return [name for name in spec.required_fields if name not in columns]


def extra_columns(columns: list[str], spec: SourceSpec) -> list[str]:
    return sorted(set(columns) - set(spec.field_names))


def conform_to_contract(spec: SourceSpec):
    """Contract fields in contract order (an absent optional field is null), then extra columns."""
    def apply(frame: DataFrame) -> DataFrame:
        fields = [F.col(name) if name in frame.columns else F.lit(None).cast("string").alias(name)
                  for name in spec.field_names]
        return frame.select(*fields, *extra_columns(frame.columns, spec))
    return apply


def with_lineage(batch_date: date, source_file: str, ingested_at: datetime, run_id: str):
    def apply(frame: DataFrame) -> DataFrame:
        return frame.select(
            "*",
            F.lit(batch_date).alias("batch_date"),
            F.lit(source_file).alias("source_file"),
            F.lit(ingested_at).cast("timestamp").alias("ingested_at"),
            F.lit(run_id).alias("run_id"),
        )
    return apply


def align_to_table(table_columns: list[str]):
    """Columns the table has and this batch lacks (extras of earlier batches) become null strings."""
    def apply(frame: DataFrame) -> DataFrame:
        absent = [F.lit(None).cast("string").alias(c) for c in table_columns if c not in frame.columns]
        return frame.select("*", *absent)
    return apply
