"""Transactions of one block, vectorised: every kind of event is drawn for all accounts at once, then the
events are ordered per account and `balance_after` is the running balance.

Opening balances: an account opened before the window carries an implicit opening balance (the first
`balance_after` includes it); one opened inside the window starts with a `deposit` of it. The opening
balance is the archetype's target, raised where needed so that deposit accounts never go below a small
buffer (credit cards run negative: the amount owed). Loan accounts carry no transactions: their balance
(minus the outstanding principal) is in the accounts and loans sources.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from jobs.common.contract import source
from jobs.generate.population import LOAN_TYPES, SLOTS, Catalog, Population
from jobs.generate.settings import GeneratorSettings
from jobs.generate.window import DAY, NEVER, Window

HOUR = 3600
TXN_TYPES = source("transactions").field("txn_type").codes
CHANNELS = source("transactions").field("channel").codes
CREDIT_TYPES = frozenset({"deposit", "transfer_in", "interest", "loan_disbursement", "product_redemption"})
DEPOSIT_SLOTS = np.array([s in ("current", "savings", "time_deposit", "wealth") for s in SLOTS])
REDEEMABLE_TYPES = ("structured_deposit", "time_deposit", "wealth_management", "fund", "other")
FIXED_COUNTERPARTIES = ("UTILITY POWER", "UTILITY WATER", "TELECOM", "P2P TRANSFER", "OTHER BANK",
                        "OWN CREDIT CARD", "OWN CURRENT ACCOUNT", "PROPERTY SELLER", "CASH")


def counterparties(settings: GeneratorSettings) -> list[str]:
    """Counterparty vocabulary: employers first (index = employer number), then the fixed names."""
    return [f"EMPLOYER {k:04d} LTD" for k in range(settings.employers)] + list(FIXED_COUNTERPARTIES)


@dataclass
class Transactions:
    account: np.ndarray       # account row of the block
    ts: np.ndarray            # seconds since the window start
    txn_type: np.ndarray      # index into TXN_TYPES
    amount: np.ndarray        # cents, > 0
    channel: np.ndarray       # index into CHANNELS, -1 = null
    merchant: np.ndarray      # index into merchant categories, -1 = null
    counterparty: np.ndarray  # index into counterparties(), -1 = null
    product: np.ndarray       # catalog index, -1 = null
    balance_after: np.ndarray  # cents

    def __len__(self) -> int:
        return len(self.account)

    def take(self, rows: np.ndarray) -> Transactions:
        return Transactions(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    @property
    def credit(self) -> np.ndarray:
        return np.isin(self.txn_type, [TXN_TYPES.index(t) for t in CREDIT_TYPES])


class _Events:
    """Collects event columns of several kinds, then concatenates them. Counterparty codes: employer
    numbers first, then FIXED_COUNTERPARTIES (see counterparties())."""

    def __init__(self, settings: GeneratorSettings):
        self.parts: list[dict[str, np.ndarray]] = []
        self.fixed = {name: settings.employers + i for i, name in enumerate(FIXED_COUNTERPARTIES)}

    def add(self, account, day, seconds, txn_type, amount, channel=-1, merchant=-1, counterparty=-1,
            product=-1) -> None:
        n = len(account)
        if n == 0:
            return
        full = lambda v: np.broadcast_to(np.asarray(v, dtype=np.int64), (n,))  # noqa: E731
        self.parts.append({
            "account": full(account), "ts": full(day) * DAY + full(seconds),
            "txn_type": full(TXN_TYPES.index(txn_type)), "amount": np.maximum(full(amount), 1),
            "channel": full(channel), "merchant": full(merchant), "counterparty": full(counterparty),
            "product": full(product)})

    def columns(self) -> dict[str, np.ndarray]:
        names = ("account", "ts", "txn_type", "amount", "channel", "merchant", "counterparty", "product")
        if not self.parts:
            return {name: np.zeros(0, dtype=np.int64) for name in names}
        return {name: np.concatenate([p[name] for p in self.parts]) for name in names}


def activity(day: np.ndarray, decline: np.ndarray, churn: np.ndarray, floor: float, power: float) -> np.ndarray:
    """Activity multiplier: 1 before the decline starts, falling to `floor` at churn (convex for power > 1)."""
    elapsed = np.clip((day - decline) / np.maximum(churn - decline, 1), 0, 1)
    return np.where(day < decline, 1.0, floor + (1 - floor) * (1 - elapsed) ** power)


def poisson_days(rng: np.random.Generator, rate_per_day: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 decline: np.ndarray, churn: np.ndarray, decay: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Days of a Poisson process per row on [lo, hi) whose intensity decays with `activity` (thinning)."""
    span = np.maximum(hi - lo, 0)
    counts = rng.poisson(rate_per_day * span)
    row = np.repeat(np.arange(len(lo)), counts)
    day = lo[row] + np.floor(rng.random(len(row)) * span[row]).astype(np.int64)
    keep = rng.random(len(row)) < activity(day, decline[row], churn[row], *decay)
    return row[keep], day[keep]


