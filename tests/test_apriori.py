"""jobs/apriori building blocks on handmade baskets whose every number is worked out by hand below."""
from __future__ import annotations

import math
from datetime import date

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from jobs.apriori.baskets import assemble_baskets, attribute_items, held_product_items, segment_items
from jobs.apriori.cross_sell import cross_sell_candidates
from jobs.apriori.evaluate import hold_out, most_popular, ranking_metrics
from jobs.apriori.rules import estimate_frequent_itemsets, mine
from jobs.apriori.settings import AttributeItem, Band
from jobs.common.config import ConfigError, load_settings
from jobs.common.errors import InputError

D = date(2026, 6, 30)
BASKETS = "customer_id string, items array<string>"
RULES = ("antecedent array<string>, consequent string, support double, confidence double, lift double, "
         "antecedent_size int")

# Five baskets, min support 0.4 (2 baskets), min confidence 0.5. Counts: g1 3, x 3, y 3, g2 2; g1x 3,
# g1y 2, xy 2, g2y 1; g1xy 2 -> 8 frequent itemsets. Product rules (confidence, lift = conf / supp(p)):
#   g1 -> x 3/3 = 1, 5/3      g1 -> y 2/3, 10/9      x -> y 2/3, 10/9      y -> x 2/3, 10/9
#   g1,x -> y 2/3, 10/9       g1,y -> x 2/2 = 1, 5/3
G1, G2, X, Y = "attr:g=1", "attr:g=2", "prod:x", "prod:y"
FIVE_BASKETS = [("c1", [G1, X, Y]), ("c2", [G1, X, Y]), ("c3", [G1, X]), ("c4", [G2, Y]), ("c5", [G2])]
FIVE_BASKET_RULES = [
    ([G1], X, 0.6, 1.0, 5 / 3, 1),
    ([G1], Y, 0.4, 2 / 3, 10 / 9, 1),
    ([X], Y, 0.4, 2 / 3, 10 / 9, 1),
    ([Y], X, 0.4, 2 / 3, 10 / 9, 1),
    ([G1, X], Y, 0.4, 2 / 3, 10 / 9, 2),
    ([G1, Y], X, 0.4, 1.0, 5 / 3, 2),
]


def sort_rules(frame):
    return frame.orderBy(F.array_join("antecedent", "|"), "consequent")


def test_mine_when_five_baskets_gives_hand_computed_itemsets_and_product_rules(spark):
    mining = mine(spark.createDataFrame(FIVE_BASKETS, BASKETS), min_support=0.4, min_confidence=0.5,
                  max_estimated_itemsets=1000)
    try:
        itemsets = {tuple(r["items"]): (r["freq"], r["support"], r["size"]) for r in mining.itemsets.collect()}
        assert itemsets == {
            (G1,): (3, 0.6, 1), (G2,): (2, 0.4, 1), (X,): (3, 0.6, 1), (Y,): (3, 0.6, 1),
            (G1, X): (3, 0.6, 2), (G1, Y): (2, 0.4, 2), (X, Y): (2, 0.4, 2), (G1, X, Y): (2, 0.4, 3)}
        assert mining.baskets == 5
        expected = spark.createDataFrame(FIVE_BASKET_RULES, RULES)
        assert_approx_df_equality(sort_rules(mining.rules), sort_rules(expected), 1e-12,
                           ignore_nullable=True)
    finally:
        mining.release()


def test_mine_when_baskets_hold_infrequent_items_counts_every_basket_in_supports_and_lift(spark):
    # Six baskets, min support 0.4 -> 3 baskets. Rare items (once each) are trimmed before mining, and
    # c6 (rare items only) is left empty but still counts: g1, x, y and {g1, x} are frequent (3/6), g2
    # (2) is not; the one product rule g1 -> x has confidence 3/3 and lift 1 / (3/6) = 2.
    rare = [("c1", [G1, X, Y]), ("c2", [G1, X, Y, "prod:z"]), ("c3", [G1, X, "attr:g=9"]), ("c4", [G2, Y]),
            ("c5", [G2]), ("c6", ["prod:w", "attr:g=8"])]
    mining = mine(spark.createDataFrame(rare, BASKETS), min_support=0.4, min_confidence=0.5,
                  max_estimated_itemsets=1000)
    try:
        itemsets = {tuple(r["items"]): (r["freq"], r["support"]) for r in mining.itemsets.collect()}
        assert itemsets == {(G1,): (3, 0.5), (X,): (3, 0.5), (Y,): (3, 0.5), (G1, X): (3, 0.5)}
        assert mining.baskets == 6
        assert [tuple(r) for r in mining.rules.collect()] == [([G1], X, 0.5, 1.0, 2.0, 1)]
    finally:
        mining.release()


