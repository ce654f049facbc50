"""Customer baskets: one row per customer with the sorted, distinct items describing them at a date.

Items are `prod:<product_type>` for product types held and `attr:<name>=<value>` for attributes. The
functions only transform DataFrames; the nightly job, the bank-marketing check and the benchmark all
build their baskets with them.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.apriori.settings import AttributeItem

PRODUCT_PREFIX = "prod:"
ATTRIBUTE_PREFIX = "attr:"


def product_item(product_type: Column) -> Column:
    return F.concat(F.lit(PRODUCT_PREFIX), product_type)


def held_product_items(holdings: DataFrame, products: DataFrame, as_of: date) -> DataFrame:
    """(customer_id, item) for each product type held at `as_of`: started on or before, not yet ended."""
    day = F.lit(as_of).cast("date")
    held = holdings.where((F.col("start_date") <= day)
                          & (F.col("end_date").isNull() | (F.col("end_date") > day)))
    return (held.join(products.select("product_id", "product_type"), "product_id")
            .select("customer_id", product_item(F.col("product_type")).alias("item")))


def _band_value(column: Column, attribute: AttributeItem) -> Column:
    value = F.lit(None).cast("string")
    for band in reversed(attribute.bands or []):
        inside = F.lit(True)
        if band.min is not None:
            inside = inside & (column >= band.min)
        if band.max is not None:
            inside = inside & (column < band.max)
        value = F.when(inside, F.lit(band.label)).otherwise(value)
    return value


def attribute_value(frame: DataFrame, attribute: AttributeItem) -> Column:
    """The attribute's item value: its band label, or the trimmed value itself when it has no bands."""
    column = frame[attribute.column]
    if attribute.bands is None:
        return F.trim(column.cast("string"))
    return _band_value(column, attribute)


def attribute_items(frame: DataFrame, attributes: Sequence[AttributeItem]) -> DataFrame:
    """(customer_id, item) `attr:<name>=<value>` per attribute of each row; null or empty values give none."""
    missing = [a.column for a in attributes if a.column not in frame.columns]
    if missing:
        raise KeyError(f"attribute columns not in the frame: {', '.join(missing)}")
    items = [F.concat(F.lit(f"{ATTRIBUTE_PREFIX}{a.name}="), attribute_value(frame, a)) for a in attributes]
    return (frame.select("customer_id", F.explode(F.array(*items)).alias("item"))
            .where(F.col("item").isNotNull() & ~F.col("item").endswith("=")))


def segment_items(segments: DataFrame, item_name: str) -> DataFrame:
    """(customer_id, item) `attr:<item_name>=<segment_label>` from gold.customer_segments rows."""
    return (segments.where(F.col("segment_label").isNotNull())
            .select("customer_id",
                    F.concat(F.lit(f"{ATTRIBUTE_PREFIX}{item_name}="), F.col("segment_label")).alias("item")))


def assemble_baskets(customers: DataFrame, *item_frames: DataFrame) -> DataFrame:
    """(customer_id, items): the customers' items, distinct and sorted; customers without items have none."""
    items = reduce(DataFrame.unionByName, item_frames)
    return (items.join(customers.select("customer_id").distinct(), "customer_id", "left_semi")
            .groupBy("customer_id")
            .agg(F.array_sort(F.collect_set("item")).alias("items")))
