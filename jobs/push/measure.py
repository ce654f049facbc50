"""Stage `campaign-measure`: gold.campaign_performance per push date, campaign and channel.

Each night (business date D) the pushes of the last `lookback_days` are measured again with everything
known by D; the rows are written under as_of_date = D (a rerun of D replaces them).

Conversion is defined the same way for pushed and control customers, so the two rates compare:
* a product offer converts when the customer starts a holding of the offered product TYPE after the push
  date and no later than the expiry date (the file is sent the morning after D);
* a call list (no product) converts when the customer makes a transaction of their own (not a type in
  measure.activity_excluded_txn_types) in that window: the relationship is alive.
Control members carry the channel they would have been pushed on, so each channel has its own control rate.
Responses (delivered, opened, clicked, converted) come from silver.campaign_responses by push_id; the
`converted` events are reported as reported_conversions, not used for the rate (control members have none).
Uplift = conversion rate - control conversion rate, with a normal-approximation (Wald) interval.
"""
from __future__ import annotations

from datetime import date, timedelta
from statistics import NormalDist

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.common.context import RunContext
from jobs.common.errors import InputError
from jobs.common.local_dates import local_date
from jobs.common.spark import empty_frame
from jobs.push.job import HISTORY, RESPONSES
from jobs.push.settings import PushSettings

PERFORMANCE = "gold.campaign_performance"
REQUIRED = ("silver.products", "silver.holdings", "silver.transactions")
EVENTS = ("delivered", "opened", "clicked", "converted")


def _in_window(day: Column, as_of: date) -> Column:
    """After the push date, up to the expiry date and no later than D."""
    return (day > F.col("as_of_date")) & (day <= F.least(F.col("expiry_date"), F.lit(as_of)))


def conversions(pushes: DataFrame, new_holdings: DataFrame, activity: DataFrame, as_of: date) -> DataFrame:
    """push_id, converted: the outcome of every push and control assignment by D.

    new_holdings: (customer_id, product_type, start_date); activity: (customer_id, activity_date).
    """
    product_pushes = pushes.where(F.col("product_id").isNotNull())
    call_pushes = pushes.where(F.col("product_id").isNull())
    took_product = (product_pushes.join(new_holdings, ["customer_id", "product_type"])
                    .where(_in_window(F.col("start_date"), as_of)).select("push_id"))
    stayed_active = (call_pushes.join(activity, "customer_id")
                     .where(_in_window(F.col("activity_date"), as_of)).select("push_id"))
    converted = took_product.unionByName(stayed_active).distinct().withColumn("converted", F.lit(True))
    return (pushes.select("push_id").join(converted, "push_id", "left")
            .select("push_id", F.coalesce("converted", F.lit(False)).alias("converted")))


def response_flags(pushes: DataFrame, responses: DataFrame) -> DataFrame:
    """push_id and one flag per response event (delivered, opened, clicked, converted) recorded by D."""
    flags = [F.max((F.col("event") == event).cast("int")).alias(event) for event in EVENTS]
    events = responses.where(F.col("event").isin(list(EVENTS))).groupBy("push_id").agg(*flags)
    return (pushes.select("push_id").join(events, "push_id", "left")
            .select("push_id", *[F.coalesce(F.col(e), F.lit(0)).alias(e) for e in EVENTS]))


def uplift_interval(p_treated: Column, n_treated: Column, p_control: Column, n_control: Column,
                    z: float) -> tuple[Column, Column, Column]:
    """(uplift, low, high): p_t - p_c -+ z * sqrt(p_t(1-p_t)/n_t + p_c(1-p_c)/n_c); null without both groups."""
    uplift = p_treated - p_control
    se = F.sqrt(p_treated * (1 - p_treated) / n_treated + p_control * (1 - p_control) / n_control)
    both = (n_treated > 0) & (n_control > 0)
    return (F.when(both, uplift), F.when(both, uplift - F.lit(z) * se), F.when(both, uplift + F.lit(z) * se))


