"""The apriori stage on the generated bank (shared `pipeline_run`): the generator's planted associations
(`<landing>.truth/planted_rules.json`, product types and age bands) must come out as rules with lift > 1.5.
"""
from __future__ import annotations

import json

import pytest
from pyspark.sql import functions as F


@pytest.fixture(scope="module")
def mined_rules(pipeline_run):
    _, lake, truth, business_date = pipeline_run
    rules = lake.read("gold.association_rules", partition_filters=[("as_of_date", "=", business_date)])
    planted = json.loads((truth / "planted_rules.json").read_text())
    return {(tuple(r["antecedent"]), r["consequent"]): r["lift"] for r in rules.collect()}, planted


def test_planted_rules_when_pipeline_ran_appear_with_lift_above_1_5(mined_rules):
    rules, planted = mined_rules
    assert planted
    for rule in planted:
        key = (tuple(sorted(rule["antecedent"])), rule["consequent"])
        assert key in rules, f"planted rule {rule['description']!r} not mined"
        assert rules[key] > 1.5, f"planted rule {rule['description']!r}: lift {rules[key]:.2f}"


def test_cross_sell_when_pipeline_ran_never_offers_a_held_product_type(pipeline_run):
    _, lake, _, business_date = pipeline_run
    at_d = [("as_of_date", "=", business_date)]
    candidates = lake.read("gold.cross_sell_candidates", partition_filters=at_d)
    features = lake.read("gold.customer_features", partition_filters=at_d)
    held = candidates.join(features, "customer_id").where(
        F.expr("case product_type " + " ".join(
            f"when '{c[len('holds_'):]}' then {c} = 1" for c in features.columns if c.startswith("holds_"))
            + " end"))
    assert candidates.count() > 0 and held.count() == 0
