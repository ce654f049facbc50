"""Rules that need other rows: references to silver tables, duplicate keys, latest version per key."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.clean.parse import FAIL, RAW, fail_column, text_value
from jobs.common.contract import SourceSpec


def _passes_every_rule(frame: DataFrame) -> Column:
    flags = [F.col(c) for c in frame.columns if c.startswith(FAIL)]
    return ~F.greatest(*flags, F.lit(False))


def _or_flag(frame: DataFrame, reason: str, condition: Column) -> DataFrame:
    name = fail_column(reason)
    current = F.col(name) if name in frame.columns else F.lit(False)
    return frame.withColumn(name, current | F.coalesce(condition, F.lit(False)))


def flag_orphans(references: dict[str, tuple[DataFrame, str]]):
    """references: field -> (keys of the referenced table, one row per key, in column `key`; reason).

    A non-null value that is not a key of the referenced table fails the reason's rule. The value is the
    field's trimmed text in `raw`: references are plain text fields, whose typed value that is, so the
    lookups can run before the typing (and before `cluster_by_key` orders the rows).
    """
    def apply(frame: DataFrame) -> DataFrame:
        for field, (keys, reason) in references.items():
            key, found = f"_ref_key_{field}", f"_ref_found_{field}"
            value = text_value(field)
            lookup = keys.select(F.col("key").alias(key), F.lit(True).alias(found))
            frame = frame.join(lookup, value == F.col(key), "left")
            frame = _or_flag(frame, reason, value.isNotNull() & F.col(found).isNull())
            frame = frame.drop(key, found)
        return frame
    return apply


def cluster_by_key(spec: SourceSpec, text_fields: list[str]):
    """Rows hash-partitioned by the key fields whose typed value is their trimmed text (`text_fields`),
    so that all rows of a key share a partition before they are typed; when every key field is one,
    also sorted inside the partition in the order `flag_duplicates` reads them.

    Spark follows the partitioning and the order through the typing's projections to the typed key, so
    ranking duplicates shuffles and sorts nothing more: the rows moved and sorted are the delivered
    strings, not the typed rows with their raw values beside them. Spark checks both against the rank's
    own, so other fields (or none) would cost the rank its own shuffle or sort, never a wrong result.
    Apply it after the joins of `flag_orphans`: Spark drops a sort below a join.
    """
    def apply(frame: DataFrame) -> DataFrame:
        keys = [text_value(name) for name in spec.key if name in text_fields]
        if not keys:
            return frame
        clustered = frame.repartition(*keys)
        if len(keys) == len(spec.key):
            clustered = clustered.sortWithinPartitions(*keys, "source_file", RAW)
        return clustered
    return apply


def flag_duplicates(spec: SourceSpec, earlier_keys: DataFrame):
    """duplicate_key for every repeat of a key among rows that pass every other rule.

    The first occurrence wins: a key already in silver from an earlier batch (`earlier_keys`) beats
    this batch; inside the batch the order is source file, then the raw values (deterministic, and
    exact re-sends are interchangeable). Rows failing another rule neither win nor lose here: a row
    repeats its key when an earlier row of the key in that order passed the other rules.
    The earlier keys are joined after the ranking, which keeps the order `cluster_by_key` gave the rows.
    """
    key = list(spec.key)

    def apply(frame: DataFrame) -> DataFrame:
        earlier = earlier_keys.select(*key).distinct().withColumn("_earlier", F.lit(True))
        up_to_this_row = (Window.partitionBy(*key).orderBy(F.col("source_file").asc(), F.col(RAW).asc())
                          .rowsBetween(Window.unboundedPreceding, Window.currentRow))
        ranked = (frame.withColumn("_candidate", _passes_every_rule(frame))
                  .withColumn("_candidates", F.count_if(F.col("_candidate")).over(up_to_this_row))
                  .join(earlier, key, "left"))
        repeated = F.col("_candidate") & (F.col("_earlier").isNotNull() | (F.col("_candidates") > 1))
        return _or_flag(ranked, "duplicate_key", repeated).drop("_candidate", "_earlier", "_candidates")
    return apply


def latest_per_key(spec: SourceSpec):
    """One row per key: the latest `order_by`, then the later batch; inside one batch the source file
    and then the raw values break ties (when the frame still has them), so the choice is deterministic.
    """
    def apply(frame: DataFrame) -> DataFrame:
        order = [F.col(spec.order_by).desc_nulls_last()] if spec.order_by else []
        order.append(F.col("batch_date").desc())
        order += [F.col(c).desc_nulls_last() for c in ("source_file", RAW) if c in frame.columns]
        window = Window.partitionBy(*spec.key).orderBy(*order)
        return (frame.withColumn("_rank", F.row_number().over(window))
                .where(F.col("_rank") == 1).drop("_rank"))
    return apply