def campaign_performance(pushes: DataFrame, flags: DataFrame, outcomes: DataFrame, as_of: date,
                         confidence_level: float) -> DataFrame:
    """One row per push date, campaign and channel with counts, rates and the uplift interval."""
    z = NormalDist().inv_cdf(0.5 + confidence_level / 2)
    treated = ~F.col("is_control")
    rows = pushes.join(flags, "push_id").join(outcomes, "push_id")
    grouped = rows.groupBy(F.col("as_of_date").alias("push_date"), "campaign_id", "channel").agg(
        F.sum(treated.cast("long")).alias("sent"),
        *[F.sum(F.when(treated, F.col(e)).otherwise(0)).cast("long").alias(e)
          for e in ("delivered", "opened", "clicked")],
        F.sum((treated & F.col("converted")).cast("long")).alias("converted"),
        F.sum(F.col("is_control").cast("long")).alias("control_size"),
        F.sum((F.col("is_control") & F.col("converted")).cast("long")).alias("control_converted"),
        F.sum(F.when(treated, F.col("converted_reported")).otherwise(0)).cast("long")
        .alias("reported_conversions"),
        F.max("expiry_date").alias("expiry_date"))
    rate = F.when(F.col("sent") > 0, F.col("converted") / F.col("sent"))
    control_rate = F.when(F.col("control_size") > 0, F.col("control_converted") / F.col("control_size"))
    measured = (grouped.withColumn("conversion_rate", rate)
                .withColumn("control_conversion_rate", control_rate))
    uplift, low, high = uplift_interval(F.col("conversion_rate"), F.col("sent"),
                                        F.col("control_conversion_rate"), F.col("control_size"), z)
    return (measured.withColumn("uplift", uplift).withColumn("uplift_ci_low", low)
            .withColumn("uplift_ci_high", high)
            .withColumn("confidence_level", F.lit(confidence_level))
            .withColumn("window_closed", F.col("expiry_date") <= F.lit(as_of))
            .withColumn("as_of_date", F.lit(as_of))
            .select("as_of_date", "push_date", "campaign_id", "channel", "sent", "delivered", "opened", "clicked",
                    "converted", "conversion_rate", "control_size", "control_converted",
                    "control_conversion_rate", "uplift", "uplift_ci_low", "uplift_ci_high", "confidence_level",
                    "reported_conversions", "expiry_date", "window_closed"))


def run(ctx: RunContext) -> dict[str, int]:
    settings: PushSettings = ctx.settings.job("push")
    lake, as_of = ctx.lake, ctx.business_date
    if not lake.exists(HISTORY):
        return {PERFORMANCE: 0}  # nothing was ever pushed
    missing = [name for name in REQUIRED if not lake.exists(name)]
    if missing:
        raise InputError(f"campaign-measure for {as_of}: required tables missing: {', '.join(missing)}",
                         hint="run ingest and clean for this date first")
    start = as_of - timedelta(days=settings.measure.lookback_days)
    pushes = lake.read(HISTORY, partition_filters=[("as_of_date", ">=", start), ("as_of_date", "<=", as_of)])
    if lake.exists(RESPONSES):
        responses = lake.read(RESPONSES, partition_filters=[("batch_date", "<=", as_of)])
    else:
        responses = empty_frame(ctx.spark, "push_id string, event string")
    product_types = lake.read("silver.products").select("product_id", "product_type")
    new_holdings = (lake.read("silver.holdings").where(F.col("start_date") > F.lit(start))
                    .join(product_types, "product_id").select("customer_id", "product_type", "start_date"))
    # A transaction after the push date arrives in a batch of that date or later.
    activity = (lake.read("silver.transactions", partition_filters=[("batch_date", ">", start)])
                .where(~F.col("txn_type").isin(settings.measure.activity_excluded_txn_types))
                .select("customer_id", local_date("txn_ts", ctx.settings.bank.timezone).alias("activity_date"))
                .distinct())
    flags = response_flags(pushes, responses).withColumnRenamed("converted", "converted_reported")
    outcomes = conversions(pushes, new_holdings, activity, as_of)
    performance = (campaign_performance(pushes, flags, outcomes, as_of, settings.measure.confidence_level)
                   .withColumn("run_id", F.lit(ctx.run_id)))
    written = lake.replace_partitions(performance, PERFORMANCE, [("as_of_date", "=", as_of)],
                                      partition_by=["as_of_date"],
                                      metadata={"run_id": ctx.run_id, "job": "campaign-measure"})
    return {PERFORMANCE: written.rows_added}
