"""ops.batch_audit: for every source and batch, rows in = to silver + quarantined + duplicates dropped."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pyspark.sql import types as T

BATCH_AUDIT = "ops.batch_audit"
SCHEMA = T.StructType([
    T.StructField("batch_date", T.DateType()),
    T.StructField("source", T.StringType()),
    T.StructField("rows_in", T.LongType()),
    T.StructField("rows_to_silver", T.LongType()),
    T.StructField("rows_quarantined", T.LongType()),
    T.StructField("duplicates_dropped", T.LongType()),
    T.StructField("balanced", T.BooleanType()),
    T.StructField("run_id", T.StringType()),
])


@dataclass(frozen=True)
class BatchAudit:
    source: str
    batch_date: date
    rows_in: int
    rows_to_silver: int
    rows_quarantined: int
    duplicates_dropped: int

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.rows_to_silver + self.rows_quarantined + self.duplicates_dropped

    def row(self, run_id: str) -> tuple:
        return (self.batch_date, self.source, self.rows_in, self.rows_to_silver, self.rows_quarantined,
                self.duplicates_dropped, self.balanced, run_id)

    def describe(self) -> str:
        return (f"{self.source} batch {self.batch_date}: {self.rows_in} rows in, {self.rows_to_silver} "
                f"to silver + {self.rows_quarantined} quarantined + {self.duplicates_dropped} duplicates "
                f"dropped = {self.rows_to_silver + self.rows_quarantined + self.duplicates_dropped}")
