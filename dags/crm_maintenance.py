"""crm_maintenance: Delta compaction and vacuum (retention from conf), MLflow housekeeping."""
from airflow.sdk import DAG

from jobs import scheduling

conf = scheduling.settings()

with DAG(
    dag_id="crm_maintenance",
    description="Compact small files, vacuum old ones, purge deleted MLflow runs",
    schedule=scheduling.timetable(conf, conf.scheduling.maintenance_cron),
    start_date=scheduling.start_date(conf),
    catchup=False,
    max_active_runs=1,
    default_args=scheduling.default_args(conf),
    params=scheduling.business_date_params(),
    tags=["crm", "maintenance"],
) as dag:
    scheduling.stage_task(conf, "maintenance")
