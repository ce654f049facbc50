"""Who the customers of one block are: archetype, profile, churn, accounts, product holdings and loans.

Everything is drawn as NumPy arrays over the customers of the block (no loop over rows); day offsets are
relative to the first day of the history window (see window.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jobs.common.config import ConfigError
from jobs.common.contract import source
from jobs.generate.settings import GeneratorSettings
from jobs.generate.window import NEVER, Window

YEAR = 365
# Account slots: account_id = A<customer number><slot>; one account per slot and customer at most.
SLOTS = ("current", "savings", "credit_card", "mortgage", "personal_loan", "time_deposit", "wealth")
SLOT_ACCOUNT_TYPE = ("current", "savings", "credit_card", "loan", "loan", "time_deposit", "wealth")
INVESTMENT_TYPES = ("structured_deposit", "wealth_management", "fund")
LOAN_TYPES = ("mortgage", "personal_loan")


@dataclass(frozen=True)
class Catalog:
    """The product catalog of the settings as arrays, validated against the contract's codes."""

    ids: np.ndarray
    types: np.ndarray
    risk: np.ndarray
    min_amount: np.ndarray
    expected_yield: np.ndarray
    active: np.ndarray
    type_names: tuple[str, ...]

    @classmethod
    def of(cls, settings: GeneratorSettings) -> Catalog:
        codes = source("products").field("product_type").codes
        rows = settings.products
        unknown = sorted({p.product_type for p in rows} - set(codes))
        if unknown:
            raise ConfigError(f"generator.products use product types outside the contract: {unknown}")
        return cls(ids=np.array([p.product_id for p in rows], dtype=object),
                   types=np.array([p.product_type for p in rows], dtype=object),
                   risk=np.array([p.risk_level for p in rows]),
                   min_amount=np.array([p.min_amount for p in rows]),
                   expected_yield=np.array([p.expected_yield for p in rows]),
                   active=np.array([p.active for p in rows]),
                   type_names=tuple(t for t in codes if t in {p.product_type for p in rows}))

    def type_index(self, name: str) -> int:
        return self.type_names.index(name)

    def eligible(self, type_name: str, risk_tolerance: np.ndarray, active_only: bool = True) -> np.ndarray:
        """customers x products: product of that type suits the customer's risk tolerance."""
        mask = self.types == type_name
        if active_only:
            mask &= self.active
        return mask[None, :] & (self.risk[None, :] <= risk_tolerance[:, None])


@dataclass
class Customers:
    number: np.ndarray          # global customer number (1-based)
    archetype: np.ndarray       # index into settings.archetypes
    birth_day: np.ndarray       # day offset
    age: np.ndarray             # whole years at end_date
    gender: np.ndarray
    income: np.ndarray          # yearly, currency units
    risk_tolerance: np.ndarray
    digital: np.ndarray         # share of self-service transactions through mobile/online
    join_day: np.ndarray
    churn_day: np.ndarray       # NEVER if the customer does not churn
    decline_day: np.ndarray     # NEVER if no decay
    salaried: np.ndarray
    employer: np.ndarray
    consent_sms: np.ndarray
    consent_email: np.ndarray
    consent_app: np.ndarray
    do_not_contact: np.ndarray
    city: np.ndarray
    occupation: np.ndarray
    surname: np.ndarray
    given_name: np.ndarray
    kyc_day: np.ndarray
    balance: np.ndarray         # target deposit balance, cents

    def __len__(self) -> int:
        return len(self.number)


@dataclass
class Holdings:
    customer: np.ndarray        # local customer index
    product: np.ndarray         # catalog index
    type_index: np.ndarray
    start_day: np.ndarray
    end_day: np.ndarray         # NEVER while held
    amount: np.ndarray          # cents
    number: np.ndarray          # holding number within the customer (id suffix)
    account: np.ndarray         # settlement account row (product purchases / redemptions)

    def __len__(self) -> int:
        return len(self.customer)


@dataclass
class Accounts:
    customer: np.ndarray
    slot: np.ndarray
    open_day: np.ndarray
    close_day: np.ndarray
    target: np.ndarray          # opening balance target, cents

    def __len__(self) -> int:
        return len(self.customer)

    @property
    def account_type(self) -> np.ndarray:
        return np.array(SLOT_ACCOUNT_TYPE, dtype=object)[self.slot]


