"""The push stage end to end on a seeded handmade bank of 160 customers: files, manifest, rerun, daily
cap, control group, a campaign whose model table has only yesterday's rows. The job runs twice for D,
then once for D+1."""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import replace
from datetime import timedelta

import pytest
from chispa import assert_df_equality
from test_push_fixtures import (
    AS_OF,
    Customer,
    World,
    in_control,
    outbox_violations,
    push_settings,
    read_day,
    shipped_campaigns,
    write_models,
    write_world,
)

from jobs.common.context import RunContext
from jobs.common.lake import Lake
from jobs.push import job

D = AS_OF
NEXT = D + timedelta(days=1)
WEALTH_CAP = 15
WEALTH_CONTROL = 0.3


def _world(seed: int = 5) -> World:
    rng = random.Random(seed)
    customers = []
    for n in range(160):
        band = rng.choice([None, None, "high", "medium"])
        customers.append(Customer(
            f"C{n:04d}",
            status="closed" if rng.random() < 0.05 else "active",
            risk_tolerance=rng.choice([None, 1, 2, 3, 4, 5, 5]),
            consent_sms=rng.choice([True, True, False, None]),
            consent_email=rng.choice([True, True, False]),
            consent_app=rng.choice([True, True, False]),
            do_not_contact=rng.random() < 0.05,
            email="" if rng.random() < 0.1 else None,
            segment=rng.choice(["investment_inclined", "investment_inclined", "deposit_inclined", "borrower"]),
            value_tier=rng.choice(["high", "potential", "mass", "low"]),
            investment_inclination=round(rng.random(), 3),
            deposit_inclination=round(rng.random(), 3),
            churn_band=band, churn_probability=None if band is None else round(rng.random(), 3),
            churn_reasons=["recency_drop"] if band else []))
    holdings = [(c.customer_id, rng.choice(["FUND_HI", "WM_MID", "SD_1"]), D - timedelta(days=100), None)
                for c in customers if rng.random() < 0.3]
    unsubscribes = [(c.customer_id, rng.choice(["app", "sms", "email"]), "cross_sell")
                    for c in customers if rng.random() < 0.1]
    history = [(D - timedelta(days=rng.randint(1, 6)), "cross_sell", c.customer_id, D - timedelta(days=1), False)
               for c in customers if rng.random() < 0.2]
    return World(customers=customers, holdings=holdings, unsubscribes=unsubscribes, history=history,
                 recommendations=[(c.customer_id, "insurance", 1, 0.8, 2.0, ["prod:fund"]) for c in customers[:40]],
                 stale_tables=("gold.cross_sell_candidates",))


def _campaigns() -> dict:
    book = shipped_campaigns()
    wealth = next(c for c in book["campaigns"] if c["id"] == "wealth_upsell")
    wealth.update(daily_cap=WEALTH_CAP, control_share=WEALTH_CONTROL)
    return book


def _snapshot(day) -> dict[str, bytes]:
    return {str(p.relative_to(day)): p.read_bytes() for p in sorted(day.rglob("*")) if p.is_file()}


def _history(lake: Lake, day=D) -> list[dict]:
    rows = lake.read("gold.push_history", partition_filters=[("as_of_date", "=", day)]).collect()
    return sorted((r.asDict() for r in rows), key=lambda r: (r["campaign_id"], r["customer_id"]))


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("push_job")
    campaigns = _campaigns()
    settings = push_settings(root, campaigns)
    lake = Lake.from_settings(spark, settings)
    write_world(lake, _world())
    day = root / "outbox" / D.isoformat()
    first_written = job.run(RunContext(settings, D, run_id="run-one", spark_session=spark))
    first = _snapshot(day)
    first_version = lake.version("gold.push_history")
    second_written = job.run(RunContext(settings, D, run_id="run-two", spark_session=spark))
    second, second_history, second_version = _snapshot(day), _history(lake), lake.version("gold.push_history")
    write_models(lake, replace(_world(), model_date=NEXT))
    job.run(RunContext(settings, NEXT, run_id="next-day", spark_session=spark))
    return {"root": root, "day": day, "lake": lake, "settings": settings, "campaigns": campaigns,
            "first": first, "first_written": first_written,
            "versions": (first_version, second_version),
            "second": second, "second_history": second_history, "second_written": second_written,
            "history_after_next": _history(lake), "next_history": _history(lake, NEXT)}


def _manifest(files: dict[str, bytes]) -> dict:
    return json.loads(files["manifest.json"])


def test_outbox_when_published_has_a_file_per_campaign_channel_manifest_and_success(runs):
    names = set(runs["second"])
    expected = {f"{channel}/{c['id']}.csv" for c in runs["campaigns"]["campaigns"] for channel in c["channels"]}
    assert names == expected | {"manifest.json", "_SUCCESS"}
    assert runs["second"]["_SUCCESS"] == b""


def test_manifest_when_published_checksums_and_row_counts_match_the_files(runs):
    manifest = _manifest(runs["second"])
    files = read_day(runs["day"])
    assert {f["path"] for f in manifest["files"]} == set(files)
    for entry in manifest["files"]:
        content = runs["second"][entry["path"]]
        assert entry["sha256"] == hashlib.sha256(content).hexdigest()
        assert entry["bytes"] == len(content)
        assert entry["rows"] == len(files[entry["path"]])
    assert manifest["totals"]["rows"] == sum(len(rows) for rows in files.values())
    assert manifest["totals"]["files"] == len(files)
    assert (manifest["business_date"], manifest["run_id"]) == (D.isoformat(), "run-two")
    assert manifest["pipeline_version"] == "0.1.0"


