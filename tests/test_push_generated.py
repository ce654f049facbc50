"""The push files of a generated bank that went through the whole nightly pipeline (shared pipeline_run
fixture): zero policy violations, checked against the silver tables by the independent checker."""
from __future__ import annotations

import json
from pathlib import Path

from test_push_fixtures import outbox_violations, shipped_campaigns


def test_generated_bank_when_pipeline_ran_files_have_no_policy_violation(pipeline_run):
    settings, lake, _truth, as_of = pipeline_run
    day = Path(settings.outbox.root) / as_of.isoformat()
    manifest = json.loads((day / "manifest.json").read_text(encoding="utf-8"))
    sent = {c["campaign_id"]: c for c in manifest["campaigns"] if c["status"] == "sent"}
    assert set(sent) == {"retention_call", "wealth_upsell", "structured_deposit", "cross_sell"}, \
        manifest["campaigns"]
    assert manifest["totals"]["rows"] > 0
    assert (day / "_SUCCESS").exists()
    problems = outbox_violations(day, lake, as_of, shipped_campaigns(), settings.job("push").control_seed)
    assert problems == [], problems[:20]
