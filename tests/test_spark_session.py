"""The SparkSession factory applies the configured master and Spark settings.

The test process already holds a session (one per JVM), so each check starts a fresh Python process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyspark

PROJECT = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, sys
from jobs.common.config import load_settings
from jobs.common.spark import get_spark

settings = load_settings(sys.argv[1])
spark = get_spark(settings, extra_conf={"spark.sql.session.timeZone": "Asia/Shanghai"})
sc = spark.sparkContext
print("SESSION " + json.dumps({
    "master": sc.master,
    "app_name": sc.appName,
    "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions"),
    "adaptive": spark.conf.get("spark.sql.adaptive.enabled"),
    "timezone": spark.conf.get("spark.sql.session.timeZone"),
    "driver_memory": sc.getConf().get("spark.driver.memory"),
    "python": sc.pythonExec,
    "jvm_properties": [spark._jvm.java.lang.System.getProperty(name)
                       for name in ("crm.check", "log4j2.configurationFile")],
    "worker_sum": spark.range(10).rdd.map(lambda r: r.id).sum(),
}))
spark.stop()
"""


def _conf_file(tmp_path: Path) -> Path:
    path = tmp_path / "spark.yaml"
    path.write_text("spark:\n  conf:\n    spark.sql.shuffle.partitions: 7\n    spark.driver.memory: 1g\n"
                    "    spark.sql.adaptive.enabled: false\n"
                    "    spark.driver.extraJavaOptions: -Dcrm.check=yes\n", encoding="utf-8")
    return path


def _session_facts(command: list[str], tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CRM_", "PYSPARK_", "SPARK_"))}
    env.update({"CRM_SPARK__MASTER": "local[1]", "CRM_LAKE__ROOT": str(tmp_path / "lake"),
                "PYTHONPATH": str(PROJECT)})
    if command[0].endswith("spark-submit"):
        # spark-submit starts the driver with PYSPARK_PYTHON: the same interpreter as the tests.
        env["PYSPARK_PYTHON"] = sys.executable
    script = tmp_path / "session_check.py"
    script.write_text(SCRIPT, encoding="utf-8")
    done = subprocess.run([*command, str(script), str(_conf_file(tmp_path))], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("SESSION "))
    return json.loads(line[len("SESSION "):])


def test_get_spark_when_started_by_python_applies_configured_master_and_conf(tmp_path):
    facts = _session_facts([sys.executable], tmp_path)

    assert facts["master"] == "local[1]"  # CRM_SPARK__MASTER
    assert facts["app_name"] == "crm-pipeline"  # conf/pipeline.yaml
    assert facts["shuffle_partitions"] == "7"  # --conf file, an unquoted number
    assert facts["adaptive"] == "false"  # --conf file, an unquoted boolean
    assert facts["driver_memory"] == "1g"  # a launch-time setting reaches the new JVM
    assert facts["timezone"] == "Asia/Shanghai"  # extra_conf beats configuration
    assert facts["python"] == sys.executable  # no PYSPARK_PYTHON: workers run the driver's Python
    # configured driver options reach the JVM beside the pipeline's log4j configuration, not instead
    assert facts["jvm_properties"] == ["yes", str(PROJECT / "conf" / "log4j2.properties")]
    assert facts["worker_sum"] == 45


def test_get_spark_when_started_by_spark_submit_keeps_submitters_master_and_applies_conf(tmp_path):
    spark_submit = str(Path(pyspark.__file__).parent / "bin" / "spark-submit")

    facts = _session_facts([spark_submit, "--master", "local[2]"], tmp_path)

    assert facts["master"] == "local[2]"  # the submitter's master wins over CRM_SPARK__MASTER
    assert facts["shuffle_partitions"] == "7"
    assert facts["timezone"] == "Asia/Shanghai"
    assert facts["worker_sum"] == 45