def test_rerun_when_inputs_identical_files_byte_identical_and_manifest_differs_only_in_run_fields(runs):
    first, second = runs["first"], runs["second"]
    assert {k: v for k, v in first.items() if k != "manifest.json"} == \
           {k: v for k, v in second.items() if k != "manifest.json"}
    volatile = {"run_id", "generated_at"}
    assert {k: v for k, v in _manifest(first).items() if k not in volatile} == \
           {k: v for k, v in _manifest(second).items() if k not in volatile}
    assert _manifest(first)["run_id"] != _manifest(second)["run_id"]
    assert runs["first_written"] == runs["second_written"]


def test_rerun_when_done_replaces_the_day_atomically_without_leftovers(runs):
    outbox = runs["root"] / "outbox"
    assert sorted(p.name for p in outbox.iterdir()) == [D.isoformat(), NEXT.isoformat()]  # nothing hidden left


def test_push_history_when_rerun_replaces_the_date_with_the_same_rows(runs):
    lake, (first, second) = runs["lake"], runs["versions"]

    def day(version):
        return lake.read("gold.push_history", version=version, partition_filters=[("as_of_date", "=", D)])

    assert_df_equality(day(first).drop("run_id"), day(second).drop("run_id"), ignore_row_order=True)
    assert {r["run_id"] for r in runs["second_history"]} == {"run-two"}
    pushed = sum(len(rows) for rows in read_day(runs["day"]).values())
    assert sum(not r["is_control"] for r in runs["second_history"]) == pushed


def test_campaign_when_its_model_table_has_no_rows_for_d_is_skipped_with_reason_others_sent(runs):
    campaigns = {c["campaign_id"]: c for c in _manifest(runs["second"])["campaigns"]}
    assert campaigns["cross_sell"]["status"] == "skipped"
    assert campaigns["cross_sell"]["reason"] == "gold.cross_sell_candidates has no rows for 2026-10-31"
    assert campaigns["cross_sell"]["pushed"] == 0
    assert all(len(rows) == 0 for name, rows in read_day(runs["day"]).items() if name.endswith("cross_sell.csv"))
    assert campaigns["wealth_upsell"]["status"] == "sent" and campaigns["wealth_upsell"]["pushed"] > 0
    assert campaigns["retention_call"]["status"] == "sent"


def test_daily_cap_when_more_customers_eligible_pushes_exactly_the_cap_in_priority_order(runs):
    wealth = next(c for c in _manifest(runs["second"])["campaigns"] if c["campaign_id"] == "wealth_upsell")
    assert wealth["eligible"] > WEALTH_CAP + wealth["control"]
    assert wealth["pushed"] == WEALTH_CAP
    rows = [r for r in runs["second_history"] if r["campaign_id"] == "wealth_upsell"]
    features = {c.customer_id: c.investment_inclination for c in _world().customers}
    treated = sorted((r for r in rows if not r["is_control"]), key=lambda r: r["selection_rank"])
    inclinations = [features[r["customer_id"]] for r in treated]
    assert inclinations == sorted(inclinations, reverse=True)
    last_treated = treated[-1]["selection_rank"]
    assert all(r["selection_rank"] < last_treated for r in rows if r["is_control"])


def test_control_group_when_recorded_matches_the_seeded_hash_and_receives_nothing(runs):
    seed = runs["settings"].job("push").control_seed
    rows = [r for r in runs["second_history"] if r["campaign_id"] == "wealth_upsell"]
    control = {r["customer_id"] for r in rows if r["is_control"]}
    assert control, "the world should put someone in the wealth_upsell control group"
    assert all(in_control(r["customer_id"], "wealth_upsell", seed, WEALTH_CONTROL) == r["is_control"] for r in rows)
    in_files = {row["customer_id"] for name, file_rows in read_day(runs["day"]).items()
                if name.endswith("/wealth_upsell.csv") for row in file_rows}
    assert not control & in_files
    manifest = _manifest(runs["second"])
    assert manifest["control_groups"]["wealth_upsell"] == len(control)


def test_independent_checker_on_seeded_world_finds_no_violation(runs):
    seed = runs["settings"].job("push").control_seed
    assert outbox_violations(runs["day"], runs["lake"], D, runs["campaigns"], seed) == []


def test_next_day_when_run_respects_the_open_offers_and_caps_of_the_previous_day(runs):
    assert runs["history_after_next"] == runs["second_history"]  # D untouched by D+1
    seen_on_d = {(r["campaign_id"], r["customer_id"]) for r in runs["second_history"]}
    next_rows = runs["next_history"]
    assert next_rows, "the next day should push someone"
    assert not {(r["campaign_id"], r["customer_id"]) for r in next_rows} & seen_on_d
    seed = runs["settings"].job("push").control_seed
    assert outbox_violations(runs["root"] / "outbox" / NEXT.isoformat(), runs["lake"], NEXT, runs["campaigns"],
                             seed) == []
