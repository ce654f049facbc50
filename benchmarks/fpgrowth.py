"""Benchmark: the apriori job's mining path against bare Spark MLlib FP-growth and a single-machine peer.

Data: FIMI `retail.dat` (Brijs et al., anonymised baskets of a Belgian retail store; 88,162 baskets,
16,470 items), from ../shared/data/fimi/retail.dat.gz; items become `prod:<id>` so every rule is a
product rule. One cached Spark DataFrame of baskets is shared by both Spark runs, per minimum support:

- ours: what `jobs/apriori/job.py` does with the baskets: the explosion guard, FP-growth, the itemsets
  with support and size, the product rules, both written side by side to Delta tables (gold.frequent_itemsets,
  gold.association_rules) of a scratch lake under --workdir;
- bare: `pyspark.ml.fpm.FPGrowth` fit, `freqItemsets` (cached) and `associationRules`, both computed
  in full to Spark's `noop` sink (no write cost);
- reference: mlxtend's single-machine `fpgrowth` on a one-hot frame of the same baskets' frequent items
  (if mlxtend imports; --no-reference skips it).

Prints the times (best of --repeats), the frequent itemset counts (must be equal across tools) and the
ratios ours / bare (goal: at most 1.2) and reference / bare.

    .venv/bin/python benchmarks/fpgrowth.py                              # all baskets, 0.01 0.005 0.002
    .venv/bin/python benchmarks/fpgrowth.py --baskets 20000 --supports 0.01 --no-reference   # quick
"""
from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path

from pyspark.ml.fpm import FPGrowth
from pyspark.sql import DataFrame, SparkSession

from jobs.apriori.job import ITEMSETS, RULES, replace_all_as_of
from jobs.apriori.rules import mine
from jobs.common.config import load_settings
from jobs.common.lake import Lake
from jobs.common.paths import PROJECT_ROOT
from jobs.common.spark import get_spark

DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data" / "fimi" / "retail.dat.gz"
AS_OF = date(2026, 6, 30)


def read_baskets(path: Path, limit: int | None) -> list[list[str]]:
    with gzip.open(path, "rt", encoding="ascii") as handle:
        lines = [line.split() for _, line in zip(range(limit or 10**12), handle, strict=False)]
    return [sorted({f"prod:{item}" for item in items}) for items in lines]


def spark_baskets(spark: SparkSession, baskets: list[list[str]]) -> DataFrame:
    partitions = int(spark.conf.get("spark.default.parallelism", "4"))
    frame = spark.createDataFrame([(str(n), items) for n, items in enumerate(baskets)],
                                  "customer_id string, items array<string>").repartition(partitions)
    frame = frame.persist()
    frame.count()
    return frame


def run_bare(baskets: DataFrame, min_support: float, min_confidence: float) -> int:
    model = FPGrowth(itemsCol="items", minSupport=min_support, minConfidence=min_confidence) \
        .fit(baskets.select("items"))
    itemsets = model.freqItemsets.persist()
    count = itemsets.count()
    model.associationRules.write.format("noop").mode("overwrite").save()
    itemsets.unpersist()
    return count


def run_ours(lake: Lake, baskets: DataFrame, min_support: float, min_confidence: float,
             limit: int) -> tuple[int, dict[str, float]]:
    started = time.perf_counter()
    mining = mine(baskets, min_support, min_confidence, limit)
    mined = time.perf_counter()
    written = replace_all_as_of(lake, {ITEMSETS: mining.itemsets, RULES: mining.rules}, AS_OF, "benchmark")
    mining.release()
    return written[ITEMSETS], {"guard + mining": mined - started,
                                      "writes": time.perf_counter() - mined}


def run_reference(baskets: list[list[str]], min_support: float) -> int:
    import pandas as pd
    from mlxtend.frequent_patterns import fpgrowth
    from mlxtend.preprocessing import TransactionEncoder

    # Only items frequent on their own can be in a frequent itemset: one-hot just those (a dense frame
    # of all 16,470 items takes over 20 GB in mlxtend, and its sparse path densifies too).
    counts = Counter(item for basket in baskets for item in basket)
    frequent = {item for item, n in counts.items() if n >= min_support * len(baskets)}
    kept = [[item for item in basket if item in frequent] for basket in baskets]
    encoder = TransactionEncoder()
    frame = pd.DataFrame(encoder.fit(kept).transform(kept), columns=encoder.columns_)
    return len(fpgrowth(frame, min_support=min_support))


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="retail.dat.gz")
    parser.add_argument("--baskets", type=int, default=None, help="first N baskets only (default: all)")
    parser.add_argument("--supports", type=float, nargs="+", default=[0.01, 0.005, 0.002])
    parser.add_argument("--min-confidence", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=1, help="runs per tool and support; best is kept")
    parser.add_argument("--no-reference", action="store_true", help="skip the mlxtend reference")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch lake (default: a temp dir)")
    args = parser.parse_args()

    settings = load_settings()
    limit = settings.job("apriori").max_estimated_itemsets
    spark = get_spark(settings, app_name="fpgrowth-benchmark")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fpgrowth-bench-"))
    lake = Lake(spark, str(workdir / "lake"), settings.lake.backend)
    lists = read_baskets(args.data, args.baskets)
    baskets = spark_baskets(spark, lists)
    print(f"FIMI retail.dat: {len(lists):,} baskets, {len({i for b in lists for i in b}):,} items; "
          f"min_confidence {args.min_confidence}; best of {args.repeats}; Spark master "
          f"{spark.sparkContext.master}")
    rows = []
    for support in args.supports:
        bare_times, ours_times, ours_parts, ref_times = [], [], [], []
        for _ in range(args.repeats):
            seconds, bare_count = timed(run_bare, baskets, support, args.min_confidence)
            bare_times.append(seconds)
            seconds, (ours_count, parts) = timed(run_ours, lake, baskets, support, args.min_confidence, limit)
            ours_times.append(seconds)
            ours_parts.append(parts)
            if not args.no_reference:
                seconds, ref_count = timed(run_reference, lists, support)
                ref_times.append(seconds)
        ref_count = None if args.no_reference else ref_count
        counts = [c for c in (bare_count, ours_count, ref_count) if c is not None]
        parts = min(ours_parts, key=lambda p: sum(p.values()))
        rows.append((support, bare_count, ours_count, ref_count, len(set(counts)) == 1, min(bare_times),
                     min(ours_times), min(ref_times) if ref_times else None, parts))
        print(f"  min_support {support}: done", flush=True)

    print("\n| min_support | itemsets bare / ours / mlxtend | equal | bare MLlib s | ours s (guard+mining, "
          "writes) | mlxtend s | ours / bare | mlxtend / bare |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for support, bare_n, ours_n, ref_n, equal, bare_s, ours_s, ref_s, parts in rows:
        ref_cells = (f"{ref_s:.1f}", f"{ref_s / bare_s:.2f}x") if ref_s is not None else ("-", "-")
        print(f"| {support} | {bare_n:,} / {ours_n:,} / {'-' if ref_n is None else f'{ref_n:,}'} | "
              f"{'yes' if equal else 'NO'} | {bare_s:.1f} | {ours_s:.1f} ({parts['guard + mining']:.1f}, "
              f"{parts['writes']:.1f}) | {ref_cells[0]} | {ours_s / bare_s:.2f}x | {ref_cells[1]} |")
    if not all(r[4] for r in rows):
        raise SystemExit("frequent itemset counts differ between tools")


if __name__ == "__main__":
    main()
