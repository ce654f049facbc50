"""`generate()`: a seeded, realistic landing zone for the whole pipeline, with its ground truth beside it.

Customers are generated in blocks of `block_customers` (each block seeded by (seed, block)), so memory
stays bounded and the same seed and settings give byte-identical files. Layout and truth formats are
documented in docs/generator.md.
"""
from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from jobs.common.config import Settings, load_settings
from jobs.common.contract import load_contract
from jobs.common.errors import InputError
from jobs.generate.digital import app_events_table, responses_table
from jobs.generate.dirty import DirtyRows
from jobs.generate.population import Catalog, Population, build_population
from jobs.generate.settings import GeneratorSettings
from jobs.generate.tables import (
    BATCH,
    Ids,
    accounts_table,
    customers_table,
    dates,
    holdings_table,
    loans_table,
    products_table,
    transactions_table,
)
from jobs.generate.transactions import build_transactions
from jobs.generate.window import NEVER, Window
from jobs.generate.writer import LandingWriter


@dataclass(frozen=True)
class Summary:
    landing: Path
    truth: Path
    customers: int
    batches: list[str]
    rows: dict[str, dict[str, int]]
    dirty_rows: int

    def __str__(self) -> str:
        total = {src: sum(per.values()) for src, per in self.rows.items()}
        lines = [f"generated {self.customers:,} customers, batches {self.batches[0]} .. {self.batches[-1]} "
                 f"({len(self.batches)}) into {self.landing}",
                 "  " + ", ".join(f"{src} {count:,}" for src, count in total.items()),
                 f"  dirty rows: {self.dirty_rows:,}; ground truth in {self.truth}"]
        return "\n".join(lines)


def truth_root(landing: Path) -> Path:
    """`x/landing` -> `x/landing.truth`."""
    landing = Path(landing)
    return landing.with_name(landing.name + ".truth")


