"""Stage `push`: the nightly marketing push lists in outbox/<D>/ and gold.push_history.

Campaigns run one after the other in their priority order (conf/campaigns.yaml): each one's targeting
and policy chain (eligibility.py, policy.py) sees the pushes of the campaigns before it, so the
frequency caps hold across campaigns. A campaign whose model tables are missing or empty for D sends
nothing and the manifest says why; the other campaigns still run.

The final push list is collected to the driver to write the files: it is bounded by the sum of the
daily caps, which conf/campaigns.yaml may not set above push.max_outbox_rows.
"""
from __future__ import annotations

import importlib.metadata
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import reduce
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.common.context import RunContext
from jobs.common.errors import InputError
from jobs.common.lake import Lake
from jobs.common.spark import empty_frame
from jobs.push.campaigns import FEATURES, RECOMMENDATIONS, Campaign, CampaignBook, load_campaigns
from jobs.push.eligibility import (
    candidate_offers,
    channel_options,
    contact_attached,
    push_identity,
    targeted_customers,
)
from jobs.push.files import OutboxFile, publish_outbox, render_csv
from jobs.push.policy import (
    active_customers_only,
    consented_channels_only,
    control_group_assigned,
    daily_cap_applied,
    do_not_contact_wins,
    frequency_caps_respected,
    held_products_excluded,
    one_offer_per_customer,
    open_offers_excluded,
    suitable_products_only,
    unsubscribed_channels_excluded,
)
from jobs.push.settings import PushSettings

HISTORY = "gold.push_history"
REQUIRED_SILVER = ("silver.customers", "silver.customer_pii", "silver.products", "silver.holdings")
RESPONSES = "silver.campaign_responses"
# One day's selection of every campaign (treated and control), before it becomes history and files.
DAY_FIELDS = [("campaign_id", "string"), ("push_id", "string"), ("customer_id", "string"), ("channel", "string"),
              ("contact", "string"), ("product_id", "string"), ("product_name", "string"),
              ("product_type", "string"), ("offer_rank", "int"), ("score", "double"),
              ("reasons", "array<string>"), ("expiry_date", "date"), ("is_control", "boolean"),
              ("selection_rank", "int")]
DAY_COLUMNS = [name for name, _ in DAY_FIELDS]
HISTORY_COLUMNS = ["as_of_date", "campaign_id", "push_id", "customer_id", "channel", "product_id",
                   "product_type", "offer_rank", "score", "reason_codes", "expiry_date", "is_control",
                   "selection_rank", "run_id"]


@dataclass
class PushInputs:
    customers: DataFrame
    pii: DataFrame
    products: DataFrame
    holdings: DataFrame  # (customer_id, product_id) held on D
    unsubscribes: DataFrame  # (customer_id, channel) of unsubscribed responses up to D
    history: DataFrame  # gold.push_history of earlier dates that a rule on D can still need
    models: dict[str, DataFrame]  # model tables with rows for D
    unavailable: dict[str, str]  # model table -> why it cannot be used for D


def _model_table(lake: Lake, name: str, as_of: date) -> tuple[DataFrame | None, str | None]:
    if not lake.exists(name):
        return None, f"{name} does not exist"
    frame = lake.read(name, partition_filters=[("as_of_date", "=", as_of)])
    if frame.limit(1).count() == 0:
        return None, f"{name} has no rows for {as_of.isoformat()}"
    return frame, None


