"""The run report: one self-contained `reports/<D>/index.html` (images embedded, no remote resources).

Sections: run summary (stages, durations, rows, quarantine by reason, data quality), segments, top
association rules, churn, push volumes with control groups, loan warnings, campaign performance. A
section whose table has nothing for D says so instead of failing: the report is the last stage of the
night and must show whatever the night produced.
"""
from __future__ import annotations

import html
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.common.context import RunContext
from jobs.common.lake import Lake
from jobs.report import charts

Section = tuple[str, str]  # (title, html body)


def _rows_for(lake: Lake, table: str, date_column: str, business_date: date) -> DataFrame | None:
    if not lake.exists(table):
        return None
    partitions = lake.partition_columns(table)
    if date_column in partitions:
        frame = lake.read(table, partition_filters=[(date_column, "=", business_date)])
    else:
        frame = lake.read(table)
        if date_column in frame.columns:
            frame = frame.where(F.col(date_column) == F.lit(business_date))
    return frame


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p class='empty'>no rows</p>"
    columns = columns or list(rows[0])

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
        if isinstance(value, (list, tuple)):
            return html.escape(", ".join(str(v) for v in value))
        return html.escape("" if value is None else str(value))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(uri: str, alt: str) -> str:
    return f"<img src='{uri}' alt='{html.escape(alt)}'>"


def _nothing(table: str) -> str:
    return f"<p class='empty'>{html.escape(table)} has no rows for this date.</p>"


def run_summary(lake: Lake, business_date: date) -> str:
    parts = []
    runs = _rows_for(lake, "ops.stage_runs", "business_date", business_date)
    if runs is not None:
        stage_rows = [r.asDict() for r in runs.orderBy("started_at").collect()]
        for row in stage_rows:
            written = json.loads(row["rows_written"] or "{}")
            row["rows written"] = ", ".join(f"{t}: {n:,}" for t, n in written.items())
            row["duration_s"] = round(row["duration_s"], 1)
        parts.append(_table(stage_rows, ["stage", "status", "started_at", "duration_s", "rows written"]))
        if stage_rows:
            parts.append(_image(charts.bar_chart([r["stage"] for r in stage_rows],
                                                 [r["duration_s"] for r in stage_rows],
                                                 "Stage durations", "seconds", horizontal=True),
                                "stage durations"))
    else:
        parts.append(_nothing("ops.stage_runs"))

    audit = _rows_for(lake, "ops.batch_audit", "batch_date", business_date)
    if audit is not None:
        parts.append("<h3>Rows in and out per source</h3>")
        parts.append(_table([r.asDict() for r in audit.orderBy(audit.columns[0]).collect()]))

    quarantined = []
    for table in lake.tables():
        if table.startswith("quarantine."):
            frame = _rows_for(lake, table, "batch_date", business_date)
            if frame is not None and "reason" in frame.columns:
                quarantined += [{"source": table.split(".", 1)[1], **r.asDict()}
                                for r in frame.groupBy("reason").count().collect()]
    parts.append("<h3>Quarantine by reason</h3>")
    quarantined.sort(key=lambda r: (r["source"], r["reason"]))
    parts.append(_table(quarantined, ["source", "reason", "count"]) if quarantined
                 else "<p>No row was quarantined.</p>")
    if quarantined:
        parts.append(_image(charts.bar_chart([f"{r['source']}: {r['reason']}" for r in quarantined],
                                             [r["count"] for r in quarantined], "Quarantined rows",
                                             horizontal=True), "quarantine by reason"))

    dq = _rows_for(lake, "ops.dq_results", "batch_date", business_date)
    parts.append("<h3>Data quality</h3>")
    parts.append(_table([r.asDict() for r in dq.collect()]) if dq is not None else _nothing("ops.dq_results"))
    return "\n".join(parts)


