"""The nightly mining code on real data: UCI Bank Marketing bank-full (Moro, Laureano & Cortez, ESM'2011).

Reference values are counted with pandas straight from the CSV, independently of the Spark code path.
Properties verified on this data before being asserted (conf/apriori.yaml bank_marketing settings):
409 rules -> term deposit; the 16 involving poutcome=success all have lift > 5.5 and are the 16 highest
(the best rule without it, age 60+ & no housing loan & no personal loan, has lift 3.12).
"""
from __future__ import annotations

import pandas as pd
import pytest
from pyspark.sql import functions as F

from jobs.apriori.bank_marketing import TERM_DEPOSIT, bank_marketing_baskets, mine_bank_marketing
from jobs.churn.bank_marketing import load_bank_marketing
from jobs.common.config import load_settings

SUCCESS = "attr:poutcome=success"


@pytest.fixture(scope="module")
def bank_full(shared_data):
    return shared_data / "bank_marketing" / "bank-full.csv.gz"


@pytest.fixture(scope="module")
def term_deposit_rules(spark, bank_full):
    mining = mine_bank_marketing(spark, bank_full, load_settings().job("apriori"))
    try:
        yield mining.rules.toPandas()
    finally:
        mining.release()


def pandas_rule(bank_full, condition) -> tuple[float, float, float]:
    """(support, confidence, lift) of `condition` -> y = yes, counted with pandas."""
    clients = pd.read_csv(bank_full, sep=";")
    subscribed = clients["y"] == "yes"
    matched = condition(clients)
    confidence = (matched & subscribed).sum() / matched.sum()
    return (matched & subscribed).mean(), confidence, confidence / subscribed.mean()


def test_bank_marketing_when_mined_every_rule_concludes_the_term_deposit(term_deposit_rules):
    assert set(term_deposit_rules["consequent"]) == {TERM_DEPOSIT}
    items = {i for antecedent in term_deposit_rules["antecedent"] for i in antecedent}
    assert items and all(i.startswith("attr:") for i in items)
    assert not any(i.startswith("attr:duration") for i in items)


def test_bank_marketing_when_previous_campaign_succeeded_rule_matches_pandas_and_lift_above_2(
        term_deposit_rules, bank_full):
    single = term_deposit_rules[term_deposit_rules["antecedent"].apply(lambda a: list(a) == [SUCCESS])]
    assert len(single) == 1
    expected = pandas_rule(bank_full, lambda c: c["poutcome"] == "success")
    assert tuple(single[["support", "confidence", "lift"]].iloc[0]) == pytest.approx(expected, rel=1e-9)
    assert expected[2] > 2


def test_bank_marketing_when_ranked_by_lift_previous_success_rules_lead(term_deposit_rules):
    involves = term_deposit_rules["antecedent"].apply(lambda a: SUCCESS in a)
    with_success, without = term_deposit_rules[involves], term_deposit_rules[~involves]
    assert len(with_success) > 1 and (with_success["lift"] > 2).all()
    assert with_success["lift"].min() > without["lift"].max()


def test_bank_marketing_when_age_60_plus_rule_matches_pandas(term_deposit_rules, bank_full):
    rule = term_deposit_rules[term_deposit_rules["antecedent"].apply(lambda a: list(a) == ["attr:age=60+"])]
    expected = pandas_rule(bank_full, lambda c: c["age"] >= 60)
    assert tuple(rule[["support", "confidence", "lift"]].iloc[0]) == pytest.approx(expected, rel=1e-9)


def test_bank_marketing_baskets_when_built_hold_one_item_per_attribute(spark, bank_full):
    attributes = load_settings().job("apriori").bank_marketing.attributes
    baskets = bank_marketing_baskets(load_bank_marketing(spark, bank_full), attributes)
    sizes = baskets.select(F.size(F.filter("items", lambda i: i.startswith("attr:"))).alias("n"),
                           F.array_contains("items", TERM_DEPOSIT).alias("subscribed"))
    summary = sizes.groupBy().agg(F.count("*"), F.min("n"), F.max("n"), F.sum(F.col("subscribed").cast("int")))
    assert tuple(summary.first()) == (45211, len(attributes), len(attributes), 5289)