def read_inputs(lake: Lake, as_of: date, settings: PushSettings, book: CampaignBook) -> PushInputs:
    missing = [name for name in REQUIRED_SILVER if not lake.exists(name)]
    if missing:
        raise InputError(f"push for {as_of}: required tables missing: {', '.join(missing)}",
                         hint="run ingest and clean for this date first")
    spark = lake.spark
    holdings = (lake.read("silver.holdings")
                .where((F.col("start_date") <= F.lit(as_of))
                       & (F.col("end_date").isNull() | (F.col("end_date") > F.lit(as_of))))
                .select("customer_id", "product_id"))
    if lake.exists(RESPONSES):
        unsubscribes = (lake.read(RESPONSES, partition_filters=[("batch_date", "<=", as_of)])
                        .where(F.col("event") == "unsubscribed").select("customer_id", "channel").distinct())
    else:
        unsubscribes = empty_frame(spark, "customer_id string, channel string")
    reach_back = max([settings.frequency.window_days] + [c.validity_days for c in book.campaigns])
    if lake.exists(HISTORY):
        history = lake.read(HISTORY, partition_filters=[("as_of_date", ">=", as_of - timedelta(days=reach_back)),
                                                         ("as_of_date", "<", as_of)])
    else:
        history = spark.createDataFrame(
            [], "as_of_date date, campaign_id string, customer_id string, expiry_date date, is_control boolean")
    models, unavailable = {}, {}
    for name in sorted({t for c in book.campaigns for t in c.needed_tables()}):
        frame, reason = _model_table(lake, name, as_of)
        if frame is None:
            unavailable[name] = reason
        else:
            models[name] = frame
    return PushInputs(lake.read("silver.customers"), lake.read("silver.customer_pii"),
                      lake.read("silver.products"), holdings, unsubscribes, history, models, unavailable)


def eligible_offers(campaign: Campaign, inputs: PushInputs, contacts: DataFrame, settings: PushSettings,
                    as_of: date) -> DataFrame:
    """The campaign's offers that pass every policy rule, one per customer, with the control flag."""
    channels = {name: settings.channels[name] for name in campaign.channels}
    targets = targeted_customers(campaign, inputs.models)
    return (candidate_offers(targets, campaign, inputs.products, inputs.models.get(RECOMMENDATIONS))
            .transform(active_customers_only, inputs.customers)
            .transform(do_not_contact_wins, inputs.customers)
            .transform(suitable_products_only, inputs.customers, settings.unknown_tolerance_max_risk_level)
            .transform(held_products_excluded, inputs.holdings)
            .transform(open_offers_excluded, inputs.history, campaign.id, as_of)
            .transform(frequency_caps_respected, contacts, as_of, settings.frequency)
            .transform(channel_options, campaign.channels)
            .transform(consented_channels_only, inputs.customers, channels)
            .transform(unsubscribed_channels_excluded, inputs.unsubscribes, channels)
            .transform(contact_attached, inputs.pii, channels)
            .transform(one_offer_per_customer)
            .transform(push_identity, as_of, campaign)
            .transform(control_group_assigned, campaign.id, campaign.control_share, settings.control_seed))


def _check_priority_feature(campaign: Campaign, inputs: PushInputs) -> None:
    features = inputs.models.get(FEATURES)
    if campaign.priority_feature and features is not None and campaign.priority_feature not in features.columns:
        raise InputError(f"campaign {campaign.id!r}: priority_feature {campaign.priority_feature!r} is not a "
                         f"column of {FEATURES}", hint="fix conf/campaigns.yaml")


