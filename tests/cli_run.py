"""Run `clio run` as a real subprocess, the way a scheduled job or an analyst does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def run_clio(
    config: Path,
    inputs: Path,
    out: Path,
    *,
    cwd: Path,
    hmac_key: str = "test-key-not-secret",
    extra_args: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """`clio run` with a clean Prefect environment; fails the test with stderr on error."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["CLIO_HMAC_KEY"] = hmac_key
    args = ["run", "--config", str(config), "--input", str(inputs), "--output-dir", str(out)]
    args += list(extra_args)
    done = subprocess.run(
        [sys.executable, "-m", "clio.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done
