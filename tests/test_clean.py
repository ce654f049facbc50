"""Clean: bronze -> silver on a handmade two-day bank with every kind of bad row planted by hand.

Day 1 is a valid initial load; day 2 brings updates, a late transaction, re-sent transactions and one or
more rows per rejection rule. The scenario runs once per module (ingest + clean of both days, then a
rerun of day 2); the tests check its tables against hand-computed expectations.
"""
from __future__ import annotations

import hashlib
import hmac
import shutil
import threading
import time
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
import yaml
from pyspark.sql import functions as F
from test_ingest_fixtures import (
    account,
    app_event,
    customer,
    holding,
    product,
    response,
    small_bank,
    txn,
    write_bank,
    write_batch,
)

from jobs.clean.audit import BatchAudit
from jobs.clean.job import (
    SilverChecks,
    critical_paths,
    in_reference_order,
    processing_order,
    reference_keys,
    referenced_sources,
)
from jobs.clean.job import run as clean
from jobs.clean.parse import assemble_reasons, keep_raw, normalise_code, parse_fields, text_valued_fields
from jobs.clean.pii import hash_key
from jobs.clean.rules import cluster_by_key, flag_duplicates
from jobs.clean.settings import PiiKeySettings
from jobs.common.config import load_settings
from jobs.common.context import RunContext
from jobs.common.contract import FieldSpec, SourceSpec, load_contract
from jobs.common.errors import DataQualityError, InputError
from jobs.common.paths import CONF_DIR
from jobs.ingest.job import run as ingest

DAY1, DAY2 = date(2026, 3, 1), date(2026, 3, 2)
D1, D2 = DAY1.isoformat(), DAY2.isoformat()


def day2_bank() -> dict[str, dict[str, list[dict]]]:
    at = f"{D2}T09:00:00"
    return {
        "customers": {"customers.csv": [
            customer("C1", at, risk_tolerance="5", annual_income="150000",
                     phone="+86-139-0000-0001", email=" NEW.One@Example.COM "),
            customer("C2", "2026-02-15T08:00:00", occupation="teacher"),          # older than day 1's
            customer("C4", f"{D2}T23:59:59", gender="Male", consent_sms="No", consent_email="0",
                     consent_app="FALSE", do_not_contact="YES", phone="0086 138 0013 0004"),
            customer("C90", at, status=""),                                        # missing_required
            customer("C91", at, birth_date="31/12/2025"),                          # bad_type
            customer("C92", at, gender="x"),                                       # unknown_code
            customer("C93", at, phone="12ab"),                                     # bad_format
            customer("C94", at, risk_tolerance="9"),                               # out_of_range
            customer("C95", "2026-03-03T00:00:01"),                                # future_date
            customer("C96", at, status=" ", gender="x"),                           # missing_required + unknown_code
        ]},
        "products": {"products.jsonl": [product("P1"), product("P2", product_type="mortgage", risk_level="1"),
                                         product("P3", product_type="Structured Deposit", risk_level="2")]},
        "accounts": {"accounts.csv.gz": [account("A4", "C4", at, account_type="Checking"),
                                         account("A90", "C999", at)]},                   # orphan_customer
        "holdings": {"holdings.parquet": [holding("H2", "C4", "P3", at),
                                          holding("H90", "C1", "P999", at)]},            # orphan_product
        "transactions": {
            "part-1.csv.gz": [
                txn("T4", "A4", "C4", f"{D2}T10:00:00"),
                txn("T4", "A4", "C4", f"{D2}T10:00:00", amount="abc"),             # bad_type; T4 stays
                txn("T2", "A2", "C2", f"{D1}T10:00:00", direction="credit"),       # re-sent from day 1
                txn("T5", "A1", "C1", f"{D2}T11:00:00"),
                txn("T6", "A2", "C2", "2025-11-15T12:00:00"),                      # late, old transaction
                txn("T7", "A1", "C1", f"{D2}T08:00:00+08:00", direction=" CR "),
                txn("T91", "A1", "C1", f"{D2}T12:00:00", amount="0"),              # non_positive_amount
                txn("T92", "A1", "C1", f"{D2}T12:00:00", amount="-5"),             # non_positive_amount
                txn("T93", "A999", "C1", f"{D2}T12:00:00"),                        # orphan_account
                txn("T94", "A1", "C999", f"{D2}T12:00:00"),                        # orphan_customer
                txn("T95", "A1", "C1", "2026-03-03T08:00:00"),                     # future_date
                txn("T96", "A1", "C1", "2025-13-01T10:00:00"),                     # bad_type
                txn("T97", "A1", "C1", f"{D2}T12:00:00", amount=""),               # missing_required
                txn("T98", "A1", "C1", f"{D2}T12:00:00", direction="both"),        # unknown_code
                txn("T99", "A1", "C1", f"{D2}T12:00:00", amount="-1", channel="wechat"),  # two rules
            ],
            "part-2.jsonl": [txn("T5", "A1", "C1", f"{D2}T11:00:00")],              # re-sent in the batch
        },
        "campaign_responses": {"responses.jsonl": [
            response("X2", "C4", f"{D2}T07:00:00", event="Converted", product_id="P3"),
            response("X90", "C4", f"{D2}T07:00:00", event="read"),                  # unknown_code
            response("X91", "C999", f"{D2}T07:00:00")]},                            # orphan_customer
        "app_events": {"events.parquet": [
            app_event("C4", f"{D2}T07:30:00"),
            *[event for minute in range(40, 46) for event in (                    # the same keys, written
                app_event("C1", f"{D2}T07:{minute}:00"),                           # apart: duplicate_key
                app_event("C1", f"{D2}T07:{minute}:00+08:00", event_type=" LOGIN "))],
            app_event("C1", f"{D2}T07:30:00", event_type=""),                     # missing_required
            app_event("C4", f"{D2}T07:31:00", event_type="page_view", product_id="P999")]},  # orphan_product
    }


