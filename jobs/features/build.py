"""gold.customer_features for an as-of date D, point-in-time correct.

Every input is cut at the end of D in the bank's time zone: transactions, app events and campaign
responses by their timestamps, accounts by open/close dates, holdings by start/end dates, loans by their
snapshot date. `build_features` only reads, so the churn job can build the features of a past date.
Each family below is a pure function of silver frames returning one row per customer; `assemble_features`
joins them onto the day's active customers and derives the rest.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.common.config import Settings
from jobs.common.contract import source
from jobs.common.errors import InputError
from jobs.common.lake import Lake
from jobs.common.local_dates import local_date, local_midnight
from jobs.common.spark import empty_frame
from jobs.features.catalog import conform, with_fills, with_money_in_cents
from jobs.features.lifecycle import value_tier_cutoffs, with_lifecycle_stage, with_value_tier
from jobs.features.settings import FeatureSettings

DAYS_PER_YEAR = 365
# Month-spaced balance points of the slope are 30 days apart.
DAYS_PER_MONTH = 30
# Timestamps of the last two years (every window of conf/features.yaml) get their local date by
# arithmetic; older ones by Spark's conversion, row by row.
FAST_DATE_DAYS = 2 * DAYS_PER_YEAR


@dataclass(frozen=True)
class AsOf:
    """The as-of date D and the bank time zone that turns it into an instant."""

    date: date
    timezone: str

    @property
    def cutoff(self) -> datetime:
        """The first instant after D (local midnight of D+1), time-zone aware."""
        return local_midnight(self.date + timedelta(days=1), self.timezone)

    def first_day(self, days: int) -> date:
        """First date of the window of the last `days` days ending at D (inclusive)."""
        return self.date - timedelta(days=days - 1)

    def local_date(self, column: str | Column) -> Column:
        """The bank-local date of a timestamp column (exact; fast for the FAST_DATE_DAYS up to D)."""
        return local_date(column, self.timezone,
                          (local_midnight(self.first_day(FAST_DATE_DAYS), self.timezone), self.cutoff))

    def within(self, column: str | Column, days: int) -> Column:
        col = F.col(column) if isinstance(column, str) else column
        return (col >= F.lit(self.first_day(days))) & (col <= F.lit(self.date))


@dataclass(frozen=True)
class Inputs:
    """Silver frames cut at the end of D; event tables carry their local date."""

    customers: DataFrame
    accounts: DataFrame
    transactions: DataFrame
    holdings: DataFrame
    products: DataFrame
    loans: DataFrame
    app_events: DataFrame
    campaign_responses: DataFrame


def read_inputs(spark: SparkSession, lake: Lake, as_of: AsOf) -> Inputs:
    """The silver tables as known at D. Optional sources that were never loaded read as empty."""

    def table(name: str) -> DataFrame:
        if lake.exists(f"silver.{name}"):
            return lake.read(f"silver.{name}")
        if not source(name).optional:
            raise InputError(f"silver.{name} does not exist; run ingest and clean first")
        return empty_frame(spark, source(name).spark_schema)

    def events(name: str, ts: str, date_column: str) -> DataFrame:
        return (table(name).where(F.col(ts) < F.lit(as_of.cutoff))
                .withColumn(date_column, as_of.local_date(ts)))

    return Inputs(
        customers=table("customers"),
        accounts=table("accounts").where(F.col("open_date") <= F.lit(as_of.date)),
        transactions=events("transactions", "txn_ts", "txn_date"),
        holdings=table("holdings").where(F.col("start_date") <= F.lit(as_of.date)),
        products=table("products"),
        loans=table("loans").where(F.col("snapshot_date") <= F.lit(as_of.date)),
        app_events=events("app_events", "event_ts", "event_date"),
        campaign_responses=events("campaign_responses", "event_ts", "event_date"),
    )


# ------------------------------------------------------------------ families
def active_customers(customers: DataFrame, accounts: DataFrame, as_of: AsOf) -> DataFrame:
    """Customers active at D with demographics: not closed as of D and at least one account open at D.

    The master is current state, so a `closed` status counts only when it was recorded (updated_at) on or
    before D; a customer who left after D is still active at D.
    """
    d = F.lit(as_of.date)
    per_customer = (accounts
                    .groupBy("customer_id")
                    .agg(F.min("open_date").alias("customer_since"),
                         F.count_if(F.col("close_date").isNull() | (F.col("close_date") > d))
                         .alias("accounts_open"))
                    .where(F.col("accounts_open") > 0))
    closed_by_d = (F.col("status") == "closed") & (F.col("updated_at") < F.lit(as_of.cutoff))
    return (customers.where(~closed_by_d)
            .join(per_customer, "customer_id")
            .select("customer_id",
                    F.floor(F.months_between(d, "birth_date") / 12).alias("age"),
                    F.coalesce("gender", F.lit("u")).alias("gender"),
                    F.coalesce("region", F.lit("unknown")).alias("region"),
                    F.floor(F.months_between(d, "customer_since")).alias("tenure_months"),
                    F.col("annual_income").cast("double").alias("income"),
                    "risk_tolerance", "accounts_open",
                    F.datediff(d, "customer_since").alias("days_since_first_account")))


def transaction_activity(transactions: DataFrame, as_of: AsOf, conf: FeatureSettings) -> DataFrame:
    """Recency, frequency, monetary value, flows, trend and channel mix of own transactions; fees."""
    own = F.col("txn_type").isin(conf.customer_initiated_txn_types)
    amount = F.col("amount").cast("double")
    recent = conf.recent_window_days
    in_recent = own & as_of.within("txn_date", recent)
    in_before = own & (F.col("txn_date") >= F.lit(as_of.first_day(2 * recent))) & \
        (F.col("txn_date") < F.lit(as_of.first_day(recent)))
    channel = F.coalesce(F.col("channel"), F.lit("other"))
    channels = source("transactions").field("channel").codes
    aggregates = [F.max(F.when(own, F.col("txn_date"))).alias("last_own_txn_date")]
    for days in conf.rfm_windows_days:
        window = own & as_of.within("txn_date", days)
        aggregates += [F.count_if(window).alias(f"frequency_{days}d"),
                       F.sum(F.when(window, amount)).alias(f"monetary_{days}d")]
    aggregates += [
        F.count_if(in_recent).alias("_recent_txns"),
        F.count_if(in_before).alias(f"frequency_prev_{recent}d"),
        F.sum(F.when(in_recent & (F.col("direction") == "credit"), amount)).alias(f"inflow_{recent}d"),
        F.sum(F.when(in_recent & (F.col("direction") == "debit"), amount)).alias(f"outflow_{recent}d"),
        *[F.count_if(in_recent & (channel == c)).alias(f"_channel_{c}") for c in channels],
        F.sum(F.when(F.col("txn_type").isin(conf.revenue.fee_txn_types)
                     & as_of.within("txn_date", DAYS_PER_YEAR), amount)).alias("_fees_year"),
    ]
    recent_txns = F.col("_recent_txns")
    shares = {f"channel_share_{c}": F.col(f"_channel_{c}") / recent_txns for c in channels}
    digital = sum((F.col(f"_channel_{c}") for c in conf.digital_channels), F.lit(0)) / recent_txns
    return (transactions.groupBy("customer_id").agg(*aggregates)
            .withColumns({
                **{name: F.when(recent_txns > 0, share).otherwise(0.0) for name, share in shares.items()},
                "digital_share": F.when(recent_txns > 0, digital).otherwise(0.0),
                f"txn_trend_{recent}d": symmetric_trend(recent_txns, F.col(f"frequency_prev_{recent}d")),
                "recency_days": F.datediff(F.lit(as_of.date), "last_own_txn_date"),
            })
            .drop("last_own_txn_date", "_recent_txns", *[f"_channel_{c}" for c in channels]))


def symmetric_trend(last: Column, before: Column) -> Column:
    """(last - before) / (|last| + |before|): -1 (all gone) .. 1 (all new); 0 when both are 0."""
    scale = F.abs(last) + F.abs(before)
    return F.when(scale > 0, (last - before) / scale).otherwise(F.lit(0.0))


def balance_opening_day(as_of: AsOf, conf: FeatureSettings) -> date:
    """The day before the balance history starts: the windows of the average balances and of the slope."""
    history_days = max(2 * conf.recent_window_days, DAYS_PER_MONTH * (conf.slope_months - 1) + 1)
    return as_of.first_day(history_days) - timedelta(days=1)


def deposit_balances(transactions: DataFrame, accounts: DataFrame, as_of: AsOf,
                     conf: FeatureSettings) -> DataFrame:
    """End, average and trend of the deposit balance and its monthly slope, from `balance_after`.

    Each deposit account's daily closing balance (its last `balance_after` of the day in booking order,
    txn_ts then txn_id) holds until its next transaction day, or until its close_date. History before the
    window collapses into one opening point the day before it. An account's balance counts for the
    account's owner (silver.accounts).
    """
    recent = conf.recent_window_days
    n_points = conf.slope_months
    opening_day = balance_opening_day(as_of, conf)
    after_d = as_of.date + timedelta(days=1)
    with_balance = transactions.where(F.col("balance_after").isNotNull())
    # Only the last transaction before the window matters there: its instant per account (a grouping
    # that Spark pre-aggregates where the rows are read) keeps the rest of that history out of the
    # shuffle and the sort below. Every row at that instant stays, so txn_id still decides a tie.
    last_before_window = (with_balance.where(F.col("txn_date") <= F.lit(opening_day))
                          .groupBy("account_id").agg(F.max("txn_ts").alias("_opening_ts")))
    deposit_accounts = (accounts.where(F.col("account_type").isin(conf.deposit_account_types))
                        .select("account_id", "customer_id",
                                F.coalesce("close_date", F.lit(after_d)).alias("_end_day"))
                        .join(last_before_window, "account_id", "left"))
    # One sort of each account's transactions in booking order gives both the day's closing balance (the
    # day's last row, whose next row falls on a later day) and when it ends (that next row's day). The
    # sort key is the account alone: its owner joins the few per-account sums afterwards.
    timeline = Window.partitionBy("account_id").orderBy("txn_ts", "txn_id")
    next_day = F.col("_next_day")
    # A balance holds on [day, until): until the next transaction day, the close date or the day after D.
    until = F.least(F.coalesce(next_day, F.lit(after_d)), F.col("_end_day"))
    segments = (with_balance.select("account_id", "txn_ts", "txn_id", "txn_date", "balance_after")
                .join(F.broadcast(deposit_accounts.drop("customer_id")), "account_id")
                .where((F.col("txn_date") > F.lit(opening_day)) | (F.col("txn_ts") == F.col("_opening_ts")))
                .withColumn("day", F.greatest(F.col("txn_date"), F.lit(opening_day)))
                .withColumn("_next_day", F.lead("day").over(timeline))
                .where(next_day.isNull() | (next_day > F.col("day")))
                .select("account_id", "day", until.alias("until"),
                        # decimal(18,2) as whole cents: exact sums in 64-bit integers, which Spark adds
                        # far faster than decimals (an overflow fails the query under ANSI arithmetic)
                        (F.col("balance_after") * 100).cast("long").alias("cents")))

    def cent_days(first: date, last: date) -> Column:
        """cents * days the segment overlaps [first, last]."""
        start = F.greatest(F.col("day"), F.lit(first))
        stop = F.least(F.col("until"), F.lit(last + timedelta(days=1)))
        return F.col("cents") * F.greatest(F.datediff(stop, start), F.lit(0))

    def cents_at(point: date) -> Column:
        return F.when((F.col("day") <= F.lit(point)) & (F.col("until") > F.lit(point)), F.col("cents"))

    # Exact sums do not depend on the order Spark adds them in, so a rerun cannot move an average across
    # a half cent or a customer across a tier cut. Least squares over equally spaced points x = 0..n-1:
    # slope = sum((x - mean) * y) / sum((x - mean)^2), taken per customer from the balances at the points.
    mean_x = (n_points - 1) / 2
    sxx = sum((x - mean_x) ** 2 for x in range(n_points)) or 1.0
    points = [as_of.date - timedelta(days=DAYS_PER_MONTH * (n_points - 1 - x)) for x in range(n_points)]
    before_last = as_of.first_day(recent) - timedelta(days=1)
    sums = {"end_balance": cents_at(as_of.date),
            f"avg_balance_{recent}d": cent_days(as_of.first_day(recent), as_of.date),
            "_avg_balance_before": cent_days(as_of.first_day(2 * recent), before_last),
            **{f"_balance_{x}": cents_at(p) for x, p in enumerate(points)}}
    # The window left the rows partitioned by account: summing per account needs no shuffle.
    per_account = segments.groupBy("account_id").agg(*[F.sum(cents).alias(name) for name, cents in sums.items()])
    per_customer = (per_account.join(F.broadcast(deposit_accounts.select("account_id", "customer_id")), "account_id")
                    .groupBy("customer_id")
                    .agg(*[_money(F.sum(name)).alias(name) for name in sums]))
    slope = sum((F.coalesce(F.col(f"_balance_{x}").cast("double"), F.lit(0.0)) * ((x - mean_x) / sxx)
                 for x in range(n_points)), F.lit(0.0))
    return (per_customer
            .withColumns({f"avg_balance_{recent}d": F.col(f"avg_balance_{recent}d") / recent,
                          "_avg_balance_before": F.col("_avg_balance_before") / recent})
            .withColumn("balance_slope_monthly", slope)
            .withColumn(f"balance_trend_{recent}d",
                        symmetric_trend(F.col(f"avg_balance_{recent}d").cast("double"),
                                        F.col("_avg_balance_before").cast("double")))
            .drop("_avg_balance_before", *[f"_balance_{x}" for x in range(n_points)]))


def _money(cents: Column) -> Column:
    """Whole cents (a long) as an exact decimal amount of money."""
    return cents.cast("decimal(38,0)") / 100


def salary_signals(transactions: DataFrame, as_of: AsOf, conf: FeatureSettings) -> DataFrame:
    """salary_earner and salary_stopped from monthly transfer_in credits of one counterparty."""
    rule = conf.salary
    stop_day = as_of.date - timedelta(days=rule.stopped_after_days)
    before = AsOf(stop_day, as_of.timezone)
    first_day = before.first_day(rule.lookback_days)
    # Calendar months counted from the first one the rule looks at (month 0).
    month = ((F.year("txn_date") - first_day.year) * 12 + F.month("txn_date") - first_day.month)
    months = (as_of.date.year - first_day.year) * 12 + as_of.date.month - first_day.month + 1
    per_source = (transactions
                  .where((F.col("txn_type") == "transfer_in") & (F.col("direction") == "credit")
                         & (F.col("amount") >= F.lit(rule.min_amount)) & F.col("counterparty").isNotNull()
                         & (F.col("txn_date") >= F.lit(first_day)))
                  .groupBy("customer_id", "counterparty")
                  .agg(count_distinct_below(F.when(as_of.within("txn_date", rule.lookback_days), month), months)
                       .alias("months_now"),
                       count_distinct_below(F.when(before.within("txn_date", rule.lookback_days), month), months)
                       .alias("months_before"),
                       F.max("txn_date").alias("last_credit")))
    per_customer = per_source.groupBy("customer_id").agg(
        F.max((F.col("months_now") >= rule.min_months).cast("int")).alias("salary_earner"),
        F.max(((F.col("months_before") >= rule.min_months) & (F.col("last_credit") <= F.lit(stop_day)))
              .cast("int")).alias("_source_stopped"))
    return (per_customer
            .withColumn("salary_stopped",
                        ((F.col("_source_stopped") == 1) & (F.col("salary_earner") == 0)).cast("int"))
            .drop("_source_stopped"))


def count_distinct_below(index: Column, size: int) -> Column:
    """The aggregate count(distinct index) of whole numbers in [0, size), nulls left out.

    The values are bits of 64-bit words OR-ed together: Spark aggregates that in its hash table where
    the rows are read, whereas count_distinct expands every row and shuffles the rows twice.
    """
    words = []
    for low in range(0, size, 64):
        in_word = (index >= low) & (index < low + 64)
        # F.shiftleft takes a constant shift only
        bit = F.when(in_word, F.call_function("shiftleft", F.lit(1).cast("long"), (index - low).cast("int")))
        words.append(F.coalesce(F.bit_count(F.bit_or(bit)), F.lit(0)))
    return reduce(operator.add, words, F.lit(0))


def product_holdings(holdings: DataFrame, products: DataFrame, as_of: AsOf,
                     conf: FeatureSettings) -> DataFrame:
    """Products held at D by type, held amounts, and the year's investment vs deposit purchases."""
    types = source("products").field("product_type").codes
    product_type = F.col("product_type")
    amount = F.coalesce(F.col("amount").cast("double"), F.lit(0.0))
    held = F.col("end_date").isNull() | (F.col("end_date") > F.lit(as_of.date))
    bought = as_of.within("start_date", conf.inclination_window_days)
    invest = product_type.isin(conf.investment_product_types)
    deposit = product_type.isin(conf.deposit_product_types)
    per_customer = (holdings
                    .join(F.broadcast(products.select("product_id", "product_type")), "product_id", "left")
                    .groupBy("customer_id")
                    .agg(*[F.max(F.when(held & (product_type == t), 1).otherwise(0)).alias(f"holds_{t}")
                           for t in types],
                         F.count_distinct(F.when(held, F.col("product_id"))).alias("products_held"),
                         F.count_distinct(F.when(held, product_type)).alias("product_types_held"),
                         F.sum(F.when(held & invest, amount)).alias("investment_holdings"),
                         F.sum(F.when(held & deposit, amount)).alias("deposit_product_holdings"),
                         F.sum(F.when(bought & invest, amount)).alias("_invested"),
                         F.sum(F.when(bought & deposit, amount)).alias("_deposited")))
    invested, deposited = F.coalesce("_invested", F.lit(0.0)), F.coalesce("_deposited", F.lit(0.0))
    placed = invested + deposited
    return (per_customer
            .withColumn("investment_inclination", F.when(placed > 0, invested / placed).otherwise(0.0))
            .drop("_invested", "_deposited"))