def generate(customers: int, months: int, end_date: date, seed: int, landing: Path, daily_batches: int = 0,
             dirty_rate: float = 0.0, settings: Settings | None = None) -> Summary:
    s: GeneratorSettings = (settings or load_settings()).job("generator")
    if customers < 1:
        raise InputError(f"customers must be at least 1, got {customers}")
    if not 0.0 <= dirty_rate < 0.5:
        raise InputError(f"dirty rate must be in [0, 0.5), got {dirty_rate}")
    window = Window.of(end_date, months, daily_batches)
    catalog = Catalog.of(s)
    landing = Path(landing)
    truth = truth_root(landing)
    contract = load_contract()
    for name in contract:  # a rerun replaces what an earlier run wrote, nothing else
        shutil.rmtree(landing / name, ignore_errors=True)
    shutil.rmtree(truth, ignore_errors=True)
    truth.mkdir(parents=True)

    ident = Ids(width=max(7, len(str(customers)) + 1))  # room above the customers for dirty-row ids
    dirty = DirtyRows(s, window, ident, seed, dirty_rate, customers) if dirty_rate > 0 else None
    extra = dirty.extra_column_files() if dirty else {}
    writer = LandingWriter(landing, s.formats, s.gzip_level, window.batch_dates, extra)
    truth_parts = []
    archetypes = list(s.archetypes)
    for block, first in enumerate(range(0, customers, s.block_customers)):
        n = min(s.block_customers, customers - first)
        pop = build_population(s, window, catalog, seed, block, first, n)
        txns, opening = build_transactions(s, window, catalog, pop, seed)
        customer_rows, final = customers_table(s, window, pop, ident, seed)
        tables = {
            "customers": customer_rows,
            "accounts": accounts_table(s, window, pop, txns, opening, ident),
            "holdings": holdings_table(window, pop, catalog, ident),
            "loans": loans_table(window, pop, catalog, ident),
            "campaign_responses": responses_table(s, window, pop, catalog, ident, seed),
            "app_events": app_events_table(s, window, pop, catalog, ident, seed),
            "transactions": transactions_table(s, window, pop, catalog, txns, ident),
        }
        if dirty:
            tables = {name: dirty.add(name, block, table) for name, table in tables.items()}
        for name, table in tables.items():
            if name == "transactions":
                _write_transactions(writer, s, block, table)
            else:
                writer.write(name, table)
        writer.end_block()
        truth_parts.append(_truth_rows(window, pop, ident, archetypes))
    products = products_table(s)
    for batch in range(len(window.batch_dates)):
        table = products.append_column(BATCH, pa.array(np.full(products.num_rows, batch)))
        if dirty:
            table = dirty.add("products", batch, table)
        writer.write("products", table)
    rows = writer.close()

    truth_table = pa.concat_tables(truth_parts)
    pacsv.write_csv(truth_table, truth / "customers.csv", pacsv.WriteOptions(quoting_style="none"))
    counts = Counter(truth_table.column("archetype").to_pylist())
    _write_json(truth / "planted_rules.json", _planted_rules(s, end_date))
    dirty_counts = (dirty.result(writer.extra_written) if dirty
                    else {**{name: {} for name in contract}, "extra_columns": {}})
    _write_json(truth / "dirty_counts.json", dirty_counts)
    churned = truth_table.column("churn_date").to_pylist()
    _write_json(truth / "summary.json", {
        "parameters": {"customers": customers, "months": months, "end_date": end_date.isoformat(), "seed": seed,
                       "daily_batches": daily_batches, "dirty_rate": dirty_rate},
        "window": {"start": window.start.isoformat(), "end": window.end.isoformat(),
                   "initial_load": window.batch_dates[0].isoformat()},
        "batches": [d.isoformat() for d in window.batch_dates],
        "formats": dict(s.formats),
        "archetypes": {name: counts.get(name, 0) for name in archetypes},
        "churners_in_history": sum(1 for d in churned if d and d <= end_date.isoformat()),
        "future_churners": sum(1 for d in churned if d and d > end_date.isoformat()),
        "rows": rows,
    })
    dirty_total = sum(sum(v.values()) for k, v in dirty_counts.items() if k != "extra_columns")
    return Summary(landing=landing, truth=truth, customers=customers,
                   batches=[d.isoformat() for d in window.batch_dates], rows=rows, dirty_rows=dirty_total)


def _write_transactions(writer: LandingWriter, s: GeneratorSettings, block: int, table: pa.Table) -> None:
    """The initial load's rows of a block go to `transaction_chunks` one-shot .csv.gz files, daily rows
    are appended to one file per batch."""
    batch = table.column(BATCH).to_numpy()
    initial = int(np.searchsorted(batch, 1))
    bounds = np.linspace(0, initial, s.transaction_chunks + 1).astype(int)
    for chunk in range(s.transaction_chunks):
        writer.write("transactions", table.slice(bounds[chunk], bounds[chunk + 1] - bounds[chunk]),
                     part=f"initial-b{block:04d}-c{chunk}", close=True)
    writer.write("transactions", table.slice(initial))


def _truth_rows(window: Window, pop: Population, ident: Ids, archetypes: list[str]) -> pa.Table:
    c = pop.customers
    churn = c.churn_day
    return pa.table({
        "customer_id": ident.customer(c.number),
        "archetype": pa.array(np.array(archetypes, dtype=object)[c.archetype], pa.string()),
        "churn_date": dates(window, churn),
        "decline_start": dates(window, np.where(churn < NEVER, c.decline_day, NEVER)),
    })


def _planted_rules(s: GeneratorSettings, end_date: date) -> list[dict]:
    bands = ", ".join(f"{b.label} ({b.min}..{b.max})" for b in s.age_bands)
    return [{"antecedent": rule.antecedent, "consequent": rule.consequent, "description": rule.description,
             "rate": rule.rate,
             "attributes": {"age_band": f"age in whole years at {end_date.isoformat()}: {bands}",
                            "prod": "product TYPE of a holding held at end_date (end_date null or later)"}}
            for rule in s.planted_rules]


def _write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
