"""Dirty rows for `--dirty-rate R`: EXTRA rows, each a copy of a clean row with exactly ONE defect.

Per source and applicable reason about R x (clean rows) dirty rows are added (at least one per reason in
a run). Dirty rows get fresh keys (a dirty row never shares its key with a clean row), except
`duplicate_key`, an exact re-send of an earlier clean transaction (same batch or a later one). Fresh and
fresh keys come from the top of the id range; orphan references use customer/account numbers just above
the generated customers (never delivered). The exact counts
go to dirty_counts.json; docs/generator.md lists which check finds which reason.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.common.config import ConfigError
from jobs.common.contract import load_contract
from jobs.generate.settings import GeneratorSettings
from jobs.generate.tables import BATCH, DAY, Ids, ids, timestamps
from jobs.generate.window import Window

REASONS = {
    "customers": ("missing_required", "bad_type", "unknown_code"),
    "accounts": ("missing_required", "bad_type", "unknown_code", "orphan_customer"),
    "transactions": ("missing_required", "bad_type", "unknown_code", "non_positive_amount", "orphan_customer",
                     "orphan_account", "duplicate_key", "future_date"),
    "products": ("missing_required", "unknown_code"),
    "holdings": ("missing_required", "bad_type", "orphan_customer"),
    "loans": ("missing_required", "bad_type", "unknown_code", "orphan_customer"),
    "campaign_responses": ("missing_required", "bad_type", "unknown_code", "orphan_customer"),
    "app_events": ("missing_required", "bad_type", "unknown_code", "orphan_customer"),
}
# Where each source's extra column goes: (batch, file part) of one file.
EXTRA_COLUMN_FILE = {"transactions": (0, "initial-b0000-c0")}


class DirtyRows:
    def __init__(self, s: GeneratorSettings, window: Window, ident: Ids, seed: int, rate: float,
                 customers: int):
        self.s, self.window, self.ident, self.seed, self.rate = s, window, ident, seed, rate
        self.contract = load_contract()
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.fresh = 0  # fresh keys handed out so far (unique over the run)
        self.top = 10 ** ident.width - 1
        self.orphans = 0
        self.customers = customers
        for source, reasons in REASONS.items():
            if "unknown_code" not in reasons:
                continue
            for field in self.contract[source].fields:
                bad = s.dirty.unknown_codes.get(field.name) if field.codes else None
                if field.codes and (bad is None or bad.strip().lower() in field.codes):
                    raise ConfigError(f"generator.dirty.unknown_codes needs a value outside the codes of {source}.{field.name}")

    def extra_column_files(self) -> dict[tuple[str, int, str], str]:
        return {(source, *EXTRA_COLUMN_FILE.get(source, (0, "part-00000"))): self.s.dirty.extra_column
                for source in self.contract}

    def add(self, source: str, block: int, table: pa.Table) -> pa.Table:
        """`table` plus its dirty rows, still ordered by batch."""
        rng = np.random.default_rng([self.seed, block, 6, list(self.contract).index(source)])
        n = table.num_rows
        if n == 0:
            return table
        parts = [table]
        for reason in REASONS[source]:
            count = int(np.floor(self.rate * n + rng.random()))
            if block == 0 and self.counts[source][reason] == 0:
                count = max(count, 1)
            if count == 0:
                continue
            template = table.take(pa.array(np.sort(rng.integers(0, n, count))))
            dirty = getattr(self, "_" + reason)(source, template, rng)
            self.counts[source][reason] += dirty.num_rows
            parts.append(dirty)
        merged = pa.concat_tables(parts)
        order = np.argsort(merged.column(BATCH).to_numpy(), kind="stable")
        return merged.take(pa.array(order))

    def result(self, extra_written: dict[str, list[str]]) -> dict:
        counts = {source: dict(self.counts[source]) for source in self.contract}
        return {**counts, "extra_columns": extra_written}

    # --- helpers ---------------------------------------------------------------------------------------

    def _fresh_numbers(self, count: int) -> np.ndarray:
        """Key numbers from the top of the id range downwards."""
        numbers = self.top - self.fresh - np.arange(count)
        self.fresh += count
        return numbers

    def _orphan_numbers(self, count: int) -> np.ndarray:
        """Customer/account numbers just above the generated customers: referenced, never delivered."""
        numbers = self.customers + 1 + self.orphans + np.arange(count)
        self.orphans += count
        return numbers

    def _with_fresh_key(self, source: str, table: pa.Table) -> pa.Table:
        """Give dirty rows their own keys so that they never collide with a clean row."""
        numbers = self._fresh_numbers(table.num_rows)
        fresh = {
            "customers": ("customer_id", lambda k: self.ident.customer(k)),
            "accounts": ("account_id", lambda k: self.ident.account(k, np.zeros(len(k), dtype=np.int64))),
            "transactions": ("txn_id", lambda k: ids("T9999", k, 9)),
            "products": ("product_id", lambda k: ids("P9", k % 10_000, 4)),
            "holdings": ("holding_id", lambda k: self.ident.holding(k, np.zeros(len(k), dtype=np.int64))),
            "loans": ("loan_id", lambda k: self.ident.loan(k, np.zeros(len(k), dtype=np.int64))),
            "campaign_responses": ("push_id", lambda k: ids("PU9", k, 12)),
        }
        if source not in fresh:  # app_events: the defect itself makes the key differ
            return table
        column, make = fresh[source]
        return _set(table, column, make(numbers))

    @staticmethod
    def _field_choice(candidates: list[str], table: pa.Table,
                      rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
        """A random field per row: (field, rows that get the defect in it)."""
        choice = rng.integers(0, len(candidates), table.num_rows)
        return [(name, choice == k) for k, name in enumerate(candidates) if (choice == k).any()]

    # --- one method per reason -------------------------------------------------------------------------

    def _missing_required(self, source, table, rng):
        table = self._with_fresh_key(source, table)
        for name, mask in self._field_choice(self.contract[source].required_fields, table, rng):
            column = table.column(name)
            table = _set(table, name, pc.if_else(pa.array(mask), pa.scalar(None, column.type), column))
        return table

    def _bad_type(self, source, table, rng):
        table = self._with_fresh_key(source, table)
        temporal = [f.name for f in self.contract[source].fields if f.type in ("date", "timestamp")]
        values = self.s.dirty.bad_values
        for name, mask in self._field_choice(temporal, table, rng):
            bad = pa.array(np.array(values, dtype=object)[rng.integers(0, len(values), table.num_rows)],
                           pa.string())
            table = _set(table, name, pc.if_else(pa.array(mask), bad, table.column(name)))
        return table

    def _unknown_code(self, source, table, rng):
        table = self._with_fresh_key(source, table)
        coded = [f.name for f in self.contract[source].fields if f.codes]
        for name, mask in self._field_choice(coded, table, rng):
            bad = pa.scalar(self.s.dirty.unknown_codes[name], pa.string())
            table = _set(table, name, pc.if_else(pa.array(mask), bad, table.column(name)))
        return table

    def _non_positive_amount(self, source, table, rng):
        table = self._with_fresh_key(source, table)
        amount = table.column("amount").to_numpy()
        return _set(table, "amount", pa.array(np.where(rng.random(len(amount)) < 0.3, 0.0, -amount)))

    def _orphan_customer(self, source, table, rng):
        """customer_id that exists nowhere; every other reference (account, product) stays valid."""
        table = self._with_fresh_key(source, table)
        return _set(table, "customer_id", self.ident.customer(self._orphan_numbers(table.num_rows)))

    def _orphan_account(self, source, table, rng):
        """account_id that exists nowhere; the customer exists."""
        table = self._with_fresh_key(source, table)
        numbers = self._orphan_numbers(table.num_rows)
        return _set(table, "account_id", self.ident.account(numbers, np.zeros(len(numbers), dtype=np.int64)))

    def _duplicate_key(self, source, table, rng):
        """An exact re-send of a clean transaction, in its own batch or a later one."""
        batch = table.column(BATCH).to_numpy()
        later = rng.random(len(batch)) < 0.5
        last = self.window.daily_batches
        moved = np.where(later & (batch < last), batch + 1 + np.floor(rng.random(len(batch)) * (last - batch)),
                         batch).astype(np.int64)
        return _set(table, BATCH, pa.array(moved))

    def _future_date(self, source, table, rng):
        """txn_ts one to three days after the end of the row's batch date."""
        table = self._with_fresh_key(source, table)
        batch = table.column(BATCH).to_numpy()
        day = self.window.init_day + batch + 1 + rng.integers(0, 3, len(batch))
        seconds = day * DAY + rng.integers(0, DAY, len(batch))
        return _set(table, "txn_ts", timestamps(self.window, seconds))


def _set(table: pa.Table, name: str, values) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, values)