def _monthly(month_starts: np.ndarray, day_of_month: np.ndarray, lo: np.ndarray,
             hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One event per row and calendar month on `day_of_month` (1-based), kept within [lo, hi)."""
    day = month_starts[None, :] + day_of_month[:, None] - 1
    row, col = np.nonzero((day >= lo[:, None]) & (day < hi[:, None]))
    return row, day[row, col]


def _self_service(rng: np.random.Generator, digital: np.ndarray) -> np.ndarray:
    """mobile/online with the customer's digital share, branch otherwise."""
    u = rng.random(len(digital))
    return np.where(u < digital * 0.7, CHANNELS.index("mobile"),
                    np.where(u < digital, CHANNELS.index("online"), CHANNELS.index("branch")))


def _lognormal(rng: np.random.Generator, median_units: np.ndarray, sigma: float) -> np.ndarray:
    return np.round(median_units * np.exp(sigma * rng.standard_normal(len(median_units))) * 100).astype(np.int64)


def build_transactions(s: GeneratorSettings, window: Window, catalog: Catalog, pop: Population,
                       seed: int) -> tuple[Transactions, np.ndarray]:
    """The block's transactions (ordered by time) and each account's opening balance in cents."""
    rng = np.random.default_rng([seed, pop.block, 2])
    cust, acc = pop.customers, pop.accounts
    D = window.days
    decay = (s.churn.activity_floor, s.churn.decay_power)
    ev = _Events(s)
    arch = list(s.archetypes.values())
    param = lambda f: np.array([f(a) for a in arch])[cust.archetype]  # noqa: E731
    monthly_income = cust.income / 12
    lo_c = np.maximum(cust.join_day, 0)
    hi_c = np.minimum(cust.churn_day, D)
    current = pop.account_row[:, SLOTS.index("current")]
    card = pop.account_row[:, SLOTS.index("credit_card")]
    card_open = np.where(card >= 0, acc.open_day[card], NEVER)
    month_starts = window.month_starts()
    mcc_weights = np.array(list(s.merchant_categories.values()))
    mcc_cum = np.cumsum(mcc_weights / mcc_weights.sum())

    # Salary: monthly transfer_in from the same employer on the employer's pay day; stops while decaying.
    rows = np.flatnonzero(cust.salaried)
    row, day = _monthly(month_starts, 1 + cust.employer[rows] % 28, lo_c[rows], hi_c[rows])
    row = rows[row]
    keep = rng.random(len(row)) < activity(day, cust.decline_day[row], cust.churn_day[row], *decay) ** 2
    row, day = row[keep], day[keep]
    ev.add(current[row], day, 3 * HOUR + rng.integers(0, HOUR, len(row)), "transfer_in",
           np.round(monthly_income[row] * rng.uniform(0.97, 1.03, len(row)) * 100),
           CHANNELS.index("other"), counterparty=cust.employer[row])

    # Customer-initiated flows: Poisson per customer, amounts sized by income.
    inflow = np.where(cust.salaried, 0.1, 1.0) * monthly_income
    rates = {name: param(lambda a, n=name: a.txn_per_month[n]) for name in arch[0].txn_per_month}
    inflow_rate = rates["deposit"] + rates["transfer_in"]
    spend = param(lambda a: a.spend_ratio) * monthly_income
    for name, rate in rates.items():
        row, day = poisson_days(rng, rate / 30.4, lo_c, hi_c, cust.decline_day, cust.churn_day, decay)
        seconds = 7 * HOUR + rng.integers(0, 16 * HOUR, len(row))
        if name in ("deposit", "transfer_in"):
            median = inflow[row] / np.maximum(inflow_rate[row], 0.1)
        else:
            median = spend[row] * s.spend_mix[name] / np.maximum(rate[row], 0.1)
        amount = _lognormal(rng, median, s.amount_sigma)
        account = current[row]
        merchant = counterparty = -1
        if name == "card_purchase":
            on_card = (card[row] >= 0) & (day >= card_open[row]) & (rng.random(len(row)) < s.card_on_credit_card_share)
            account = np.where(on_card, card[row], account)
            u = rng.random(len(row))
            channel = np.where(u < cust.digital[row] * 0.6,
                               np.where(u < cust.digital[row] * 0.4, CHANNELS.index("mobile"), CHANNELS.index("online")),
                               CHANNELS.index("pos"))
            merchant = np.searchsorted(mcc_cum, rng.random(len(row)) * mcc_cum[-1], side="right")
            merchant = np.minimum(merchant, len(mcc_cum) - 1)
        elif name == "withdrawal":
            channel = np.where(rng.random(len(row)) < 0.8, CHANNELS.index("atm"), CHANNELS.index("branch"))
            counterparty = ev.fixed["CASH"]
        elif name == "deposit":
            channel = np.where(rng.random(len(row)) < 0.5, CHANNELS.index("atm"), CHANNELS.index("branch"))
            counterparty = ev.fixed["CASH"]
        elif name == "payment":
            channel = _self_service(rng, cust.digital[row])
            counterparty = ev.fixed["UTILITY POWER"] + rng.integers(0, 3, len(row))
        elif name == "transfer_in":
            channel = CHANNELS.index("other")
            counterparty = np.where(rng.random(len(row)) < 0.5, ev.fixed["P2P TRANSFER"], ev.fixed["OTHER BANK"])
        else:  # transfer_out
            channel = _self_service(rng, cust.digital[row])
            counterparty = np.where(rng.random(len(row)) < 0.7, ev.fixed["P2P TRANSFER"], ev.fixed["OTHER BANK"])
        ev.add(account, day, seconds, name, amount, channel, merchant, counterparty)

    # Credit card statements: last month's purchases repaid on the 15th from the current account.
    cards = _card_repayments(ev, acc, month_starts, D)
    if len(cards[0]):
        card_row, day, amount = cards
        owner_current = pop.account_row[acc.customer[card_row], SLOTS.index("current")]
        ev.add(card_row, day, 6 * HOUR, "transfer_in", amount, CHANNELS.index("other"),
               counterparty=ev.fixed["OWN CURRENT ACCOUNT"])
        ev.add(owner_current, day, 6 * HOUR, "transfer_out", amount, CHANNELS.index("other"),
               counterparty=ev.fixed["OWN CREDIT CARD"])

    # Account fees and interest, monthly while the account is open.
    lo_a = np.maximum(acc.open_day, 0)
    hi_a = np.minimum(acc.close_day, D)
    rows = np.flatnonzero(acc.slot == SLOTS.index("current"))
    row, day = _monthly(month_starts, np.ones(len(rows), dtype=np.int64), lo_a[rows], hi_a[rows])
    ev.add(rows[row], day, HOUR, "fee", round(s.monthly_fee * 100), CHANNELS.index("other"))
    rate = np.zeros(len(acc))
    for slot_name, annual in s.interest_rates.items():
        rate[acc.slot == SLOTS.index(slot_name)] = annual
    rows = np.flatnonzero(rate > 0)
    next_starts = np.append(month_starts[1:], month_starts[-1] + 31)
    row, day = _monthly(next_starts, np.zeros(len(rows), dtype=np.int64), lo_a[rows], hi_a[rows])
    row = rows[row]
    ev.add(row, day, HOUR // 2, "interest", np.round(acc.target[row] * rate[row] / 12), CHANNELS.index("other"))

    _product_events(s, ev, rng, catalog, pop, D)
    _loan_events(ev, rng, pop, D)
    _decline_drain(s, ev, rng, pop, D)

    return _with_balances(ev.columns(), pop, ev.fixed["OTHER BANK"], D)


def _card_repayments(ev: _Events, acc, month_starts: np.ndarray, D: int):
    cols = ev.columns()
    purchase = (cols["txn_type"] == TXN_TYPES.index("card_purchase")) & (
        acc.slot[cols["account"]] == SLOTS.index("credit_card"))
    account, day, amount = cols["account"][purchase], cols["ts"][purchase] // DAY, cols["amount"][purchase]
    month = np.searchsorted(month_starts, day, side="right") - 1
    key = account * len(month_starts) + month
    keys, inverse = np.unique(key, return_inverse=True)
    total = np.bincount(inverse, weights=amount).astype(np.int64)
    card_row, month = np.divmod(keys, len(month_starts))
    pay_day = np.where(month + 1 < len(month_starts), month_starts[np.minimum(month + 1, len(month_starts) - 1)], NEVER) + 14
    keep = pay_day < np.minimum(acc.close_day[card_row], D)
    return card_row[keep], pay_day[keep], total[keep]


def _product_events(s: GeneratorSettings, ev: _Events, rng: np.random.Generator, catalog: Catalog,
                    pop: Population, D: int) -> None:
    hold, cust = pop.holdings, pop.customers
    type_name = np.array(catalog.type_names, dtype=object)[hold.type_index]
    buyable = ~np.isin(type_name, LOAN_TYPES + ("credit_card",))
    rows = np.flatnonzero(buyable & (hold.start_day >= 0) & (hold.start_day < D))
    ev.add(hold.account[rows], hold.start_day[rows], 10 * HOUR + rng.integers(0, 6 * HOUR, len(rows)),
           "product_purchase", hold.amount[rows], _self_service(rng, cust.digital[hold.customer[rows]]),
           product=hold.product[rows])
    rows = np.flatnonzero(np.isin(type_name, REDEEMABLE_TYPES) & (hold.end_day >= 0) & (hold.end_day < D))
    held_years = (hold.end_day[rows] - hold.start_day[rows]) / 365
    gain = 1 + catalog.expected_yield[hold.product[rows]] * held_years
    ev.add(hold.account[rows], hold.end_day[rows], 9 * HOUR + 30 * 60, "product_redemption",
           np.round(hold.amount[rows] * gain), CHANNELS.index("other"), product=hold.product[rows])


def _loan_events(ev: _Events, rng: np.random.Generator, pop: Population, D: int) -> None:
    loans = pop.loans
    current = pop.account_row[loans.customer, SLOTS.index("current")]
    rows = np.flatnonzero((loans.start_day >= 0) & (loans.start_day < D))
    ev.add(current[rows], loans.start_day[rows], 11 * HOUR, "loan_disbursement", loans.principal[rows],
           CHANNELS.index("branch"), product=loans.product[rows])
    mortgage = rows[loans.slot[rows] == SLOTS.index("mortgage")]
    ev.add(current[mortgage], loans.start_day[mortgage], 12 * HOUR, "transfer_out", loans.principal[mortgage],
           CHANNELS.index("branch"), counterparty=ev.fixed["PROPERTY SELLER"])
    # Instalments every 30 days after the start until the first missed one, churn or the window end.
    stop = np.minimum(np.minimum(loans.overdue_day, loans.close_day), D)
    k_lo = np.maximum(1, np.ceil(-loans.start_day / 30).astype(np.int64))
    k_hi = np.minimum((stop - 1 - loans.start_day) // 30, loans.term_months)
    counts = np.maximum(k_hi - k_lo + 1, 0)
    row = np.repeat(np.arange(len(loans)), counts)
    k = k_lo[row] + (np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts))
    ev.add(current[row], loans.start_day[row] + 30 * k, 2 * HOUR, "loan_repayment", loans.instalment[row],
           CHANNELS.index("other"), product=loans.product[row])
    # Churners refinance elsewhere: the other bank pays the outstanding principal off on the churn day.
    rows = np.flatnonzero(loans.close_day < D)
    left = loans.outstanding(np.minimum(loans.close_day, D) - 1)[rows]
    rows, left = rows[left > 0], left[left > 0]
    ev.add(current[rows], loans.close_day[rows], 9 * HOUR, "transfer_in", left, CHANNELS.index("other"),
           counterparty=ev.fixed["OTHER BANK"])
    ev.add(current[rows], loans.close_day[rows], 9 * HOUR + 60, "loan_repayment", left,
           CHANNELS.index("branch"), product=loans.product[rows])


def _decline_drain(s: GeneratorSettings, ev: _Events, rng: np.random.Generator, pop: Population, D: int) -> None:
    """Decaying customers move a share of their money out every month of the decay."""
    acc, cust = pop.accounts, pop.customers
    rows = np.flatnonzero(np.isin(acc.slot, [SLOTS.index("current"), SLOTS.index("savings")])
                          & (cust.decline_day[acc.customer] < D))
    months = max(s.churn.decay_days // 30, 1)
    row = np.repeat(rows, months)
    day = cust.decline_day[acc.customer[row]] + 10 + 30 * np.tile(np.arange(months), len(rows))
    keep = (day >= np.maximum(acc.open_day[row], 0)) & (day < np.minimum(acc.close_day[row], D))
    row, day = row[keep], day[keep]
    ev.add(row, day, 14 * HOUR + rng.integers(0, 4 * HOUR, len(row)), "transfer_out",
           np.round(acc.target[row] * s.churn.balance_drain_per_month),
           _self_service(rng, cust.digital[acc.customer[row]]), counterparty=ev.fixed["OTHER BANK"])


def _strictly_increasing(group: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Within each group (sorted by group, ts) bump equal timestamps by a second so order is unambiguous."""
    position = np.arange(len(ts))
    shifted = ts - position + group * (1 << 40)
    return np.maximum.accumulate(shifted) - group * (1 << 40) + position


def _with_balances(cols: dict[str, np.ndarray], pop: Population, other_bank: int,
                   D: int) -> tuple[Transactions, np.ndarray]:
    acc = pop.accounts
    order = np.lexsort((cols["ts"], cols["account"]))
    cols = {k: v[order] for k, v in cols.items()}
    account = cols["account"]
    cols["ts"] = _strictly_increasing(account, cols["ts"])
    credit = np.isin(cols["txn_type"], [TXN_TYPES.index(t) for t in CREDIT_TYPES])
    signed = np.where(credit, cols["amount"], -cols["amount"])
    running = np.cumsum(signed)
    starts = np.flatnonzero(np.r_[True, account[1:] != account[:-1]]) if len(account) else np.zeros(0, int)
    before = np.r_[0, running][starts]  # running total before each account's first event
    offset = np.repeat(before, np.diff(np.r_[starts, len(account)]))
    running = running - offset
    lowest = np.zeros(len(acc), dtype=np.int64)
    if len(account):
        lowest[account[starts]] = np.minimum(np.minimum.reduceat(running, starts), 0)
    deposit = DEPOSIT_SLOTS[acc.slot]
    buffer = np.maximum(acc.target // 20, 50_000)
    opening = np.where(deposit, np.maximum(acc.target, -lowest + buffer), 0)
    balance = running + opening[account]

    # Opening deposits of accounts opened inside the window, first event of their account.
    opened = np.flatnonzero(deposit & (acc.open_day >= 0) & (acc.open_day < D) & (opening > 0))
    extra = {"account": opened, "ts": acc.open_day[opened] * DAY + 8 * HOUR - 1,
             "txn_type": np.full(len(opened), TXN_TYPES.index("deposit")), "amount": opening[opened],
             "channel": np.full(len(opened), CHANNELS.index("branch")), "merchant": np.full(len(opened), -1),
             "counterparty": np.full(len(opened), -1), "product": np.full(len(opened), -1)}
    first_ts = np.full(len(acc), np.iinfo(np.int64).max)
    if len(account):
        first_ts[account[starts]] = cols["ts"][starts]
    extra["ts"] = np.minimum(extra["ts"], first_ts[opened] - 1)
    extra_balance = opening[opened]

    # Churn: every remaining balance leaves on the churn day (cards are settled), accounts end at zero.
    final = opening.copy()
    if len(account):
        ends = np.r_[starts[1:], len(account)] - 1
        final[account[ends]] = balance[ends]
    last_ts = np.full(len(acc), -1, dtype=np.int64)
    if len(account):
        last_ts[account[ends]] = cols["ts"][ends]
    closing = np.flatnonzero((acc.close_day < D) & (final != 0) & (acc.slot != SLOTS.index("mortgage"))
                             & (acc.slot != SLOTS.index("personal_loan")))
    out = final[closing] > 0
    drain = {"account": closing,
             "ts": np.maximum(acc.close_day[closing] * DAY + 10 * HOUR, last_ts[closing] + 1),
             "txn_type": np.where(out, TXN_TYPES.index("transfer_out"), TXN_TYPES.index("transfer_in")),
             "amount": np.abs(final[closing]), "channel": np.full(len(closing), CHANNELS.index("branch")),
             "merchant": np.full(len(closing), -1),
             "counterparty": np.full(len(closing), other_bank), "product": np.full(len(closing), -1)}
    merged = {k: np.concatenate([cols[k], extra[k], drain[k]]) for k in cols}
    merged_balance = np.concatenate([balance, extra_balance, np.zeros(len(closing), dtype=np.int64)])
    order = np.lexsort((merged["account"], merged["ts"]))
    txns = Transactions(**{k: v[order] for k, v in merged.items()}, balance_after=merged_balance[order])
    return txns, opening
