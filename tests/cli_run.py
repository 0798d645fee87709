"""Run `clio` commands as real subprocesses, the way a scheduled job or an analyst does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

TEST_HMAC_KEY = "test-key-not-secret"  # the pseudonym key every test run uses


def clio_subprocess(
    *args: str, cwd: Path, hmac_key: str = TEST_HMAC_KEY
) -> subprocess.CompletedProcess[str]:
    """Any `clio` command in a subprocess with a clean Prefect environment; the caller
    checks the exit code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["CLIO_HMAC_KEY"] = hmac_key
    return subprocess.run(
        [sys.executable, "-m", "clio.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )


def run_clio(
    config: Path,
    inputs: Path,
    out: Path,
    *,
    cwd: Path,
    hmac_key: str = TEST_HMAC_KEY,
    extra_args: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """`clio run` in a subprocess; fails the test with stderr on error."""
    args = ["run", "--config", str(config), "--input", str(inputs), "--output-dir", str(out)]
    done = clio_subprocess(*args, *extra_args, cwd=cwd, hmac_key=hmac_key)
    assert done.returncode == 0, done.stderr[-4000:]
    return done
