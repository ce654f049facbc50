"""The run report renders offline in a real browser: every image loads, no console error."""
from __future__ import annotations

import shutil

import pytest

from jobs.common.context import RunContext
from jobs.report.job import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_when_pipeline_ran_has_every_section_and_no_remote_resource(pipeline_run, spark):
    settings, lake, _, business_date = pipeline_run
    page = build_report(RunContext(settings, business_date, spark_session=spark)).read_text(encoding="utf-8")
    for title in ("Run summary", "Customer segments", "Top association rules", "Churn", "Push volumes",
                  "Loan warnings", "Campaign performance"):
        assert f">{title}</h2>" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert page.count("<img src='data:image/png;base64,") >= 6
    assert "alt='churn lift chart'" in page    # the champion's validation lift by score decile


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is installed by .ci/run")
def test_report_when_opened_in_chromium_loads_every_image_without_console_errors(pipeline_run, spark, tmp_path):
    from playwright.sync_api import sync_playwright

    settings, _, _, business_date = pipeline_run
    report = build_report(RunContext(settings, business_date, spark_session=spark))
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(report.resolve().as_uri())
        loaded = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert loaded and all(loaded), loaded
    assert errors == []
