"""Landing rows of one block as Arrow tables with the contract's field names, plus a `__batch` column
(0 = initial load, k = k-th daily batch) that the writer uses to route rows and then drops.

Column types: strings, dates and timestamps as text (`YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS`, local bank time),
money as float64 with two decimals, ints as int64, booleans as bool.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.common.contract import source
from jobs.generate.population import SLOT_ACCOUNT_TYPE, SLOTS, Catalog, Population
from jobs.generate.settings import GeneratorSettings
from jobs.generate.transactions import CHANNELS, TXN_TYPES, Transactions, counterparties
from jobs.generate.window import DAY, NEVER, Window

HOUR = 3600
BATCH = "__batch"


def text(values) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _strings(matrix: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """Fixed-width ASCII rows (uint8 matrix n x w) as a string array, built straight from buffers."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32) if n else np.zeros(1, dtype=np.int32)
    validity = None
    if null is not None and null.any():
        validity = pa.py_buffer(np.packbits(~null, bitorder="little"))
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(matrix)),
                                       validity)


_FOUR_DIGITS = np.array([list(f"{k:04d}".encode()) for k in range(10_000)], dtype=np.uint8)
_CLOCK = np.array([list(f"T{h:02d}:{m:02d}:{sec:02d}".encode()) for h in range(24) for m in range(60)
                   for sec in range(60)], dtype=np.uint8)