def test_estimate_when_independent_items_counts_itemsets_reaching_min_support():
    # a .5, b .5, c .2 at 0.1: a, b, c, ab .25, ac .1, bc .1 (abc .05 is not) -> 6
    assert estimate_frequent_itemsets({"a": 0.5, "b": 0.5, "c": 0.2, "d": 0.05}, 0.1, stop_above=100) == 6
    # items of one attribute never share a basket: age=1 with age=2 is not counted -> 5
    supports = {"attr:age=1": 0.5, "attr:age=2": 0.5, "c": 0.2}
    assert estimate_frequent_itemsets(supports, 0.1, stop_above=100) == 5
    # counting stops just above the limit
    assert estimate_frequent_itemsets({str(i): 0.9 for i in range(30)}, 0.01, stop_above=1000) == 1001


def test_mine_when_estimate_exceeds_limit_raises_input_error_saying_why(spark):
    # 12 items each in 90 % of 20 baskets: independent estimate = every non-empty subset with 0.9^k >= 0.05
    baskets = spark.createDataFrame(
        [(f"c{i}", [f"i{j}" for j in range(12) if (i + j) % 10]) for i in range(20)], BASKETS)
    with pytest.raises(InputError) as error:
        mine(baskets, min_support=0.05, min_confidence=0.5, max_estimated_itemsets=500)
    message = str(error.value)
    assert "more than 500 frequent itemsets expected at min_support 0.05" in message
    assert "12 items reach it in 20 baskets" in message
    assert "max_estimated_itemsets" in message and "min_support" in error.value.hint


def test_baskets_when_holdings_start_and_end_around_d_keep_types_held_at_d(spark):
    holdings = spark.createDataFrame([
        ("c1", "P1", date(2025, 1, 1), None),              # held
        ("c1", "P2", date(2025, 1, 1), date(2026, 6, 30)),  # ended at D: not held
        ("c1", "P3", date(2026, 7, 1), None),               # starts after D
        ("c2", "P2", date(2026, 6, 30), date(2026, 7, 1)),  # started at D, ends after: held
        ("c2", "P4", date(2024, 1, 1), None),               # same type as P2: one item
        ("c9", "P1", date(2025, 1, 1), None),               # not an active customer at D
    ], "customer_id string, product_id string, start_date date, end_date date")
    products = spark.createDataFrame([("P1", "fund"), ("P2", "insurance"), ("P3", "mortgage"),
                                      ("P4", "insurance")], "product_id string, product_type string")
    features = spark.createDataFrame([("c1", 29, 65000.0, " east "), ("c2", 30, None, None),
                                      ("c3", 70, 600000.0, "west")],
                                     "customer_id string, age int, income double, region string")
    attributes = [
        AttributeItem(name="age_band", column="age", bands=[Band(label="18-29", min=None, max=30),
                                                            Band(label="30-49", min=30, max=50)]),
        AttributeItem(name="income_band", column="income", bands=[Band(label="high", min=60000, max=None)]),
        AttributeItem(name="region", column="region", bands=None),
    ]
    segments = spark.createDataFrame([("c3", "savers"), ("c2", None)], "customer_id string, segment_label string")
    baskets = assemble_baskets(features, held_product_items(holdings, products, D),
                               attribute_items(features, attributes), segment_items(segments, "segment"))
    expected = spark.createDataFrame([
        ("c1", ["attr:age_band=18-29", "attr:income_band=high", "attr:region=east", "prod:fund"]),
        ("c2", ["attr:age_band=30-49", "prod:insurance"]),
        ("c3", ["attr:income_band=high", "attr:region=west", "attr:segment=savers"]),  # age 70: no band
    ], BASKETS)
    assert_df_equality(baskets, expected, ignore_row_order=True, ignore_nullable=True)


def _candidates(spark, baskets, min_lift):
    rules = spark.createDataFrame(FIVE_BASKET_RULES, RULES)
    return cross_sell_candidates(spark.createDataFrame(baskets, BASKETS), rules, top_n=3, min_lift=min_lift,
                                 lift_weight=1.0).orderBy("customer_id", "rank")


def test_cross_sell_when_rules_apply_ranks_products_by_best_rule_score(spark):
    # score = confidence * lift: g1->x 5/3, every 10/9 rule 2/3 * 10/9 = 20/27.
    # a: g1->x and g1->y. b holds x: y by g1->y, x->y, g1x->y, all 20/27; the tie goes to the shorter,
    # then alphabetically first antecedent [g1]. c: y->x. d (g=2) matches no rule.
    frame = _candidates(spark, [("a", [G1]), ("b", [G1, X]), ("c", [Y]), ("d", [G2])], min_lift=1.0)
    expected = spark.createDataFrame([
        ("a", "x", 1, 5 / 3, 1.0, 5 / 3, [G1]),
        ("a", "y", 2, 20 / 27, 2 / 3, 10 / 9, [G1]),
        ("b", "y", 1, 20 / 27, 2 / 3, 10 / 9, [G1]),
        ("c", "x", 1, 20 / 27, 2 / 3, 10 / 9, [Y]),
    ], "customer_id string, product_type string, rank int, score double, confidence double, lift double, "
       "antecedent array<string>")
    assert_approx_df_equality(frame, expected, 1e-12, ignore_nullable=True)


