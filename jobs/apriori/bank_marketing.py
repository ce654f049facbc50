"""The apriori code path on public data: UCI Bank Marketing (Moro, Laureano & Cortez, ESM'2011).

`python -m jobs.apriori.bank_marketing [--data PATH] [--top N]` builds one basket per client of bank-full
(the attribute items of `apriori.bank_marketing.attributes` plus `prod:term_deposit` when the client
subscribed, `y = yes`), mines it with the nightly job's `mine` and prints the rules
attributes -> term deposit by lift. `duration` is never used: it is known only after the call.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.apriori.baskets import assemble_baskets, attribute_items, product_item
from jobs.apriori.rules import Mining, mine
from jobs.apriori.settings import AprioriSettings, AttributeItem
from jobs.churn.bank_marketing import DEFAULT_DATA, LABEL, load_bank_marketing
from jobs.common.config import load_settings
from jobs.common.spark import get_spark

TERM_DEPOSIT = "prod:term_deposit"


def bank_marketing_baskets(clients: DataFrame, attributes: list[AttributeItem]) -> DataFrame:
    """(customer_id, items) per client row of `load_bank_marketing` (a row number as the id)."""
    numbered = clients.withColumn("customer_id", F.monotonically_increasing_id().cast("string"))
    subscribed = (numbered.where(F.col(LABEL) == 1)
                  .select("customer_id", product_item(F.lit("term_deposit")).alias("item")))
    return assemble_baskets(numbered, attribute_items(numbered, attributes), subscribed)


def mine_bank_marketing(spark: SparkSession, path: Path, settings: AprioriSettings) -> Mining:
    """Frequent itemsets and product rules of bank-full (the only product item is the term deposit)."""
    reference = settings.bank_marketing
    baskets = bank_marketing_baskets(load_bank_marketing(spark, path), reference.attributes)
    return mine(baskets, reference.min_support, reference.min_confidence, settings.max_estimated_itemsets,
                settings.num_partitions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="bank-full.csv.gz")
    parser.add_argument("--top", type=int, default=10, help="rules to print (default 10)")
    args = parser.parse_args()
    settings = load_settings()
    mining = mine_bank_marketing(get_spark(settings), args.data, settings.job("apriori"))
    reference = settings.job("apriori").bank_marketing
    rules = mining.rules.where(F.col("consequent") == TERM_DEPOSIT)
    print(f"UCI Bank Marketing bank-full (Moro, Laureano & Cortez 2011): {mining.baskets:,} clients, "
          f"{mining.itemsets.count():,} frequent itemsets and {rules.count():,} rules -> {TERM_DEPOSIT} at "
          f"min_support {reference.min_support}, min_confidence {reference.min_confidence}")
    print("| antecedent | support | confidence | lift |\n|---|---:|---:|---:|")
    for rule in rules.orderBy(F.desc("lift"), F.desc("support")).limit(args.top).collect():
        print(f"| {' & '.join(rule['antecedent'])} | {rule['support']:.4f} | {rule['confidence']:.3f} "
              f"| {rule['lift']:.2f} |")
    mining.release()


if __name__ == "__main__":
    main()
