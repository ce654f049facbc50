"""Handmade landing batches for the ingest and clean tests: a tiny valid bank and a file writer.

Rows are dicts of strings (values as a source system would deliver them); `write_batch` writes them in
the format named by each file's suffix and marks the batch complete with `_READY`.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.common.contract import load_contract


def write_file(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """CSV/CSV.gz (header = `columns` or the keys of the rows), JSONL/JSONL.gz or Parquet (strings)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    name = path.name
    if name.endswith((".csv", ".csv.gz")):
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\r\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
        data = text.getvalue().encode("utf-8")
    elif name.endswith((".jsonl", ".jsonl.gz")):
        data = "".join(json.dumps({c: row.get(c) for c in columns if c in row}) + "\n"
                       for row in rows).encode("utf-8")
    elif name.endswith(".parquet"):
        table = pa.table({c: pa.array([row.get(c) for row in rows], pa.string()) for c in columns})
        pq.write_table(table, path)
        return
    else:
        raise ValueError(f"unknown format of {name}")
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)


def write_batch(landing: Path, source: str, day: str, files: dict[str, list[dict]], ready: bool = True,
                columns: list[str] | None = None) -> Path:
    folder = landing / source / f"dt={day}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        write_file(folder / name, rows, columns or contract_columns(source, rows))
    if ready:
        (folder / "_READY").touch()
    return folder


def contract_columns(source: str, rows: list[dict]) -> list[str]:
    """Every contract field plus any extra key the rows carry."""
    fields = load_contract()[source].field_names
    return fields + [k for k in dict.fromkeys(k for row in rows for k in row) if k not in fields]


def customer(cid: str, updated_at: str, **values) -> dict:
    n = cid[1:]
    row = {"customer_id": cid, "full_name": f"Name {n}", "gender": "F", "birth_date": f"1980-05-{int(n) % 28 + 1:02d}",
           "id_number": f"11010119800501{n:0>4}", "phone": f"138 0013 {n:0>4}",
           "email": f"Person.{n}@Example.com", "city": "Shanghai", "region": "Shanghai",
           "occupation": "clerk", "annual_income": "120000.00", "risk_tolerance": "3",
           "kyc_date": "2025-01-15", "consent_sms": "yes", "consent_email": "1", "consent_app": "TRUE",
           "do_not_contact": "false", "status": "active", "updated_at": updated_at}
    row.update(values)
    return row


def account(aid: str, cid: str, updated_at: str, **values) -> dict:
    row = {"account_id": aid, "customer_id": cid, "account_type": "Current", "open_date": "2020-01-01",
           "close_date": None, "status": "open", "currency": "CNY", "balance": "1000.00",
           "updated_at": updated_at}
    row.update(values)
    return row


def product(pid: str, **values) -> dict:
    row = {"product_id": pid, "product_name": f"Product {pid}", "product_type": "fund", "risk_level": "3",
           "min_amount": "1000", "expected_yield": "0.035", "active": "true"}
    row.update(values)
    return row


def holding(hid: str, cid: str, pid: str, updated_at: str, **values) -> dict:
    row = {"holding_id": hid, "customer_id": cid, "product_id": pid, "start_date": "2025-06-01",
           "end_date": None, "amount": "50000.00", "updated_at": updated_at}
    row.update(values)
    return row


def loan(lid: str, cid: str, aid: str, snapshot: str, **values) -> dict:
    row = {"loan_id": lid, "customer_id": cid, "account_id": aid, "product_id": "P2", "principal": "300000",
           "outstanding": "250000", "interest_rate": "0.039", "term_months": "240", "start_date": "2022-01-01",
           "maturity_date": "2042-01-01", "days_past_due": "0", "status": "current", "snapshot_date": snapshot}
    row.update(values)
    return row


def txn(tid: str, aid: str, cid: str, ts: str, amount: str = "100.00", **values) -> dict:
    row = {"txn_id": tid, "account_id": aid, "customer_id": cid, "txn_ts": ts, "amount": amount,
           "direction": "debit", "currency": "CNY", "channel": "mobile", "txn_type": "card_purchase",
           "merchant_category": "grocery", "counterparty": "Shop", "product_id": None,
           "balance_after": "900.00"}
    row.update(values)
    return row


def response(push_id: str, cid: str, ts: str, **values) -> dict:
    row = {"push_id": push_id, "customer_id": cid, "campaign_id": "cross_sell", "channel": "sms",
           "event": "delivered", "event_ts": ts, "product_id": None}
    row.update(values)
    return row


def app_event(cid: str, ts: str, **values) -> dict:
    row = {"customer_id": cid, "event_ts": ts, "event_type": "login", "page": "home", "product_id": None}
    row.update(values)
    return row


def small_bank(day: str) -> dict[str, dict[str, list[dict]]]:
    """A consistent initial load for business date `day`: source -> file name -> rows (every format)."""
    at = f"{day}T08:00:00"
    return {
        "customers": {"customers.csv": [customer(f"C{i}", at) for i in (1, 2, 3)]},
        "products": {"products.jsonl": [product("P1"), product("P2", product_type="mortgage",
                                                               risk_level="1")]},
        "accounts": {"accounts.csv.gz": [account("A1", "C1", at), account("A2", "C2", at),
                                         account("A3", "C3", at, account_type="loan")]},
        "holdings": {"holdings.parquet": [holding("H1", "C1", "P1", at)]},
        "loans": {"loans.jsonl.gz": [loan("L1", "C3", "A3", day)]},
        "transactions": {
            "part-1.csv.gz": [txn("T1", "A1", "C1", f"{day}T09:00:00"),
                              txn("T2", "A2", "C2", f"{day}T10:00:00", direction="credit")],
            "part-2.csv.gz": [txn("T3", "A1", "C1", "2025-12-31T23:30:00", amount="55.5")],
        },
        "campaign_responses": {"responses.jsonl": [response("X1", "C1", f"{day}T07:00:00")]},
        "app_events": {"events.parquet": [app_event("C1", f"{day}T07:30:00")]},
    }


def write_bank(landing: Path, day: str, bank: dict[str, dict[str, list[dict]]]) -> None:
    for source, files in bank.items():
        write_batch(landing, source, day, files)