def loan_exposure(loans: DataFrame, as_of: AsOf, conf: FeatureSettings) -> DataFrame:
    """Outstanding, worst days past due and count of the open loans known at D."""
    return (open_loans(loans, as_of, conf)
            .groupBy("customer_id")
            .agg(F.sum(F.col("outstanding").cast("double")).alias("loan_outstanding"),
                 F.max("days_past_due").alias("max_days_past_due"),
                 F.count("loan_id").alias("loans_open")))


def open_loans(loans: DataFrame, as_of: AsOf, conf: FeatureSettings) -> DataFrame:
    """Loans open at D: snapshot taken on or before D, started by D, status open."""
    return loans.where((F.col("snapshot_date") <= F.lit(as_of.date))
                       & (F.col("start_date") <= F.lit(as_of.date))
                       & F.col("status").isin(conf.loan_warnings.open_statuses))


def _starts_with_any(column: Column, prefixes: list[str]) -> Column:
    return F.coalesce(reduce(operator.or_, [column.startswith(p) for p in prefixes]), F.lit(False))


def digital_engagement(app_events: DataFrame, as_of: AsOf, conf: FeatureSettings) -> DataFrame:
    """App logins, wealth and product page views and active days of the recent window."""
    recent = conf.recent_window_days
    page_view = F.col("event_type") == "page_view"
    wealth_page = _starts_with_any(F.col("page"), conf.wealth_page_prefixes)
    product_page = _starts_with_any(F.col("page"), conf.product_page_prefixes) | F.col("product_id").isNotNull()
    return (app_events.where(as_of.within("event_date", recent))
            .groupBy("customer_id")
            .agg(F.count_if(F.col("event_type") == "login").alias(f"app_logins_{recent}d"),
                 F.count_if(page_view & wealth_page).alias(f"wealth_page_views_{recent}d"),
                 F.count_if(page_view & product_page).alias(f"product_page_views_{recent}d"),
                 count_distinct_below(F.datediff("event_date", F.lit(as_of.first_day(recent))), recent)
                 .alias(f"app_active_days_{recent}d")))