def _digits(numbers: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative ints as an n x width uint8 matrix (4 digits per pass)."""
    groups = -(-width // 4)
    out = np.empty((len(numbers), groups * 4), dtype=np.uint8)
    rest = np.asarray(numbers, dtype=np.int64)
    for g in range(groups - 1, -1, -1):
        rest, low = np.divmod(rest, 10_000)
        out[:, g * 4:(g + 1) * 4] = _FOUR_DIGITS[low]
    return out[:, groups * 4 - width:]


def ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """`<prefix><number zero-padded to width>`."""
    numbers = np.asarray(numbers, dtype=np.int64)
    head = np.broadcast_to(np.frombuffer(prefix.encode("ascii"), dtype=np.uint8), (len(numbers), len(prefix)))
    return _strings(np.hstack([head, _digits(numbers, width)]))


def _date_bytes(window: Window, day: np.ndarray) -> np.ndarray:
    """`YYYY-MM-DD` bytes of day offsets through a lookup table of the distinct days."""
    if len(day) == 0:
        return np.zeros((0, 10), dtype=np.uint8)
    lo, hi = int(day.min()), int(day.max())
    table = np.datetime_as_string(window.to_date64(np.arange(lo, hi + 1)), unit="D").astype("S10")
    return table.view(np.uint8).reshape(-1, 10)[day - lo]


def timestamps(window: Window, seconds: np.ndarray) -> pa.Array:
    """Seconds since the window start -> `YYYY-MM-DDTHH:MM:SS` (local time, no zone)."""
    seconds = np.asarray(seconds, dtype=np.int64)
    day, second = np.divmod(seconds, DAY)
    return _strings(np.hstack([_date_bytes(window, day), _CLOCK[second]]))


def dates(window: Window, day: np.ndarray) -> pa.Array:
    """Day offsets -> `YYYY-MM-DD`; NEVER becomes null."""
    day = np.asarray(day, dtype=np.int64)
    never = day >= NEVER
    return _strings(_date_bytes(window, np.where(never, day[~never].min() if (~never).any() else 0, day)), never)


def concat(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def constant(value: str, n: int) -> pa.Array:
    return pa.array([value], pa.string()).take(pa.array(np.zeros(n, dtype=np.int32)))


def money(cents: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(cents, dtype=np.int64) / 100)


@dataclass(frozen=True)
class Ids:
    """Identifier formats, fixed-width so they sort like their numbers."""

    width: int

    def customer(self, number: np.ndarray) -> pa.Array:
        return ids("C", number, self.width)

    def account(self, number: np.ndarray, slot: np.ndarray) -> pa.Array:
        return ids("A", np.asarray(number) * 10 + slot, self.width + 1)

    def holding(self, number: np.ndarray, k: np.ndarray) -> pa.Array:
        return ids("H", np.asarray(number) * 100 + k, self.width + 2)

    def loan(self, number: np.ndarray, slot: np.ndarray) -> pa.Array:
        return ids("L", np.asarray(number) * 10 + slot, self.width + 1)


def _table(spec_source: str, columns: dict[str, pa.Array], batch: np.ndarray) -> pa.Table:
    names = source(spec_source).field_names
    missing = set(names) - set(columns)
    if missing:
        raise AssertionError(f"{spec_source}: generator misses contract fields {sorted(missing)}")
    order = np.argsort(batch, kind="stable")
    arrays = [columns[name].take(pa.array(order)) for name in names] + [pa.array(np.asarray(batch)[order])]
    return pa.Table.from_arrays(arrays, names=[*names, BATCH])


# --- customers ---------------------------------------------------------------------------------------------

def customers_table(s: GeneratorSettings, window: Window, pop: Population, ident: Ids, seed: int) -> tuple[pa.Table, dict]:
    """Initial snapshot, older superseded rows, daily joiners, churn closures and profile changes.

    Returns the table and the customers' final (latest) profile used for the ground truth."""
    rng = np.random.default_rng([seed, pop.block, 3])
    c = pop.customers
    n = len(c)
    D, init = window.days, window.init_day
    risk = c.risk_tolerance.copy()
    consent = {"consent_sms": c.consent_sms.copy(), "consent_email": c.consent_email.copy(),
               "consent_app": c.consent_app.copy(), "do_not_contact": c.do_not_contact.copy()}
    income = c.income.copy()
    kyc = c.kyc_day.copy()

    rows = []  # (customer index, day, seconds, status closed?, profile dict)

    def profile() -> dict:
        return {"risk": risk.copy(), "income": income.copy(), "kyc": kyc.copy(),
                **{k: v.copy() for k, v in consent.items()}}

    # Older superseded rows inside the initial load (latest `updated_at` wins within one batch).
    known = c.join_day <= init
    older = np.flatnonzero(known & (c.kyc_day > c.join_day + 30) & (rng.random(n) < s.profile_history_share))
    old = profile()
    old["risk"][older] = np.clip(risk[older] + rng.choice([-1, 1], len(older)), 1, 5)
    old["consent_email"][older] = ~consent["consent_email"][older]
    old["kyc"][older] = c.join_day[older]
    old_day = c.join_day[older] + rng.integers(0, np.maximum(c.kyc_day[older] - c.join_day[older], 1))
    rows.append((older, old_day, 9 * HOUR + rng.integers(0, 8 * HOUR, len(older)), False, old))

    # The state as of the initial load (closed if churned by then).
    snap = np.flatnonzero(known)
    closed = c.churn_day[snap] <= init
    snap_day = np.where(closed, c.churn_day[snap], np.maximum(c.kyc_day[snap], c.join_day[snap]))
    snap_seconds = np.where(closed, 12 * HOUR, 9 * HOUR) + rng.integers(0, 8 * HOUR, len(snap))
    rows.append((snap, snap_day, snap_seconds, closed, profile()))

    # Daily batches: joiners, then profile changes, then churn closures.
    joiners = np.flatnonzero((c.join_day > init) & (c.join_day < D))
    rows.append((joiners, c.join_day[joiners], 9 * HOUR + rng.integers(0, 8 * HOUR, len(joiners)), False,
                 profile()))
    if window.daily_batches:
        p = min(1.0, s.daily_profile_change_share * window.daily_batches)
        change_day = init + 1 + rng.integers(0, window.daily_batches, n)
        changed = np.flatnonzero(known & (c.churn_day > change_day) & (rng.random(n) < p))
        kind = rng.integers(0, 3, len(changed))
        who = changed[kind == 0]  # suitability review: risk tolerance moves by one step
        risk[who] = np.clip(risk[who] + rng.choice([-1, 1], len(who)), 1, 5)
        kyc[who] = change_day[who]
        who = changed[kind == 1]  # consent withdrawn or given, sometimes do-not-contact
        flip = rng.integers(0, 4, len(who))
        for k, name in enumerate(consent):
            mine = who[flip == k]
            consent[name][mine] = ~consent[name][mine] if name != "do_not_contact" else True
        who = changed[kind == 2]  # new income declared
        income[who] = np.round(income[who] * rng.uniform(1.05, 1.25, len(who)), -2)
        rows.append((changed, change_day[changed], 9 * HOUR + rng.integers(0, 8 * HOUR, len(changed)), False,
                     profile()))
    leaving = np.flatnonzero((c.churn_day > init) & (c.churn_day < D))
    rows.append((leaving, c.churn_day[leaving], 12 * HOUR + rng.integers(0, 8 * HOUR, len(leaving)), True,
                 profile()))

    who = np.concatenate([r[0] for r in rows])
    day = np.concatenate([r[1] for r in rows]).astype(np.int64)
    seconds = np.concatenate([r[2] for r in rows]).astype(np.int64)
    status_closed = np.concatenate([np.broadcast_to(r[3], len(r[0])) for r in rows])
    prof = {k: np.concatenate([r[4][k][r[0]] for r in rows]) for k in rows[0][4]}

    vocab = s.vocab
    surname = np.array(vocab.surnames, dtype=object)[c.surname[who]]
    given = np.array(vocab.given_names, dtype=object)[c.given_name[who]]
    given_name = concat(text(given[:, 0]), pc.utf8_lower(text(given[:, 1])))
    full_name = concat(text(surname), " ", given_name)
    birth = dates(window, c.birth_day[who])
    city = np.array([ct.city for ct in vocab.cities], dtype=object)[c.city[who]]
    region = np.array([ct.region for ct in vocab.cities], dtype=object)[c.city[who]]
    number = c.number[who]
    id_number = concat(ids("", 110000 + c.city[who] * 1000 + number % 1000, 6),
                       pc.replace_substring(birth, "-", ""), ids("", number % 997, 3),
                       text(np.where(number % 11 == 10, "X", (number % 11).astype(str))))
    mobile = 13_000_000_000 + (number * 7_919_993 % 6_999_999_999)
    digits = text(mobile)
    cc = s.phone_country_code
    style = number % 4
    phone = pc.case_when(
        pc.make_struct(pa.array(style == 0), pa.array(style == 1), pa.array(style == 2)),
        concat(f"+{cc} ", pc.utf8_slice_codeunits(digits, 0, 3), " ", pc.utf8_slice_codeunits(digits, 3, 7), " ",
               pc.utf8_slice_codeunits(digits, 7, 11)),
        digits,
        concat(f"+{cc}-", pc.utf8_slice_codeunits(digits, 0, 3), "-", pc.utf8_slice_codeunits(digits, 3, 7), "-",
               pc.utf8_slice_codeunits(digits, 7, 11)),
        concat(f"00{cc}", digits))
    domain = np.array(vocab.email_domains, dtype=object)[number % len(vocab.email_domains)]
    email = concat(pc.utf8_lower(given_name), ".", pc.utf8_lower(text(surname)), text(number % 10_000), "@",
                   text(domain))
    email = pc.if_else(pa.array(number % 13 == 0), pc.utf8_upper(email), email)
    columns = {
        "customer_id": ident.customer(number), "full_name": full_name,
        "gender": text(c.gender[who]), "birth_date": birth, "id_number": id_number, "phone": phone,
        "email": email, "city": text(city), "region": text(region), "occupation": text(c.occupation[who]),
        "annual_income": pa.array(prof["income"]), "risk_tolerance": pa.array(prof["risk"]),
        "kyc_date": dates(window, prof["kyc"]),
        **{k: pa.array(prof[k]) for k in consent},
        "status": text(np.where(status_closed, "closed", "active")),
        "updated_at": timestamps(window, day * DAY + seconds),
    }
    final = {"risk_tolerance": risk, "annual_income": income, **consent}
    return _table("customers", columns, window.batch_of(day)), final


# --- accounts ----------------------------------------------------------------------------------------------

def _last_per_group(group: np.ndarray) -> np.ndarray:
    """Positions of the last row of each run of equal values."""
    if len(group) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[group[1:] != group[:-1], True])