def segments(lake: Lake, business_date: date) -> str:
    profiles = _rows_for(lake, "gold.segment_profiles", "as_of_date", business_date)
    if profiles is None or profiles.limit(1).count() == 0:
        return _nothing("gold.segment_profiles")
    rows = [r.asDict(recursive=True) for r in profiles.orderBy("segment_id").collect()]
    label_of = {r["segment_id"]: f"{r['segment_id']}: {r['segment_label']}" for r in rows}
    labels = [label_of[r["segment_id"]] for r in rows]
    parts = [_image(charts.bar_chart(labels, [r["customers"] for r in rows], "Customers per segment"),
                    "segment sizes")]
    features = sorted(rows[0]["centre_z"])
    parts.append(_image(charts.heat_map(labels, features, [[r["centre_z"][f] for f in features] for r in rows],
                                        "Segment centres (z-scores)"), "segment profile heat map"))
    for row in rows:
        row["distinguishing_features"] = [f"{d['feature']} {d['z']:+.1f}" for d in row["distinguishing_features"]]
        row["share"] = round(row["share"], 3)
    parts.append(_table(rows, ["segment_id", "segment_label", "customers", "share", "distinguishing_features"]))
    return "\n".join(parts)


def association_rules(lake: Lake, business_date: date) -> str:
    rules = _rows_for(lake, "gold.association_rules", "as_of_date", business_date)
    if rules is None or rules.limit(1).count() == 0:
        return _nothing("gold.association_rules")
    top = [r.asDict() for r in rules.orderBy(F.desc("lift"), F.desc("confidence")).limit(15).collect()]
    return _table(top, ["antecedent", "consequent", "support", "confidence", "lift"])


def churn(lake: Lake, business_date: date, settings) -> str:
    scores = _rows_for(lake, "gold.churn_scores", "as_of_date", business_date)
    if scores is None or scores.limit(1).count() == 0:
        return _nothing("gold.churn_scores")
    bins = 20
    counts = {r["bin"]: r["count"] for r in scores.select(
        F.least(F.floor(F.col("churn_probability") * bins), F.lit(bins - 1)).cast("int").alias("bin"))
        .groupBy("bin").count().collect()}
    parts = [_image(charts.histogram([i / bins for i in range(bins + 1)],
                                     [counts.get(i, 0) for i in range(bins)],
                                     "Churn probability", "probability"), "churn score distribution")]
    bands = [r.asDict() for r in scores.groupBy("risk_band", "model_version").count().orderBy("risk_band").collect()]
    parts.append(_table(bands))
    parts.append(_churn_model_metrics(settings))
    return "\n".join(parts)


def _churn_model_metrics(settings) -> str:
    """The champion's validation metrics from MLflow, and its lift chart by score decile."""
    try:
        from mlflow import MlflowClient

        from jobs.common.tracking import use_tracking

        use_tracking(settings, "churn")
        client = MlflowClient()
        version = client.get_model_version_by_alias("churn_model", "champion")
        run = client.get_run(version.run_id)
    except Exception as exc:  # no registry or no champion yet: the report still renders
        return f"<p class='empty'>No churn champion in MLflow ({html.escape(type(exc).__name__)}).</p>"
    metrics = run.data.metrics
    parts = [f"<p>Champion: churn_model version {html.escape(str(version.version))} (run "
             f"{html.escape(run.info.run_id[:8])}).</p>",
             _table([{"metric": k, "value": v} for k, v in sorted(metrics.items()) if "_decile_" not in k])]
    deciles = sorted(int(k.rsplit("_", 1)[1]) for k in metrics if k.startswith("validation_lift_decile_"))
    if deciles:
        lifts = [metrics[f"validation_lift_decile_{d}"] for d in deciles]
        parts.append(_image(charts.line_chart(deciles, {"lift": lifts},
                                              "Lift by score decile (validation)", "decile (1 = riskiest)",
                                              "lift"), "churn lift chart"))
    return "\n".join(parts)