def test_cross_sell_when_min_lift_above_weak_rules_keeps_strong_rules_only(spark):
    frame = _candidates(spark, [("a", [G1]), ("b", [G1, X]), ("c", [Y])], min_lift=1.2)
    assert [(r["customer_id"], r["product_type"]) for r in frame.collect()] == [("a", "x")]


def test_hold_out_when_seeded_hides_one_held_product_reproducibly(spark):
    baskets = spark.createDataFrame(
        [(f"c{i}", ["attr:a=1"] + [f"prod:p{j}" for j in range(i % 4)]) for i in range(200)], BASKETS)
    training, hidden = hold_out(baskets, seed=7)
    rows = {r["customer_id"]: r["items"] for r in baskets.collect()}
    kept = {r["customer_id"]: r["items"] for r in training.collect()}
    chosen = {r["customer_id"]: r["item"] for r in hidden.collect()}
    assert set(kept) == set(rows)
    assert set(chosen) == {c for c, items in rows.items() if len(items) > 1}  # customers holding a product
    for customer, items in rows.items():
        expected = [i for i in items if i != chosen[customer]] if customer in chosen else items
        assert kept[customer] == expected and (customer not in chosen or chosen[customer].startswith("prod:"))
    again = {r["customer_id"]: r["item"] for r in hold_out(baskets, seed=7)[1].collect()}
    other = {r["customer_id"]: r["item"] for r in hold_out(baskets, seed=8)[1].collect()}
    assert again == chosen and other != chosen
    # with three products held, each is hidden about a third of the time (seeded hash, not position)
    three = [chosen[c] for c, items in rows.items() if len(items) == 4]
    assert all(10 <= three.count(f"prod:p{j}") <= 24 for j in range(3))


def test_ranking_metrics_when_handmade_lists_gives_hand_computed_values(spark):
    hidden = spark.createDataFrame([("c1", "prod:x"), ("c2", "prod:y"), ("c3", "prod:z")],
                                   "customer_id string, item string")
    recs = spark.createDataFrame([("c1", "prod:x", 1), ("c1", "prod:y", 2), ("c2", "prod:x", 1),
                                  ("c2", "prod:y", 2)], "customer_id string, item string, rank int")
    metrics = ranking_metrics(recs, hidden, [1, 2], catalogue_size=3)
    expected = {
        # k=1: only c1 hit; everyone offered x
        "precision_at_1": 1 / 3, "recall_at_1": 1 / 3, "f1_at_1": 1 / 3, "coverage_at_1": 1 / 3,
        "diversity_at_1": 0.0,
        # k=2: c1 and c2 hit among 6 slots; x and y offered twice each: entropy ln 2 / ln 3
        "precision_at_2": 1 / 3, "recall_at_2": 2 / 3, "f1_at_2": 4 / 9, "coverage_at_2": 2 / 3,
        "diversity_at_2": math.log(2) / math.log(3),
    }
    assert metrics == pytest.approx(expected)


def test_most_popular_when_customer_holds_the_top_product_offers_the_next(spark):
    training = spark.createDataFrame([("c1", [X]), ("c2", [X, Y]), ("c3", ["prod:z", X]), ("c4", [])],
                                     BASKETS)
    customers = spark.createDataFrame([("c1",), ("c4",)], "customer_id string")
    # popularity: x 3, then y 1 and z 1 (ties by name)
    recs = most_popular(training, customers, top_n=2).orderBy("customer_id", "rank")
    assert [tuple(r) for r in recs.collect()] == [("c1", Y, 1), ("c1", "prod:z", 2), ("c4", X, 1),
                                                  ("c4", Y, 2)]


def test_settings_when_bands_overlap_or_duration_used_raise_config_error():
    with pytest.raises(ConfigError, match="bands 'a' and 'b' overlap"):
        load_settings(env={"CRM_APRIORI__ATTRIBUTES": "[{name: x, column: x, bands: "
                                                      "[{label: a, min: 0, max: 10}, {label: b, min: 5, max: null}]}]"})
    with pytest.raises(ConfigError, match="duration"):
        load_settings(env={"CRM_APRIORI__BANK_MARKETING__ATTRIBUTES": "[{name: d, column: duration, bands: null}]"})
