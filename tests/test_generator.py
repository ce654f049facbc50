"""The seeded generator: reproducible bytes, contract conformance, planted truth, dirty rows, daily batches.

Files are read back with pandas/pyarrow and checked against the contract in schemas/ and against
independent recomputations (running balances, rule lifts, defect classification), never against the
generator's own code paths.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from jobs.common.config import ConfigError, load_settings
from jobs.common.contract import load_contract
from jobs.common.errors import InputError
from jobs.generate.generator import generate, truth_root

END = date(2026, 10, 31)
CUSTOMERS, MONTHS, DAILY = 300, 3, 3
CREDIT_TYPES = {"deposit", "transfer_in", "interest", "loan_disbursement", "product_redemption"}
DEFECT_ORDER = ("missing_required", "bad_type", "unknown_code", "non_positive_amount", "future_date",
                "orphan_customer", "orphan_account", "duplicate_key")


BLOCK = 150  # two blocks of customers, so that ids, files and dirty rows are checked across blocks


def _generate(root: Path, seed: int = 7, dirty_rate: float = 0.0) -> Path:
    landing = root / "landing"
    settings = load_settings(env={"CRM_GENERATOR__BLOCK_CUSTOMERS": str(BLOCK)})
    generate(customers=CUSTOMERS, months=MONTHS, end_date=END, seed=seed, landing=landing,
             daily_batches=DAILY, dirty_rate=dirty_rate, settings=settings)
    return landing


@pytest.fixture(scope="module")
def clean_landing(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory.mktemp("clean"))


@pytest.fixture(scope="module")
def dirty_landing(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory.mktemp("dirty"), dirty_rate=0.02)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _data_files(landing: Path, source: str) -> list[Path]:
    return sorted(p for p in (landing / source).glob("dt=*/*") if p.name != "_READY")


def _read_file(path: Path) -> pd.DataFrame:
    """Every value as delivered, as text (None for empty/null)."""
    name = path.name
    if ".csv" in name:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        return frame.where(frame != "", None)
    if name.endswith(".parquet"):
        frame = pd.read_parquet(path)
        return frame.astype(object).where(frame.notna(), None)
    frame = pd.read_json(path, lines=True, dtype=False, convert_dates=False)
    if frame.empty:
        return frame
    return frame.astype(object).where(frame.notna(), None).map(
        lambda v: None if v is None else ("true" if v is True else "false" if v is False else str(v)))


def _read_source(landing: Path, source: str) -> pd.DataFrame:
    frames = []
    for path in _data_files(landing, source):
        frame = _read_file(path)
        frame["_dt"] = path.parent.name[3:]
        frame["_file"] = str(path)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _type_ok(kind: str, value: str) -> bool:
    try:
        if kind == "date":
            return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)) and bool(date.fromisoformat(value))
        if kind == "timestamp":
            return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", value)) and bool(
                datetime.fromisoformat(value))
        if kind == "int":
            return str(int(float(value))) == value.removesuffix(".0")
        if kind == "boolean":
            return value.strip().lower() in {"true", "false", "1", "0", "yes", "no"}
        if kind.startswith("decimal"):
            scale = int(kind.rstrip(")").split(",")[1])
            number = float(value)
            return abs(round(number, scale) - number) < 1e-9
        return True
    except ValueError:
        return False


def _defects(frame: pd.DataFrame, source: str, known: dict[str, set]) -> pd.Series:
    """The first defect of each row in the documented check order (None for a clean row); rows must be in
    delivery order (batch date, file) for duplicate detection."""
    spec = load_contract()[source]
    defect = pd.Series(None, index=frame.index, dtype=object)

    def mark(mask: pd.Series, reason: str) -> None:
        defect[defect.isna() & mask] = reason

    mark(frame[spec.required_fields].isna().any(axis=1), "missing_required")
    for field in spec.fields:
        values = frame[field.name]
        parses = values.map(lambda v, kind=field.type: _type_ok(kind, v), na_action="ignore")
        mark(values.notna() & (parses == False), "bad_type")  # noqa: E712 - NaN for nulls
    for field in spec.fields:
        if field.codes:
            values = frame[field.name]
            mark(values.notna() & ~values.str.strip().str.lower().isin(field.codes), "unknown_code")
    if source == "transactions":
        mark(pd.to_numeric(frame["amount"], errors="coerce") <= 0, "non_positive_amount")
        mark(frame["txn_ts"].str[:10] > frame["_dt"], "future_date")
    if source != "customers" and "customer_id" in frame:
        mark(~frame["customer_id"].isin(known["customers"]), "orphan_customer")
    if source == "transactions":
        mark(~frame["account_id"].isin(known["accounts"]), "orphan_account")
        passed = defect.isna()
        mark(passed & frame["txn_id"].where(passed).duplicated(keep="first"), "duplicate_key")
    return defect


def _classify(landing: Path) -> dict[str, pd.DataFrame]:
    """All rows of every source with the defect found by independent checks."""
    frames = {source: _read_source(landing, source) for source in load_contract()}
    known: dict[str, set] = {"customers": set(), "accounts": set()}
    for source in ("customers", "accounts", "products", "holdings", "loans", "campaign_responses",
                   "app_events", "transactions"):
        frame = frames[source].sort_values(["_dt", "_file"], kind="stable").reset_index(drop=True)
        frame["defect"] = _defects(frame, source, known)
        frames[source] = frame
        if source in known:
            key = "customer_id" if source == "customers" else "account_id"
            known[source] = set(frame.loc[frame["defect"].isna(), key])
    return frames


@pytest.fixture(scope="module")
def clean_rows(clean_landing) -> dict[str, pd.DataFrame]:
    return _classify(clean_landing)


@pytest.fixture(scope="module")
def truth(clean_landing) -> pd.DataFrame:
    return pd.read_csv(truth_root(clean_landing) / "customers.csv", dtype=str, keep_default_na=False)


def _latest(frame: pd.DataFrame, key: str, order: str) -> pd.DataFrame:
    return frame.sort_values([order, "_dt"], kind="stable").drop_duplicates(key, keep="last")


# --- determinism --------------------------------------------------------------------------------------------

def test_generate_same_seed_twice_gives_identical_bytes(tmp_path, clean_landing):
    again = _generate(tmp_path)
    assert _digest(again) == _digest(clean_landing)
    assert _digest(truth_root(again)) == _digest(truth_root(clean_landing))


def test_generate_other_seed_gives_different_bytes(tmp_path, clean_landing):
    other = _generate(tmp_path, seed=8)
    first, second = _digest(clean_landing), _digest(other)
    changed = [name for name in first if name in second and first[name] != second[name]]
    assert any("transactions" in name for name in changed)
    assert any("customers" in name for name in changed)


def test_generate_with_more_daily_batches_than_days_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="daily batches"):
        generate(customers=10, months=1, end_date=END, seed=1, landing=tmp_path / "landing", daily_batches=40)


def test_settings_with_planted_rule_on_unknown_type_are_rejected():
    with pytest.raises(ConfigError, match="planted rule item 'prod:boat'"):
        load_settings(env={"CRM_GENERATOR__PLANTED_RULES":
                           '[{antecedent: ["prod:boat"], consequent: "prod:fund", rate: 0.5, description: x}]'})


# --- layout and contract ------------------------------------------------------------------------------------

def test_layout_every_required_source_in_every_batch_with_ready(clean_landing):
    batches = [(END - timedelta(days=DAILY - k)).isoformat() for k in range(DAILY + 1)]
    for source, spec in load_contract().items():
        folders = sorted(p.name[3:] for p in (clean_landing / source).glob("dt=*"))
        if not spec.optional:
            assert folders == batches, source
        for folder in (clean_landing / source).glob("dt=*"):
            assert (folder / "_READY").exists(), folder
            assert [p for p in folder.iterdir() if p.name != "_READY"], folder
    initial_chunks = list((clean_landing / "transactions" / f"dt={batches[0]}").glob("*.csv.gz"))
    chunks = load_settings().job("generator").transaction_chunks
    assert len(initial_chunks) == chunks * CUSTOMERS // BLOCK
    suffixes = {p.name.split(".", 1)[1] for s in load_contract() for p in _data_files(clean_landing, s)}
    assert {"csv", "csv.gz", "jsonl", "jsonl.gz", "parquet"} <= suffixes


def test_every_file_has_every_contract_column(clean_landing):
    for source, spec in load_contract().items():
        for path in _data_files(clean_landing, source):
            columns = set(_read_file(path).columns)
            if columns or not path.name.endswith(".jsonl"):
                assert set(spec.field_names) <= columns, f"{path} misses {set(spec.field_names) - columns}"


def test_clean_rows_conform_to_contract_types_codes_and_references(clean_rows):
    for source, frame in clean_rows.items():
        bad = frame[frame["defect"].notna()]
        assert bad.empty, f"{source}: {bad['defect'].value_counts().to_dict()}"
        spec = load_contract()[source]
        for field in spec.fields:
            values = frame[field.name].dropna()
            if field.min is not None:
                assert (values.astype(float) >= field.min).all(), (source, field.name)
            if field.max is not None:
                assert (values.astype(float) <= field.max).all(), (source, field.name)
            if field.pattern:
                assert values.str.fullmatch(field.pattern.strip("^$")).all(), (source, field.name)
    products = set(clean_rows["products"]["product_id"])
    for source in ("holdings", "transactions", "campaign_responses", "app_events", "loans"):
        assert set(clean_rows[source]["product_id"].dropna()) <= products, source
    accounts = set(clean_rows["accounts"]["account_id"])
    assert set(clean_rows["loans"]["account_id"].dropna()) <= accounts
    campaigns = set(clean_rows["campaign_responses"]["campaign_id"])
    assert campaigns == {"wealth_upsell", "structured_deposit", "retention_call", "cross_sell"}


def test_transactions_balance_after_is_running_balance_of_own_account(clean_rows):
    txns = clean_rows["transactions"].copy()
    owner = _latest(clean_rows["accounts"], "account_id", "updated_at").set_index("account_id")
    assert (txns["account_id"].map(owner["customer_id"]) == txns["customer_id"]).all()
    assert (txns["txn_ts"].str[:10] <= txns["_dt"]).all()
    assert txns["txn_id"].is_unique
    txns["amount"] = txns["amount"].astype(float)
    txns["balance_after"] = txns["balance_after"].astype(float)
    signed = txns["amount"].where(txns["txn_type"].isin(CREDIT_TYPES), -txns["amount"])
    assert ((txns["direction"] == "credit") == txns["txn_type"].isin(CREDIT_TYPES)).all()
    txns["signed"] = signed
    txns = txns.sort_values(["account_id", "txn_ts"], kind="stable")
    assert not txns.duplicated(["account_id", "txn_ts"]).any()
    step = txns.groupby("account_id")["balance_after"].diff()
    moved = step.notna()
    assert (step[moved] - txns.loc[moved, "signed"]).abs().max() < 0.005
    account_type = txns["account_id"].map(owner["account_type"])
    deposit = account_type.isin(["current", "savings", "time_deposit", "wealth"])
    assert (txns.loc[deposit, "balance_after"] >= 0).all()


# --- planted truth ------------------------------------------------------------------------------------------

def test_truth_archetype_shares_follow_settings(truth, settings):
    shares = {name: a.share for name, a in settings.job("generator").archetypes.items()}
    counts = truth["archetype"].value_counts()
    assert set(counts.index) == set(shares)
    for name, share in shares.items():  # exact per block, so off by at most one per block
        assert abs(counts[name] - share * CUSTOMERS) <= CUSTOMERS // BLOCK, name
    assert truth["customer_id"].is_unique and len(truth) == CUSTOMERS


def test_truth_churners_close_all_accounts_at_churn_date(truth, clean_rows):
    churn = truth[truth["churn_date"] != ""]
    history = churn[churn["churn_date"] <= END.isoformat()]
    assert 0.05 <= len(history) / CUSTOMERS <= 0.09
    future = churn[churn["churn_date"] > END.isoformat()]
    assert set(truth.loc[truth["archetype"] == "declining", "customer_id"]) - set(history["customer_id"]) <= set(
        future["customer_id"])
    for _, row in churn.iterrows():
        decline = date.fromisoformat(row["decline_start"])
        assert (date.fromisoformat(row["churn_date"]) - decline).days == 90
    accounts = _latest(clean_rows["accounts"], "account_id", "updated_at")
    mine = accounts[accounts["customer_id"].isin(history["customer_id"])]
    churn_date = mine["customer_id"].map(history.set_index("customer_id")["churn_date"])
    assert (mine["status"] == "closed").all()
    assert (mine["close_date"] == churn_date).all()
    assert (mine["balance"].astype(float) == 0).all()
    txns = clean_rows["transactions"].sort_values("txn_ts", kind="stable")
    last = txns[txns["customer_id"].isin(history["customer_id"])].drop_duplicates("account_id", keep="last")
    assert (last["balance_after"].astype(float) == 0).all()
    assert (last["txn_ts"].str[:10] <= last["customer_id"].map(history.set_index("customer_id")["churn_date"])).all()
    customers = _latest(clean_rows["customers"], "customer_id", "updated_at").set_index("customer_id")
    assert (customers.loc[history["customer_id"], "status"] == "closed").all()


def test_truth_churners_activity_decays_before_churn(truth, clean_rows):
    """Customer-initiated transactions in a churner's last 30 days fall well below the rate of
    non-churners of the same archetype over the whole window."""
    txns = clean_rows["transactions"]
    txns = txns[txns["txn_type"].isin(["card_purchase", "withdrawal", "transfer_out", "payment", "deposit"])]
    txns = txns.assign(day=pd.to_datetime(txns["txn_ts"].str[:10]))
    people = truth.set_index("customer_id")
    churners = people[(people["churn_date"] != "") & (people["churn_date"] <= END.isoformat())]
    stayers = people[people["churn_date"] == ""]
    window_days = (pd.Timestamp(END) - txns["day"].min()).days + 1
    per_stayer = txns[txns["customer_id"].isin(stayers.index)].groupby("customer_id").size()
    daily_rate = (per_stayer.reindex(stayers.index, fill_value=0) / window_days).groupby(stayers["archetype"]).mean()
    churn_day = pd.to_datetime(txns["customer_id"].map(churners["churn_date"]))
    last_month = txns[(txns["day"] < churn_day) & (txns["day"] >= churn_day - pd.Timedelta(days=30))]
    expected = (churners["archetype"].map(daily_rate) * 30).sum()
    assert len(last_month) < 0.6 * expected, (len(last_month), expected)


def test_planted_rules_have_lift_above_two(clean_landing, clean_rows):
    rules = json.loads((truth_root(clean_landing) / "planted_rules.json").read_text())
    assert rules and all(r["consequent"].startswith("prod:") for r in rules)
    products = _latest(clean_rows["products"], "product_id", "_dt").set_index("product_id")["product_type"]
    holdings = _latest(clean_rows["holdings"], "holding_id", "updated_at")
    held = holdings[holdings["end_date"].isna()]
    customers = _latest(clean_rows["customers"], "customer_id", "updated_at")
    customers = customers[customers["status"] == "active"].set_index("customer_id")
    birth = pd.to_datetime(customers["birth_date"])
    age = END.year - birth.dt.year - ((birth.dt.month * 100 + birth.dt.day) > END.month * 100 + END.day)
    bands = pd.cut(age, [0, 29, 49, 64, 200], labels=["18-29", "30-49", "50-64", "65+"]).astype(str)
    items = {cid: {f"attr:age_band={band}"} for cid, band in bands.items()}
    for cid, ptype in zip(held["customer_id"], held["product_id"].map(products), strict=True):
        if cid in items:
            items[cid].add(f"prod:{ptype}")
    baskets = list(items.values())
    for rule in rules:
        antecedent = set(rule["antecedent"])
        with_a = [b for b in baskets if antecedent <= b]
        confidence = sum(rule["consequent"] in b for b in with_a) / len(with_a)
        support_c = sum(rule["consequent"] in b for b in baskets) / len(baskets)
        assert confidence / support_c > 2, (rule["antecedent"], rule["consequent"], confidence, support_c)


def test_loans_some_overdue_with_days_past_due_rising(clean_rows):
    loans = clean_rows["loans"].copy()
    loans["days_past_due"] = loans["days_past_due"].astype(int)
    daily = loans[loans["snapshot_date"] >= (END - timedelta(days=DAILY)).isoformat()]
    rising = daily.sort_values("snapshot_date").groupby("loan_id")["days_past_due"].agg(["first", "last"])
    assert (rising["last"] - rising["first"] == DAILY).sum() >= 1
    assert {"current", "overdue"} <= set(loans["status"])
    assert ((loans["status"] == "overdue") == loans["days_past_due"].between(1, 89)).all()


def test_salary_earners_get_monthly_transfer_from_one_employer(clean_rows, truth):
    txns = clean_rows["transactions"]
    salary = txns[(txns["txn_type"] == "transfer_in") & txns["counterparty"].str.startswith("EMPLOYER", na=False)]
    per_customer = salary.groupby("customer_id").agg(months=("txn_ts", lambda s: s.str[:7].nunique()),
                                                    employers=("counterparty", "nunique"))
    assert (per_customer["employers"] == 1).all()
    salaried = truth.set_index("customer_id").loc[per_customer.index, "archetype"]
    assert (salaried == "salaried_mass").sum() > 0.7 * (truth["archetype"] == "salaried_mass").sum()


# --- daily batches ------------------------------------------------------------------------------------------

def test_daily_batches_carry_later_customer_versions_for_latest_wins(clean_rows):
    customers = clean_rows["customers"]
    initial = customers[customers["_dt"] == customers["_dt"].min()]
    later = customers[customers["_dt"] > customers["_dt"].min()]
    both = later.merge(initial, on="customer_id", suffixes=("", "_before"))
    assert (both["updated_at"] > both["updated_at_before"]).all()
    changed = both[(both["risk_tolerance"] != both["risk_tolerance_before"])
                   | (both["consent_email"] != both["consent_email_before"])
                   | (both["consent_sms"] != both["consent_sms_before"])
                   | (both["status"] != both["status_before"])]
    assert len(changed) >= 1
    assert initial["customer_id"].duplicated().any()  # superseded rows inside the initial load too
    for source in ("accounts", "holdings", "transactions", "app_events"):
        frame = clean_rows[source]
        assert (frame["_dt"] > frame["_dt"].min()).any(), source


# --- dirty rows ---------------------------------------------------------------------------------------------

def test_dirty_counts_equal_defects_found_in_files(dirty_landing):
    recorded = json.loads((truth_root(dirty_landing) / "dirty_counts.json").read_text())
    found = _classify(dirty_landing)
    for source in load_contract():
        counts = found[source]["defect"].value_counts().to_dict()
        assert counts == recorded[source], source
    assert set(recorded["transactions"]) == set(DEFECT_ORDER)
    for source, columns in recorded["extra_columns"].items():
        having = [p for p in _data_files(dirty_landing, source) if set(columns) <= set(_read_file(p).columns)]
        assert len(having) == 1, source


def test_dirty_rows_are_extra_rows_next_to_unchanged_clean_rows(dirty_landing, clean_landing, clean_rows):
    recorded = json.loads((truth_root(dirty_landing) / "dirty_counts.json").read_text())
    dirty = {source: _read_source(dirty_landing, source) for source in load_contract()}
    for source, frame in dirty.items():
        extra = sum(recorded[source].values())
        assert len(frame) == len(clean_rows[source]) + extra, source
    columns = load_contract()["transactions"].field_names
    clean_txns = clean_rows["transactions"][columns]
    merged = dirty["transactions"][columns].merge(clean_txns.drop_duplicates(), how="inner")
    assert len(merged) == len(clean_txns) + recorded["transactions"]["duplicate_key"]
