"""PySpark's Python worker daemon, with zip importers that re-read an archive only when it changed.

Spark starts its Python workers from this module when `spark.python.daemon.module` names it
(conf/pipeline.yaml). Why: before every task PySpark 4.0's worker calls `importlib.invalidate_caches()`,
and since Python 3.10 a `zipimporter` then re-reads its archive's whole directory. A worker's path holds
pyspark.zip and spark-core's jar (about 6,500 entries) under some 16 importers, so each task burnt about
0.3 s of CPU on this 2-core machine before doing any work: more than a K-means pass's arithmetic.
Spark later calls it only when a task brings new paths (SPARK-54744). Here an importer re-reads its
archive when the file's size or modification time differs from the last read, so a changed archive is
still seen. Everything else is `pyspark.daemon` itself.
"""
from __future__ import annotations

import os
import zipimport

from pyspark import daemon

_reread = zipimport.zipimporter.invalidate_caches


def _archive_stamp(archive: str) -> tuple[int, int] | None:
    try:
        status = os.stat(archive)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def invalidate_if_changed(importer: zipimport.zipimporter) -> None:
    """`zipimporter.invalidate_caches`, skipped while the archive is the file last read."""
    stamp = _archive_stamp(importer.archive)
    if stamp is None or getattr(importer, "_read_stamp", None) != stamp:
        _reread(importer)
        importer._read_stamp = stamp  # noqa: SLF001 - our own attribute on the importer


zipimport.zipimporter.invalidate_caches = invalidate_if_changed

if __name__ == "__main__":
    daemon.manager()
