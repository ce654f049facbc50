"""Point-in-time churn labels: who, active at a cut-off T, churned within the horizon (T, T + H].

Only silver history is used: accounts by their open/close dates, transactions by their bank-local date
and `balance_after`. The definition (conf/churn.yaml `label`, docs/churn.md):

* active at T: an account open at T, and at least `min_active_txns` customer-initiated transactions in
  (T - H, T] or a deposit balance of at least `balance_floor` at T;
* churned (1): active at T and, at T + H, either no account open any more (closure) or fewer than
  `min_active_txns` customer-initiated transactions in (T, T + H] with the deposit balance at T + H below
  `balance_floor` or below `balance_drop_share` x the balance at T (dormancy); else 0.
"""
from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.churn.settings import LabelSettings
from jobs.common.local_dates import local_date

TXN_DAY = "txn_day"


def with_local_day(transactions: DataFrame, timezone: str) -> DataFrame:
    return transactions.withColumn(TXN_DAY, local_date("txn_ts", timezone))


def customers_with_open_accounts(accounts: DataFrame, day: date) -> DataFrame:
    """customer_id of everyone with at least one account open at the end of `day`."""
    d = F.lit(day)
    return (accounts.where((F.col("open_date") <= d) & (F.col("close_date").isNull() | (F.col("close_date") > d)))
            .select("customer_id").distinct())


def initiated_transactions(transactions: DataFrame, after: date, until: date,
                           label: LabelSettings) -> DataFrame:
    """customer_id, txns: customer-initiated transactions with a local day in (after, until]."""
    return (transactions
            .where(F.col("txn_type").isin(label.customer_initiated_txn_types)
                   & (F.col(TXN_DAY) > F.lit(after)) & (F.col(TXN_DAY) <= F.lit(until)))
            .groupBy("customer_id").agg(F.count("*").alias("txns")))


def deposit_balances(transactions: DataFrame, accounts: DataFrame, day: date,
                     label: LabelSettings) -> DataFrame:
    """customer_id, balance: the last `balance_after` on or before `day` of each deposit account open at
    `day`, summed per owner. An account without transactions by then counts 0."""
    deposit_accounts = (accounts
                        .where(F.col("account_type").isin(label.deposit_account_types)
                               & (F.col("open_date") <= F.lit(day))
                               & (F.col("close_date").isNull() | (F.col("close_date") > F.lit(day))))
                        .select("account_id", "customer_id"))
    last_balance = (transactions.where(F.col(TXN_DAY) <= F.lit(day))
                    .groupBy("account_id")
                    .agg(F.max_by("balance_after", F.struct("txn_ts", "txn_id")).alias("balance")))
    return (deposit_accounts.join(last_balance, "account_id", "left")
            .groupBy("customer_id")
            .agg(F.sum(F.coalesce(F.col("balance").cast("double"), F.lit(0.0))).alias("balance")))


def churn_labels(accounts: DataFrame, transactions: DataFrame, cutoff: date, label: LabelSettings) -> DataFrame:
    """One row per customer active at `cutoff`: customer_id, cutoff_date, churned (0/1), churn_kind
    (closure, dormancy or null). `transactions` must carry TXN_DAY (see `with_local_day`)."""
    end = cutoff + timedelta(days=label.horizon_days)
    start = cutoff - timedelta(days=label.horizon_days)
    open_at_cutoff = customers_with_open_accounts(accounts, cutoff)
    still_open = customers_with_open_accounts(accounts, end).withColumn("open_at_end", F.lit(True))

    def txns(after: date, until: date, name: str) -> DataFrame:
        return initiated_transactions(transactions, after, until, label).withColumnRenamed("txns", name)

    def balances(day: date, name: str) -> DataFrame:
        return deposit_balances(transactions, accounts, day, label).withColumnRenamed("balance", name)

    facts = (open_at_cutoff
             .join(txns(start, cutoff, "txns_before"), "customer_id", "left")
             .join(txns(cutoff, end, "txns_after"), "customer_id", "left")
             .join(balances(cutoff, "balance_at_cutoff"), "customer_id", "left")
             .join(balances(end, "balance_at_end"), "customer_id", "left")
             .join(still_open, "customer_id", "left")
             .fillna(0, ["txns_before", "txns_after"])
             .fillna(0.0, ["balance_at_cutoff", "balance_at_end"])
             .fillna(False, ["open_at_end"]))
    active = ((F.col("txns_before") >= label.min_active_txns)
              | (F.col("balance_at_cutoff") >= label.balance_floor))
    dormant = ((F.col("txns_after") < label.min_active_txns)
               & ((F.col("balance_at_end") < label.balance_floor)
                  | (F.col("balance_at_end") < F.col("balance_at_cutoff") * label.balance_drop_share)))
    kind = F.when(~F.col("open_at_end"), F.lit("closure")).when(dormant, F.lit("dormancy"))
    return (facts.where(active)
            .select("customer_id", F.lit(cutoff).alias("cutoff_date"),
                    kind.isNotNull().cast("int").alias("churned"), kind.alias("churn_kind")))
