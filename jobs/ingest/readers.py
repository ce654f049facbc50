"""Read one landing file into a DataFrame of strings, values as delivered, column names normalised."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.common.errors import InputError
from jobs.ingest.landing import LandingFile, csv_header


def normalise_names(names: list[str], file: LandingFile) -> list[str]:
    """Field names are matched trimmed and lower-cased; two columns becoming one name is an error."""
    normalised = [name.strip().lower() for name in names]
    seen: set[str] = set()
    for original, name in zip(names, normalised, strict=True):
        if not name:
            raise InputError(f"{file.name}: a column has an empty name")
        if name in seen:
            raise InputError(f"{file.name}: column {original!r} appears twice")
        seen.add(name)
    return normalised


def _as_text(field: T.StructField) -> Column:
    column = F.col(f"`{field.name}`")
    if isinstance(field.dataType, T.TimestampType):
        # An instant: keep its offset so clean does not read it as the bank's local time.
        return F.date_format(column, "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX")
    if isinstance(field.dataType, (T.StructType, T.ArrayType, T.MapType)):
        return F.to_json(column)
    return column.cast("string")


def read_landing_file(spark: SparkSession, file: LandingFile, csv_multiline: bool) -> DataFrame:
    """Every column as STRING. CSV headers are read here so no inference pass runs over CSV data."""
    if file.format in ("csv", "csv.gz"):
        names = normalise_names(csv_header(file), file)
        schema = T.StructType([T.StructField(name, T.StringType()) for name in names])
        return (spark.read.schema(schema)
                .option("header", True).option("enforceSchema", True)
                .option("multiLine", csv_multiline)
                .option("escape", '"')          # RFC 4180: a quote inside quotes is doubled
                .option("mode", "PERMISSIVE")
                .csv(file.location))
    if file.format in ("jsonl", "jsonl.gz"):
        frame = spark.read.option("primitivesAsString", True).option("mode", "PERMISSIVE").json(file.location)
    else:
        frame = spark.read.parquet(file.location)
    names = normalise_names(frame.columns, file)
    return frame.select(*[_as_text(field).alias(name) for field, name in zip(frame.schema.fields, names,
                                                                           strict=True)])
