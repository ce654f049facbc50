"""The `apriori` stage: baskets at the business date -> FP-growth -> rules, itemsets, cross-sell candidates.

Writes gold.frequent_itemsets, gold.association_rules and gold.cross_sell_candidates (the date's partition
replaced: reruns are idempotent), the `recommended_product` model tag (rank 1), and logs the offline
evaluation (rules against the most-popular baseline) to MLflow.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import mlflow
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.apriori.baskets import assemble_baskets, attribute_items, held_product_items, segment_items
from jobs.apriori.cross_sell import cross_sell_candidates
from jobs.apriori.evaluate import evaluate
from jobs.apriori.rules import Mining, mine
from jobs.apriori.settings import AprioriSettings
from jobs.common.context import RunContext
from jobs.common.errors import InputError
from jobs.common.lake import Lake, TableMissingError
from jobs.common.tags import tags_from_columns, write_tags
from jobs.common.tracking import use_tracking

log = logging.getLogger("crm.apriori")

ITEMSETS = "gold.frequent_itemsets"
RULES = "gold.association_rules"
CANDIDATES = "gold.cross_sell_candidates"
TOP_RULES_LOGGED = 50


def _read_as_of(lake: Lake, name: str, as_of: date) -> DataFrame:
    return lake.read(name, partition_filters=[("as_of_date", "=", as_of)])


def customer_baskets(lake: Lake, as_of: date, settings: AprioriSettings) -> DataFrame:
    """(customer_id, items) of every customer in gold.customer_features at `as_of`."""
    try:
        features = _read_as_of(lake, "gold.customer_features", as_of)
        holdings, products = lake.read("silver.holdings"), lake.read("silver.products")
    except TableMissingError as exc:
        raise InputError(f"apriori needs the features of {as_of}: {exc}",
                         hint="run the clean and features stages for this date first") from None
    if features.limit(1).count() == 0:
        raise InputError(f"gold.customer_features has no rows for {as_of}",
                         hint="run the features stage for this date first")
    frames = [held_product_items(holdings, products, as_of), attribute_items(features, settings.attributes)]
    if settings.segment_item and lake.exists("gold.customer_segments"):
        # Optional: segments join the baskets only when the segmentation ran for this date.
        frames.append(segment_items(_read_as_of(lake, "gold.customer_segments", as_of), settings.segment_item))
    return assemble_baskets(features, *frames)


def replace_as_of(lake: Lake, frame: DataFrame, name: str, as_of: date, run_id: str) -> int:
    dated = frame.withColumn("as_of_date", F.lit(as_of).cast("date"))
    result = lake.replace_partitions(dated, name, [("as_of_date", "=", as_of)], partition_by=["as_of_date"],
                                     metadata={"run_id": run_id, "job": "apriori"})
    return result.rows_added


def replace_all_as_of(lake: Lake, frames: dict[str, DataFrame], as_of: date, run_id: str) -> dict[str, int]:
    """`replace_as_of` for several tables side by side: {table: rows written}.

    Each write of these small tables is mostly waiting (a Spark job's scheduling, file moves, a Delta
    commit on the driver), so running them together overlaps the waits. Each commit stays atomic.
    """
    with ThreadPoolExecutor(max_workers=len(frames), thread_name_prefix="apriori-write") as pool:
        pending = {name: pool.submit(replace_as_of, lake, frame, name, as_of, run_id)
                   for name, frame in frames.items()}
    return {name: future.result() for name, future in pending.items()}


def _log_run(settings: AprioriSettings, ctx: RunContext, mining: Mining, written: dict[str, int],
             metrics: dict[str, float] | None) -> None:
    use_tracking(ctx.settings, "apriori")
    with mlflow.start_run(run_name=f"apriori {ctx.business_date}"):
        mlflow.set_tags({"business_date": ctx.business_date.isoformat(), "run_id": ctx.run_id})
        mlflow.log_params({"min_support": settings.min_support, "min_confidence": settings.min_confidence,
                           "top_n": settings.cross_sell.top_n, "min_lift": settings.cross_sell.min_lift,
                           "lift_weight": settings.cross_sell.lift_weight,
                           "evaluation_seed": settings.evaluation.seed,
                           "attributes": ",".join(a.name for a in settings.attributes)})
        mlflow.log_metrics({"baskets": float(mining.baskets),
                            **{f"rows_{name.split('.')[1]}": float(n) for name, n in written.items()},
                            **(metrics or {})})
        top = (mining.rules.orderBy(F.desc("lift"), F.desc("confidence")).limit(TOP_RULES_LOGGED)
               .withColumn("antecedent", F.array_join("antecedent", " & ")).toPandas())
        mlflow.log_table(top, artifact_file="top_rules_by_lift.json")


def run(ctx: RunContext) -> dict[str, int]:
    settings: AprioriSettings = ctx.settings.job("apriori")
    as_of, lake = ctx.business_date, ctx.lake
    baskets = customer_baskets(lake, as_of, settings).persist()
    try:
        mining = mine(baskets, settings.min_support, settings.min_confidence,
                      settings.max_estimated_itemsets, settings.num_partitions)
        try:
            cross_sell = settings.cross_sell
            candidates = cross_sell_candidates(baskets, mining.rules, cross_sell.top_n, cross_sell.min_lift,
                                               cross_sell.lift_weight).persist()
            written = replace_all_as_of(lake, {ITEMSETS: mining.itemsets, RULES: mining.rules,
                                               CANDIDATES: candidates}, as_of, ctx.run_id)
            tags = tags_from_columns(candidates.where(F.col("rank") == 1),
                                     {"recommended_product": "product_type"}, "model")
            written["gold.customer_tags"] = write_tags(lake, tags, "apriori", as_of, ctx.run_id)
            candidates.unpersist()
            metrics = evaluate(baskets, settings) if settings.evaluation.enabled else None
            _log_run(settings, ctx, mining, written, metrics)
            return written
        finally:
            mining.release()
    finally:
        baskets.unpersist()