@dataclass
class Loans:
    holding: np.ndarray         # row in Holdings
    customer: np.ndarray
    account: np.ndarray         # loan account row
    product: np.ndarray
    slot: np.ndarray
    principal: np.ndarray       # cents
    rate: np.ndarray            # annual
    term_months: np.ndarray
    start_day: np.ndarray
    overdue_day: np.ndarray     # first missed instalment, NEVER if always paid
    close_day: np.ndarray       # churn (refinanced elsewhere), NEVER otherwise

    def __len__(self) -> int:
        return len(self.customer)

    def take(self, rows: np.ndarray) -> Loans:
        return Loans(**{name: getattr(self, name)[rows] for name in self.__dataclass_fields__})

    @property
    def instalment(self) -> np.ndarray:
        """Monthly annuity payment, cents."""
        r = self.rate / 12
        return np.round(self.principal * r / (1 - (1 + r) ** -self.term_months.astype(float))).astype(np.int64)

    def months_paid(self, day: np.ndarray) -> np.ndarray:
        """Instalments paid by `day` (one per 30 days after the start, none after the first missed one)."""
        paid_until = np.minimum(day, self.overdue_day - 1)
        return np.clip((paid_until - self.start_day) // 30, 0, self.term_months)

    def outstanding(self, day: np.ndarray) -> np.ndarray:
        """Outstanding principal in cents after the instalments paid by `day`."""
        r = self.rate / 12
        n = self.term_months.astype(float)
        k = self.months_paid(day).astype(float)
        left = self.principal * ((1 + r) ** n - (1 + r) ** k) / ((1 + r) ** n - 1)
        return np.where(day >= self.close_day, 0, np.round(left)).astype(np.int64)


@dataclass
class Population:
    block: int
    customers: Customers
    holdings: Holdings
    accounts: Accounts
    loans: Loans
    account_row: np.ndarray     # customers x slots -> account row or -1


def _exact_shares(rng: np.random.Generator, shares: np.ndarray, n: int) -> np.ndarray:
    """n labels whose counts follow `shares` exactly (largest remainder), in random order."""
    raw = shares * n
    counts = np.floor(raw).astype(int)
    counts[np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]] += 1
    return rng.permutation(np.repeat(np.arange(len(shares)), counts))


