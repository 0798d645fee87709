"""A killed `clio run` loses at most its in-flight work, leaves no process behind, and
the same command again resumes from what was done and releases what an uninterrupted
run releases.

`clio run` runs as a real subprocess. In the scrub and embed stages (real Presidio, the
real embedder) the test reads the run's progress lines, one per batch done, and kills
the run after the first; the re-run must start from what the killed run kept. In the
facet stage, its LLM is the openai-compatible backend on a loopback server. The server
holds the run's `KILL_AT`-th facet prompt unanswered and the test kills the run then
(SIGTERM, or SIGKILL which no handler sees), so the first `KILL_AT - 1` answers are
known to have been received; then it answers the held one (a run winding down on SIGTERM
waits for its in-flight call, bounded by `llm.timeout`). The re-run must not ask any of
them again, and the temporary Prefect server of the killed run must be gone."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.cli_run import TEST_HMAC_KEY, run_clio
from tests.fakes.chats import QUESTIONS, two_per_user
from tests.fakes.loopback import LoopbackServer, Reply, Seen

pytestmark = pytest.mark.slow

KILL_AT = 8
CONFIG = """
llm: {{backend: openai-compatible, base_url: "{url}/v1", model: loopback-model, concurrency: 1}}
privacy: {{min_users: 2, min_conversations: 2, audit_released_text: false}}
cluster: {{target_cluster_size: 10}}
hierarchy: {{branching: 2, top_clusters: 2}}
facets:
  - {{name: request, kind: text, question: "What did the user ask for?", cluster: true}}
