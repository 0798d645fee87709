"""The openai-compatible path: facet-step throughput at concurrency 1, 4 and 8 against
llama.cpp's own OpenAI-compatible server (`python -m llama_cpp.server`) running the
packaged Gemma 3 270M on 127.0.0.1.

The server is started here (a subprocess on a free port) and stopped at the end. Prompts
are completion-style by default (the packaged model is a base model); `--prompt-style chat`
measures the chat path (`/chat/completions` with the schema as `response_format`). Each
level runs over the same conversations without a cache, after one warm-up call that
evaluates the shared prefix.
Note that llama-cpp-python's server answers one request at a time (one model behind a
lock): concurrency overlaps the HTTP and client work only, while servers that batch
(vLLM, llama.cpp's C++ `llama-server`) gain more.

Usage: `python bench/llm_openai_concurrency.py [--limit 16] [--levels 1 4 8]
[--server-threads N] [--prompt-style completion|chat] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_facets import sample_conversations  # noqa: E402  (bench/ is on sys.path)

from clio.config import LLMConfig, builtin_facets  # noqa: E402
from clio.facets import extract_facets  # noqa: E402
from clio.llm.client import StructuredLLM  # noqa: E402
from clio.llm.factory import build_backend  # noqa: E402
from clio.llm.local import default_model_path  # noqa: E402

ALIAS = "gemma3-270m"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(threads: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path())]
    command += ["--model_alias", ALIAS, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--n_ctx", "4096", "--n_threads", str(threads), "--n_threads_batch", str(threads)]
    log = log_path.open("wb")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited; see {log_path}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(process)
    raise RuntimeError("llama_cpp.server did not start within 180 s")


def stop_server(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=16, help="conversations per level")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--server-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--prompt-style", choices=["completion", "chat"], default="completion")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    facets = [f for f in builtin_facets("llm") if f.extractor == "llm"]
    conversations = sample_conversations(1 + args.limit)
    load = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="clio-bench-") as tmp:
        process, url = start_server(args.server_threads, Path(tmp) / "server.log")
        try:
            for index, level in enumerate(args.levels):
                config = LLMConfig(
                    backend="openai-compatible",
                    base_url=url,
                    model=ALIAS,
                    prompt_style=args.prompt_style,
                    concurrency=level,
                )
                llm = StructuredLLM(build_backend(config), config, cache=None)
                if index == 0:  # the shared prefix, evaluated once by the server
                    extract_facets(conversations[:1], facets, llm, max_input_chars=2400)
                part = conversations[1:]
                before = llm.usage.as_dict()
                start = time.perf_counter()
                values = extract_facets(part, facets, llm, max_input_chars=2400)
                wall = time.perf_counter() - start
                usage = {k: v - before[k] for k, v in llm.usage.as_dict().items()}
                failed = sum(1 for v in values if v.facet == "request" and v.status != "ok")
                results.append(
                    {
                        "concurrency": level,
                        "conversations": len(part),
                        "wall_seconds": round(wall, 2),
                        "conversations_per_second": round(len(part) / wall, 3),
                        "calls": usage["calls"],
                        "prompt_tokens_per_call": round(usage["input_tokens"] / usage["calls"]),
                        "completion_tokens_per_call": round(
                            usage["output_tokens"] / usage["calls"], 1
                        ),
                        "failed_conversations": failed,
                    }
                )
        finally:
            stop_server(process)
    report = {
        "server": "llama_cpp.server (llama-cpp-python)",
        "server_threads": args.server_threads,
        "prompt_style": args.prompt_style,
        "cpus": os.cpu_count(),
        "load_average_at_start": round(load, 2),
        "results": results,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"openai-compatible facet step against llama_cpp.server ({args.server_threads} "
            f"threads, {args.prompt_style} prompts), {os.cpu_count()} CPUs, "
            f"load average {load:.2f} at start"
        )
        print(
            f"{'concurrency':>11} {'conv':>5} {'wall s':>7} {'conv/s':>7} {'calls':>6} "
            f"{'prompt tok':>10} {'compl tok':>9} {'failed':>6}"
        )
        for r in results:
            print(
                f"{r['concurrency']:>11} {r['conversations']:>5} {r['wall_seconds']:>7} "
                f"{r['conversations_per_second']:>7} {r['calls']:>6} "
                f"{r['prompt_tokens_per_call']:>10} {r['completion_tokens_per_call']:>9} "
                f"{r['failed_conversations']:>6}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
