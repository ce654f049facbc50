"""Nightly PySpark CRM analytics pipeline for retail banks."""
from setuptools import find_packages, setup

# Exact pins: this set is known to co-install with Airflow 3.3.2 (see README, "Dependencies").
# delta-spark 4.0.0 is the Delta release built for Spark 4.0.x; it is only used where Delta's
# JVM classes are on the classpath (a production cluster), see jobs/common/lake.py.
RUNTIME = [
    "pyspark==4.0.1",
    "delta-spark==4.0.0",
    "deltalake==1.6.6",
    "pyarrow==21.0.0",
    "pandas==2.3.3",
    "numpy==2.3.5",
    "great-expectations==1.24.1",
    "mlflow==3.17.2",
    "pydantic==2.12.5",
    "pyyaml==6.0.3",
    "matplotlib==3.10.7",
]

EXTRAS = {
    "airflow": [
        "apache-airflow==3.3.2",
        "apache-airflow-providers-apache-spark==5.3.2",
    ],
    "dev": [
        "pytest==9.0.3",
        "pytest-xdist==3.8.0",  # `make test` runs on two workers
        "chispa==0.12.0",
        "ruff==0.14.6",
        "duckdb==1.4.2",
        "polars==1.35.2",
        "mlxtend==0.23.4",
        "playwright==1.65.2",  # drives Debian's chromium (no browser download) in the report test
    ],
}

setup(
    name="crm-pipeline",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["jobs", "jobs.*"]),
    install_requires=RUNTIME,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["crm-pipeline = jobs.cli:main"]},
)
