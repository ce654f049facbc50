"""The contact policy: one named, pure DataFrame transformation per rule (docs/push.md lists them).

Every rule removes rows and never adds any, so a customer reaches a file only when all rules let them.
A null flag is read the cautious way: a null consent is no consent, a null do_not_contact is "do not contact".
"""
from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.push.settings import ChannelSettings, FrequencySettings

CONTROL_HASH_HEX = 13  # 52 bits of SHA-256 -> a uniform number in [0, 1)


def active_customers_only(offers: DataFrame, customers: DataFrame) -> DataFrame:
    """Rule 1: only customers whose status is active."""
    return offers.join(customers.where(F.col("status") == "active").select("customer_id"),
                       "customer_id", "left_semi")


def do_not_contact_wins(offers: DataFrame, customers: DataFrame) -> DataFrame:
    """Rule 2: do_not_contact overrides every consent; unknown (null) counts as do-not-contact."""
    return offers.join(customers.where(F.col("do_not_contact") == F.lit(False)).select("customer_id"),
                       "customer_id", "left_semi")


def consented_channels_only(options: DataFrame, customers: DataFrame,
                            channels: dict[str, ChannelSettings]) -> DataFrame:
    """Rule 3: a channel only with every consent the channel requires being true (rm_call: consent_sms)."""
    allowed = F.lit(False)
    for name, spec in channels.items():
        consents = [F.coalesce(F.col(column), F.lit(False)) for column in spec.consent]
        granted = consents[0]
        for consent in consents[1:]:
            granted = granted & consent
        allowed = F.when(F.col("channel") == name, granted).otherwise(allowed)
    consent_columns = sorted({c for spec in channels.values() for c in spec.consent})
    return (options.join(customers.select("customer_id", *consent_columns), "customer_id")
            .where(allowed).drop(*consent_columns))


def suitable_products_only(offers: DataFrame, customers: DataFrame, unknown_max_level: int) -> DataFrame:
    """Rule 4: risk_level <= risk_tolerance; without a tolerance only levels <= unknown_max_level.

    Rows without a product (call lists) offer nothing, so suitability does not apply to them.
    """
    tolerance = F.coalesce(F.col("risk_tolerance"), F.lit(unknown_max_level))
    return (offers.join(customers.select("customer_id", "risk_tolerance"), "customer_id")
            .where(F.col("product_id").isNull() | (F.col("risk_level") <= tolerance))
            .drop("risk_tolerance"))


def unsubscribed_channels_excluded(options: DataFrame, unsubscribes: DataFrame,
                                   channels: dict[str, ChannelSettings]) -> DataFrame:
    """Rule 5: no channel on which the customer unsubscribed (any campaign, any earlier date).

    `unsubscribes` holds (customer_id, channel) of `unsubscribed` responses; a channel is also blocked by
    an unsubscribe on the channels listed in its blocked_by_unsubscribe_on (rm_call: also sms).
    """
    blocking = options.sparkSession.createDataFrame(
        [(name, other) for name, spec in sorted(channels.items()) for other in spec.blocked_by_unsubscribe_on],
        "channel string, unsubscribed_channel string")
    blocked = (unsubscribes.select("customer_id", F.col("channel").alias("unsubscribed_channel")).distinct()
               .join(F.broadcast(blocking), "unsubscribed_channel")
               .select("customer_id", "channel").distinct())
    return options.join(blocked, ["customer_id", "channel"], "left_anti")


def frequency_caps_respected(offers: DataFrame, contacts: DataFrame, as_of: date,
                             caps: FrequencySettings) -> DataFrame:
    """Rule 6: at most max_per_day pushes on D and max_per_window in the window_days ending with D.

    `contacts` holds (customer_id, as_of_date) of the pushes already made: earlier dates from
    gold.push_history and the campaigns processed earlier in this run (control members are not pushes).
    """
    window_start = as_of - timedelta(days=caps.window_days - 1)
    counts = (contacts.where((F.col("as_of_date") >= F.lit(window_start)) & (F.col("as_of_date") <= F.lit(as_of)))
              .groupBy("customer_id")
              .agg(F.sum((F.col("as_of_date") == F.lit(as_of)).cast("int")).alias("today"),
                   F.count("*").alias("in_window")))
    capped = counts.where((F.col("today") >= caps.max_per_day) | (F.col("in_window") >= caps.max_per_window))
    return offers.join(capped.select("customer_id"), "customer_id", "left_anti")


def held_products_excluded(offers: DataFrame, holdings: DataFrame) -> DataFrame:
    """Rule 7: never offer a product the customer holds on D (`holdings`: customer_id, product_id held)."""
    return offers.join(holdings.select("customer_id", "product_id").distinct(),
                       ["customer_id", "product_id"], "left_anti")


def open_offers_excluded(offers: DataFrame, history: DataFrame, campaign_id: str, as_of: date) -> DataFrame:
    """Rule 8a (one offer per customer per campaign, across days): no new offer while one is still valid.

    A push or control assignment of the same campaign on an earlier date whose expiry_date >= D blocks.
    """
    open_ = history.where((F.col("campaign_id") == campaign_id) & (F.col("as_of_date") < F.lit(as_of))
                          & (F.col("expiry_date") >= F.lit(as_of)))
    return offers.join(open_.select("customer_id"), "customer_id", "left_anti")


def one_offer_per_customer(options: DataFrame) -> DataFrame:
    """Rule 8b: one row per customer: the best-ranked product on the most preferred reachable channel."""
    best = Window.partitionBy("customer_id").orderBy(
        F.col("offer_rank").asc_nulls_last(), F.col("channel_preference"), F.col("product_id").asc_nulls_last())
    return options.withColumn("_n", F.row_number().over(best)).where(F.col("_n") == 1).drop("_n")


def control_group_assigned(offers: DataFrame, campaign_id: str, share: float, seed: str) -> DataFrame:
    """Rule 9: is_control for a stable share of customers per campaign, by hash of (customer, campaign, seed).

    The same customer stays in (or out of) a campaign's control group every day.
    """
    key = F.concat_ws("|", F.lit(seed), F.lit(campaign_id), F.col("customer_id"))
    uniform = F.conv(F.substring(F.sha2(key, 256), 1, CONTROL_HASH_HEX), 16, 10).cast("double") / float(
        16 ** CONTROL_HASH_HEX)
    return offers.withColumn("is_control", uniform < F.lit(share))


def daily_cap_applied(offers: DataFrame, cap: int) -> DataFrame:
    """Rule 10: at most `cap` pushed customers; the control group is drawn from the same ranked list.

    Order: priority desc, score desc (nulls last), push_id. Walking down the list, treated customers are
    kept until `cap` of them are; control members ranked before that point are kept (they are the ones
    who would have been pushed), so control and treated come from the same population. Adds
    selection_rank (1 = first in the list). One campaign's eligible customers are ranked in one partition.
    """
    order = Window.orderBy(F.col("priority").desc_nulls_last(), F.col("score").desc_nulls_last(),
                           F.col("push_id"), F.col("customer_id"))
    running = order.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    ranked = (offers.withColumn("selection_rank", F.row_number().over(order))
              .withColumn("treated_so_far", F.sum((~F.col("is_control")).cast("int")).over(running)))
    keep = F.when(F.col("is_control"), F.col("treated_so_far") < cap).otherwise(F.col("treated_so_far") <= cap)
    return ranked.where(keep).drop("treated_so_far")
