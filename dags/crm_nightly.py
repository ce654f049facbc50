"""Airflow DAG crm_nightly: the nightly CRM run for business date D (= ds, or the `business_date` param).

ingest -> clean (data-quality gate) -> features (incl. loan warnings) -> kmeans_assign -> apriori,
churn_score (parallel with them) -> push -> campaign_measure -> report. Apriori follows kmeans_assign
because its baskets carry the day's segment labels. Backfill: `airflow dags backfill crm_nightly
--start-date A --end-date B` (runs one date at a time in order: max_active_runs=1).
"""
from jobs import scheduling

conf = scheduling.settings()

with scheduling.crm_dag(conf, "crm_nightly",
                        "Nightly CRM analytics: landing -> bronze -> silver -> gold -> push files and report",
                        conf.scheduling.nightly_cron, ["crm", "nightly"], catchup=conf.scheduling.catchup) as dag:
    ingest = scheduling.stage_task(conf, "ingest", outlets=[scheduling.table_asset(conf, "bronze.transactions")])
    clean = scheduling.stage_task(conf, "clean", outlets=[scheduling.table_asset(conf, "silver.transactions"),
                                                          scheduling.table_asset(conf, "silver.customers")])
    features = scheduling.stage_task(conf, "features", outlets=[
        scheduling.table_asset(conf, "gold.customer_features"),
        scheduling.table_asset(conf, "gold.loan_warnings")])
    kmeans_assign = scheduling.stage_task(conf, "kmeans-assign", outlets=[
        scheduling.table_asset(conf, "gold.customer_segments")])
    apriori = scheduling.stage_task(conf, "apriori", outlets=[
        scheduling.table_asset(conf, "gold.association_rules"),
        scheduling.table_asset(conf, "gold.cross_sell_candidates")])
    churn_score = scheduling.stage_task(conf, "churn-score", "--train-if-missing", outlets=[
        scheduling.table_asset(conf, "gold.churn_scores")])
    push = scheduling.stage_task(conf, "push", outlets=[scheduling.outbox_asset(conf),
                                                        scheduling.table_asset(conf, "gold.push_history")])
    campaign_measure = scheduling.stage_task(conf, "campaign-measure", outlets=[
        scheduling.table_asset(conf, "gold.campaign_performance")])
    report = scheduling.stage_task(conf, "report")

    ingest >> clean >> features >> [kmeans_assign, churn_score]
    kmeans_assign >> apriori
    [apriori, churn_score] >> push >> campaign_measure >> report