def accounts_table(s: GeneratorSettings, window: Window, pop: Population, txns: Transactions,
                   opening: np.ndarray, ident: Ids) -> pa.Table:
    """Initial state of every account opened by the initial load, then one row per day an account changed
    (transactions, opening, closing, loan instalment) with its balance at the end of that day."""
    acc, loans = pop.accounts, pop.loans
    D, init = window.days, window.init_day
    order = np.lexsort((txns.ts, txns.account))
    account, day, balance = txns.account[order], txns.ts[order] // DAY, txns.balance_after[order]
    batch_day = np.maximum(day, init)  # everything up to the initial load collapses onto its day
    last = _last_per_group(account * (D + 1) + batch_day)
    changes = {"account": account[last], "day": batch_day[last], "balance": balance[last]}

    # Accounts without a transaction by the initial load still appear with their opening balance.
    seen = np.zeros(len(acc), dtype=bool)
    seen[changes["account"][changes["day"] == init]] = True
    quiet = np.flatnonzero(~seen & (acc.open_day <= init))
    loan_slots = np.isin(acc.slot, [SLOTS.index("mortgage"), SLOTS.index("personal_loan")])
    quiet_balance = np.where(loan_slots[quiet], 0, opening[quiet])
    # Loan accounts change on instalment days (their balance is minus the outstanding principal).
    first_k = np.maximum(np.ceil((init + 1 - loans.start_day) / 30).astype(np.int64), 1)
    instalment_days = loans.start_day[:, None] + 30 * (first_k[:, None] + np.arange(window.daily_batches // 30 + 2))
    paid_until = np.minimum(np.minimum(loans.overdue_day, loans.close_day), D)
    li, lj = np.nonzero((instalment_days > init) & (instalment_days < paid_until[:, None]))
    loan_change = {"account": loans.account[li], "day": instalment_days[li, lj]}
    new = np.flatnonzero((acc.open_day > init) & (acc.open_day < D))
    closing = np.flatnonzero((acc.close_day > init) & (acc.close_day < D))

    row_account = np.concatenate([changes["account"], quiet, loan_change["account"], new, closing])
    row_day = np.concatenate([changes["day"], np.full(len(quiet), init), loan_change["day"],
                              acc.open_day[new], acc.close_day[closing]])
    row_balance = np.concatenate([changes["balance"], quiet_balance, np.zeros(len(li), dtype=np.int64),
                                  np.zeros(len(new), dtype=np.int64), np.zeros(len(closing), dtype=np.int64)])
    # One row per account and day; the transaction-based balance wins over the other reasons.
    key = row_account * (D + 1) + row_day
    _, first = np.unique(key, return_index=True)
    row_account, row_day, row_balance = row_account[first], row_day[first], row_balance[first]

    loan_of_account = np.full(len(acc), -1, dtype=np.int64)
    loan_of_account[loans.account] = np.arange(len(loans))
    is_loan = loan_of_account[row_account] >= 0
    row_balance[is_loan] = -loans.take(loan_of_account[row_account[is_loan]]).outstanding(row_day[is_loan])
    closed = row_day >= acc.close_day[row_account]
    row_balance = np.where(closed, 0, row_balance)
    status = coded(("open", "closed"), closed.astype(np.int64))
    updated = np.where(closed, acc.close_day[row_account] * DAY + 11 * HOUR, row_day * DAY + 23 * HOUR + 59 * 60)
    number = pop.customers.number[acc.customer[row_account]]
    columns = {
        "account_id": ident.account(number, acc.slot[row_account]),
        "customer_id": ident.customer(number),
        "account_type": coded(SLOT_ACCOUNT_TYPE, acc.slot[row_account]),
        "open_date": dates(window, acc.open_day[row_account]),
        "close_date": dates(window, np.where(closed, acc.close_day[row_account], NEVER)),
        "status": status, "currency": constant(s.currency, len(row_account)),
        "balance": money(row_balance), "updated_at": timestamps(window, updated),
    }
    return _table("accounts", columns, window.batch_of(row_day))


# --- holdings, loans, products -----------------------------------------------------------------------------

def holdings_table(window: Window, pop: Population, catalog: Catalog, ident: Ids) -> pa.Table:
    """State at the initial load, then a row on the day a holding starts and on the day it ends."""
    h = pop.holdings
    init, D = window.init_day, window.days
    known = np.flatnonzero(h.start_day <= init)
    started = np.flatnonzero((h.start_day > init) & (h.start_day < D))
    ended = np.flatnonzero((h.end_day > init) & (h.end_day < D))
    row = np.concatenate([known, started, ended])
    ended_by_init = h.end_day[known] <= init
    day = np.concatenate([np.where(ended_by_init, h.end_day[known], h.start_day[known]), h.start_day[started],
                          h.end_day[ended]])
    end = np.concatenate([np.where(ended_by_init, h.end_day[known], NEVER), np.full(len(started), NEVER),
                          h.end_day[ended]])
    batch = window.batch_of(np.concatenate([np.full(len(known), init), h.start_day[started], h.end_day[ended]]))
    number = pop.customers.number[h.customer[row]]
    columns = {
        "holding_id": ident.holding(number, h.number[row]), "customer_id": ident.customer(number),
        "product_id": coded(tuple(catalog.ids), h.product[row]), "start_date": dates(window, h.start_day[row]),
        "end_date": dates(window, end), "amount": money(h.amount[row]),
        "updated_at": timestamps(window, day * DAY + 10 * HOUR + 30 * 60),
    }
    return _table("holdings", columns, batch)


LOAN_STATUS = ("current", "overdue", "default", "closed")


def loan_status(loans, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """days_past_due and status (index into LOAN_STATUS) of each loan on `day`."""
    closed = day >= loans.close_day
    dpd = np.where(closed, 0, np.maximum(day - loans.overdue_day, 0))
    status = np.where(closed, 3, np.where(dpd >= 90, 2, np.where(dpd > 0, 1, 0)))
    return dpd, status


def loans_table(window: Window, pop: Population, catalog: Catalog, ident: Ids) -> pa.Table:
    """Month-end snapshots up to the initial load plus its own date, then one snapshot per daily batch."""
    loans = pop.loans
    init = window.init_day
    ends = window.month_ends()
    days = np.unique(np.concatenate([ends[ends < init], np.arange(init, window.days)]))
    li, dj = np.nonzero(loans.start_day[:, None] <= days[None, :])
    view = loans.take(li)
    day = days[dj]
    dpd, status = loan_status(view, day)
    number = pop.customers.number[view.customer]
    maturity = view.start_day + np.round(view.term_months * 30.44).astype(np.int64)
    columns = {
        "loan_id": ident.loan(number, view.slot), "customer_id": ident.customer(number),
        "account_id": ident.account(number, view.slot), "product_id": coded(tuple(catalog.ids), view.product),
        "principal": money(view.principal), "outstanding": money(view.outstanding(day)),
        "interest_rate": pa.array(view.rate), "term_months": pa.array(view.term_months),
        "start_date": dates(window, view.start_day), "maturity_date": dates(window, maturity),
        "days_past_due": pa.array(dpd), "status": coded(LOAN_STATUS, status), "snapshot_date": dates(window, day),
    }
    return _table("loans", columns, window.batch_of(day))


def products_table(s: GeneratorSettings) -> pa.Table:
    names = source("products").field_names
    return pa.Table.from_pylist([{k: getattr(p, k) for k in names} for p in s.products])


# --- transactions -------------------------------------------------------------------------------------------

def transactions_table(s: GeneratorSettings, window: Window, pop: Population, catalog: Catalog,
                       txns: Transactions, ident: Ids) -> pa.Table:
    acc = pop.accounts
    owner = pop.customers.number[acc.customer]
    rows = pa.array(txns.account)  # ids are built once per account, then repeated per transaction
    txn_id = ids(f"T{pop.block:04d}", np.arange(len(txns)), 9)
    credit = txns.credit
    columns = {
        "txn_id": txn_id, "account_id": ident.account(owner, acc.slot).take(rows),
        "customer_id": ident.customer(owner).take(rows), "txn_ts": timestamps(window, txns.ts),
        "amount": money(txns.amount), "direction": coded(("debit", "credit"), credit.astype(np.int64)),
        "currency": constant(s.currency, len(txns)),
        "channel": coded(CHANNELS, txns.channel), "txn_type": coded(TXN_TYPES, txns.txn_type),
        "merchant_category": coded(tuple(s.merchant_categories), txns.merchant),
        "counterparty": coded(tuple(counterparties(s)), txns.counterparty),
        "product_id": coded(tuple(catalog.ids), txns.product),
        "balance_after": money(txns.balance_after),
    }
    names = source("transactions").field_names
    batch = window.batch_of(txns.ts // DAY)
    return pa.Table.from_arrays([columns[n] for n in names] + [pa.array(batch)], names=[*names, BATCH])


def coded(vocabulary: tuple[str, ...], index: np.ndarray) -> pa.Array:
    """Codes by index into `vocabulary`; -1 is null."""
    return pa.array(list(vocabulary), pa.string()).take(pa.array(index, mask=index < 0))
