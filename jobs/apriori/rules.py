"""Frequent itemsets and product association rules with Spark MLlib's parallel FP-growth.

`mine(baskets, ...)` guards against settings that would explode, runs `pyspark.ml.fpm.FPGrowth` once and
returns the frequent itemsets and the rules whose consequent is one product item, in the shapes of
gold.frequent_itemsets and gold.association_rules (without the as-of date).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pyspark.ml.fpm import FPGrowth
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.apriori.baskets import PRODUCT_PREFIX
from jobs.common.errors import InputError


def item_group(item: str) -> str:
    """Items of one attribute (`attr:age_band=...`) share a group: a basket holds at most one of them."""
    name, sep, _ = item.partition("=")
    return name if sep else item


def estimate_frequent_itemsets(supports: Mapping[str, float], min_support: float, stop_above: int) -> int:
    """Itemsets whose items' supports multiply to at least `min_support` (the expected support if items
    occurred independently), never two items of one group; counting stops above `stop_above`.

    A depth-first walk over items by falling support: a branch ends where the product drops below the
    threshold, so the work is proportional to the answer (bounded by `stop_above`).
    """
    items = sorted(((s, item_group(i)) for i, s in supports.items() if s >= min_support), reverse=True)
    count = 0
    stack: list[tuple[int, float, frozenset[str]]] = [(0, 1.0, frozenset())]
    while stack:
        start, product, groups = stack.pop()
        for index in range(start, len(items)):
            support, group = items[index]
            extended = product * support
            if extended < min_support:
                break
            if group in groups:
                continue
            count += 1
            if count > stop_above:
                return count
            stack.append((index + 1, extended, groups | {group}))
    return count


def frequent_item_supports(baskets: DataFrame, min_support: float) -> tuple[int, dict[str, float]]:
    """(number of baskets, {item: support}) of the items reaching `min_support` (a small aggregate)."""
    total = baskets.count()
    min_count = math.ceil(min_support * total)
    counts = (baskets.select(F.explode("items").alias("item")).groupBy("item").count()
              .where(F.col("count") >= min_count).collect())
    return total, {row["item"]: row["count"] / total for row in counts}


def guard_against_explosion(baskets: DataFrame, min_support: float, limit: int) -> tuple[int, dict[str, float]]:
    """Refuse (InputError) a minimum support at which the frequent itemsets are estimated to exceed
    `limit`; returns the number of baskets and the supports of the frequent items."""
    total, supports = frequent_item_supports(baskets, min_support)
    if total == 0:
        raise InputError("no baskets to mine: every customer's basket is empty")
    estimate = estimate_frequent_itemsets(supports, min_support, stop_above=limit)
    if estimate > limit:
        top = ", ".join(f"{item} {share:.2f}" for item, share in
                        sorted(supports.items(), key=lambda kv: (-kv[1], kv[0]))[:5])
        raise InputError(
            f"FP-growth refused: more than {limit:,} frequent itemsets expected at min_support "
            f"{min_support} ({len(supports):,} items reach it in {total:,} baskets; most frequent: {top}; "
            "estimate = itemsets whose item supports multiply to at least min_support, i.e. items "
            f"assumed independent), above the limit max_estimated_itemsets {limit:,}",
            hint="raise the minimum support (apriori.min_support), or the limit "
                 "(apriori.max_estimated_itemsets) knowing that mining time and memory grow with it")
    return total, supports


def frequent_items_only(baskets: DataFrame, frequent: Iterable[str]) -> DataFrame:
    """The baskets' `items` without the items below min_support, which no frequent itemset can hold.

    MLlib drops them too, but only after reading the full baskets twice. A basket left empty stays: it
    still counts in every support and lift.
    """
    kept = sorted(frequent)
    # isin of many values compiles to one hash set; array_intersect against a literal array built a set
    # per basket (10 s of 27 for 88 k retail baskets and 956 items).
    return baskets.select(F.filter("items", lambda item: item.isin(kept)).alias("items"))


@dataclass
class Mining:
    """FP-growth's output: `itemsets` (items, freq, support, size) and product `rules` (antecedent,
    consequent, support, confidence, lift, antecedent_size). The itemsets are cached: call `release`."""

    baskets: int
    itemsets: DataFrame
    rules: DataFrame
    _cached: DataFrame

    def release(self) -> None:
        self._cached.unpersist()


def frequent_itemsets(freq_itemsets: DataFrame, baskets: int) -> DataFrame:
    return freq_itemsets.select(F.array_sort("items").alias("items"), "freq",
                                (F.col("freq") / F.lit(baskets)).alias("support"),
                                F.size("items").cast("int").alias("size"))


def product_rules(association_rules: DataFrame) -> DataFrame:
    """MLlib's rules whose consequent is exactly one product item, antecedent sorted."""
    return (association_rules
            .where((F.size("consequent") == 1) & F.col("consequent")[0].startswith(PRODUCT_PREFIX))
            .select(F.array_sort("antecedent").alias("antecedent"),
                    F.col("consequent")[0].alias("consequent"), "support", "confidence", "lift",
                    F.size("antecedent").cast("int").alias("antecedent_size")))


def mine(baskets: DataFrame, min_support: float, min_confidence: float, max_estimated_itemsets: int,
         num_partitions: int | None = None) -> Mining:
    """Guard, then FP-growth on `baskets` (customer_id, items) trimmed to their frequent items."""
    owned = not baskets.is_cached
    if owned:
        baskets = baskets.persist()  # the guard and the trimming both scan it
    trimmed = None
    try:
        total, supports = guard_against_explosion(baskets, min_support, max_estimated_itemsets)
        trimmed = frequent_items_only(baskets, supports).persist()  # FP-growth scans it three times
        fpgrowth = FPGrowth(itemsCol="items", minSupport=min_support, minConfidence=min_confidence)
        if num_partitions is not None:
            fpgrowth.setNumPartitions(num_partitions)
        model = fpgrowth.fit(trimmed)
        # Cached once mined: MLlib derives its rules from this same plan, so mining runs once.
        freq_itemsets = model.freqItemsets.persist()
        freq_itemsets.count()
    finally:
        if trimmed is not None:
            trimmed.unpersist()
        if owned:
            baskets.unpersist()
    return Mining(total, frequent_itemsets(freq_itemsets, total), product_rules(model.associationRules),
                  freq_itemsets)
