"""`crm-pipeline`: the command line of the CRM pipeline (the Airflow DAGs call the same commands).

Exit codes: 0 ok, 1 a data-quality gate stopped the run, 2 bad input or configuration, 3 internal error.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

from jobs.common.config import ConfigError, Settings, load_settings
from jobs.common.errors import InputError, PipelineError
from jobs.stages import NIGHTLY, STAGES, load_stage

log = logging.getLogger("crm")


def _parse_date(text: str) -> date | str:
    if text == "latest":
        return text
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD (or 'latest')") from None


def latest_landing_date(settings: Settings) -> date:
    """The newest `dt=` of the landing zone that carries a `_READY` marker."""
    root = Path(settings.landing.root)
    dates = sorted({date.fromisoformat(p.parent.name[3:])
                    for p in root.glob("*/dt=*/_READY")})
    if not dates:
        raise InputError(f"no complete batch (dt=*/_READY) under the landing root {root}",
                         hint="generate demo data with `crm-pipeline generate` or point landing.root "
                              "(CRM_LANDING__ROOT) at the landing zone")
    return dates[-1]


def _resolve_date(settings: Settings, value: date | str) -> date:
    return latest_landing_date(settings) if value == "latest" else value


def _run_stages(settings: Settings, business_date: date, names: list[str],
                train_if_missing: bool = False) -> int:
    from jobs.common.context import RunContext
    from jobs.common.runlog import record_stage_run

    ctx = RunContext(settings, business_date, train_if_missing=train_if_missing)
    ctx.spark  # noqa: B018 - the JVM's start-up notices print now, not across the first progress line
    print(f"run {ctx.run_id} for business date {business_date}: {', '.join(names)}", flush=True)
    started = time.monotonic()
    for name in names:
        stage = load_stage(name)
        if stage is None:
            print(f"  {name:<18} not built yet, skipped", flush=True)
            continue
        print(f"  {name:<18} ...", end="\r", flush=True)
        stage_started, began = time.monotonic(), datetime.now(UTC)
        try:
            written = stage(ctx) or {}
        except Exception as exc:
            record_stage_run(ctx.lake, business_date, name, ctx.run_id, began,
                             time.monotonic() - stage_started, "failed", {}, str(exc)[:2000])
            print(f"  {name:<18} failed after {time.monotonic() - stage_started:.1f}s", flush=True)
            raise
        elapsed = time.monotonic() - stage_started
        record_stage_run(ctx.lake, business_date, name, ctx.run_id, began, elapsed, "ok", written)
        rows = ", ".join(f"{table} {count:,}" for table, count in written.items())
        print(f"  {name:<18} {elapsed:7.1f}s  {rows}", flush=True)
    print(f"done in {time.monotonic() - started:.1f}s", flush=True)
    print(f"  tables:  {Path(settings.lake.root).resolve()}")
    print(f"  outbox:  {Path(settings.outbox.root).resolve() / business_date.isoformat()}")
    print(f"  reports: {Path(settings.reports.root).resolve() / business_date.isoformat()}")
    return 0


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.generate.generator import generate

    summary = generate(customers=args.customers, months=args.months, end_date=args.end_date,
                       seed=args.seed, landing=Path(args.landing or settings.landing.root),
                       daily_batches=args.daily_batches, dirty_rate=args.dirty_rate, settings=settings)
    print(summary)
    return 0


def cmd_stage(args: argparse.Namespace, settings: Settings) -> int:
    if load_stage(args.name) is None:
        raise InputError(f"stage {args.name!r} is not built yet")
    return _run_stages(settings, _resolve_date(settings, args.date), [args.name],
                       train_if_missing=args.train_if_missing)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    return _run_stages(settings, _resolve_date(settings, args.date), NIGHTLY, train_if_missing=True)


def _lake(settings: Settings):
    from jobs.common.lake import Lake
    from jobs.common.spark import get_spark

    return Lake.from_settings(get_spark(settings), settings)


def _print_rows(rows: list[dict[str, object]]) -> None:
    if not rows:
        print("(no rows)")
        return
    columns = list(rows[0])
    cells = [[("" if r[c] is None else str(r[c])) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.analyst import query, write_result

    if (args.statement is None) == (args.file is None):
        raise InputError("give either a SQL statement or --file FILE")
    statement = args.statement if args.file is None else Path(args.file).read_text(encoding="utf-8")
    result = query(_lake(settings), statement)
    if args.out:
        print(f"wrote {write_result(result, Path(args.out))}")
        return 0
    rows = [r.asDict() for r in result.limit(args.limit + 1).collect()]
    _print_rows(rows[:args.limit])
    if len(rows) > args.limit:
        print(f"(first {args.limit} rows; --limit N for more, --out FILE for all)")
    return 0


def cmd_tables(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.analyst import table_catalogue

    _print_rows(table_catalogue(_lake(settings)))
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    return _run_stages(settings, _resolve_date(settings, args.date), ["report"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crm-pipeline",
        description="Nightly CRM analytics for a retail bank: landing -> bronze -> silver -> gold, "
                    "segments, association rules, churn scores and marketing push files.",
        epilog="Exit codes: 0 ok, 1 data-quality stop, 2 bad input or configuration, 3 internal error.")
    parser.add_argument("--conf", metavar="FILE", help="YAML merged over conf/*.yaml (same keys)")
    parser.add_argument("--verbose", action="store_true", help="log details and show stack traces")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = commands.add_parser("generate", help="write a seeded synthetic landing zone (all sources)",
                              description="Write seeded, realistic bank data per the landing contract, "
                                          "with a ground-truth folder beside the landing root.")
    gen.add_argument("--customers", type=int, default=5000, help="number of customers (default 5000)")
    gen.add_argument("--months", type=int, default=12, help="months of history (default 12)")
    gen.add_argument("--end-date", type=date.fromisoformat, default=date(2026, 10, 31),
                     help="last business date, YYYY-MM-DD (default 2026-10-31)")
    gen.add_argument("--seed", type=int, default=7, help="random seed; same seed, same bytes (default 7)")
    gen.add_argument("--landing", help="landing root to write (default: landing.root)")
    gen.add_argument("--daily-batches", type=int, default=0,
                     help="daily incremental batches after the initial load (default 0)")
    gen.add_argument("--dirty-rate", type=float, default=0.0,
                     help="share of rows to corrupt, per kind of bad row (default 0)")
    gen.set_defaults(handler=cmd_generate)

    stage = commands.add_parser("stage", help="run one stage for a business date",
                                description="Run one stage: " + ", ".join(STAGES))
    stage.add_argument("name", choices=list(STAGES), metavar="NAME", help=", ".join(STAGES))
    stage.add_argument("--date", type=_parse_date, required=True,
                       help="business date YYYY-MM-DD, or 'latest' (newest complete landing batch)")
    stage.add_argument("--train-if-missing", action="store_true",
                       help="churn-score: train a first model when the registry has no champion")
    stage.set_defaults(handler=cmd_stage)

    run = commands.add_parser("run", help="run the nightly stages in order for a business date",
                              description="Run the nightly stages in order: " + " -> ".join(NIGHTLY))
    run.add_argument("--date", type=_parse_date, default="latest",
                     help="business date YYYY-MM-DD, or 'latest' (default)")
    run.set_defaults(handler=cmd_run)

    sql = commands.add_parser("sql", help="query the lake with Spark SQL (tables as layer.table)",
                              description="Run a Spark SQL query; every lake table is addressable as "
                                          "layer.table, e.g. SELECT risk_band, count(*) FROM "
                                          "gold.churn_scores GROUP BY risk_band")
    sql.add_argument("statement", nargs="?", help="the SQL statement (or use --file)")
    sql.add_argument("--file", help="read the statement from this file")
    sql.add_argument("--out", help="write all rows to FILE.csv or FILE.parquet instead of printing")
    sql.add_argument("--limit", type=int, default=50, help="rows to print (default 50)")
    sql.set_defaults(handler=cmd_sql)

    tables = commands.add_parser("tables", help="list the lake's tables with version, rows, last commit",
                                 description="List every Delta table under the lake root.")
    tables.set_defaults(handler=cmd_tables)

    report = commands.add_parser("report", help="write the run report reports/<date>/index.html",
                                 description="Write one self-contained HTML report of the run for a date.")
    report.add_argument("--date", type=_parse_date, default="latest",
                        help="business date YYYY-MM-DD, or 'latest' (default)")
    report.set_defaults(handler=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Libraries that set their own loggers to INFO (Great Expectations) or log through their own handler
    # (MLflow) stay quiet too unless --verbose.
    for handler in logging.root.handlers:
        handler.setLevel(level)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", logging.getLevelName(level))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true" if args.verbose else "false")
    try:
        settings = load_settings(args.conf)
        return args.handler(args, settings)
    except ConfigError as exc:
        return _fail(args, f"configuration error: {exc}", 2, "fix the key or value named above")
    except PipelineError as exc:
        return _fail(args, str(exc), exc.exit_code, exc.hint)
    except Exception as exc:  # anything unforeseen is an internal error, one line unless --verbose
        return _fail(args, f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                     3, "rerun with --verbose for the stack trace")


def _fail(args: argparse.Namespace, message: str, code: int, hint: str | None) -> int:
    if args.verbose:
        log.exception(message)
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