"""


class HoldingLLM:
    """Answers facet prompts with the conversation's question; holds the `hold_at`-th
    one (1-based) until the test is done with it."""

    def __init__(self, hold_at: int | None = None):
        self.hold_at = hold_at
        self.facet_prompts: list[str] = []
        self.holding = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, seen: Seen) -> Reply:
        properties = seen.body["response_format"]["json_schema"]["schema"]["properties"]
        prompt = seen.body["messages"][-1]["content"]
        if "request" in properties:
            with self._lock:
                self.facet_prompts.append(prompt)
                held = len(self.facet_prompts) == self.hold_at
            if held:
                self.holding.set()
                self.release.wait(timeout=120)
            question = next(q for q in QUESTIONS if q in prompt)
            content: dict[str, Any] = {"request": question}
        else:  # names and descriptions
            content = {name: "Cooking and coding questions" for name in properties}
        message = {"content": json.dumps(content)}
        usage = {"prompt_tokens": 10, "completion_tokens": 5}
        return Reply(200, {"choices": [{"message": message}], "usage": usage})


def _setup(root: Path, url: str) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    config, data = root / "config.yaml", root / "chats.jsonl"
    config.write_text(CONFIG.format(url=url))
    data.write_text("".join(json.dumps(row) + "\n" for row in two_per_user(24)))
    return config, data


def _released(out: Path) -> dict[str, Any]:
    """The release without its ids (run and cluster ids derive from the config, which
    names each test's loopback address)."""
    with duckdb.connect(str(out / "insights.duckdb"), read_only=True) as con:
        return {
            "runs": con.execute("SELECT n_conversations FROM runs").fetchall(),
            "clusters": con.execute(
                "SELECT level, name, n_users, n_conversations FROM clusters ORDER BY ALL"
            ).fetchall(),
        }


def _processes_of(prefect_home: Path) -> list[int]:
    """Live processes whose environment names this run's PREFECT_HOME."""
    needle = f"PREFECT_HOME={prefect_home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("uninterrupted")
    with LoopbackServer(HoldingLLM()) as server:
        config, data = _setup(root, server.url)
        run_clio(config, data, root / "out", cwd=root)
    return _released(root / "out")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_run_resumes_without_asking_again(tmp_path, sig, uninterrupted):
    out = tmp_path / "out"
    llm = HoldingLLM(hold_at=KILL_AT)
    with LoopbackServer(llm) as server:
        config, data = _setup(tmp_path, server.url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env["CLIO_HMAC_KEY"] = TEST_HMAC_KEY
        args = ["run", "--config", str(config), "--input", str(data), "--output-dir", str(out)]
        process = subprocess.Popen(
            [sys.executable, "-m", "clio.cli", *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert llm.holding.wait(timeout=600), "the run never reached its facet stage"
            process.send_signal(sig)
            # SIGTERM winds the run down: its in-flight call is answered and kept.
            time.sleep(1.0)
            llm.release.set()
            process.wait(timeout=120)
        finally:
            llm.release.set()
            if process.poll() is None:
                process.kill()
        answered = list(llm.facet_prompts[: KILL_AT - 1])
        asked_before = len(llm.facet_prompts)

        prefect_home = (out / "prefect").resolve()
        deadline = time.monotonic() + 30  # the server ends on its parent-death signal
        while _processes_of(prefect_home) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _processes_of(prefect_home) == [], "the killed run left a process running"

        run_clio(config, data, out, cwd=tmp_path)
        asked_again = llm.facet_prompts[asked_before:]
    assert len(answered) == KILL_AT - 1
    assert not set(answered) & set(asked_again), "answers were asked again"
    # The rest: the held prompt among them unless SIGTERM let its answer be kept.
    assert 24 - len(answered) - 1 <= len(asked_again) <= 24 - len(answered)
    assert _released(out) == uninterrupted


# No LLM: the clustered facet is the user's own text, so the run scrubs and embeds only.
NO_LLM_CONFIG = """
privacy: {min_users: 2, min_conversations: 2, audit_released_text: false}
cluster: {target_cluster_size: 40}
hierarchy: {branching: 2, top_clusters: 2}
embed: {chunk_size: 25}
facets:
  - {name: request, kind: text, extractor: user_text, cluster: true}
"""
N_CONVERSATIONS = 400
SCRUB_LINE = re.compile(rf"scrub {N_CONVERSATIONS}: (\d+)/{N_CONVERSATIONS} conv")
EMBED_LINE = re.compile(rf"embed: (\d+)/{N_CONVERSATIONS} text")
SCRUB_START = re.compile(r"input: \d+ conversations, (\d+) already processed, (\d+) scrubbed")
EMBED_START = re.compile(r"embed: (\d+) texts, \d+ distinct, (\d+) cached, (\d+) to encode")


def _no_llm_setup(root: Path) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    config, data = root / "config.yaml", root / "chats.jsonl"
    config.write_text(NO_LLM_CONFIG)
    rows = two_per_user(N_CONVERSATIONS)
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return config, data


def _kill_at_first(
    line: re.Pattern[str], sig: int, config: Path, data: Path, out: Path
) -> tuple[int, str]:
    """Run `clio run`, send `sig` once its stderr shows a `line` with a count of work done
    below the whole; wait for it to end and for its processes to be gone. The count seen
    and the stderr read until then."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["CLIO_HMAC_KEY"] = TEST_HMAC_KEY
    env["CLIO_PROGRESS_SECONDS"] = "0"
    args = ["run", "--config", str(config), "--input", str(data), "--output-dir", str(out)]
    process = subprocess.Popen(
        [sys.executable, "-m", "clio.cli", *args],
        cwd=out.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen, lines = 0, []
    try:
        assert process.stderr is not None
        for text in process.stderr:
            lines.append(text)
            found = line.search(text)
            if found and 0 < int(found.group(1)) < N_CONVERSATIONS:
                seen = int(found.group(1))
                process.send_signal(sig)
                break
        process.stderr.close()
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert seen, "the run ended before the stage showed any progress"
    prefect_home = (out / "prefect").resolve()
    deadline = time.monotonic() + 30
    while _processes_of(prefect_home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_of(prefect_home) == [], "the killed run left a process running"
    return seen, "".join(lines)


@pytest.fixture(scope="module")
def uninterrupted_without_llm(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("uninterrupted-no-llm")
    config, data = _no_llm_setup(root)
    run_clio(config, data, root / "out", cwd=root)
    return _released(root / "out")


@pytest.mark.parametrize(
    ("scrub_signal", "embed_signal"),
    [(signal.SIGTERM, signal.SIGKILL), (signal.SIGKILL, signal.SIGTERM)],
    ids=["scrub-SIGTERM-embed-SIGKILL", "scrub-SIGKILL-embed-SIGTERM"],
)
def test_a_run_killed_in_scrub_then_in_embed_resumes_each_time(
    tmp_path, scrub_signal, embed_signal, uninterrupted_without_llm
):
    config, data = _no_llm_setup(tmp_path)
    out = tmp_path / "out"

    scrubbed_before, _ = _kill_at_first(SCRUB_LINE, scrub_signal, config, data, out)
    embedded_before, second = _kill_at_first(EMBED_LINE, embed_signal, config, data, out)
    finished = run_clio(config, data, out, cwd=tmp_path)
    assert _released(out) == uninterrupted_without_llm

    # The second run scrubbed only what the first had not kept.
    kept, scrubbed = map(int, _found(SCRUB_START, second))
    assert scrubbed_before <= kept < N_CONVERSATIONS
    assert kept + scrubbed == N_CONVERSATIONS
    # The third found the scrub done and the second's embedded chunks cached.
    assert tuple(map(int, _found(SCRUB_START, finished.stderr))) == (N_CONVERSATIONS, 0)
    texts, cached, to_encode = map(int, _found(EMBED_START, finished.stderr))
    assert texts == N_CONVERSATIONS
    assert embedded_before <= cached < N_CONVERSATIONS
    assert cached + to_encode == N_CONVERSATIONS


def _found(line: re.Pattern[str], stderr: str) -> tuple[str, ...]:
    found = line.search(stderr)
    assert found is not None, f"no line like {line.pattern!r} in the run's log"
    return found.groups()
