"""A local Prefect server, tied to the life of the process that starts it.

`clio schedule` needs a real server (Prefect's ephemeral one cannot fire schedules), and
`clio run` starts one without its services for the same reason it must not use the
ephemeral one: that is a child process nobody stops when the run is killed, so a
SIGTERM or SIGKILL left it running. This server is started with the kernel's
parent-death signal (Linux), so it ends with its parent however the parent ends.
Both listen on loopback only, their database under the output directory, unless
PREFECT_API_URL already points at a server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clio.process import end_with_parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_prefect_server(
    log_path: Path, timeout_seconds: float = 180.0, *, services: bool = True
) -> Iterator[str]:
    """Start `prefect server start` on 127.0.0.1 and yield its API URL; stop it on exit,
    or when this process dies. `services=False` runs the API alone (no scheduler), all a
    single flow run needs."""
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port), *([] if services else ["--no-services", "--no-ui"])],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            preexec_fn=end_with_parent,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout_seconds
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the Prefect server exited early; see {log_path}")
            try:
                with urllib.request.urlopen(api_url + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not start; see {log_path}")
            time.sleep(1)
        yield api_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