def _pipeline_version() -> str:
    try:
        return importlib.metadata.version("crm-pipeline")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def run(ctx: RunContext) -> dict[str, int]:
    settings: PushSettings = ctx.settings.job("push")
    book = load_campaigns(settings)
    as_of, lake, spark = ctx.business_date, ctx.lake, ctx.spark
    inputs = read_inputs(lake, as_of, settings, book)

    contacts = inputs.history.where(~F.col("is_control")).select("customer_id", "as_of_date")
    selections: list[DataFrame] = []
    summaries: list[dict] = []
    for priority, campaign in enumerate(book.campaigns, start=1):
        summary = {"campaign_id": campaign.id, "priority": priority, "daily_cap": campaign.daily_cap,
                   "control_share": campaign.control_share, "validity_days": campaign.validity_days,
                   "channels": campaign.channels}
        summaries.append(summary)
        blocked = [inputs.unavailable[t] for t in campaign.needed_tables() if t in inputs.unavailable]
        if blocked:
            summary.update(status="skipped", reason="; ".join(blocked), eligible=0, pushed=0, control=0)
            continue
        _check_priority_feature(campaign, inputs)
        # Checkpoints keep each campaign's result fixed and cut the lineage the next campaign builds on.
        eligible = eligible_offers(campaign, inputs, contacts, settings, as_of).localCheckpoint()
        selected = daily_cap_applied(eligible, campaign.daily_cap).localCheckpoint()
        counts = {row["is_control"]: row["n"] for row in selected.groupBy("is_control").agg(
            F.count("*").alias("n")).collect()}
        summary.update(status="sent", reason=None, eligible=eligible.count(), pushed=counts.get(False, 0),
                       control=counts.get(True, 0))
        selections.append(selected.withColumn("campaign_id", F.lit(campaign.id))
                          .select(*DAY_COLUMNS))
        contacts = contacts.unionByName(selected.where(~F.col("is_control"))
                                        .select("customer_id", F.lit(as_of).alias("as_of_date")))

    day = (reduce(DataFrame.unionByName, selections) if selections
           else empty_frame(spark, ", ".join(f"{n} {t}" for n, t in DAY_FIELDS)))
    history = (day.withColumn("as_of_date", F.lit(as_of)).withColumn("run_id", F.lit(ctx.run_id))
               .withColumnRenamed("reasons", "reason_codes").select(*HISTORY_COLUMNS))
    # History first: if publishing the files fails, a rerun of D replaces both.
    written = lake.replace_partitions(history, HISTORY, [("as_of_date", "=", as_of)],
                                      partition_by=["as_of_date"],
                                      metadata={"run_id": ctx.run_id, "job": "push"})
    files = _outbox_files(day, book, settings)
    manifest = _manifest(ctx, book, summaries, files)
    publish_outbox(Path(ctx.settings.outbox.root), as_of, files, manifest, ctx.run_id)
    return {HISTORY: written.rows_added, f"outbox/{as_of.isoformat()}": sum(f.rows for f in files)}


def _outbox_files(day: DataFrame, book: CampaignBook, settings: PushSettings) -> list[OutboxFile]:
    """One file per campaign and channel (header only when nobody is pushed), rows in selection order."""
    pushed = (day.where(~F.col("is_control")).withColumnRenamed("reasons", "reason_codes")
              .orderBy("campaign_id", "channel", "selection_rank").collect())  # bounded by the daily caps
    by_file: dict[tuple[str, str], list] = defaultdict(list)
    for row in pushed:
        by_file[(row["campaign_id"], row["channel"])].append(row.asDict())
    files = []
    for campaign in book.campaigns:
        for channel in campaign.channels:
            rows = by_file.get((campaign.id, channel), [])
            content = render_csv(rows, settings.channels[channel].contact_field, settings.score_decimals)
            files.append(OutboxFile(channel, campaign.id, len(rows), content))
    return files


def _manifest(ctx: RunContext, book: CampaignBook, summaries: list[dict], files: list[OutboxFile]) -> dict:
    """Everything but run_id and generated_at is a function of the inputs, so reruns compare equal."""
    return {
        "business_date": ctx.business_date.isoformat(),
        "run_id": ctx.run_id,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pipeline_version": _pipeline_version(),
        "campaigns_file_sha256": book.sha256,
        "files": [f.describe() for f in files],
        "campaigns": summaries,
        "control_groups": {s["campaign_id"]: s["control"] for s in summaries},
        "totals": {"files": len(files), "rows": sum(f.rows for f in files),
                   "control": sum(s["control"] for s in summaries),
                   "campaigns_sent": sum(s["status"] == "sent" for s in summaries),
                   "campaigns_skipped": sum(s["status"] == "skipped" for s in summaries)},
    }
