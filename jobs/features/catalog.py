"""The feature catalog (conf/feature_catalog.yaml): the one documented list of feature columns.

The built frame is conformed to it: exactly the documented columns, in catalog order, with the
documented types and literal fills applied. A built column that is not documented, or a documented one
that is not built, is an error, so the documentation cannot drift from the table.
"""
from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.common.errors import InputError
from jobs.features.settings import CatalogEntry

SPARK_TYPES: dict[str, T.DataType] = {
    "string": T.StringType(),
    "int": T.IntegerType(),
    "double": T.DoubleType(),
    "date": T.DateType(),
}


def _fill_literal(entry: CatalogEntry) -> object | None:
    """The fill as a value of the column's type, or None when the fill is computed (described in words)."""
    if entry.fill is None:
        return None
    if entry.type in ("int", "double"):
        try:
            return float(entry.fill)
        except ValueError:
            return None  # e.g. recency: "days since the first account opened", computed by the builder
    return entry.fill


def with_fills(frame: DataFrame, catalog: Sequence[CatalogEntry]) -> DataFrame:
    """Apply the documented literal fills to the catalog columns the frame already has."""
    fills = {entry.name: F.coalesce(F.col(entry.name), F.lit(_fill_literal(entry)).cast(SPARK_TYPES[entry.type]))
             for entry in catalog if entry.name in frame.columns and _fill_literal(entry) is not None}
    return frame.withColumns(fills)


def with_money_in_cents(frame: DataFrame, catalog: Sequence[CatalogEntry]) -> DataFrame:
    """Round the money features (unit CUR...) to cents.

    Sums of doubles differ in their last bits with summation order, so two runs of the same date could
    put a customer on either side of a tied percentile or rule threshold; cents make reruns identical.
    """
    money = {entry.name: F.round(entry.name, 2) for entry in catalog
             if entry.unit.startswith("CUR") and entry.name in frame.columns}
    return frame.withColumns(money)


def conform(frame: DataFrame, catalog: Sequence[CatalogEntry]) -> DataFrame:
    """Select the catalog's columns in its order, cast to its types and apply its literal fills."""
    documented = [entry.name for entry in catalog]
    undocumented = [c for c in frame.columns if c not in documented]
    missing = [c for c in documented if c not in frame.columns]
    if undocumented or missing:
        problems = []
        if undocumented:
            problems.append(f"built but not documented: {', '.join(undocumented)}")
        if missing:
            problems.append(f"documented but not built: {', '.join(missing)}")
        raise InputError("feature catalog (conf/feature_catalog.yaml) and built features differ: "
                         + "; ".join(problems),
                         hint="document every feature (name, definition, unit, type, fill) in the catalog")
    columns = []
    for entry in catalog:
        column = F.col(entry.name).cast(SPARK_TYPES[entry.type])
        fill = _fill_literal(entry)
        if fill is not None:
            column = F.coalesce(column, F.lit(fill).cast(SPARK_TYPES[entry.type]))
        columns.append(column.alias(entry.name))
    return frame.select(*columns)
