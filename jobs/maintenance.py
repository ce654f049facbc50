"""The maintenance stage: compact small files and vacuum every lake table; purge deleted MLflow runs."""
from __future__ import annotations

import logging
import subprocess
import sys

from jobs.common.context import RunContext

log = logging.getLogger("crm.maintenance")


def run(ctx: RunContext) -> dict[str, int]:
    lake_conf = ctx.settings.lake
    rewritten: dict[str, int] = {}
    for table in ctx.lake.tables():
        compacted = ctx.lake.compact(table, min_files=lake_conf.compact_min_files,
                                     small_file_mb=lake_conf.compact_small_file_mb)
        deleted = ctx.lake.vacuum(table, retention_hours=lake_conf.vacuum_retention_hours)
        log.info("%s: %d files compacted into %d, %d files vacuumed", table,
                 compacted.files_removed, compacted.files_added, len(deleted))
        rewritten[table] = compacted.rows_added
    # Runs deleted in MLflow stay in its store until garbage-collected.
    subprocess.run([sys.executable, "-m", "mlflow", "gc", "--backend-store-uri",
                    ctx.settings.mlflow_tracking_uri,
                    "--older-than", f"{lake_conf.vacuum_retention_hours}h"], check=True)
    return rewritten