def _uniform_days(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Uniform integer day in [lo, hi] (hi clipped up to lo)."""
    hi = np.maximum(hi, lo)
    return lo + np.floor(rng.random(len(lo)) * (hi - lo + 1)).astype(np.int64)


def pick(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """Row-wise weighted choice of a column (-1 where a row has no positive weight)."""
    cumulative = np.cumsum(weights, axis=1)
    total = cumulative[:, -1] if weights.shape[1] else np.zeros(len(weights))
    u = rng.random(len(weights)) * total
    choice = np.minimum((u[:, None] >= cumulative).sum(axis=1), max(weights.shape[1] - 1, 0))
    return np.where(total > 0, choice, -1)


def age_band(settings: GeneratorSettings, age: np.ndarray) -> np.ndarray:
    bands = np.full(len(age), "", dtype=object)
    for band in settings.age_bands:
        bands[(age >= band.min) & (age <= band.max)] = band.label
    return bands


def _customers(s: GeneratorSettings, window: Window, rng: np.random.Generator, first: int, n: int) -> Customers:
    arch_params = list(s.archetypes.values())
    arch = _exact_shares(rng, np.array([a.share for a in arch_params]), n)
    param = lambda name: np.array([getattr(a, name) for a in arch_params])[arch]  # noqa: E731
    D = window.days
    lo, hi = np.array([a.age for a in arch_params]).T
    age_drawn = rng.integers(lo[arch], hi[arch] + 1)
    birth_day = (D - 1) - np.floor(age_drawn * 365.25 + rng.uniform(1, 364, n)).astype(np.int64)
    birth = window.to_date64(birth_day)
    end = np.datetime64(window.end, "D")
    years = birth.astype("datetime64[Y]")
    age = (end.astype("datetime64[Y]") - years).astype(int) - (
        (birth - years.astype("datetime64[D]")) > (end - end.astype("datetime64[Y]").astype("datetime64[D]")))
    income = np.round(np.exp(np.log(param("income_median")) + param("income_sigma") * rng.standard_normal(n)), -2)
    cum = np.cumsum(np.array([a.risk_tolerance for a in arch_params]), axis=1)[arch]
    risk = 1 + (rng.random(n)[:, None] > cum[:, :-1]).sum(axis=1)
    digital = np.clip(param("digital_share") + 0.05 * rng.standard_normal(n), 0.01, 0.99)

    new = rng.random(n) < s.new_customer_share
    max_tenure = np.minimum(s.max_tenure_years * YEAR, (age - 18) * YEAR)
    tenure = _uniform_days(rng, np.full(n, 60), np.maximum(max_tenure, 61))
    join = np.where(new, _uniform_days(rng, np.zeros(n, np.int64), np.full(n, max(D - 30, 0))), -tenure)

    c = s.churn
    churn = np.full(n, NEVER, dtype=np.int64)
    planned = _uniform_days(rng, np.full(n, max(D - c.history_window_days, 0)), np.full(n, D - 1))
    eligible = np.flatnonzero(join <= planned - c.decay_days - c.min_tenure_days)
    k = min(len(eligible), int(round(c.history_share * n)))
    chosen = np.sort(rng.choice(eligible, size=k, replace=False)) if k else np.array([], dtype=np.int64)
    churn[chosen] = planned[chosen]
    declining = (arch == list(s.archetypes).index("declining")) & (churn == NEVER)
    future = D - 1 + _uniform_days(rng, np.full(n, c.future_churn_days[0]), np.full(n, c.future_churn_days[1]))
    churn[declining] = future[declining]
    decline = np.where(churn < NEVER, churn - c.decay_days, NEVER)

    salaried = rng.random(n) < param("salaried")
    app_share = np.minimum(0.98, s.consent.app * digital / 0.5)
    cities = s.vocab.cities
    city = pick(rng, np.tile(np.array([ct.weight for ct in cities]), (n, 1)))
    occupation = np.empty(n, dtype=object)
    for index, params in enumerate(arch_params):
        members = np.flatnonzero(arch == index)
        occupation[members] = np.array(params.occupations, dtype=object)[
            rng.integers(0, len(params.occupations), len(members))]
    gender = np.array(["m", "f", "u"], dtype=object)[pick(rng, np.tile([0.49, 0.5, 0.01], (n, 1)))]
    kyc = _uniform_days(rng, np.maximum(join, window.init_day - 3 * YEAR), np.full(n, window.init_day))
    balance = np.round(np.exp(np.log(param("balance_median")) + param("balance_sigma") * rng.standard_normal(n))
                       * 100).astype(np.int64)
    return Customers(
        number=np.arange(first + 1, first + n + 1), archetype=arch, birth_day=birth_day, age=age,
        gender=gender, income=income, risk_tolerance=risk, digital=digital, join_day=join,
        churn_day=churn, decline_day=decline, salaried=salaried,
        employer=rng.integers(0, s.employers, n), consent_sms=rng.random(n) < s.consent.sms,
        consent_email=rng.random(n) < s.consent.email, consent_app=rng.random(n) < app_share,
        do_not_contact=rng.random(n) < s.consent.do_not_contact, city=city, occupation=occupation,
        surname=rng.integers(0, len(s.vocab.surnames), n),
        given_name=rng.integers(0, len(s.vocab.given_names), (n, 2)), kyc_day=kyc, balance=balance)


def _rule_matches(item: str, held: dict[str, np.ndarray], bands: np.ndarray, risk: np.ndarray) -> np.ndarray:
    kind, _, value = item.partition(":")
    if kind == "prod":
        return held[value]
    name, _, wanted = value.partition("=")
    if kind == "attr" and name == "age_band":
        return bands == wanted
    if kind == "attr" and name == "risk_tolerance":
        return risk == int(wanted)
    raise ValueError(f"planted rule item {item!r}: use prod:<type>, attr:age_band=<band> or "
                     "attr:risk_tolerance=<n>")


def _held_types(s: GeneratorSettings, catalog: Catalog, cust: Customers,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Product types held at the end of the window (or at churn), archetype propensities then planted rules."""
    n = len(cust)
    arch_params = list(s.archetypes.values())
    suitable = {t: catalog.eligible(t, cust.risk_tolerance).any(axis=1) for t in catalog.type_names}
    held = {}
    for t in catalog.type_names:
        p = np.array([a.products.get(t, 0.0) for a in arch_params])[cust.archetype]
        held[t] = (rng.random(n) < p) & suitable[t]
    bands = age_band(s, cust.age)
    for rule in s.planted_rules:
        match = np.ones(n, dtype=bool)
        for item in rule.antecedent:
            match &= _rule_matches(item, held, bands, cust.risk_tolerance)
        target = rule.consequent.removeprefix("prod:")
        held[target] = held[target] | (match & (rng.random(n) < rule.rate) & suitable[target])
    return held


def _amounts(s: GeneratorSettings, catalog: Catalog, cust: Customers, type_name: str, product: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """Holding amount in cents: principal for loans, credit limit for cards, invested sum otherwise."""
    n = len(product)
    if type_name in LOAN_TYPES:
        kind = getattr(s.loans, type_name)
        amount = cust.income * rng.uniform(*kind.income_multiple, n)
        amount = np.round(amount, -3)
    else:
        wealth = np.array([a.wealth for a in s.archetypes.values()])[cust.archetype]
        amount = np.round(s.holding_amounts[type_name] * wealth * np.exp(0.5 * rng.standard_normal(n)), -2)
    amount = np.maximum(amount, catalog.min_amount[product])
    return np.round(amount * 100).astype(np.int64)


def build_population(s: GeneratorSettings, window: Window, catalog: Catalog, seed: int, block: int,
                     first: int, n: int) -> Population:
    rng = np.random.default_rng([seed, block, 1])
    D = window.days
    cust = _customers(s, window, rng, first, n)
    held = _held_types(s, catalog, cust, rng)
    ended_at = np.where(cust.churn_day < D, cust.churn_day, NEVER)
    last_start = np.minimum(D - 1, cust.churn_day - 1)
    open_lo = np.maximum(cust.join_day, 0)

    parts = []  # (customer, product, type index, start, end, amount, number)
    for t_index, t in enumerate(catalog.type_names):
        rows = np.flatnonzero(held[t])
        sub = _subset(cust, rows)
        product = pick(rng, catalog.eligible(t, sub.risk_tolerance).astype(float))
        inside = (sub.join_day >= 0) | (rng.random(len(rows)) < s.holding_start_in_window_share)
        start = np.where(inside, _uniform_days(rng, open_lo[rows], last_start[rows]),
                         _uniform_days(rng, np.maximum(sub.join_day, -5 * YEAR), np.full(len(rows), -1)))
        if t == "personal_loan":  # still running at the end of the window
            term_days = s.loans.personal_loan.term_months[0] * 30
            start = np.minimum(np.maximum(start, D - term_days + 30), last_start[rows])
            start = np.maximum(start, sub.join_day)
        amount = _amounts(s, catalog, sub, t, product, rng)
        parts.append((rows, product, np.full(len(rows), t_index), start, ended_at[rows], amount,
                      np.full(len(rows), t_index)))

    # Investments held and redeemed inside the window (past holdings), possibly in retired products.
    past_types = ("structured_deposit", "time_deposit", "wealth_management", "fund")
    arch_params = list(s.archetypes.values())
    weights = np.stack([np.array([a.products.get(t, 0.0) for a in arch_params])[cust.archetype]
                        * catalog.eligible(t, cust.risk_tolerance, active_only=False).any(axis=1)
                        for t in past_types], axis=1)
    which = pick(rng, weights)
    past = np.flatnonzero((rng.random(n) < s.past_holding_share) & (which >= 0)
                          & (np.minimum(D - 1, cust.churn_day - 1) > np.maximum(cust.join_day, 0) + 90))
    for k, t in enumerate(past_types):
        rows = past[which[past] == k]
        sub = _subset(cust, rows)
        product = pick(rng, catalog.eligible(t, sub.risk_tolerance, active_only=False).astype(float))
        end = _uniform_days(rng, np.maximum(sub.join_day, 0) + 90, np.minimum(D - 1, sub.churn_day - 1))
        start = np.maximum(end - rng.integers(60, 400, len(rows)), sub.join_day)
        amount = _amounts(s, catalog, sub, t, product, rng)
        parts.append((rows, product, np.full(len(rows), catalog.type_index(t)), start, end, amount,
                      np.full(len(rows), 10 + k)))

    h_cust, h_prod, h_type, h_start, h_end, h_amount, h_number = (np.concatenate(col) for col in zip(*parts, strict=True))
    order = np.lexsort((h_number, h_cust))
    h_cust, h_prod, h_type, h_start, h_end, h_amount, h_number = (
        a[order] for a in (h_cust, h_prod, h_type, h_start, h_end, h_amount, h_number))

    accounts, account_row = _accounts(s, catalog, cust, rng, h_cust, h_type, h_start, h_amount, window)
    invest = np.isin(np.array(catalog.type_names, dtype=object)[h_type], INVESTMENT_TYPES)
    settlement = np.where(invest, account_row[h_cust, SLOTS.index("wealth")],
                          account_row[h_cust, SLOTS.index("current")])
    holdings = Holdings(customer=h_cust, product=h_prod, type_index=h_type, start_day=h_start, end_day=h_end,
                        amount=h_amount, number=h_number, account=settlement)
    loans = _loans(s, catalog, cust, holdings, account_row, rng, window)
    return Population(block=block, customers=cust, holdings=holdings, accounts=accounts, loans=loans,
                      account_row=account_row)


def _subset(cust: Customers, rows: np.ndarray) -> Customers:
    return Customers(**{name: getattr(cust, name)[rows] for name in cust.__dataclass_fields__})


def _accounts(s: GeneratorSettings, catalog: Catalog, cust: Customers, rng: np.random.Generator,
              h_cust: np.ndarray, h_type: np.ndarray, h_start: np.ndarray, h_amount: np.ndarray,
              window: Window) -> tuple[Accounts, np.ndarray]:
    n = len(cust)
    D = window.days
    arch_params = list(s.archetypes.values())
    current_share = np.array([a.current_share for a in arch_params])[cust.archetype]
    has_savings = rng.random(n) < np.array([a.savings_account for a in arch_params])[cust.archetype]
    open_day = np.full((n, len(SLOTS)), NEVER, dtype=np.int64)
    target = np.zeros((n, len(SLOTS)), dtype=np.int64)
    open_day[:, 0] = cust.join_day
    target[:, 0] = np.where(has_savings, cust.balance * current_share, cust.balance).astype(np.int64)
    savings_open = np.minimum(cust.join_day + rng.integers(0, 90, n), np.minimum(D - 1, cust.churn_day - 1))
    open_day[has_savings, 1] = savings_open[has_savings]
    target[:, 1] = np.where(has_savings, cust.balance * (1 - current_share), 0).astype(np.int64)
    type_names = np.array(catalog.type_names, dtype=object)[h_type]
    for slot in ("credit_card", "mortgage", "personal_loan", "time_deposit"):
        rows = type_names == slot
        np.minimum.at(open_day[:, SLOTS.index(slot)], h_cust[rows], h_start[rows])
    invest = np.isin(type_names, INVESTMENT_TYPES)
    np.minimum.at(open_day[:, SLOTS.index("wealth")], h_cust[invest], h_start[invest])
    td = type_names == "time_deposit"
    np.add.at(target[:, SLOTS.index("time_deposit")], h_cust[td], h_amount[td])
    invested = np.zeros(n, dtype=np.int64)
    np.add.at(invested, h_cust[invest], h_amount[invest])
    target[:, SLOTS.index("wealth")] = np.maximum(invested // 20, 100_000)

    exists = open_day < NEVER
    customer, slot = np.nonzero(exists)  # row-major: ordered by customer, then slot
    account_row = np.full((n, len(SLOTS)), -1, dtype=np.int64)
    account_row[customer, slot] = np.arange(len(customer))
    close = np.where(cust.churn_day[customer] < D, cust.churn_day[customer], NEVER)
    accounts = Accounts(customer=customer, slot=slot, open_day=open_day[customer, slot], close_day=close,
                        target=target[customer, slot])
    return accounts, account_row


def _loans(s: GeneratorSettings, catalog: Catalog, cust: Customers, holdings: Holdings,
           account_row: np.ndarray, rng: np.random.Generator, window: Window) -> Loans:
    D = window.days
    type_names = np.array(catalog.type_names, dtype=object)[holdings.type_index]
    rows = np.flatnonzero(np.isin(type_names, LOAN_TYPES) & (holdings.number < 10))
    kinds = type_names[rows]
    slot = np.array([SLOTS.index(k) for k in kinds], dtype=np.int64)
    term = np.empty(len(rows), dtype=np.int64)
    for name in LOAN_TYPES:
        lo, hi = getattr(s.loans, name).term_months
        mine = kinds == name
        term[mine] = rng.integers(lo // 12, hi // 12 + 1, mine.sum()) * 12
    customer = holdings.customer[rows]
    start = holdings.start_day[rows]
    churn = cust.churn_day[customer]
    overdue = (churn == NEVER) & (rng.random(len(rows)) < s.loans.overdue_share)
    default = rng.random(len(rows)) < s.loans.default_share
    lo = np.where(default, 91, 1)
    hi = np.where(default, s.loans.overdue_within_days, 89)
    overdue_day = D - 1 - _uniform_days(rng, lo, np.maximum(hi, lo))
    overdue &= overdue_day > start + 45
    return Loans(holding=rows, customer=customer, account=account_row[customer, slot],
                 product=holdings.product[rows], slot=slot, principal=holdings.amount[rows],
                 rate=catalog.expected_yield[holdings.product[rows]], term_months=term, start_day=start,
                 overdue_day=np.where(overdue, overdue_day, NEVER),
                 close_day=np.where(churn < D, churn, NEVER))
