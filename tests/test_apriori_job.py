"""The apriori stage end to end on a small handmade lake, checked against a brute-force reference.

80 customers with seeded random holdings and two planted associations (fund -> wealth management,
age under 30 -> credit card). The reference enumerates every subset of every basket in plain Python,
so itemsets, rules and the ranking of cross-sell candidates are computed independently of Spark.
"""
from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import date, datetime

import mlflow
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.apriori.job import run
from jobs.common.config import load_settings
from jobs.common.context import RunContext
from jobs.common.contract import source
from jobs.common.errors import InputError
from jobs.common.lake import Lake

D = date(2026, 6, 30)
PRODUCTS = {"P1": "fund", "P2": "wealth_management", "P3": "time_deposit", "P4": "credit_card",
            "P5": "insurance", "P6": "mortgage", "P7": "fund"}
ATTRIBUTES = ("[{name: age_band, column: age, bands: [{label: young, min: null, max: 30}, "
              "{label: adult, min: 30, max: null}]}, {name: region, column: region, bands: null}]")
MIN_SUPPORT, MIN_CONFIDENCE, TOP_N, MIN_LIFT, LIFT_WEIGHT = 0.1, 0.2, 2, 1.0, 0.5


@pytest.fixture
def job_settings(tmp_path):
    return load_settings(env={
        "CRM_LAKE__ROOT": str(tmp_path / "lake"), "CRM_LANDING__ROOT": str(tmp_path / "landing"),
        "CRM_OUTBOX__ROOT": str(tmp_path / "outbox"), "CRM_REPORTS__ROOT": str(tmp_path / "reports"),
        "CRM_APRIORI__MIN_SUPPORT": str(MIN_SUPPORT), "CRM_APRIORI__MIN_CONFIDENCE": str(MIN_CONFIDENCE),
        "CRM_APRIORI__ATTRIBUTES": ATTRIBUTES, "CRM_APRIORI__CROSS_SELL__TOP_N": str(TOP_N),
        "CRM_APRIORI__CROSS_SELL__MIN_LIFT": str(MIN_LIFT),
        "CRM_APRIORI__CROSS_SELL__LIFT_WEIGHT": str(LIFT_WEIGHT),
        "CRM_APRIORI__EVALUATION__K": "[1, 2]"})


def silver(spark, name: str, rows: list[dict]):
    schema = T.StructType([*source(name).spark_schema.fields, T.StructField("batch_date", T.DateType()),
                           T.StructField("run_id", T.StringType())])
    return spark.createDataFrame([tuple(r.get(f.name) for f in schema.fields) for r in rows], schema)


def handmade_bank(spark, lake: Lake) -> dict[str, list[str]]:
    """Writes the silver and gold inputs; returns the baskets they imply at D (customer -> items)."""
    rng = random.Random(5)
    customers, holdings, baskets = [], [], {}
    for n in range(80):
        customer = f"C{n:03d}"
        age, region = rng.randint(20, 60), rng.choice(["east", "west"])
        segment = "savers" if n % 3 == 0 else None
        held = {t for t in ("fund", "time_deposit", "insurance", "mortgage") if rng.random() < 0.3}
        if "fund" in held and rng.random() < 0.9:
            held.add("wealth_management")
        if age < 30 and rng.random() < 0.85:
            held.add("credit_card")
        for product_type in sorted(held):
            product = "P7" if product_type == "fund" and n % 2 else next(
                p for p, t in PRODUCTS.items() if t == product_type)
            holdings.append({"holding_id": f"H{len(holdings)}", "customer_id": customer, "product_id": product,
                             "start_date": date(2025, 1, 1), "end_date": None})
        # noise the job must ignore: ended at D, and starting after D
        holdings.append({"holding_id": f"H{len(holdings)}", "customer_id": customer, "product_id": "P5",
                         "start_date": date(2024, 1, 1), "end_date": D})
        holdings.append({"holding_id": f"H{len(holdings)}", "customer_id": customer, "product_id": "P6",
                         "start_date": date(2026, 7, 1), "end_date": None})
        customers.append((customer, D, age, region, segment))
        baskets[customer] = sorted({f"prod:{t}" for t in held} | {f"attr:region={region}"}
                                   | {f"attr:age_band={'young' if age < 30 else 'adult'}"}
                                   | ({f"attr:segment={segment}"} if segment else set()))
    for row in holdings:
        row.update(amount=None, updated_at=datetime(2026, 6, 1), batch_date=D, run_id="r0")
    products = [{"product_id": p, "product_name": p, "product_type": t, "risk_level": 1, "active": True,
                 "batch_date": D, "run_id": "r0"} for p, t in PRODUCTS.items()]
    lake.overwrite(silver(spark, "holdings", holdings), "silver.holdings")
    lake.overwrite(silver(spark, "products", products), "silver.products")
    features = spark.createDataFrame([c[:4] for c in customers],
                                     "customer_id string, as_of_date date, age int, region string")
    lake.replace_partitions(features, "gold.customer_features", [("as_of_date", "=", D)],
                            partition_by=["as_of_date"])
    segments = spark.createDataFrame([(c[0], 1, c[4], D) for c in customers if c[4]],
                                     "customer_id string, segment_id int, segment_label string, as_of_date date")
    lake.replace_partitions(segments, "gold.customer_segments", [("as_of_date", "=", D)],
                            partition_by=["as_of_date"])
    return baskets


