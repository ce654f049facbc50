"""Cross-sell candidates: the product types that rules recommend to each customer, ranked.

A rule A -> p applies to a customer whose basket holds every item of A and not p. A product's score is
that of its best applicable rule, `confidence * lift ** lift_weight`; ties go to the higher confidence,
then lift, then the shorter antecedent. Products are ranked by score per customer (ties by name).
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.apriori.baskets import PRODUCT_PREFIX


def rule_score(confidence: Column, lift: Column, lift_weight: float) -> Column:
    return confidence * F.pow(lift, F.lit(lift_weight))


def applicable_rules(baskets: DataFrame, rules: DataFrame) -> DataFrame:
    """(customer_id, rule columns...) for each rule whose antecedent the basket holds and consequent not.

    Rules join on their first antecedent item (an equi-join over the exploded basket, rules broadcast:
    the explosion guard keeps them small) and are then checked whole.
    """
    keyed = rules.withColumn("key_item", F.col("antecedent")[0])
    exploded = baskets.select("customer_id", "items", F.explode("items").alias("key_item"))
    return (exploded.join(F.broadcast(keyed), "key_item")
            .where((F.size(F.array_except("antecedent", "items")) == 0)
                   & ~F.array_contains("items", F.col("consequent")))
            .drop("key_item", "items"))


def cross_sell_candidates(baskets: DataFrame, rules: DataFrame, top_n: int, min_lift: float,
                          lift_weight: float) -> DataFrame:
    """(customer_id, product_type, rank, score, confidence, lift, antecedent), at most `top_n` per customer."""
    usable = (rules.where(F.col("lift") > min_lift)
              .withColumn("score", rule_score(F.col("confidence"), F.col("lift"), lift_weight)))
    matched = applicable_rules(baskets, usable)
    best_rule = Window.partitionBy("customer_id", "consequent").orderBy(
        F.desc("score"), F.desc("confidence"), F.desc("lift"), F.asc("antecedent_size"),
        F.array_join("antecedent", "|"))
    best = (matched.withColumn("_n", F.row_number().over(best_rule)).where(F.col("_n") == 1)
            .withColumn("product_type", F.expr(f"substring(consequent, {len(PRODUCT_PREFIX) + 1})")))
    by_score = Window.partitionBy("customer_id").orderBy(F.desc("score"), F.asc("product_type"))
    return (best.withColumn("rank", F.row_number().over(by_score).cast("int"))
            .where(F.col("rank") <= top_n)
            .select("customer_id", "product_type", "rank", "score", "confidence", "lift", "antecedent"))