def push_volumes(lake: Lake, business_date: date) -> str:
    history = _rows_for(lake, "gold.push_history", "as_of_date", business_date)
    if history is None or history.limit(1).count() == 0:
        return _nothing("gold.push_history")
    group_column = next((c for c in ("is_control", "control", "assignment") if c in history.columns), None)
    keys = ["campaign_id", "channel"] + ([group_column] if group_column else [])
    rows = [r.asDict() for r in history.groupBy(*keys).count().orderBy(*keys).collect()]
    campaigns = sorted({r["campaign_id"] for r in rows})
    channels = sorted({str(r["channel"]) for r in rows})
    series = {ch: [sum(r["count"] for r in rows if r["campaign_id"] == c and str(r["channel"]) == ch)
                   for c in campaigns] for ch in channels}
    return "\n".join([_image(charts.grouped_bar_chart(campaigns, series, "Pushes by campaign and channel"),
                             "push volumes"), _table(rows)])


def loan_warnings(lake: Lake, business_date: date) -> str:
    warnings = _rows_for(lake, "gold.loan_warnings", "as_of_date", business_date)
    if warnings is None or warnings.limit(1).count() == 0:
        return _nothing("gold.loan_warnings")
    order = ["none", "watch", "warning", "critical"]
    counts = {r["warning_level"]: r["count"] for r in warnings.groupBy("warning_level").count().collect()}
    return _image(charts.bar_chart(order, [counts.get(level, 0) for level in order], "Loans by warning level"),
                  "loan warnings") + _table([{"warning_level": k, "loans": counts.get(k, 0)} for k in order])


def campaign_performance(lake: Lake, business_date: date) -> str:
    performance = _rows_for(lake, "gold.campaign_performance", "as_of_date", business_date)
    if performance is None or performance.limit(1).count() == 0:
        return _nothing("gold.campaign_performance")
    return _table([r.asDict() for r in performance.collect()])


STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;color:#1c2833}
h1{color:#1f4e79}h2{border-bottom:2px solid #2e86c1;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}th,td{border:1px solid #d5d8dc;padding:.25rem .5rem;
text-align:left}th{background:#eaf2f8}img{max-width:100%;display:block;margin:.6rem 0}.empty{color:#7f8c8d}
nav a{margin-right:1rem}
"""


def render(title: str, sections: list[Section], generated_at: str) -> str:
    nav = "".join(f"<a href='#s{i}'>{html.escape(t)}</a>" for i, (t, _) in enumerate(sections))
    body = "".join(f"<h2 id='s{i}'>{html.escape(t)}</h2>\n{b}\n" for i, (t, b) in enumerate(sections))
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>Generated {html.escape(generated_at)}.</p><nav>{nav}</nav>{body}</body></html>")


def build_report(ctx: RunContext) -> Path:
    lake, day = ctx.lake, ctx.business_date
    builders: list[tuple[str, Callable[[], str]]] = [
        ("Run summary", lambda: run_summary(lake, day)),
        ("Customer segments", lambda: segments(lake, day)),
        ("Top association rules", lambda: association_rules(lake, day)),
        ("Churn", lambda: churn(lake, day, ctx.settings)),
        ("Push volumes", lambda: push_volumes(lake, day)),
        ("Loan warnings", lambda: loan_warnings(lake, day)),
        ("Campaign performance", lambda: campaign_performance(lake, day)),
    ]
    sections = [(title, build()) for title, build in builders]
    generated_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out_dir = Path(ctx.settings.reports.root) / day.isoformat()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "index.html"
    scratch = out_dir / ".index.html.tmp"
    scratch.write_text(render(f"CRM nightly run — {day.isoformat()}", sections, generated_at), encoding="utf-8")
    scratch.replace(target)  # readers never see a half-written report
    return target


def run(ctx: RunContext) -> dict[str, int]:
    target = build_report(ctx)
    print(f"report: {target.resolve()}")
    return {}