EXPECTED_QUARANTINE = {
    "customers": {"missing_required": 2, "bad_type": 1, "unknown_code": 1, "bad_format": 1,
                  "out_of_range": 1, "future_date": 1},
    "products": {},
    "accounts": {"orphan_customer": 1},
    "holdings": {"orphan_product": 1},
    "loans": {},
    "transactions": {"bad_type": 2, "duplicate_key": 2, "non_positive_amount": 2, "orphan_account": 1,
                     "orphan_customer": 1, "future_date": 1, "missing_required": 1, "unknown_code": 2},
    "campaign_responses": {"unknown_code": 1, "orphan_customer": 1},
    "app_events": {"missing_required": 1, "orphan_product": 1, "duplicate_key": 6},
}


def snapshot(lake) -> dict[str, list[tuple]]:
    """Every bronze/silver/quarantine table and the audit, without run ids and ingest times."""
    tables = [t for t in lake.tables() if t.split(".")[0] in ("bronze", "silver", "quarantine")]
    tables.append("ops.batch_audit")
    return {t: sorted((tuple(r) for r in lake.read(t).drop("run_id", "ingested_at").collect()), key=repr)
            for t in tables}


@pytest.fixture(scope="module")
def scenario(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    settings = load_settings(env={"CRM_LAKE__ROOT": str(root / "lake"),
                                  "CRM_LANDING__ROOT": str(root / "landing")})
    write_bank(root / "landing", D1, small_bank(D1))
    for source, files in day2_bank().items():
        write_batch(root / "landing", source, D2, files)
    for day in (DAY1, DAY2):
        ctx = RunContext(settings, day, spark_session=spark)
        ingest(ctx)
        clean(ctx)
    first = snapshot(ctx.lake)
    rerun = RunContext(settings, DAY2, spark_session=spark)
    ingest(rerun)
    written = clean(rerun)
    return {"settings": settings, "lake": rerun.lake, "root": root, "first": first, "written": written,
            "run_id": rerun.run_id}


def test_clean_rerun_of_a_date_gives_identical_bronze_silver_and_quarantine(scenario):
    again = snapshot(scenario["lake"])

    assert len(scenario["first"]["silver.transactions"]) == 7
    assert again.keys() == scenario["first"].keys()
    for table, rows in scenario["first"].items():
        assert again[table] == rows, table


def test_clean_quarantine_counts_per_reason_equal_the_planted_rows(scenario):
    lake = scenario["lake"]

    found = {source: {r["reason"]: r["count"] for r in
                      lake.read(f"quarantine.{source}").groupBy("reason").count().collect()}
             for source in load_contract()}

    assert found == EXPECTED_QUARANTINE


def test_clean_every_source_and_batch_reconciles(scenario):
    lake = scenario["lake"]
    bank2 = day2_bank()

    audit = {(r["batch_date"], r["source"]): (r["rows_in"], r["rows_to_silver"], r["rows_quarantined"],
                                              r["duplicates_dropped"], r["balanced"])
             for r in lake.read("ops.batch_audit").collect()}

    for source in load_contract():
        delivered = sum(len(rows) for rows in bank2.get(source, {}).values())
        rejected = sum(EXPECTED_QUARANTINE[source].values())
        assert audit[(DAY2, source)] == (delivered, delivered - rejected, rejected, 0, True), source
        assert audit[(DAY1, source)][4] is True
    assert len(audit) == 2 * len(load_contract())


def test_clean_customer_updated_in_a_later_batch_latest_wins(scenario):
    customers = {r["customer_id"]: r for r in scenario["lake"].read("silver.customers").collect()}

    assert sorted(customers) == ["C1", "C2", "C3", "C4"]
    assert (customers["C1"]["risk_tolerance"], customers["C1"]["batch_date"]) == (5, DAY2)
    assert str(customers["C1"]["annual_income"]) == "150000.00"
    # C2's day-2 row is older than the day-1 version: the day-1 version stays.
    assert (customers["C2"]["occupation"], customers["C2"]["batch_date"]) == ("clerk", DAY1)
    assert customers["C2"]["updated_at"] == datetime(2026, 3, 1, 0, 0)


def test_clean_values_are_typed_normalised_and_in_utc(scenario):
    lake = scenario["lake"]
    c4 = lake.read("silver.customers").where("customer_id = 'C4'").first()
    pii = {r["customer_id"]: r for r in lake.read("silver.customer_pii").collect()}
    txns = {r["txn_id"]: r for r in lake.read("silver.transactions").collect()}

    assert (c4["gender"], c4["consent_sms"], c4["consent_email"], c4["consent_app"], c4["do_not_contact"]) == (
        "m", False, False, False, True)
    assert c4["updated_at"] == datetime(2026, 3, 2, 15, 59, 59)         # 23:59:59 Shanghai, still day 2
    assert (pii["C1"]["phone"], pii["C1"]["email"]) == ("+8613900000001", "new.one@example.com")
    assert pii["C4"]["phone"] == "+8613800130004"
    assert pii["C3"]["phone"] == "+8613800130003"
    assert txns["T3"]["txn_ts"] == datetime(2025, 12, 31, 15, 30)      # local time -> UTC
    assert txns["T7"]["txn_ts"] == datetime(2026, 3, 2, 0, 0)          # explicit +08:00 kept
    assert txns["T7"]["direction"] == "credit"                         # " CR " via the synonyms
    assert str(txns["T3"]["amount"]) == "55.50"
    assert lake.read("silver.accounts").where("account_id = 'A4'").first()["account_type"] == "current"
    assert lake.read("silver.products").where("product_id = 'P3'").first()["product_type"] == \
        "structured_deposit"


def test_clean_older_transaction_in_a_later_batch_is_kept_with_that_batch(scenario):
    txns = {r["txn_id"]: r for r in scenario["lake"].read("silver.transactions").collect()}

    assert txns["T6"]["batch_date"] == DAY2
    assert txns["T6"]["txn_ts"] == datetime(2025, 11, 15, 4, 0)


def test_clean_duplicate_txn_id_across_dates_and_files_keeps_the_first(scenario):
    lake = scenario["lake"]

    silver = sorted((r["txn_id"], r["batch_date"]) for r in lake.read("silver.transactions").collect())
    duplicates = sorted((r["txn_id"], r["source_file"]) for r in
                        lake.read("quarantine.transactions").where("reason = 'duplicate_key'").collect())

    assert silver == [("T1", DAY1), ("T2", DAY1), ("T3", DAY1), ("T4", DAY2), ("T5", DAY2), ("T6", DAY2),
                      ("T7", DAY2)]
    assert duplicates == [("T2", f"transactions/dt={D2}/part-1.csv.gz"),
                          ("T5", f"transactions/dt={D2}/part-2.jsonl")]


def test_clean_duplicate_key_when_written_with_a_zone_and_another_code_spelling_is_found(scenario):
    lake = scenario["lake"]

    silver = {(r["customer_id"], r["event_ts"], r["event_type"]) for r in
              lake.read("silver.app_events").where(F.col("batch_date") == DAY2).collect()}
    duplicates = sorted((r["event_ts"], r["event_type"]) for r in
                        lake.read("quarantine.app_events").where("reason = 'duplicate_key'").collect())

    # 07:4x in Shanghai (the bank's zone) is 23:4x UTC the day before; the raw values order the copies.
    assert {("C1", datetime(2026, 3, 1, 23, minute), "login") for minute in range(40, 46)} <= silver
    assert duplicates == [(f"{D2}T07:{minute}:00+08:00", " LOGIN ") for minute in range(40, 46)]


def test_text_valued_fields_when_codes_phones_or_emails_are_normalised_leaves_them_out():
    contract, clean_conf = load_contract(), load_settings().job("clean")

    assert text_valued_fields(contract["app_events"], clean_conf) == ["customer_id", "page", "product_id"]
    assert not {"phone", "email", "gender", "status"} & set(text_valued_fields(contract["customers"], clean_conf))
    assert "full_name" in text_valued_fields(contract["customers"], clean_conf)


def test_clean_quarantine_keeps_raw_values_and_every_failed_rule_in_precedence(scenario):
    rows = {r["txn_id"]: r for r in scenario["lake"].read("quarantine.transactions").collect()}

    assert (rows["T99"]["reason"], rows["T99"]["reasons"]) == ("unknown_code",
                                                               ["unknown_code", "non_positive_amount"])
    assert (rows["T99"]["amount"], rows["T99"]["channel"]) == ("-1", "wechat")
    assert (rows["T4"]["reason"], rows["T4"]["amount"]) == ("bad_type", "abc")   # the copy, not T4
    assert rows["T96"]["txn_ts"] == "2025-13-01T10:00:00"
    assert rows["T4"]["batch_date"] == DAY2


def test_clean_optional_source_absent_on_a_date_keeps_its_state(scenario):
    loans = scenario["lake"].read("silver.loans").collect()

    assert [(r["loan_id"], r["batch_date"], r["days_past_due"]) for r in loans] == [("L1", DAY1, 0)]


def test_clean_pii_lives_only_in_customer_pii(spark, scenario):
    lake = scenario["lake"]
    raw = [c for files in (small_bank(D1)["customers"], day2_bank()["customers"]) for rows in files.values()
           for c in rows]
    pii = lake.read("silver.customer_pii").collect()
    values = ({c[f] for c in raw for f in ("full_name", "id_number", "phone", "email") if c[f]}
              | {r[f] for r in pii for f in ("full_name", "id_number", "phone", "email")})
    wanted = spark.createDataFrame([(v,) for v in sorted(values)], "value string")

    leaks = {}
    for table in lake.tables():
        if table.split(".")[0] not in ("silver", "gold") or table == "silver.customer_pii":
            continue
        frame = lake.read(table)
        cells = frame.select(F.explode(F.array(*[F.col(c).cast("string") for c in frame.columns]))
                             .alias("value"))
        leaks[table] = cells.join(wanted, "value").count()

    assert set(leaks) >= {f"silver.{s}" for s in load_contract()}
    assert leaks == {table: 0 for table in leaks}
    customers = lake.read("silver.customers")
    assert not {"full_name", "id_number", "phone", "email"} & set(customers.columns)
    key = scenario["settings"].job("clean").pii_key.demo_key.encode()
    expected = hmac.new(key, b"110101198005010001", hashlib.sha256).hexdigest()
    assert customers.where("customer_id = 'C1'").first()["id_number_hash"] == expected


def test_clean_expectations_recorded_for_every_silver_table(scenario):
    lake, root = scenario["lake"], scenario["root"]

    results = lake.read("ops.dq_results").where(F.col("batch_date") == DAY2).collect()

    tables = {r["table_name"] for r in results}
    assert tables == {f"silver.{s}" for s in load_contract()} | {"silver.customer_pii"}
    assert all(r["success"] for r in results)
    assert {r["suite"] for r in results if r["table_name"] == "silver.transactions"} == {
        "silver.transactions.v1"}
    assert {r["run_id"] for r in results} == {scenario["run_id"]}
    stored = sorted(p.name for p in (root / "lake" / "_dq" / D2).iterdir())
    assert stored == sorted(f"{t}.json" for t in tables)


def test_clean_critical_expectation_failure_stops_with_table_expectation_and_count(spark, scenario,
                                                                                   tmp_path):
    shutil.copytree(scenario["root"] / "lake", tmp_path / "lake")
    suites = tmp_path / "expectations"
    shutil.copytree(CONF_DIR / "expectations", suites)
    (suites / "silver.transactions.yaml").write_text(yaml.safe_dump({
        "table": "silver.transactions", "version": 2, "expectations": [
            {"type": "expect_column_values_to_be_between", "severity": "critical",
             "kwargs": {"column": "amount", "max_value": 99}},
            {"type": "expect_column_values_to_be_in_set", "severity": "warning",
             "kwargs": {"column": "channel", "value_set": ["branch"]}}]}))
    settings = load_settings(env={"CRM_LAKE__ROOT": str(tmp_path / "lake"),
                                  "CRM_CLEAN__EXPECTATIONS_DIR": str(suites)})
    ctx = RunContext(settings, DAY2, spark_session=spark)

    with pytest.raises(DataQualityError) as failure, SilverChecks(ctx, settings.job("clean")) as checks:
        checks.submit("silver.transactions", load_contract()["transactions"])
        checks.record()

    # Day 2's silver transactions: T4, T5, T6, T7 of 100.00 each; all on channel mobile.
    message = str(failure.value)
    assert "silver.transactions: expect_column_values_to_be_between(column=amount, max_value=99" in message
    assert "failed, 4 unexpected of 4 rows" in message
    assert "expect_column_values_to_be_in_set" not in message
    assert failure.value.exit_code == 1
    recorded = {(r["expectation"], r["severity"], r["success"], r["unexpected_count"]) for r in
                ctx.lake.read("ops.dq_results", partition_filters=[("batch_date", "=", DAY2)])
                .where("table_name = 'silver.transactions'").collect()}
    assert recorded == {("expect_column_values_to_be_between", "critical", False, 4),
                        ("expect_column_values_to_be_in_set", "warning", False, 4)}


def test_clean_pii_key_production_mode_refuses_a_missing_or_short_key():
    production = PiiKeySettings(mode="production", env_var="CRM_PII_HASH_KEY", demo_key="public",
                                min_length=32)
    demo = production.model_copy(update={"mode": "demo"})

    with pytest.raises(InputError, match="CRM_PII_HASH_KEY is not set"):
        hash_key(production, env={})
    with pytest.raises(InputError, match="shorter than 32"):
        hash_key(production, env={"CRM_PII_HASH_KEY": "short"})
    assert hash_key(production, env={"CRM_PII_HASH_KEY": "k" * 32}) == b"k" * 32
    assert hash_key(demo, env={}) == b"public"


def test_clean_batch_audit_balances_only_when_nothing_disappears():
    assert BatchAudit("transactions", DAY1, 10, 7, 2, 1).balanced
    assert not BatchAudit("transactions", DAY1, 10, 7, 2, 0).balanced


def test_clean_reasons_when_rules_fail_in_precedence_order_else_empty_and_no_reason(spark):
    flags = spark.createDataFrame([(False, False), (True, True), (True, False)],
                                  "_fail_bad_type boolean, _fail_missing_required boolean")

    rows = flags.transform(assemble_reasons(["missing_required", "bad_type"])).collect()

    assert [(r["reasons"], r["reason"]) for r in rows] == [
        ([], None), (["missing_required", "bad_type"], "missing_required"), (["bad_type"], "bad_type")]


def test_flag_duplicates_when_a_row_fails_another_rule_it_neither_wins_nor_loses(spark):
    spec = load_contract()["transactions"]
    rows = [  # txn_id, source file, amount as delivered (the raw values' order), fails bad_type
        ("K1", "a.csv", "1", True), ("K1", "b.csv", "2", False),    # the first row fails: the second wins
        ("K2", "b.csv", "1", False), ("K2", "a.csv", "9", False),   # file a comes first
        ("K3", "a.csv", "5", False), ("K3", "a.csv", "5", False),   # an exact re-send: one of the two
        ("K4", "a.csv", "1", False), ("K4", "a.csv", "2", True),    # K4 is in an earlier batch
    ]
    batch = (spark.createDataFrame(rows, "txn_id string, source_file string, amount string, failed boolean")
             .select(F.struct(*[(F.col(f.name) if f.name in ("txn_id", "amount") else F.lit(None).cast("string"))
                                .alias(f.name) for f in spec.fields]).alias("raw"),
                     "source_file", F.col("failed").alias("_fail_bad_type"))
             .transform(cluster_by_key(spec, ["txn_id"]))
             .withColumn("txn_id", F.col("raw.txn_id")))
    earlier = spark.createDataFrame([("K4",)], "txn_id string")

    flagged = batch.transform(flag_duplicates(spec, earlier)).collect()

    assert sorted((r["txn_id"], r["source_file"], r["raw"]["amount"], r["_fail_duplicate_key"])
                  for r in flagged) == [
        ("K1", "a.csv", "1", False), ("K1", "b.csv", "2", False),
        ("K2", "a.csv", "9", False), ("K2", "b.csv", "1", True),
        ("K3", "a.csv", "5", False), ("K3", "a.csv", "5", True),
        ("K4", "a.csv", "1", True), ("K4", "a.csv", "2", False)]


def test_reference_keys_when_a_referencing_field_is_rewritten_by_clean_refuses_the_contract(spark):
    settings = load_settings()
    spec = load_contract()["transactions"]
    rewritten = [name for name in text_valued_fields(spec, settings.job("clean")) if name != "account_id"]

    with pytest.raises(InputError, match=r"schemas/transactions.yaml: account_id references "
                                         r"accounts.account_id but is not a plain text field"):
        reference_keys(RunContext(settings, DAY1, spark_session=spark).lake, spec, rewritten,
                       settings.job("clean"))


@pytest.mark.parametrize("business_date", [date(2026, 11, 1), date(2040, 1, 1)],
                         ids=["in_the_fast_span", "outside_it"])
def test_parse_fields_when_timestamps_are_local_zoned_or_malformed_gives_the_instant_or_null(
        spark, business_date):
    berlin = "Europe/Berlin"
    utc = {
        "2026-07-01T12:00:00.123456": datetime(2026, 7, 1, 10, 0, 0, 123456),  # summer time, +02:00
        "2026-01-15 08:30:00": datetime(2026, 1, 15, 7, 30),                    # winter time, +01:00
        "2026-03-29T02:30:00": datetime(2026, 3, 29, 1, 30),  # in the spring gap: the offset before it
        "2026-10-25T02:30:00": datetime(2026, 10, 25, 0, 30),  # in the autumn overlap: the earlier one
        "1990-07-01T12:00:00": datetime(1990, 7, 1, 10, 0),
        "2026-07-01T12:00:00Z": datetime(2026, 7, 1, 12, 0),
        "2026-07-01T12:00:00-05:00": datetime(2026, 7, 1, 17, 0),
        "2026-07-01T12:00:00+0530": datetime(2026, 7, 1, 6, 30),
        "2026-07-01": None, "2026-07-01T12:00": None, "2026-07-01T12:00+02:00": None, "2026-07-01T25:00:00": None, "2026-13-01T10:00:00": None, "yesterday": None,
        "2026-07-01T12:00:00 Europe/Paris": None,
    }
    spec = SourceSpec("events", 1, False, "append", ("event_ts",), (FieldSpec("event_ts", "timestamp"),))
    bronze = spark.createDataFrame([(text, business_date, "events.csv") for text in utc],
                                   "event_ts string, batch_date date, source_file string")

    parsed = (bronze.transform(keep_raw(spec))
              .transform(parse_fields(spec, load_settings().job("clean"), berlin, business_date)))

    rows = parsed.select(F.col("raw.event_ts").alias("text"), "event_ts").collect()
    as_utc = {r["text"]: r["event_ts"] and r["event_ts"].astimezone(UTC).replace(tzinfo=None) for r in rows}
    assert as_utc == utc
    # the zone database agrees (fold=0: the offset before a change, as Java's atZone)
    assert utc["2026-10-25T02:30:00"] == datetime(2026, 10, 25, 2, 30, tzinfo=ZoneInfo(berlin)) \
        .astimezone(UTC).replace(tzinfo=None)


def test_normalise_code_when_words_are_separated_by_spaces_tabs_or_hyphens_joins_them_with_one_underscore(spark):
    texts = spark.createDataFrame([("Time Deposit",), ("time\t-  deposit",), ("Fixed-Deposit",), ("TD",),
                                   ("current",), ("credit_card",), (None,)], "text string")

    synonyms = {"fixed_deposit": "time_deposit", "td": "time_deposit"}
    expected = ["time_deposit", "time_deposit", "time_deposit", "time_deposit", "current", "credit_card", None]

    # With the field's codes (known codes skip the separator tests), "td" is a code and a synonym: mapped.
    for codes in ((), ("current", "credit_card", "time_deposit", "td")):
        normalised = texts.select(normalise_code(F.col("text"), synonyms, codes).alias("code")).collect()
        assert [r["code"] for r in normalised] == expected


# ---------------------------------------------------------------- running sources side by side
def test_in_reference_order_when_sources_are_independent_runs_them_side_by_side_after_their_references():
    contract = load_contract()
    order, needs = [s.source for s in processing_order(contract)], referenced_sources(contract)
    events: list[tuple[str, str]] = []
    lock = threading.Lock()
    # Both must be running at once to pass the barrier (it breaks after 10 s if they are not).
    side_by_side = threading.Barrier(2, timeout=10)

    def work(name: str) -> str:
        with lock:
            events.append(("start", name))
        if name in ("app_events", "campaign_responses"):
            side_by_side.wait()
        time.sleep(0.01)
        with lock:
            events.append(("end", name))
        return name.upper()

    assert in_reference_order(order, needs, work, workers=4) == [name.upper() for name in order]
    for name in order:
        for need in needs[name]:
            assert events.index(("end", need)) < events.index(("start", name)), (need, name)
    assert needs["transactions"] == {"accounts", "customers", "products"}


def test_in_reference_order_when_sizes_are_given_starts_the_longest_critical_path_first():
    needs = {"customers": set(), "products": set(), "accounts": {"customers"},
             "app_events": {"customers", "products"}, "transactions": {"accounts", "customers", "products"}}
    sizes = {"customers": 1, "products": 1, "accounts": 2, "app_events": 50, "transactions": 100}
    started: list[str] = []

    def work(name: str) -> str:
        started.append(name)
        return name

    # Paths: transactions 100, app_events 50, accounts 2 + 100, products 1 + 100, customers 1 + 102.
    assert critical_paths(list(needs), needs, sizes) == {
        "customers": 103, "products": 101, "accounts": 102, "app_events": 50, "transactions": 100}
    assert in_reference_order(list(needs), needs, work, workers=1, sizes=sizes) == list(needs)
    # In the listed order, transactions would start last, behind app_events.
    assert started == ["customers", "accounts", "products", "transactions", "app_events"]


def test_in_reference_order_when_a_reference_fails_raises_it_and_runs_only_what_does_not_need_it():
    needs = {"customers": set(), "products": set(), "accounts": {"customers"}, "holdings": {"products"}}
    ran: list[str] = []

    def work(name: str) -> str:
        if name == "customers":
            raise InputError("customers: broken batch")
        ran.append(name)
        return name

    with pytest.raises(InputError, match="customers: broken batch"):
        in_reference_order(["customers", "products", "accounts", "holdings"], needs, work, workers=2)
    assert sorted(ran) == ["holdings", "products"]
    with pytest.raises(ValueError, match=r"accounts is listed before \['customers'\]"):
        in_reference_order(["accounts", "customers"], needs, work, workers=2)
