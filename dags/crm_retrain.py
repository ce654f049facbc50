"""Airflow DAG crm_retrain: weekly K-means fit (with the choice of k) and churn training with champion promotion."""
from jobs import scheduling

conf = scheduling.settings()

with scheduling.crm_dag(conf, "crm_retrain", "Weekly model refresh: customer segments and the churn model",
                        conf.scheduling.retrain_cron, ["crm", "models"]) as dag:
    scheduling.stage_task(conf, "kmeans-fit")
    scheduling.stage_task(conf, "churn-train")
