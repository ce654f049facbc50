"""Who a campaign targets and what it could offer them: pure DataFrame transformations.

The chain for one campaign (job.py wires it): targeted customers -> candidate offers (one row per customer
and candidate product, ranked) -> the policy rules (policy.py) -> push identity.
Reason codes are `criterion:value` tokens of the matched target, then the churn model's reason codes,
then the cross-sell rule (`rule:<antecedent items joined by +>`).
"""
from __future__ import annotations

from datetime import date, timedelta
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.push.campaigns import Campaign, Products, Target
from jobs.push.settings import ChannelSettings

PUSH_ID_HEX = 24  # 96 bits of SHA-256: collisions are negligible for any bank's daily lists


def _tokens(prefix: str, column: str) -> Column:
    return F.array(F.concat(F.lit(prefix), F.col(column)))


def segment_members(segments: DataFrame, labels: list[str]) -> DataFrame:
    """Customers of segments with these labels; clustering tells two segments of one label apart by a
    suffix (investment_inclined_2), and both belong to the label."""
    pattern = "^(" + "|".join(labels) + ")(_[0-9]+)?$"
    return (segments.where(F.col("segment_label").rlike(pattern))
            .select("customer_id", _tokens("segment:", "segment_label").alias("reasons")))


def churn_band_members(churn: DataFrame, bands: list[str] | None) -> DataFrame:
    """Customers of the bands (all scored customers when None), with the model's reason codes."""
    selected = churn.where(F.col("risk_band").isin(bands)) if bands else churn
    band_token = _tokens("churn_band:", "risk_band") if bands else F.array().cast("array<string>")
    return selected.select("customer_id", "churn_probability", band_token.alias("reasons"),
                           F.coalesce(F.col("reason_codes"), F.array().cast("array<string>"))
                           .alias("churn_reasons"))


def feature_members(features: DataFrame, target: Target, priority_feature: str | None) -> DataFrame:
    """Customers of the value tiers / lifecycle stages, with the priority feature (null when not set)."""
    selected, tokens = features, []
    if target.value_tiers:
        selected = selected.where(F.col("value_tier").isin(target.value_tiers))
        tokens.append(F.concat(F.lit("value_tier:"), F.col("value_tier")))
    if target.lifecycle_stages:
        selected = selected.where(F.col("lifecycle_stage").isin(target.lifecycle_stages))
        tokens.append(F.concat(F.lit("lifecycle:"), F.col("lifecycle_stage")))
    priority = F.col(priority_feature).cast("double") if priority_feature else F.lit(None).cast("double")
    return selected.select("customer_id", F.array(*tokens).cast("array<string>").alias("reasons"),
                           priority.alias("priority"))


def tag_members(tags: DataFrame, wanted: dict[str, list[str]]) -> DataFrame:
    """Customers carrying every wanted tag with one of its values."""
    matches = [tags.where((F.col("tag") == name) & F.col("value").isin(values))
               .select("customer_id", F.concat(F.lit(f"tag:{name}="), F.col("value")).alias("token"))
               for name, values in sorted(wanted.items())]
    matched = reduce(DataFrame.unionByName, matches)
    return (matched.groupBy("customer_id")
            .agg(F.count_distinct(F.regexp_extract("token", r"^tag:([^=]*)=", 1)).alias("tags_hit"),
                 F.array_sort(F.collect_set("token")).alias("reasons"))
            .where(F.col("tags_hit") == len(wanted))
            .select("customer_id", "reasons"))


def recommended_types(candidates: DataFrame, max_rank: int) -> DataFrame:
    """The customer's cross-sell recommendations ranked 1..max_rank, one row per product type."""
    return (candidates.where(F.col("rank") <= max_rank)
            .select("customer_id", "product_type", F.col("rank").alias("recommendation_rank"),
                    F.col("score").cast("double").alias("rule_score"),
                    F.col("lift").cast("double").alias("rule_lift"),
                    F.concat(F.lit("rule:"), F.array_join(F.array_sort("antecedent"), "+")).alias("rule")))


def targeted_customers(campaign: Campaign, tables: dict[str, DataFrame]) -> DataFrame:
    """customer_id, reasons, churn_probability, priority: customers meeting every target criterion.

    `tables` holds the model tables of `campaign.needed_tables()` for date D.
    """
    target = campaign.target
    parts: list[DataFrame] = []
    if target.segments:
        parts.append(segment_members(tables["gold.customer_segments"], target.segments))
    if campaign.uses_churn:
        parts.append(churn_band_members(tables["gold.churn_scores"], target.churn_bands))
    if campaign.uses_features:
        parts.append(feature_members(tables["gold.customer_features"], target, campaign.priority_feature))
    if target.tags:
        parts.append(tag_members(tables["gold.customer_tags"], target.tags))
    if campaign.uses_rules:
        parts.append(tables["gold.cross_sell_candidates"]
                     .where(F.col("rank") <= target.rule_recommendations.max_rank)
                     .select("customer_id").distinct()
                     .withColumn("reasons", F.array().cast("array<string>")))
    merged = parts[0].withColumnRenamed("reasons", "reasons_0")
    for number, part in enumerate(parts[1:], start=1):
        merged = merged.join(part.withColumnRenamed("reasons", f"reasons_{number}"), "customer_id")
    for optional in ("churn_probability", "priority"):
        if optional not in merged.columns:
            merged = merged.withColumn(optional, F.lit(None).cast("double"))
    if "churn_reasons" not in merged.columns:
        merged = merged.withColumn("churn_reasons", F.array().cast("array<string>"))
    reasons = F.concat(*[F.col(f"reasons_{n}") for n in range(len(parts))], F.col("churn_reasons"))
    return merged.select("customer_id", reasons.alias("reasons"), "churn_probability", "priority")


