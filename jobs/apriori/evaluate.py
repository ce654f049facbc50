"""Offline evaluation of the cross-sell candidates against a most-popular-product baseline.

Each customer holding at least one product has one of them hidden (the product item with the smallest
seeded hash, so the choice is reproducible); rules are mined on the remaining baskets exactly as in the
nightly run and the top-k candidates are compared with the hidden product. With one relevant item per
customer and n customers evaluated:

- precision@k = hits / (k * n)   (a list shorter than k still counts k slots)
- recall@k    = hits / n         (the hit rate)
- F1@k        = 2 * precision * recall / (precision + recall)
- coverage@k  = distinct products recommended in the top k / products in the catalogue (products held
  by anyone)
- diversity@k = entropy of the distribution of the top-k recommendations over products / log(catalogue
  size): 0 when everybody is offered the same product, 1 when every product is offered equally often.

The baseline offers every customer the products most held in the training baskets that they do not hold.
"""
from __future__ import annotations

import math
from collections import defaultdict

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.apriori.baskets import PRODUCT_PREFIX, product_item
from jobs.apriori.cross_sell import cross_sell_candidates
from jobs.apriori.rules import mine
from jobs.apriori.settings import AprioriSettings


def _is_product(item: Column) -> Column:
    return item.startswith(PRODUCT_PREFIX)


def hold_out(baskets: DataFrame, seed: int) -> tuple[DataFrame, DataFrame]:
    """(training baskets, hidden (customer_id, item)): one product item hidden per basket that has one."""
    keyed = F.transform(F.filter("items", _is_product),
                        lambda item: F.struct(F.xxhash64("customer_id", item, F.lit(seed)).alias("h"),
                                              item.alias("item")))
    chosen = baskets.withColumn("hidden", F.array_min(keyed)["item"])
    training = chosen.select("customer_id", F.when(F.col("hidden").isNull(), F.col("items"))
                             .otherwise(F.array_remove("items", F.col("hidden"))).alias("items"))
    hidden = chosen.where(F.col("hidden").isNotNull()).select("customer_id", F.col("hidden").alias("item"))
    return training, hidden


def most_popular(training: DataFrame, customers: DataFrame, top_n: int) -> DataFrame:
    """(customer_id, item, rank): the `top_n` most held products a customer does not hold yet."""
    popularity = (training.select(F.explode("items").alias("item")).where(_is_product(F.col("item")))
                  .groupBy("item").count())
    by_popularity = Window.partitionBy("customer_id").orderBy(F.desc("count"), F.asc("item"))
    return (training.join(customers.select("customer_id"), "customer_id", "left_semi")
            .crossJoin(F.broadcast(popularity))
            .where(~F.array_contains("items", F.col("item")))
            .withColumn("rank", F.row_number().over(by_popularity))
            .where(F.col("rank") <= top_n)
            .select("customer_id", "item", "rank"))


def ranking_metrics(recommendations: DataFrame, hidden: DataFrame, ks: list[int],
                    catalogue_size: int) -> dict[str, float]:
    """precision/recall/F1/coverage/diversity at each k of (customer_id, item, rank) against `hidden`."""
    customers = hidden.count()
    cells = (recommendations.where(F.col("rank") <= max(ks))
             .join(hidden.withColumn("hit", F.lit(1)), ["customer_id", "item"], "left")
             .groupBy("rank", "item").agg(F.count("*").alias("offers"), F.sum("hit").alias("hits"))
             .collect())
    metrics: dict[str, float] = {}
    for k in ks:
        offers: dict[str, int] = defaultdict(int)
        hits = 0
        for row in cells:
            if row["rank"] <= k:
                offers[row["item"]] += row["offers"]
                hits += row["hits"] or 0
        precision = hits / (k * customers) if customers else 0.0
        recall = hits / customers if customers else 0.0
        total = sum(offers.values())
        entropy = -sum(c / total * math.log(c / total) for c in offers.values()) if total else 0.0
        metrics.update({
            f"precision_at_{k}": precision,
            f"recall_at_{k}": recall,
            f"f1_at_{k}": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            f"coverage_at_{k}": len(offers) / catalogue_size if catalogue_size else 0.0,
            f"diversity_at_{k}": entropy / math.log(catalogue_size) if catalogue_size > 1 else 0.0,
        })
    return metrics


def evaluate(baskets: DataFrame, settings: AprioriSettings) -> dict[str, float]:
    """Hold out, mine, recommend and score rules and baseline: {rules_<metric>_at_<k>, baseline_..., ...}."""
    evaluation, cross_sell = settings.evaluation, settings.cross_sell
    ks = sorted(set(evaluation.k))
    training, hidden = hold_out(baskets, evaluation.seed)
    training = training.persist()
    hidden = hidden.persist()
    try:
        mining = mine(training, settings.min_support, settings.min_confidence,
                      settings.max_estimated_itemsets, settings.num_partitions)
        try:
            candidates = (cross_sell_candidates(training, mining.rules, max(ks), cross_sell.min_lift,
                                                cross_sell.lift_weight)
                          .select("customer_id", product_item(F.col("product_type")).alias("item"), "rank"))
            catalogue_size = (baskets.select(F.explode("items").alias("item"))
                              .where(_is_product(F.col("item"))).distinct().count())
            metrics = {"customers_evaluated": float(hidden.count()),
                       "catalogue_size": float(catalogue_size),
                       "rules_mined": float(mining.rules.count())}
            for name, recommendations in (("rules", candidates),
                                          ("baseline", most_popular(training, hidden, max(ks)))):
                scores = ranking_metrics(recommendations, hidden, ks, catalogue_size)
                metrics.update({f"{name}_{key}": value for key, value in scores.items()})
            return metrics
        finally:
            mining.release()
    finally:
        training.unpersist()
        hidden.unpersist()
