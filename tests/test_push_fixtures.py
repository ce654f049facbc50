"""Handmade bank worlds for the push tests, and an independent checker of an outbox day.

Not a test module itself (no tests here): the test_push_*.py files import from it. The checker reads
the files and the silver/gold tables with pandas and re-derives every policy rule from docs/push.md
without using the job's code, so it can catch the job's mistakes.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import yaml
from pyspark.sql import functions as F

from jobs.common.config import load_settings
from jobs.common.contract import source
from jobs.common.lake import Lake
from jobs.common.paths import CONF_DIR

AS_OF = date(2026, 10, 31)
CONSENT_OF = {"sms": "consent_sms", "email": "consent_email", "app": "consent_app", "rm_call": "consent_sms"}
CONTACT_OF = {"sms": "phone", "email": "email", "app": None, "rm_call": "phone"}
BLOCKED_BY = {"sms": {"sms"}, "email": {"email"}, "app": {"app"}, "rm_call": {"rm_call", "sms"}}


def push_settings(root: Path, campaigns: dict | None = None, **env: str):
    """Settings under `root`; `campaigns` (a campaigns.yaml mapping) is written and used when given."""
    values = {
        "CRM_LAKE__ROOT": str(root / "lake"),
        "CRM_LANDING__ROOT": str(root / "landing"),
        "CRM_OUTBOX__ROOT": str(root / "outbox"),
        "CRM_REPORTS__ROOT": str(root / "reports"),
        **env,
    }
    if campaigns is not None:
        path = root / "campaigns.yaml"
        path.write_text(yaml.safe_dump(campaigns, sort_keys=False), encoding="utf-8")
        values["CRM_PUSH__CAMPAIGNS_FILE"] = str(path)
    return load_settings(env=values)


def shipped_campaigns(**changes) -> dict:
    """conf/campaigns.yaml as shipped, with `changes` applied to every campaign."""
    book = yaml.safe_load((CONF_DIR / "campaigns.yaml").read_text(encoding="utf-8"))
    for campaign in book["campaigns"]:
        campaign.update(changes)
    return book


# ------------------------------------------------------------------ the world
@dataclass
class Customer:
    customer_id: str
    status: str = "active"
    risk_tolerance: int | None = 5
    consent_sms: bool | None = True
    consent_email: bool | None = True
    consent_app: bool | None = True
    do_not_contact: bool | None = False
    phone: str | None = None  # default +86 1380000 + number
    email: str | None = None  # default <id>@example.com
    segment: str | None = "investment_inclined"
    value_tier: str = "mass"
    lifecycle_stage: str = "maturity"
    investment_inclination: float = 0.5
    deposit_inclination: float = 0.5
    churn_band: str | None = None
    churn_probability: float | None = None
    churn_reasons: list[str] = field(default_factory=list)


@dataclass
class World:
    customers: list[Customer]
    products: list[tuple] = field(default_factory=list)  # (id, name, type, risk_level, yield, active)
    holdings: list[tuple] = field(default_factory=list)  # (customer_id, product_id, start, end)
    unsubscribes: list[tuple] = field(default_factory=list)  # (customer_id, channel, campaign_id)
    history: list[tuple] = field(default_factory=list)  # (as_of_date, campaign_id, customer_id, expiry, control)
    recommendations: list[tuple] = field(default_factory=list)  # (customer_id, type, rank, score, lift, antecedent)
    tags: list[tuple] = field(default_factory=list)  # (customer_id, tag, value)
    model_date: date = AS_OF  # the as_of_date the model tables are written for
    stale_tables: tuple[str, ...] = ()  # written for the day before model_date only


PRODUCTS = [
    ("FUND_HI", "Global Equity Fund", "fund", 5, 0.08, True),
    ("WM_MID", "Balanced Wealth, 180 days", "wealth_management", 3, 0.05, True),
    ("WM_LOW", "Cash Plus Wealth", "wealth_management", 1, 0.03, True),
    ("FUND_OLD", "Closed Fund", "fund", 1, 0.20, False),
    ("SD_1", "Structured Deposit, gold-linked", "structured_deposit", 2, 0.04, True),
    ("INS_1", "Family Protection", "insurance", 1, None, True),
    ("CC_1", "Platinum Card", "credit_card", 2, None, True),
]


def _phone(c: Customer, number: int) -> str | None:
    return c.phone if c.phone is not None else f"+861380000{number:04d}"


def write_world(lake: Lake, world: World, as_of: date = AS_OF) -> None:
    """Silver and gold tables as the upstream jobs write them (contract types, lineage columns)."""
    spark = lake.spark
    batch = {"batch_date": as_of, "run_id": "handmade"}
    customer_fields = [f for f in source("customers").fields if not f.pii]
    customer_rows = []
    pii_rows = []
    for number, c in enumerate(world.customers):
        values = {f.name: None for f in customer_fields}
        values.update(customer_id=c.customer_id, status=c.status, risk_tolerance=c.risk_tolerance,
                      consent_sms=c.consent_sms, consent_email=c.consent_email, consent_app=c.consent_app,
                      do_not_contact=c.do_not_contact, updated_at=datetime(2026, 1, 1), gender="u")
        customer_rows.append({**values, "id_number_hash": f"h{number}", **batch})
        email = c.email if c.email is not None else f"{c.customer_id.lower()}@example.com"
        pii_rows.append((c.customer_id, f"Name {number}", f"ID{number}", _phone(c, number),
                         None if email == "" else email, datetime(2026, 1, 1)))
    customer_schema = ", ".join(f"{f.name} {f.spark_type.simpleString()}" for f in customer_fields)
    lake.overwrite(spark.createDataFrame(
        customer_rows, customer_schema + ", id_number_hash string, batch_date date, run_id string"),
        "silver.customers")
    lake.overwrite(spark.createDataFrame(pii_rows, "customer_id string, full_name string, id_number string, "
                                                   "phone string, email string, updated_at timestamp"),
                   "silver.customer_pii")
    products = [(p, n, t, r, None if y is None else Decimal(str(y)), active, None, as_of, "handmade")
                for p, n, t, r, y, active in (world.products or PRODUCTS)]
    lake.overwrite(spark.createDataFrame(
        products, "product_id string, product_name string, product_type string, risk_level int, "
                  "expected_yield decimal(9,6), active boolean, min_amount decimal(18,2), batch_date date, "
                  "run_id string"), "silver.products")
    holdings = [(f"H{n}", c, p, s, e, Decimal("1000.00"), datetime(2026, 1, 1), as_of, "handmade")
                for n, (c, p, s, e) in enumerate(world.holdings)]
    lake.overwrite(spark.createDataFrame(
        holdings, "holding_id string, customer_id string, product_id string, start_date date, end_date date, "
                  "amount decimal(18,2), updated_at timestamp, batch_date date, run_id string"),
        "silver.holdings")
    responses = [(f"P{n}", c, campaign, channel, "unsubscribed", datetime(2026, 10, 1), None, as_of, "handmade")
                 for n, (c, channel, campaign) in enumerate(world.unsubscribes)]
    lake.overwrite(spark.createDataFrame(
        responses, "push_id string, customer_id string, campaign_id string, channel string, event string, "
                   "event_ts timestamp, product_id string, batch_date date, run_id string"),
        "silver.campaign_responses", partition_by=["batch_date"])
    if world.history:
        write_history(lake, world.history)
    write_models(lake, world)


def write_history(lake: Lake, rows: list[tuple]) -> None:
    """gold.push_history rows (as_of_date, campaign_id, customer_id, expiry_date, is_control)."""
    full = [(d, campaign, f"old-{d}-{campaign}-{c}", c, "app", None, None, None, None, [], expiry, control, 1,
             "earlier") for d, campaign, c, expiry, control in rows]
    lake.overwrite(lake.spark.createDataFrame(full, HISTORY_DDL), "gold.push_history", partition_by=["as_of_date"])


HISTORY_DDL = ("as_of_date date, campaign_id string, push_id string, customer_id string, channel string, "
               "product_id string, product_type string, offer_rank int, score double, "
               "reason_codes array<string>, expiry_date date, is_control boolean, selection_rank int, "
               "run_id string")


def write_models(lake: Lake, world: World) -> None:
    """The model tables (features, segments, churn, recommendations, tags) for world.model_date."""
    spark, d = lake.spark, world.model_date
    tables = {
        "gold.customer_features": spark.createDataFrame(
            [(c.customer_id, d, c.value_tier, c.lifecycle_stage, c.investment_inclination, c.deposit_inclination,
              c.risk_tolerance) for c in world.customers],
            "customer_id string, as_of_date date, value_tier string, lifecycle_stage string, "
            "investment_inclination double, deposit_inclination double, risk_tolerance int"),
        "gold.customer_segments": spark.createDataFrame(
            [(c.customer_id, 0, c.segment, 1.0, "m1", d) for c in world.customers if c.segment],
            "customer_id string, segment_id int, segment_label string, distance double, model_version string, "
            "as_of_date date"),
        "gold.churn_scores": spark.createDataFrame(
            [(c.customer_id, d, c.churn_probability, c.churn_band, "m1", c.churn_reasons)
             for c in world.customers if c.churn_band],
            "customer_id string, as_of_date date, churn_probability double, risk_band string, "
            "model_version string, reason_codes array<string>"),
        "gold.cross_sell_candidates": spark.createDataFrame(
            [(c, d, t, r, s, 0.5, lift, a) for c, t, r, s, lift, a in world.recommendations],
            "customer_id string, as_of_date date, product_type string, rank int, score double, "
            "confidence double, lift double, antecedent array<string>"),
        "gold.customer_tags": spark.createDataFrame(
            [(c, t, v, "rule", "handmade", d) for c, t, v in world.tags],
            "customer_id string, tag string, value string, source string, written_by string, as_of_date date"),
    }
    for name, frame in tables.items():
        if name in world.stale_tables:
            frame, day = frame.withColumn("as_of_date", F.lit(d - timedelta(days=1))), d - timedelta(days=1)
        else:
            day = d
        lake.replace_partitions(frame, name, [("as_of_date", "=", day)], partition_by=["as_of_date"])


# ------------------------------------------------------------------ reading an outbox day
def read_day(outbox_day: Path) -> dict[str, list[dict]]:
    """{"<channel>/<campaign>.csv": rows as dicts} of a published day."""
    files = {}
    for path in sorted(outbox_day.glob("*/*.csv")):
        with open(path, newline="", encoding="utf-8") as handle:
            files[f"{path.parent.name}/{path.name}"] = list(csv.DictReader(handle))
    return files


def pushed(outbox_day: Path) -> dict[tuple[str, str], dict]:
    """{(campaign_id, customer_id): row + channel} over all files of the day."""
    result = {}
    for name, rows in read_day(outbox_day).items():
        channel, campaign = name[:-4].split("/")
        for row in rows:
            assert (campaign, row["customer_id"]) not in result, f"{row['customer_id']} twice in {campaign}"
            result[(campaign, row["customer_id"])] = {**row, "channel": channel}
    return result


def expected_push_id(as_of: date, campaign: str, customer: str) -> str:
    return hashlib.sha256(f"{as_of.isoformat()}|{campaign}|{customer}".encode()).hexdigest()[:24]


def in_control(customer: str, campaign: str, seed: str, share: float) -> bool:
    digest = hashlib.sha256(f"{seed}|{campaign}|{customer}".encode()).hexdigest()
    return int(digest[:13], 16) / 16 ** 13 < share


def _is(flag, expected: bool) -> bool:
    """A boolean column value (None, numpy or Python bool) is known and equal to `expected`."""
    return flag is not None and flag == flag and bool(flag) is expected


def outbox_violations(outbox_day: Path, lake: Lake, as_of: date, campaigns: dict, seed: str) -> list[str]:
    """Every breach of the contact policy in the day's files, checked against the silver/gold tables."""
    customers = lake.read("silver.customers").toPandas().set_index("customer_id")
    pii = lake.read("silver.customer_pii").toPandas().set_index("customer_id")
    products = lake.read("silver.products").toPandas().set_index("product_id")
    holdings = lake.read("silver.holdings").toPandas()
    held = {(r.customer_id, r.product_id) for r in holdings.itertuples()
            if r.start_date <= as_of and (r.end_date is None or r.end_date != r.end_date or r.end_date > as_of)}
    unsubscribed: set[tuple[str, str]] = set()
    if lake.exists("silver.campaign_responses"):
        responses = lake.read("silver.campaign_responses").toPandas()
        unsubscribed = {(r.customer_id, r.channel) for r in responses.itertuples()
                        if r.event == "unsubscribed" and r.batch_date <= as_of}
    history = (lake.read("gold.push_history").toPandas() if lake.exists("gold.push_history") else None)
    by_id = {c["id"]: c for c in campaigns["campaigns"]}
    manifest = json.loads((outbox_day / "manifest.json").read_text(encoding="utf-8"))
    problems = []
    per_customer: dict[str, int] = {}
    offers: set[tuple[str, str]] = set()
    rows = [(name[:-4].split("/"), row) for name, file_rows in read_day(outbox_day).items() for row in file_rows]
    for (channel, campaign_id), row in rows:
        customer_id = row["customer_id"]
        where = f"{campaign_id}/{channel}/{customer_id}"
        if (campaign_id, customer_id) in offers:
            problems.append(f"{where}: a second offer of the campaign")
        offers.add((campaign_id, customer_id))
        per_customer[customer_id] = per_customer.get(customer_id, 0) + 1
        if customer_id not in customers.index:
            problems.append(f"{where}: unknown customer")
            continue
        c = customers.loc[customer_id]
        if c.status != "active":
            problems.append(f"{where}: status {c.status}")
        if not _is(c.do_not_contact, False):
            problems.append(f"{where}: do_not_contact {c.do_not_contact}")
        if not _is(c[CONSENT_OF[channel]], True):
            problems.append(f"{where}: no {CONSENT_OF[channel]}")
        contact = CONTACT_OF[channel]
        expected_columns = ["push_id", "customer_id", *([contact] if contact else []), "product_id", "product_name",
                            "product_type", "offer_rank", "score", "reason_codes", "expiry_date"]
        if list(row) != expected_columns:
            problems.append(f"{where}: columns {list(row)}")
        if contact and row.get(contact) != pii.loc[customer_id][contact]:
            problems.append(f"{where}: {contact} {row.get(contact)!r} is not the customer's")
        if any((customer_id, blocker) in unsubscribed for blocker in BLOCKED_BY[channel]):
            problems.append(f"{where}: unsubscribed")
        if row["product_id"]:
            product = products.loc[row["product_id"]]
            tolerance = c.risk_tolerance
            limit = 1 if tolerance is None or tolerance != tolerance else int(tolerance)
            if int(product.risk_level) > limit:
                problems.append(f"{where}: risk_level {product.risk_level} above tolerance {tolerance}")
            if not product.active:
                problems.append(f"{where}: inactive product")
            if (customer_id, row["product_id"]) in held:
                problems.append(f"{where}: product already held")
        if row["push_id"] != expected_push_id(as_of, campaign_id, customer_id):
            problems.append(f"{where}: push_id {row['push_id']}")
        expiry = as_of + timedelta(days=by_id[campaign_id]["validity_days"])
        if row["expiry_date"] != expiry.isoformat():
            problems.append(f"{where}: expiry {row['expiry_date']}")
        if in_control(customer_id, campaign_id, seed, by_id[campaign_id]["control_share"]):
            problems.append(f"{where}: control-group member pushed")
        if history is not None:
            open_ = history[(history.customer_id == customer_id) & (history.campaign_id == campaign_id)
                            & (history.as_of_date < as_of) & (history.expiry_date >= as_of)]
            if len(open_):
                problems.append(f"{where}: an offer of the campaign is still open")
    for customer_id, count in per_customer.items():
        earlier = 0
        if history is not None:
            recent = history[(history.customer_id == customer_id) & (~history.is_control)
                             & (history.as_of_date < as_of) & (history.as_of_date > as_of - timedelta(days=7))]
            earlier = len(recent)
        if count > 1:
            problems.append(f"{customer_id}: {count} pushes on {as_of}")
        if count + earlier > 3:
            problems.append(f"{customer_id}: {count + earlier} pushes in 7 days")
    for entry in manifest["files"]:
        content = (outbox_day / entry["path"]).read_bytes()
        if hashlib.sha256(content).hexdigest() != entry["sha256"]:
            problems.append(f"{entry['path']}: checksum differs from the manifest")
    return problems
