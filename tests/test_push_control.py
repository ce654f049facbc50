"""The control group: a stable, seeded share of each campaign's customers, checked against an independent
SHA-256 computation on 20,000 customers."""
from __future__ import annotations

import math

from test_push_fixtures import in_control

from jobs.push.policy import control_group_assigned

CUSTOMERS = 20_000
SHARE = 0.10


def test_control_group_when_assigned_share_within_four_sigma_and_equal_to_reference_hash(spark):
    frame = spark.range(CUSTOMERS).selectExpr("format_string('C%06d', id) AS customer_id")
    assigned = control_group_assigned(frame, "wealth_upsell", SHARE, "seed-a").collect()
    control = {r["customer_id"] for r in assigned if r["is_control"]}
    expected = {f"C{n:06d}" for n in range(CUSTOMERS) if in_control(f"C{n:06d}", "wealth_upsell", "seed-a", SHARE)}
    assert control == expected
    sigma = math.sqrt(CUSTOMERS * SHARE * (1 - SHARE))
    assert abs(len(control) - CUSTOMERS * SHARE) < 4 * sigma


def test_control_group_when_campaign_or_seed_changes_draws_a_different_group(spark):
    frame = spark.range(2_000).selectExpr("format_string('C%06d', id) AS customer_id")

    def group(campaign: str, seed: str) -> set[str]:
        rows = control_group_assigned(frame, campaign, 0.5, seed).where("is_control").collect()
        return {r["customer_id"] for r in rows}

    base = group("wealth_upsell", "seed-a")
    assert base == group("wealth_upsell", "seed-a")
    # independent draws of half the customers overlap on about a quarter
    assert abs(len(base & group("cross_sell", "seed-a")) - 500) < 100
    assert abs(len(base & group("wealth_upsell", "seed-b")) - 500) < 100