def reference_rules(baskets: dict[str, list[str]]) -> tuple[Counter, list[tuple]]:
    """Brute force: every subset of every basket counted; rules X -> p for product items p."""
    counts: Counter = Counter()
    for items in baskets.values():
        for size in range(1, len(items) + 1):
            counts.update(itertools.combinations(items, size))
    total = len(baskets)
    frequent = Counter({s: c for s, c in counts.items() if c >= MIN_SUPPORT * total})
    rules = []
    for itemset, count in frequent.items():
        for product in (i for i in itemset if i.startswith("prod:") and len(itemset) > 1):
            antecedent = tuple(i for i in itemset if i != product)
            confidence = count / frequent[antecedent]
            if confidence >= MIN_CONFIDENCE:
                rules.append((list(antecedent), product, count / total, confidence,
                              confidence / (frequent[(product,)] / total), len(antecedent)))
    return frequent, rules


def reference_candidates(baskets: dict[str, list[str]], rules: list[tuple]) -> list[tuple]:
    rows = []
    for customer, items in baskets.items():
        best: dict[str, tuple] = {}
        for antecedent, product, _, confidence, lift, size in rules:
            if lift <= MIN_LIFT or product in items or not set(antecedent) <= set(items):
                continue
            score = confidence * lift ** LIFT_WEIGHT
            key = (-score, -confidence, -lift, size, "|".join(antecedent))
            if product not in best or key < best[product][0]:
                best[product] = (key, (product[5:], score, confidence, lift, antecedent))
        ranked = sorted((v for _, v in best.values()), key=lambda v: (-v[1], v[0]))[:TOP_N]
        rows += [(customer, p, rank, s, c, lf, a) for rank, (p, s, c, lf, a) in enumerate(ranked, 1)]
    return rows


def test_run_when_handmade_lake_writes_reference_rules_itemsets_candidates_and_tags(spark, job_settings):
    lake = Lake.from_settings(spark, job_settings)
    baskets = handmade_bank(spark, lake)
    frequent, rules = reference_rules(baskets)
    written = run(RunContext(job_settings, D, run_id="run-1", spark_session=spark))

    itemsets = lake.read("gold.frequent_itemsets", partition_filters=[("as_of_date", "=", D)])
    assert {tuple(r["items"]): r["freq"] for r in itemsets.collect()} == dict(frequent)
    mined = (lake.read("gold.association_rules").drop("as_of_date")
             .orderBy(F.array_join("antecedent", "|"), "consequent"))
    expected_rules = spark.createDataFrame(sorted(rules, key=lambda r: ("|".join(r[0]), r[1])), mined.schema)
    assert_approx_df_equality(mined, expected_rules, 1e-9, ignore_nullable=True)
    # the planted association is found
    fund = [r for r in rules if r[0] == ["prod:fund"] and r[1] == "prod:wealth_management"]
    assert fund and fund[0][4] > 1.5

    candidates = lake.read("gold.cross_sell_candidates").drop("as_of_date").orderBy("customer_id", "rank")
    expected = spark.createDataFrame(reference_candidates(baskets, rules), candidates.schema)
    assert_approx_df_equality(candidates, expected, 1e-9, ignore_nullable=True)

    tags = lake.read("gold.customer_tags").where(F.col("written_by") == "apriori")
    assert {(r["customer_id"], r["tag"], r["value"], r["source"]) for r in tags.collect()} == {
        (c, "recommended_product", p, "model") for c, p, rank, *_ in expected.collect() if rank == 1}
    assert written == {"gold.frequent_itemsets": len(frequent), "gold.association_rules": len(rules),
                       "gold.cross_sell_candidates": expected.count(), "gold.customer_tags": tags.count()}

    # an idempotent rerun: the date's partitions are replaced, not added to
    again = run(RunContext(job_settings, D, run_id="run-2", spark_session=spark))
    assert again == written
    assert lake.read("gold.association_rules").count() == len(rules)
    assert lake.read("gold.customer_tags").count() == tags.count()

    experiment = mlflow.get_experiment_by_name("crm-apriori")
    logged = mlflow.search_runs([experiment.experiment_id], output_format="list")
    assert len(logged) == 2
    metrics = logged[0].data.metrics
    holders = sum(any(i.startswith("prod:") for i in items) for items in baskets.values())
    assert metrics["customers_evaluated"] == holders
    for name in ("rules", "baseline"):
        for metric in ("precision", "recall", "f1", "coverage", "diversity"):
            for k in (1, 2):
                assert 0.0 <= metrics[f"{name}_{metric}_at_{k}"] <= 1.0
    assert logged[0].data.params["min_support"] == str(MIN_SUPPORT)


def test_run_when_features_of_the_date_missing_raises_input_error(spark, job_settings):
    lake = Lake.from_settings(spark, job_settings)
    with pytest.raises(InputError, match="features"):
        run(RunContext(job_settings, D, spark_session=spark))
    handmade_bank(spark, lake)
    with pytest.raises(InputError, match="no rows for 2026-07-01"):
        run(RunContext(job_settings, date(2026, 7, 1), spark_session=spark))