def _candidate_products(products: DataFrame, wanted: Products | None) -> DataFrame:
    selected = products.where(F.col("active"))
    if wanted is not None:
        selected = selected.where(F.col("product_type").isin(wanted.types) | F.col("product_id").isin(wanted.ids))
    return selected.select("product_id", "product_name", "product_type", "risk_level",
                           F.col("expected_yield").cast("double").alias("expected_yield"))


def candidate_offers(targets: DataFrame, campaign: Campaign, products: DataFrame,
                     recommendations: DataFrame | None) -> DataFrame:
    """One row per targeted customer and candidate product, with the campaign's `score` and `offer_rank`.

    offer_rank ranks ALL candidate products of the customer before the policy rules, so an offer with
    rank 2 tells the reader that a better product was excluded (held, unsuitable). A call list has one
    row per customer without product (score = churn probability, offer_rank null).
    """
    if not campaign.offers_products:
        return targets.select(
            "customer_id", F.lit(None).cast("string").alias("product_id"),
            F.lit(None).cast("string").alias("product_name"), F.lit(None).cast("string").alias("product_type"),
            F.lit(None).cast("int").alias("risk_level"), F.col("churn_probability").alias("score"),
            F.lit(None).cast("int").alias("offer_rank"), "reasons", "priority")
    candidates = _candidate_products(products, campaign.products)
    if campaign.score == "expected_yield":
        offers = targets.crossJoin(F.broadcast(candidates)).withColumn("score", F.col("expected_yield"))
        order = [F.col("score").desc_nulls_last(), F.col("product_id")]
    else:
        recommended = recommended_types(recommendations, campaign.target.rule_recommendations.max_rank)
        offers = (targets.join(recommended, "customer_id")
                  .join(F.broadcast(candidates), "product_type")
                  .withColumn("score", F.col(campaign.score))
                  .withColumn("reasons", F.concat("reasons", F.array("rule"))))
        order = [F.col("score").desc_nulls_last(), F.col("recommendation_rank"),
                 F.col("expected_yield").desc_nulls_last(), F.col("product_id")]
    ranked = offers.withColumn("offer_rank", F.row_number().over(
        Window.partitionBy("customer_id").orderBy(*order)))
    return ranked.select("customer_id", "product_id", "product_name", "product_type", "risk_level", "score",
                         "offer_rank", "reasons", "priority")


def channel_options(offers: DataFrame, channels: list[str]) -> DataFrame:
    """Each offer once per campaign channel, with the channel's preference (1 = preferred)."""
    options = F.array(*[F.struct(F.lit(name).alias("channel"), F.lit(position).alias("channel_preference"))
                        for position, name in enumerate(channels, start=1)])
    return (offers.withColumn("option", F.explode(options))
            .select("*", "option.channel", "option.channel_preference").drop("option"))


def contact_attached(offers: DataFrame, pii: DataFrame, channels: dict[str, ChannelSettings]) -> DataFrame:
    """The one contact field the channel needs (phone or email; none for the app); rows without it go."""
    fields = {name: spec.contact_field for name, spec in channels.items()}
    contact = F.lit(None).cast("string")
    for name, field in fields.items():
        if field is not None:
            contact = F.when(F.col("channel") == name, F.trim(F.col(field))).otherwise(contact)
    needs_none = F.col("channel").isin([n for n, f in fields.items() if f is None])
    return (offers.join(pii.select("customer_id", "phone", "email"), "customer_id", "left")
            .withColumn("contact", contact)
            .where(needs_none | (F.col("contact").isNotNull() & (F.col("contact") != "")))
            .drop("phone", "email"))


def push_identity(offers: DataFrame, as_of: date, campaign: Campaign) -> DataFrame:
    """push_id = a stable hash of (date, campaign, customer); expiry_date = D + validity_days."""
    key = F.concat_ws("|", F.lit(as_of.isoformat()), F.lit(campaign.id), F.col("customer_id"))
    return (offers.withColumn("push_id", F.substring(F.sha2(key, 256), 1, PUSH_ID_HEX))
            .withColumn("expiry_date", F.lit(as_of + timedelta(days=campaign.validity_days))))
