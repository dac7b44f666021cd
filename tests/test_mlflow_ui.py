"""What the MLflow UI shows of a stage run, read the way the UI reads it: a real `mlflow server` (started as
the README says, on a copy of a migrated store), its REST API, and its web UI in headless Chromium."""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request

import pytest
from mlflow_server import mlflow_server
from test_mlflow_inputs_and_tables import SPLITS, project  # noqa: F401  (the fixture)
from test_report_browser import chromium

from flipgate import tracking

pytestmark = pytest.mark.slow  # a server and a browser: about a minute


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def _body_text(url: str, wait_for: str, timeout_ms: int = 120_000) -> str:
    """The page's text once `wait_for` shows up in it (the UI is a single-page app: it renders late)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements.lock has it)")

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"] if os.geteuid() == 0 else [])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, wait_until="load", timeout=timeout_ms)
            page.get_by_text(wait_for, exact=False).first.wait_for(timeout=timeout_ms)
            return page.inner_text("body")
        finally:
            browser.close()


def test_the_ui_lists_the_datasets_and_serves_the_flip_table(store, project, tmp_path):  # noqa: F811
    with mlflow_server(store, tmp_path) as url:
        with tracking.stage_run("report", {}, uri=url, root=project, key="ui") as run:
            run.log_table_file(project / "reports" / "flips.parquet")
            run.log_table_file(project / "reports" / "gate.json")

        got = _get(f"{url}/api/2.0/mlflow/runs/get?run_id={run.run_id}")["run"]
        contexts = {t["value"]: d["dataset"] for d in got["inputs"]["dataset_inputs"] for t in d["tags"]
                    if t["key"] == "mlflow.data.context"}
        assert set(contexts) == set(SPLITS)
        digests = {name: d["digest"] for name, d in contexts.items()}
        query = urllib.parse.urlencode({"run_uuid": run.run_id, "path": "tables/flips.json"})
        with urllib.request.urlopen(f"{url}/get-artifact?{query}", timeout=30) as r:  # what the UI fetches
            table = json.load(r)
        flip = table["columns"].index("flip")
        assert [row[flip] for row in table["data"]] == ["negative", "positive"]

        # the run page's Datasets box: the first split by name and digest, "+3" for the others
        text = _body_text(f"{url}/#/experiments/{run.experiment_id}/runs/{run.run_id}",
                          wait_for=f"old ({digests['old']})")
        assert "Datasets\nold (" in text and "+3" in text
        artifacts = _body_text(f"{url}/#/experiments/{run.experiment_id}/runs/{run.run_id}/artifacts/tables/flips.json",
                               wait_for="negative")
        assert "positive" in artifacts and "flips.json" in artifacts
