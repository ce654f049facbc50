"""Airflow DAG crm_maintenance: Delta compaction and vacuum (retention from conf), MLflow housekeeping."""
from jobs import scheduling

conf = scheduling.settings()

with scheduling.crm_dag(conf, "crm_maintenance", "Compact small files, vacuum old ones, purge deleted MLflow runs",
                        conf.scheduling.maintenance_cron, ["crm", "maintenance"]) as dag:
    scheduling.stage_task(conf, "maintenance")
