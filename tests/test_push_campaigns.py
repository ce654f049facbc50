"""conf/campaigns.yaml: the shipped book loads; a wrong campaign file fails with an error naming the
file, the campaign and the key."""
from __future__ import annotations

import pytest
import yaml
from test_push_fixtures import shipped_campaigns

from jobs.common.config import ConfigError, load_settings
from jobs.push.campaigns import load_campaigns


def _load(tmp_path, book: dict):
    path = tmp_path / "campaigns.yaml"
    path.write_text(yaml.safe_dump(book, sort_keys=False), encoding="utf-8")
    return load_campaigns(load_settings(env={}).job("push"), path)


def test_shipped_campaigns_when_loaded_are_the_four_required_in_priority_order():
    book = load_campaigns(load_settings(env={}).job("push"))
    assert [c.id for c in book.campaigns] == ["retention_call", "wealth_upsell", "structured_deposit",
                                              "cross_sell"]
    retention = book.get("retention_call")
    assert retention.channels == ["rm_call"] and retention.products is None
    assert book.get("retention_call").needed_tables() == ["gold.churn_scores", "gold.customer_features"]
    assert book.get("cross_sell").needed_tables() == ["gold.cross_sell_candidates"]
    assert book.get("wealth_upsell").products.types == ["wealth_management", "fund"]


def _error(tmp_path, book: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, book)
    return str(caught.value)


def test_campaigns_when_key_misspelt_names_file_campaign_and_key(tmp_path):
    book = shipped_campaigns()
    book["campaigns"][1]["daily_capp"] = 5
    message = _error(tmp_path, book)
    assert "campaigns.yaml" in message
    assert "campaign #2 'wealth_upsell'" in message and "unknown key 'daily_capp'" in message


def test_campaigns_when_control_share_above_half_rejected(tmp_path):
    book = shipped_campaigns()
    book["campaigns"][0]["control_share"] = 0.8
    message = _error(tmp_path, book)
    assert "campaign #1 'retention_call', key 'control_share'" in message


def test_campaigns_when_unknown_segment_or_product_type_rejected(tmp_path):
    book = shipped_campaigns()
    book["campaigns"][1]["target"]["segments"] = ["investor"]
    book["campaigns"][2]["products"]["types"] = ["structured_deposits"]
    message = _error(tmp_path, book)
    assert "key 'target.segments.0'" in message and "'investor'" in message
    assert "unknown product types ['structured_deposits']" in message


def test_campaigns_when_target_empty_rejected(tmp_path):
    book = shipped_campaigns()
    book["campaigns"][1]["target"] = {}
    assert "a push to everyone is not allowed" in _error(tmp_path, book)


def test_campaigns_when_id_repeated_rejected(tmp_path):
    book = shipped_campaigns()
    book["campaigns"][3]["id"] = "wealth_upsell"
    assert "campaign #4 'wealth_upsell': the id is used twice" in _error(tmp_path, book)


def test_campaigns_when_channel_unknown_rejected(tmp_path):
    book = shipped_campaigns()
    book["campaigns"][2]["channels"] = ["app", "fax"]
    assert "campaign #3 'structured_deposit', key 'channels.1'" in _error(tmp_path, book)


def test_campaigns_when_rule_score_without_recommendations_or_call_list_with_products_rejected(tmp_path):
    book = shipped_campaigns()
    book["campaigns"][1]["score"] = "rule_score"
    book["campaigns"][0]["products"] = {"types": ["fund"]}
    message = _error(tmp_path, book)
    assert "score rule_score needs target.rule_recommendations" in message
    assert "call list without products" in message


def test_campaigns_when_caps_exceed_outbox_bound_rejected(tmp_path):
    book = shipped_campaigns(daily_cap=60_000)
    assert "daily caps add up to 240000, above push.max_outbox_rows (200000)" in _error(tmp_path, book)


def test_campaigns_when_file_missing_names_it(tmp_path):
    with pytest.raises(ConfigError, match="campaign file not found"):
        load_campaigns(load_settings(env={}).job("push"), tmp_path / "nope.yaml")
