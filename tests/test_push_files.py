"""The outbox writer: CSV layout, and publishing a day atomically (no Spark needed)."""
from __future__ import annotations

import json
from datetime import date

import pytest

from jobs.push.files import OutboxFile, publish_outbox, render_csv

D = date(2026, 10, 31)


def _row(**values):
    row = {"push_id": "a" * 24, "customer_id": "C1", "contact": "+8613800000001", "product_id": "FUND_HI",
           "product_name": "Fund, global", "product_type": "fund", "offer_rank": 1, "score": 0.08,
           "reason_codes": ["segment:high_value", "tag:age_band=30-49"], "expiry_date": date(2026, 11, 14)}
    row.update(values)
    return row


def test_render_csv_when_sms_file_has_phone_column_quoting_and_fixed_decimals():
    content = render_csv([_row()], "phone", 6)
    assert content == (b"push_id,customer_id,phone,product_id,product_name,product_type,offer_rank,score,"
                       b"reason_codes,expiry_date\n"
                       b"aaaaaaaaaaaaaaaaaaaaaaaa,C1,+8613800000001,FUND_HI,\"Fund, global\",fund,1,0.080000,"
                       b"segment:high_value|tag:age_band=30-49,2026-11-14\n")


def test_render_csv_when_app_file_has_no_contact_column_and_call_list_has_empty_product():
    content = render_csv([_row(product_id=None, product_name=None, product_type=None, offer_rank=None)], None, 2)
    header, line = content.decode("utf-8").splitlines()
    assert header == "push_id,customer_id,product_id,product_name,product_type,offer_rank,score,reason_codes," \
                     "expiry_date"
    assert line == "aaaaaaaaaaaaaaaaaaaaaaaa,C1,,,,,0.08,segment:high_value|tag:age_band=30-49,2026-11-14"


def _files(text: str) -> list[OutboxFile]:
    return [OutboxFile("app", "wealth_upsell", 1, text.encode()), OutboxFile("sms", "cross_sell", 0, b"h\n")]


def test_publish_when_day_exists_replaces_it_whole_and_writes_success(tmp_path):
    publish_outbox(tmp_path, D, [*_files("old"), OutboxFile("email", "retired", 0, b"h\n")], {"v": 1}, "r1")
    day = publish_outbox(tmp_path, D, _files("new"), {"v": 2}, "r2")
    assert sorted(str(p.relative_to(day)) for p in day.rglob("*") if p.is_file()) == \
        ["_SUCCESS", "app/wealth_upsell.csv", "manifest.json", "sms/cross_sell.csv"]
    assert (day / "app/wealth_upsell.csv").read_text() == "new"
    assert json.loads((day / "manifest.json").read_text()) == {"v": 2}
    assert [p.name for p in tmp_path.iterdir()] == [D.isoformat()]


def test_publish_when_writing_fails_midway_leaves_the_previous_day_untouched(tmp_path):
    publish_outbox(tmp_path, D, _files("old"), {"v": 1}, "r1")
    with pytest.raises(TypeError):
        publish_outbox(tmp_path, D, _files("new"), {"v": object()}, "r2")  # manifest not serialisable
    day = tmp_path / D.isoformat()
    assert (day / "app/wealth_upsell.csv").read_text() == "old"
    assert json.loads((day / "manifest.json").read_text()) == {"v": 1}
    assert (day / "_SUCCESS").exists()
    incoming = tmp_path / f".{D.isoformat()}.incoming-r2"
    assert not (incoming / "_SUCCESS").exists()  # the failed run never marked its folder complete


def test_publish_when_a_crashed_run_left_an_incoming_folder_removes_it(tmp_path):
    leftover = tmp_path / f".{D.isoformat()}.incoming-dead"
    (leftover / "app").mkdir(parents=True)
    (leftover / "app/wealth_upsell.csv").write_text("half")
    publish_outbox(tmp_path, D, _files("new"), {"v": 1}, "r3")
    assert not leftover.exists()
    assert (tmp_path / D.isoformat() / "app/wealth_upsell.csv").read_text() == "new"
