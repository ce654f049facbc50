"""crm_retrain: weekly K-means fit (with the choice of k) and churn training with champion promotion."""
from airflow.sdk import DAG

from jobs import scheduling

conf = scheduling.settings()

with DAG(
    dag_id="crm_retrain",
    description="Weekly model refresh: customer segments and the churn model",
    schedule=scheduling.timetable(conf, conf.scheduling.retrain_cron),
    start_date=scheduling.start_date(conf),
    catchup=False,
    max_active_runs=1,
    default_args=scheduling.default_args(conf),
    params=scheduling.business_date_params(),
    tags=["crm", "models"],
) as dag:
    scheduling.stage_task(conf, "kmeans-fit")
    scheduling.stage_task(conf, "churn-train")
