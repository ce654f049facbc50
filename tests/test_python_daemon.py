"""The Python worker daemon: Spark's workers run it, and its zip importers still see a changed archive."""
from __future__ import annotations

import zipfile
import zipimport

from jobs.common.python_daemon import invalidate_if_changed


def _write_archive(path, modules: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, source in modules.items():
            archive.writestr(f"{name}.py", source)


def test_zip_importer_when_archive_unchanged_keeps_its_directory(tmp_path):
    path = tmp_path / "lib.zip"
    _write_archive(path, {"alpha": "VALUE = 1\n"})
    importer = zipimport.zipimporter(str(path))
    invalidate_if_changed(importer)
    directory = importer._files  # noqa: SLF001 - what a re-read replaces

    invalidate_if_changed(importer)

    assert importer._files is directory  # noqa: SLF001


def test_zip_importer_when_archive_rewritten_sees_new_modules(tmp_path):
    path = tmp_path / "lib.zip"
    _write_archive(path, {"alpha": "VALUE = 1\n"})
    importer = zipimport.zipimporter(str(path))
    invalidate_if_changed(importer)
    assert importer.find_spec("beta") is None

    _write_archive(path, {"alpha": "VALUE = 1\n", "beta": "VALUE = 2\n"})
    invalidate_if_changed(importer)

    assert importer.find_spec("beta") is not None


def test_spark_python_workers_run_the_pipeline_daemon(spark):
    def daemon_of_worker(_):
        import zipimport as worker_zipimport
        # the daemon runs as __main__ (python -m), so its function is known by name
        yield worker_zipimport.zipimporter.invalidate_caches.__name__

    workers = spark.sparkContext.parallelize(range(2), 2).mapPartitions(daemon_of_worker).collect()

    assert workers == ["invalidate_if_changed", "invalidate_if_changed"]
