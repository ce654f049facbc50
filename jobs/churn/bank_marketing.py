"""The churn trainer checked on public data: UCI Bank Marketing (Moro, Laureano & Cortez, ESM'2011).

`python -m jobs.churn.bank_marketing [--data PATH]` trains `train_model` unchanged on bank-full
(label `y`, without `duration`, which is only known after the call and leaks the outcome) with a
seeded 20 % validation share, and prints the validation metrics of every algorithm.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from jobs.churn.train import TrainResult, Validation, train_model
from jobs.common.config import load_settings
from jobs.common.paths import PROJECT_ROOT
from jobs.common.spark import get_spark

DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data" / "bank_marketing" / "bank-full.csv.gz"
SCHEMA = ("age int, job string, marital string, education string, default string, balance double, "
          "housing string, loan string, contact string, day int, month string, duration int, "
          "campaign int, pdays int, previous int, poutcome string, y string")
LABEL = "subscribed"


MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def load_bank_marketing(spark: SparkSession, path: Path, contact_year: bool = False) -> DataFrame:
    """bank-full as a feature table: the 15 attributes known before the call and the 0/1 label.

    `contact_year` adds the year of the contact (0 = 2008, 1 = 2009, 2 = 2010): the file is ordered by
    contact date (bank-names.txt), so the year starts again each time the month goes back. The date is
    known before the call; the published bank-additional set carries the same period information as
    economic indicators.
    """
    raw = spark.read.csv(str(path), sep=";", header=True, schema=SCHEMA, enforceSchema=False)
    table = raw.withColumn(LABEL, (F.col("y") == "yes").cast("int")).drop("y", "duration")
    if not contact_year:
        return table
    month = F.array_position(F.array(*[F.lit(m) for m in MONTHS]), F.col("month"))
    # One small file read in order: a window without partitions over its row order is fine here.
    order = Window.orderBy("file_row")
    return (table.withColumn("file_row", F.monotonically_increasing_id())
            .withColumn("month_number", month)
            .withColumn("new_year", (F.col("month_number") < F.lag("month_number").over(order)).cast("int"))
            .withColumn("contact_year", F.sum(F.coalesce("new_year", F.lit(0))).over(order))
            .drop("file_row", "month_number", "new_year"))


def feature_names(frame: DataFrame) -> list[str]:
    return [c for c in frame.columns if c != LABEL]


def check(spark: SparkSession, path: Path, validation_share: float, seed: int,
          contact_year: bool = False) -> TrainResult:
    settings = load_settings().job("churn")
    table = load_bank_marketing(spark, path, contact_year)
    # The split hashes the delivered columns only, so runs with and without contact_year validate on
    # the same rows.
    delivered = load_bank_marketing(spark, path).columns
    return train_model(table, LABEL, feature_names(table), settings,
                       Validation.random(validation_share, seed, hashed=delivered))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="bank-full.csv.gz")
    parser.add_argument("--validation-share", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--contact-year", action="store_true", help="add the contact year derived from the file order")
    args = parser.parse_args()
    result = check(get_spark(load_settings()), args.data, args.validation_share, args.seed, args.contact_year)
    extra = " + contact year" if args.contact_year else ""
    print(f"UCI Bank Marketing (bank-full, without duration{extra}): {result.train_count:,} training rows, "
          f"{result.validation_count:,} validation rows ({args.validation_share:.0%}, seed {args.seed})")
    for algorithm, metrics in result.candidates.items():
        print(f"  {algorithm:<9} " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "rows"))
    print(f"kept: {result.algorithm}; top features: "
          + ", ".join(f"{name} {imp:.3f}" for name, imp in result.feature_importances[:8]))


if __name__ == "__main__":
    main()