def campaign_responsiveness(responses: DataFrame, as_of: AsOf, conf: FeatureSettings) -> DataFrame:
    """Pushes that reached the customer and the share answered (clicked/converted) in the window."""
    days = conf.campaign_window_days
    answered = F.col("event").isin(conf.campaign_response_events)
    return (responses.where(as_of.within("event_date", days))
            .groupBy("customer_id")
            .agg(F.count_distinct("push_id").alias(f"campaign_contacts_{days}d"),
                 F.count_distinct(F.when(answered, F.col("push_id"))).alias(f"campaign_responses_{days}d"))
            .withColumn("campaign_response_rate",
                        F.col(f"campaign_responses_{days}d") / F.col(f"campaign_contacts_{days}d")))


# ------------------------------------------------------------------ assembly
def derived_values(frame: DataFrame, conf: FeatureSettings) -> DataFrame:
    """Features computed from the families: flows, AUM, deposit inclination, revenue, recency fill."""
    recent = conf.recent_window_days
    rates = conf.revenue
    deposits = F.col("end_balance") + F.col("deposit_product_holdings")
    aum = deposits + F.col("investment_holdings")
    return (frame
            .withColumns({
                f"net_flow_{recent}d": F.col(f"inflow_{recent}d") - F.col(f"outflow_{recent}d"),
                "aum": aum,
                "deposit_inclination": F.when(aum > 0, deposits / aum).otherwise(0.0),
                "revenue_annual": (F.coalesce("_fees_year", F.lit(0.0))
                                   + rates.deposit_margin * F.col(f"avg_balance_{recent}d")
                                   + rates.investment_fee_rate * F.col("investment_holdings")
                                   + rates.loan_margin * F.col("loan_outstanding")),
                # Never transacted: as long ago as the customer exists.
                "recency_days": F.coalesce("recency_days", "days_since_first_account"),
            })
            .drop("_fees_year", "days_since_first_account"))


