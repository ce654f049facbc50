"""App events and campaign responses of one block (vectorised, seeded per block)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from jobs.generate.population import Catalog, Population, pick
from jobs.generate.settings import GeneratorSettings
from jobs.generate.tables import HOUR, Ids, _table, coded, ids, text, timestamps
from jobs.generate.transactions import poisson_days
from jobs.generate.window import DAY, Window

WEALTH_PAGE_TYPES = ("structured_deposit", "wealth_management", "fund", "insurance")


def _browsable(catalog: Catalog, risk_tolerance: np.ndarray) -> np.ndarray:
    """customers x products: active wealth products a customer may look at (up to one level above)."""
    mask = np.isin(catalog.types, WEALTH_PAGE_TYPES) & catalog.active
    return (mask[None, :] & (catalog.risk[None, :] <= risk_tolerance[:, None] + 1)).astype(float)


def app_events_table(s: GeneratorSettings, window: Window, pop: Population, catalog: Catalog, ident: Ids,
                     seed: int) -> pa.Table:
    """Login sessions (Poisson, decaying before churn) each followed by page views, searches and clicks."""
    rng = np.random.default_rng([seed, pop.block, 4])
    c = pop.customers
    D = window.days
    arch = list(s.archetypes.values())
    logins = np.array([a.app_logins_per_month for a in arch])[c.archetype] * np.exp(0.3 * rng.standard_normal(len(c)))
    lo, hi = np.maximum(c.join_day, 0), np.minimum(c.churn_day, D)
    who, day = poisson_days(rng, logins / 30.4, lo, hi, c.decline_day, c.churn_day,
                            (s.churn.activity_floor, s.churn.decay_power))
    login_ts = day * DAY + 7 * HOUR + rng.integers(0, 16 * HOUR, len(who))

    views = rng.poisson(s.app.page_views_per_login, len(who))
    session = np.repeat(np.arange(len(who)), views)
    step = np.arange(len(session)) - np.repeat(np.cumsum(views) - views, views) + 1
    viewer = who[session]
    # Pages by code: 0 = home (logins), 1 = search, then the archetypes' pages.
    pages = ["home", "search", *dict.fromkeys(p for a in arch for p in a.pages if p not in ("home", "search"))]
    weights = np.array([[a.pages.get(p, 0.0) for p in pages] for a in arch])[c.archetype[viewer]]
    page = pick(rng, weights)
    search = rng.random(len(session)) < s.app.search_share
    page[search] = 1
    view_ts = login_ts[session] + 20 * step + rng.integers(0, 10, len(session))
    detail = page == pages.index("wealth/product_detail") if "wealth/product_detail" in pages else np.zeros(
        len(session), dtype=bool)
    product = np.full(len(session), -1)
    product[detail] = pick(rng, _browsable(catalog, c.risk_tolerance[viewer[detail]]))
    clicked = ~search & (rng.random(len(session)) < s.app.click_share)

    event_types = ("login", "page_view", "search", "click")
    customer = np.concatenate([who, viewer, viewer[clicked]])
    ts = np.concatenate([login_ts, view_ts, view_ts[clicked] + 5])
    event_type = np.concatenate([np.zeros(len(who), dtype=np.int64), np.where(search, 2, 1),
                                 np.full(clicked.sum(), 3)])
    page_all = np.concatenate([np.zeros(len(who), dtype=np.int64), page, page[clicked]])
    product_all = np.concatenate([np.full(len(who), -1), product, product[clicked]])
    # Keep events up to the end date, ordered by time; the source's key is (customer_id, event_ts,
    # event_type, page): drop exact repeats of it.
    keep = ts < D * DAY
    order = np.lexsort((page_all[keep], event_type[keep], customer[keep], ts[keep]))
    rows = np.flatnonzero(keep)[order]
    customer, ts, event_type, page_all, product_all = (
        a[rows] for a in (customer, ts, event_type, page_all, product_all))
    repeat = np.r_[False, (customer[1:] == customer[:-1]) & (ts[1:] == ts[:-1])
                   & (event_type[1:] == event_type[:-1]) & (page_all[1:] == page_all[:-1])]
    customer, ts, event_type, page_all, product_all = (
        a[~repeat] for a in (customer, ts, event_type, page_all, product_all))
    columns = {
        "customer_id": ident.customer(c.number).take(pa.array(customer)), "event_ts": timestamps(window, ts),
        "event_type": coded(event_types, event_type), "page": coded(tuple(pages), page_all),
        "product_id": coded(tuple(catalog.ids), product_all),
    }
    return _table("app_events", columns, window.batch_of(ts // DAY))


def responses_table(s: GeneratorSettings, window: Window, pop: Population, catalog: Catalog, ident: Ids,
                    seed: int) -> pa.Table:
    """Earlier pushes of each campaign to consenting customers, and the funnel of events they caused."""
    rng = np.random.default_rng([seed, pop.block, 5])
    c = pop.customers
    D = window.days
    cfg = s.campaigns
    rates = cfg.rates
    lag_lo, lag_hi = (h * HOUR for h in cfg.response_lag_hours)
    consent = {"sms": c.consent_sms, "email": c.consent_email, "app": c.consent_app,
               "rm_call": np.ones(len(c), dtype=bool)}
    lo, hi = np.maximum(c.join_day, 0), np.minimum(c.churn_day, D)
    parts = []
    pushed = 0
    for campaign, definition in cfg.definitions.items():
        affinity = np.array([a.campaign_affinity.get(campaign, 1.0) for a in s.archetypes.values()])
        pushes = rng.poisson(cfg.pushes_per_customer_month * np.maximum(hi - lo, 0) / 30.4)
        who = np.repeat(np.arange(len(c)), pushes)
        day = lo[who] + np.floor(rng.random(len(who)) * (hi - lo)[who]).astype(np.int64)
        allowed = np.stack([consent[ch][who] for ch in definition.channels], axis=1) & ~c.do_not_contact[who, None]
        choice = pick(rng, allowed.astype(float))
        sent = choice >= 0
        who, day, choice = who[sent], day[sent], choice[sent]
        channel = np.array(definition.channels, dtype=object)[choice]
        pushed_at = day * DAY + 10 * HOUR + rng.integers(0, 8 * HOUR, len(who))
        n = len(who)
        bounced = rng.random(n) < rates.bounced
        delivered = ~bounced
        call = channel == "rm_call"
        sms = channel == "sms"
        opened = delivered & ~call & ~sms & (rng.random(n) < rates.opened)
        clicked = (opened | (delivered & sms)) & (rng.random(n) < rates.clicked)
        p_convert = np.minimum(rates.converted * affinity[c.archetype[who]], 0.9)
        converted = (clicked | (delivered & call)) & (rng.random(n) < p_convert)
        unsubscribed = delivered & ~call & ~converted & (rng.random(n) < rates.unsubscribed)
        t_open = pushed_at + rng.integers(lag_lo, lag_hi + 1, n)
        t_click = t_open + rng.integers(lag_lo, lag_hi + 1, n) // 4
        t_convert = t_click + rng.integers(lag_lo, lag_hi + 1, n)
        product = np.full(n, -1)
        if definition.product_types:
            suitable = (np.isin(catalog.types, definition.product_types) & catalog.active)[None, :] & (
                catalog.risk[None, :] <= c.risk_tolerance[who][:, None])
            product = pick(rng, suitable.astype(float))
            converted &= product >= 0
        events = [("bounced", bounced, pushed_at), ("delivered", delivered, pushed_at), ("opened", opened, t_open),
                  ("clicked", clicked, t_click), ("converted", converted, t_convert),
                  ("unsubscribed", unsubscribed, t_click + rng.integers(lag_lo, lag_hi + 1, n))]
        for name, mask, ts in events:
            rows = np.flatnonzero(mask & (ts < D * DAY))  # later responses have not arrived yet
            parts.append((pushed + rows, who[rows], ts[rows], np.full(len(rows), name, dtype=object),
                          np.full(len(rows), campaign, dtype=object), channel[rows],
                          product[rows] if name == "converted" else np.full(len(rows), -1)))
        pushed += n
    push, who, ts, event, campaign, channel, product = (np.concatenate(col) for col in zip(*parts, strict=True))
    order = np.lexsort((push, ts))
    push, who, ts, event, campaign, channel, product = (
        a[order] for a in (push, who, ts, event, campaign, channel, product))
    columns = {
        "push_id": ids(f"PU{pop.block:04d}", push, 8), "customer_id": ident.customer(c.number[who]),
        "campaign_id": text(campaign), "channel": text(channel), "event": text(event),
        "event_ts": timestamps(window, ts), "product_id": coded(tuple(catalog.ids), product),
    }
    return _table("campaign_responses", columns, window.batch_of(ts // DAY))
