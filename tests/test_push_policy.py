"""One test per policy rule: a constructed customer who would violate it is not pushed, while a twin that
differs only in the rule's attribute is (so each test can fail). One handmade bank, one push run for D.

Campaigns are the shipped conf/campaigns.yaml with control_share 0 (the control group has its own tests).
The baseline customer is investment-inclined (wealth_upsell: FUND_HI 8 % risk 5 > WM_MID 5 % risk 3 >
WM_LOW 3 % risk 1; channels app, email, sms), risk tolerance 5, every consent, reachable.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from test_push_fixtures import (
    AS_OF,
    Customer,
    World,
    outbox_violations,
    push_settings,
    pushed,
    shipped_campaigns,
    write_world,
)

from jobs.common.context import RunContext
from jobs.common.lake import Lake
from jobs.push import job

D = AS_OF


def _world() -> World:
    customers = [
        Customer("C_OK"),
        Customer("C_CLOSED", status="closed"),
        Customer("C_DNC", do_not_contact=True),
        Customer("C_DNC_NULL", do_not_contact=None),
        Customer("C_NO_APP", consent_app=False),
        Customer("C_APP_NULL", consent_app=None),
        Customer("C_NO_CONSENT", consent_app=False, consent_email=False, consent_sms=False),
        Customer("C_SMS_ONLY_NO_PHONE", consent_app=False, consent_email=False, phone=""),
        Customer("C_RISK3", risk_tolerance=3),
        Customer("C_RISK1", risk_tolerance=1),
        Customer("C_RISK_NULL", risk_tolerance=None),
        Customer("C_UNSUB_APP"),
        Customer("C_UNSUB_ALL"),
        Customer("C_HELD"),
        Customer("C_HELD_ENDED"),
        Customer("C_FREQ_WEEK"),
        Customer("C_FREQ_OLD"),
        Customer("C_CONTROL_WEEK"),
        Customer("C_OPEN_OFFER"),
        Customer("C_OPEN_OTHER_CAMPAIGN"),
        Customer("C_TWO_CAMPAIGNS", value_tier="high", churn_band="high", churn_probability=0.9,
                 churn_reasons=["recency_drop", "balance_decline"]),
        Customer("C_RM_OK", segment="dormant", value_tier="potential", churn_band="high", churn_probability=0.8,
                 churn_reasons=["salary_stopped"]),
        Customer("C_RM_NO_SMS_CONSENT", segment="dormant", value_tier="high", churn_band="high",
                 churn_probability=0.8, consent_sms=False),
        Customer("C_RM_UNSUB_SMS", segment="dormant", value_tier="high", churn_band="high", churn_probability=0.8),
        Customer("C_RM_MASS", segment="dormant", value_tier="mass", churn_band="high", churn_probability=0.8),
        Customer("C_SEG2", segment="investment_inclined_2"),
        Customer("C_SEG_OTHER", segment="investment_inclined_x"),
        Customer("C_XS", segment="borrower"),
        Customer("C_XS_HELD_TOP", segment="borrower"),
    ]
    earlier = [D - timedelta(days=n) for n in (1, 3, 6)]
    old = [D - timedelta(days=n) for n in (7, 8, 9)]
    return World(
        customers=customers,
        holdings=[("C_HELD", "FUND_HI", D - timedelta(days=90), None),
                  ("C_HELD_ENDED", "FUND_HI", D - timedelta(days=90), D - timedelta(days=1)),
                  ("C_XS_HELD_TOP", "INS_1", D - timedelta(days=30), None)],
        unsubscribes=[("C_UNSUB_APP", "app", "cross_sell"),
                      ("C_UNSUB_ALL", "app", "wealth_upsell"), ("C_UNSUB_ALL", "email", "wealth_upsell"),
                      ("C_UNSUB_ALL", "sms", "cross_sell"),
                      ("C_RM_UNSUB_SMS", "sms", "wealth_upsell")],
        history=[*[(d, "cross_sell", "C_FREQ_WEEK", d + timedelta(days=1), False) for d in earlier],
                 *[(d, "cross_sell", "C_FREQ_OLD", d + timedelta(days=1), False) for d in old],
                 *[(d, "cross_sell", "C_CONTROL_WEEK", d + timedelta(days=1), True) for d in earlier],
                 (D - timedelta(days=3), "wealth_upsell", "C_OPEN_OFFER", D + timedelta(days=11), False),
                 (D - timedelta(days=3), "structured_deposit", "C_OPEN_OTHER_CAMPAIGN", D + timedelta(days=7),
                  False)],
        recommendations=[("C_XS", "insurance", 1, 0.9, 2.5, ["prod:mortgage", "attr:age_band=30-49"]),
                         ("C_XS", "credit_card", 2, 0.7, 1.8, ["prod:mortgage"]),
                         ("C_XS_HELD_TOP", "insurance", 1, 0.9, 2.5, ["prod:mortgage"])],
    )


@pytest.fixture(scope="module")
def pushed_day(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("push_policy")
    campaigns = shipped_campaigns(control_share=0.0)
    settings = push_settings(root, campaigns)
    lake = Lake.from_settings(spark, settings)
    write_world(lake, _world())
    written = job.run(RunContext(settings, D, run_id="policy-run", spark_session=spark))
    day = root / "outbox" / D.isoformat()
    return {"rows": pushed(day), "day": day, "lake": lake, "settings": settings, "campaigns": campaigns,
            "written": written}


def _offer(pushed_day, customer: str, campaign: str = "wealth_upsell") -> dict | None:
    return pushed_day["rows"].get((campaign, customer))


def test_baseline_customer_when_nothing_forbids_gets_top_product_on_preferred_channel(pushed_day):
    offer = _offer(pushed_day, "C_OK")
    assert offer is not None
    assert (offer["channel"], offer["product_id"], offer["offer_rank"]) == ("app", "FUND_HI", "1")
    assert offer["reason_codes"] == "segment:investment_inclined"
    assert offer["score"] == "0.080000"
    assert offer["expiry_date"] == (D + timedelta(days=14)).isoformat()


def test_targeting_when_segment_label_has_a_number_suffix_it_belongs_to_the_label(pushed_day):
    assert _offer(pushed_day, "C_SEG2")["reason_codes"] == "segment:investment_inclined_2"
    assert _offer(pushed_day, "C_SEG_OTHER") is None


def test_active_only_when_customer_closed_not_pushed(pushed_day):
    assert not any(customer == "C_CLOSED" for _, customer in pushed_day["rows"])


@pytest.mark.parametrize("customer", ["C_DNC", "C_DNC_NULL"])
def test_do_not_contact_when_set_or_unknown_wins_over_every_consent(pushed_day, customer):
    assert not any(c == customer for _, c in pushed_day["rows"])


def test_channel_consent_when_app_consent_false_or_null_falls_back_to_email(pushed_day):
    assert _offer(pushed_day, "C_NO_APP")["channel"] == "email"
    assert _offer(pushed_day, "C_APP_NULL")["channel"] == "email"


def test_channel_consent_when_no_consent_at_all_not_pushed(pushed_day):
    assert _offer(pushed_day, "C_NO_CONSENT") is None


def test_contact_field_when_sms_customer_has_no_phone_not_pushed(pushed_day):
    assert _offer(pushed_day, "C_SMS_ONLY_NO_PHONE") is None


def test_channel_files_when_written_carry_only_that_channels_contact_field(pushed_day):
    assert _offer(pushed_day, "C_NO_APP")["email"] == "c_no_app@example.com"
    assert "phone" not in _offer(pushed_day, "C_NO_APP")
    assert set(_offer(pushed_day, "C_OK")) == {"push_id", "customer_id", "product_id", "product_name",
                                               "product_type", "offer_rank", "score", "reason_codes",
                                               "expiry_date", "channel"}
    assert _offer(pushed_day, "C_RM_OK", "retention_call")["phone"].startswith("+86")


def test_suitability_when_tolerance_3_gets_best_product_up_to_risk_3(pushed_day):
    offer = _offer(pushed_day, "C_RISK3")
    assert (offer["product_id"], offer["offer_rank"]) == ("WM_MID", "2")


def test_suitability_when_tolerance_1_gets_only_a_level_1_product(pushed_day):
    assert _offer(pushed_day, "C_RISK1")["product_id"] == "WM_LOW"


def test_suitability_when_tolerance_unknown_allows_only_level_1(pushed_day):
    offer = _offer(pushed_day, "C_RISK_NULL")
    assert (offer["product_id"], offer["offer_rank"]) == ("WM_LOW", "3")


def test_inactive_product_when_highest_yield_never_offered(pushed_day):
    assert all(row["product_id"] != "FUND_OLD" for row in pushed_day["rows"].values())


def test_unsubscribed_when_from_app_in_another_campaign_not_contacted_on_app_again(pushed_day):
    assert _offer(pushed_day, "C_UNSUB_APP")["channel"] == "email"


def test_unsubscribed_when_from_every_channel_not_pushed(pushed_day):
    assert _offer(pushed_day, "C_UNSUB_ALL") is None


def test_held_products_when_top_product_held_offers_the_next(pushed_day):
    offer = _offer(pushed_day, "C_HELD")
    assert (offer["product_id"], offer["offer_rank"]) == ("WM_MID", "2")
    assert _offer(pushed_day, "C_HELD_ENDED")["product_id"] == "FUND_HI"


def test_held_products_when_top_recommendation_held_cross_sell_offers_nothing(pushed_day):
    assert _offer(pushed_day, "C_XS", "cross_sell")["product_id"] == "INS_1"
    assert _offer(pushed_day, "C_XS_HELD_TOP", "cross_sell") is None


def test_cross_sell_when_rule_recommended_carries_rule_score_and_antecedent(pushed_day):
    offer = _offer(pushed_day, "C_XS", "cross_sell")
    assert (offer["score"], offer["offer_rank"]) == ("0.900000", "1")
    assert offer["reason_codes"] == "rule:attr:age_band=30-49+prod:mortgage"


def test_frequency_cap_when_three_pushes_in_last_seven_days_not_pushed(pushed_day):
    assert _offer(pushed_day, "C_FREQ_WEEK") is None
    assert _offer(pushed_day, "C_FREQ_OLD") is not None
    assert _offer(pushed_day, "C_CONTROL_WEEK") is not None  # control assignments are not pushes


def test_frequency_cap_when_earlier_campaign_pushed_today_later_campaign_skips(pushed_day):
    assert _offer(pushed_day, "C_TWO_CAMPAIGNS", "retention_call") is not None
    assert _offer(pushed_day, "C_TWO_CAMPAIGNS", "wealth_upsell") is None


def test_one_offer_per_campaign_when_eligible_for_many_products_and_channels_one_row(pushed_day):
    rows = [key for key in pushed_day["rows"] if key[1] == "C_OK"]
    assert rows == [("wealth_upsell", "C_OK")]


def test_one_offer_per_campaign_when_earlier_offer_still_valid_not_offered_again(pushed_day):
    assert _offer(pushed_day, "C_OPEN_OFFER") is None
    assert _offer(pushed_day, "C_OPEN_OTHER_CAMPAIGN") is not None


def test_rm_call_when_no_sms_consent_or_sms_unsubscribed_not_called(pushed_day):
    assert _offer(pushed_day, "C_RM_OK", "retention_call") is not None
    assert _offer(pushed_day, "C_RM_NO_SMS_CONSENT", "retention_call") is None
    assert _offer(pushed_day, "C_RM_UNSUB_SMS", "retention_call") is None


def test_retention_call_when_written_lists_churn_reasons_without_product(pushed_day):
    offer = _offer(pushed_day, "C_RM_OK", "retention_call")
    assert offer["reason_codes"] == "churn_band:high|value_tier:potential|salary_stopped"
    assert (offer["product_id"], offer["offer_rank"], offer["score"]) == ("", "", "0.800000")
    assert _offer(pushed_day, "C_RM_MASS", "retention_call") is None


def test_independent_checker_on_handmade_day_finds_no_violation(pushed_day):
    problems = outbox_violations(pushed_day["day"], pushed_day["lake"], D, pushed_day["campaigns"],
                                 pushed_day["settings"].job("push").control_seed)
    assert problems == []
    assert len(pushed_day["rows"]) == 16