def assemble_features(inputs: Inputs, as_of: AsOf, conf: FeatureSettings) -> DataFrame:
    """One row per active customer with every feature but the value tier (needs the day's percentiles).

    Customers without rows in a family get the catalog's documented fills before anything is derived.
    """
    families = [
        transaction_activity(inputs.transactions, as_of, conf),
        deposit_balances(inputs.transactions, inputs.accounts, as_of, conf),
        salary_signals(inputs.transactions, as_of, conf),
        product_holdings(inputs.holdings, inputs.products, as_of, conf),
        loan_exposure(inputs.loans, as_of, conf),
        digital_engagement(inputs.app_events, as_of, conf),
        campaign_responsiveness(inputs.campaign_responses, as_of, conf),
    ]
    frame = active_customers(inputs.customers, inputs.accounts, as_of)
    for family in families:
        frame = frame.join(family, "customer_id", "left")
    return (frame
            .withColumn("as_of_date", F.lit(as_of.date))
            .transform(with_fills, conf.catalog)
            # Cents before and after deriving: ratios and sums of money then repeat exactly on a rerun.
            .transform(with_money_in_cents, conf.catalog)
            .transform(derived_values, conf)
            .transform(with_money_in_cents, conf.catalog)
            .transform(with_lifecycle_stage, conf))


def build_features(spark: SparkSession, lake: Lake, as_of: date, settings: Settings) -> DataFrame:
    """gold.customer_features rows for `as_of` from the silver tables; reads only rows up to it.

    `settings` is the pipeline's Settings (the features section and bank.timezone are used). Nothing is
    written; the result is small (one row per customer) and checkpointed, so it can be reused.
    """
    conf: FeatureSettings = settings.job("features")
    window = AsOf(as_of, settings.bank.timezone)
    # The day's percentiles need the assembled rows: materialise them once instead of twice.
    assembled = assemble_features(read_inputs(spark, lake, window), window, conf).localCheckpoint()
    cutoffs = value_tier_cutoffs(assembled, conf.value_tier)
    return conform(with_value_tier(assembled, cutoffs), conf.catalog)
