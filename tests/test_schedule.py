"""`clio schedule` serves the flow on a cron schedule and the schedule really fires."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def test_a_scheduled_run_fires_and_releases(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(  # the shipped sample has no user ids (as in configs/sample.yaml)
        "ingest: {missing_user_id: per_conversation}\n"
        "privacy: {min_users: 1, min_conversations: 1}\n"
    )
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["CLIO_HMAC_KEY"] = "test-key-not-secret"
    process = subprocess.Popen(
        [sys.executable, "-m", "clio.cli", "schedule", "--cron", "* * * * *", "--limit", "3",
         "--config", str(config), "--output-dir", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    manifest = out / "manifest.json"
    try:
        deadline = time.monotonic() + 420
        while not manifest.exists() and time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read()[-3000:]
            time.sleep(2)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    assert manifest.exists(), "no scheduled run finished within 7 minutes"
    report = json.loads((out / "private" / "manifest.json").read_text())
    assert report["counts"]["n_conversations"] == 3
    assert (out / "insights.duckdb").exists()
    assert (out / "prefect").is_dir()  # the server's database lives under the output dir
