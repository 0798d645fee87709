"""Per-stage time and peak memory of clio's non-LLM stages on N generated conversations.

The stages are the plain functions in `clio/`, called in the flow's order, in one
process (scrub may use worker processes, counted in the memory figures):

    ingest -> scrub -> facets (stand-in) -> store -> embed -> cluster -> hierarchy
           -> gate -> release

- `facets` is a non-LLM stand-in: `request` is the first user turn (whitespace collapsed,
  cut to the facet's 160 characters), `concerning` the built-in lexicon's level alone, and
  `language` the real lingua extractor. `task` and `values` are left out.
- `store` is the private store's writes the flow makes (conversations, facets, cluster
  members, assignments); the embedding cache is written inside `embed`, as in the flow.
- `cluster` is the base clustering inside `build_facet_tree`; `hierarchy` is the rest of
  it (keywords, keyword names with no LLM, parent levels, map positions).
- `gate` includes the scrubber re-scan of every released text (no LLM audit), `release`
  writes `insights.duckdb`.
- `llm` (not in `non_llm_seconds`): the facet call of the packaged local model timed on a
  few conversations, and one cluster-naming call on a few clusters, extrapolated to N
  conversations and to this run's clusters; labelled as extrapolated in the output.

Embedding efficiency: the raw throughput of the same model (`model.encode` on a fixed
batch of this run's request texts, before and after the stage) against the `embed`
stage's texts per second; the target is at least 90%.

Peak memory: a thread samples the RSS of this process and its children every 0.1 s;
each stage's figure is the highest sample during it, `peak_rss_mb` the run's highest
(also checked against `ru_maxrss`).

Usage: `python bench/scale.py --n 10000 [--json] [--stages ingest,scrub,...]
[--seed 0] [--scrub-workers 2] [--llm-sample 4] [--work-dir DIR]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import scale_data  # noqa: E402

from clio.config import RunConfig, ScrubConfig  # noqa: E402
from clio.evaluation.data_dir import add_data_dir_argument  # noqa: E402
from clio.records import Cluster, FacetValue, ScrubbedConversation  # noqa: E402

STAGES = ("ingest", "scrub", "facets", "store", "embed", "cluster", "hierarchy", "gate", "release")
ALL_STAGES = (*STAGES, "llm")
FACET = "request"
HMAC_KEY = "scale-bench-key"
RAW_BATCH = 1024  # texts in the raw-throughput batch (fewer if the run has fewer)
SAMPLE_SECONDS = 0.1

_log = logging.getLogger("clio.bench.scale")


# -- measuring ------------------------------------------------------------------


class RssSampler:
    """Samples the RSS of this process and its children: the run's peak and each stage's."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._peak = 0
        self._stage_peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        total = self._process.memory_info().rss
        for child in self._process.children(recursive=True):
            with suppress(psutil.Error):  # a child that just ended
                total += child.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()

    def sample(self) -> None:
        rss = self._rss()
        with self._lock:
            self._peak = max(self._peak, rss)
            self._stage_peak = max(self._stage_peak, rss)

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def reset_stage(self) -> None:
        with self._lock:
            self._stage_peak = 0
        self.sample()

    def stage_peak(self) -> int:
        self.sample()
        with self._lock:
            return self._stage_peak

    @property
    def peak(self) -> int:
        with self._lock:
            return self._peak


@dataclass
class Measurements:
    sampler: RssSampler
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.sampler.reset_stage()
        start, cpu = time.perf_counter(), _cpu_seconds()
        _log.info(f"stage {name}: start")
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start, _cpu_seconds() - cpu)
            _log.info(f"stage {name}: {self.seconds[name]:.1f} s")

    def add(self, name: str, seconds: float, cpu: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + cpu
        self.peak_rss[name] = max(self.peak_rss.get(name, 0), self.sampler.stage_peak())


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _mb(n_bytes: int) -> float:
    return round(n_bytes / 2**20, 1)


class _Timed:
    """Wraps a function so that its calls are timed into `seconds` (for the stages inside
    `build_facet_tree`, which is called as a whole)."""

    def __init__(self, function: Callable[..., Any], on_done: Callable[[float, float], None]):
        self._function = function
        self._on_done = on_done

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start, cpu = time.perf_counter(), _cpu_seconds()
        try:
            return self._function(*args, **kwargs)
        finally:
            self._on_done(time.perf_counter() - start, _cpu_seconds() - cpu)


@contextmanager
def _patched(module: Any, name: str, wrapper: Callable[[Any], Any]) -> Iterator[bool]:
    """Temporarily replace `module.name` by `wrapper(original)`; yields whether it existed."""
    original = getattr(module, name, None)
    if original is None:
        yield False
        return
    setattr(module, name, wrapper(original))
    try:
        yield True
    finally:
        setattr(module, name, original)


# -- the stages ----------------------------------------------------------------------


DEFAULT_INPUT_DIR = ROOT / "outputs" / "bench" / "data"


def input_file(n: int, seed: int, data_dir: Path | None, input_dir: Path) -> tuple[Path, float]:
    """The generated input for (n, seed), written once and reused; seconds spent writing."""
    path = input_dir / f"scale-{n}-s{seed}.jsonl"
    if path.is_file():
        return path, 0.0
    start = time.perf_counter()
    scale_data.write_jsonl(path, n, seed, data_dir)
    return path, time.perf_counter() - start


def scrub_mode(workers: int) -> str:
    """How scrubbing runs: with the scrub stage's own worker processes when `clio.scrub`
    offers them (a `workers` argument, or `ScrubConfig.workers` that the module reads),
    else, for workers > 1, split between processes by this benchmark, else one process."""
    import inspect

    import clio.scrub

    if workers > 1 and "workers" in inspect.signature(clio.scrub.scrub_conversations).parameters:
        return "argument"
    if "workers" in ScrubConfig.model_fields and "workers" in inspect.getsource(clio.scrub):
        return "config"
    return "split" if workers > 1 else "single"


MODE_LABELS = {
    "argument": "scrub_conversations(workers={w})",
    "config": "ScrubConfig(workers={w})",
    "split": "{w} processes split by the benchmark (clio.scrub has no workers setting)",
    "single": "1 process",
}


def _scrub_part(part: list[Any]) -> tuple[list[ScrubbedConversation], list[Any]]:
    from clio.scrub import build_scrubber, scrub_conversations

    return scrub_conversations(part, build_scrubber(ScrubConfig()), HMAC_KEY)


def scrub(conversations: list[Any], mode: str, workers: int) -> tuple:
    from clio.scrub import build_scrubber, scrub_conversations

    if mode == "split":
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        size = -(-len(conversations) // workers)
        parts = [conversations[i : i + size] for i in range(0, len(conversations), size)]
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_scrub_part, parts))
        return (
            [c for done, _ in results for c in done],
            [q for _, failed in results for q in failed],
        )
    if mode == "argument":
        scrubber = build_scrubber(ScrubConfig())
        return scrub_conversations(conversations, scrubber, HMAC_KEY, workers=workers)  # type: ignore[call-arg]
    config = ScrubConfig(workers=workers) if mode == "config" else ScrubConfig(n_process=1)
    return scrub_conversations(conversations, build_scrubber(config), HMAC_KEY)


def pass_through(conversations: list[Any]) -> list[ScrubbedConversation]:
    """What later stages need from scrub, without Presidio (for runs that leave it out)."""
    from clio.pseudonym import pseudonymize

    return [
        ScrubbedConversation(
            conversation_id=c.conversation_id,
            user_pseudonym=pseudonymize(c.user_id, HMAC_KEY),
            timestamp=c.timestamp,
            messages=c.messages,
            source=c.source,
            content_hash=c.content_hash(),
            truncated=c.truncated,
        )
        for c in conversations
    ]


def request_stand_in(conversation: ScrubbedConversation, max_chars: int) -> str | None:
    first = next((m.content for m in conversation.messages if m.role == "user"), "")
    text = " ".join(first.split())[:max_chars].strip()
    return text or None


def stand_in_facets(
    conversations: Sequence[ScrubbedConversation], config: RunConfig
) -> list[FacetValue]:
    """Facet values without an LLM (see the module docstring)."""
    from clio.concern import concern_level
    from clio.facets import extract_facets, user_text

    non_llm = [f.model_copy(update={"llm_check": False}) for f in config.facets]
    non_llm = [f for f in non_llm if f.extractor != "llm"]
    values = extract_facets(
        conversations, non_llm, None, max_input_chars=config.llm.max_input_chars
    )
    request_chars = config.facet(FACET).max_chars
    for c in conversations:
        text = request_stand_in(c, request_chars)
        if text is None:
            values.append(FacetValue(c.conversation_id, FACET, None, "failed", "no user text"))
        else:
            values.append(FacetValue(c.conversation_id, FACET, text))
        values.append(FacetValue(c.conversation_id, "concerning", concern_level(user_text(c))))
    return values


def raw_throughput(texts: Sequence[str], batch_size: int) -> float:
    """Sentences per second of `model.encode` alone on `texts` (the packaged model)."""
    from clio.embed import SentenceTransformerEmbedder, _load

    embedder = SentenceTransformerEmbedder(batch_size=batch_size)
    model = _load(embedder._path)
    model.encode(list(texts[:64]), batch_size=batch_size, show_progress_bar=False)  # warm-up
    start = time.perf_counter()
    model.encode(
        list(texts),
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return len(texts) / (time.perf_counter() - start)


@dataclass
class LLMEstimate:
    facet_seconds_per_conversation: float | None = None
    naming_seconds_per_cluster: float | None = None
    facet_sample: int = 0
    naming_sample: int = 0
    failures: int = 0
    note: str = ""

    def extrapolate(self, n: int, n_clusters: int) -> float:
        total = 0.0
        if self.facet_seconds_per_conversation is not None:
            total += self.facet_seconds_per_conversation * n
        if self.naming_seconds_per_cluster is not None:
            total += self.naming_seconds_per_cluster * n_clusters
        return total


def measure_llm(
    conversations: Sequence[ScrubbedConversation],
    texts: Sequence[str],
    labels: np.ndarray | None,
    config: RunConfig,
    sample: int,
) -> LLMEstimate:
    """Seconds per conversation of the facet call and per cluster of the naming call with
    the packaged local model, on `sample` of each (after one warm-up call, which
    evaluates the shared prompt prefix a long run pays once per context)."""
    from clio.facets import extract_facets
    from clio.llm.client import LLMFailure, MemoryCache, StructuredLLM
    from clio.llm.factory import build_backend

    estimate = LLMEstimate(facet_sample=sample)
    if sample <= 0 or not conversations:
        estimate.note = "not measured"
        return estimate
    llm = StructuredLLM(build_backend(config.llm), config.llm, cache=MemoryCache())
    facets = config.facets
    picked = list(conversations[: sample + 1])
    extract_facets(picked[:1], facets, llm, max_input_chars=config.llm.max_input_chars)
    start = time.perf_counter()
    values = extract_facets(picked[1:], facets, llm, max_input_chars=config.llm.max_input_chars)
    if len(picked) > 1:
        estimate.facet_seconds_per_conversation = (time.perf_counter() - start) / (len(picked) - 1)
        estimate.facet_sample = len(picked) - 1
    estimate.failures = sum(1 for v in values if v.status == "failed")

    if labels is None or len(labels) == 0:
        return estimate
    try:
        from clio.describe import ClusterSummary, cluster_prompt
    except ImportError:
        estimate.note = "naming not measured: clio.describe has no cluster_prompt"
        return estimate
    members: dict[int, list[int]] = {}
    for index, label in enumerate(labels.tolist()):
        members.setdefault(int(label), []).append(index)
    clusters = sorted(members)[: sample + 1]
    prompts = [cluster_prompt([texts[i] for i in members[c][:8]], [], []) for c in clusters]
    llm.ask(prompts[0], ClusterSummary)
    start = time.perf_counter()
    answers = [llm.ask(p, ClusterSummary) for p in prompts[1:]]
    if answers:
        estimate.naming_seconds_per_cluster = (time.perf_counter() - start) / len(answers)
        estimate.naming_sample = len(answers)
        estimate.failures += sum(isinstance(a, LLMFailure) for a in answers)
    return estimate


# -- the run --------------------------------------------------------------------------


def run(
    n: int,
    *,
    stages: Sequence[str] = ALL_STAGES,
    seed: int = 0,
    scrub_workers: int = 2,
    llm_sample: int = 4,
    work_dir: Path | None = None,
    data_dir: Path | None = None,
    input_dir: Path = DEFAULT_INPUT_DIR,
) -> dict[str, Any]:
    from clio.embed import build_embedder, embed_texts
    from clio.gate.public import keyed_ids, release_id_key
    from clio.hierarchy import base_cluster_of_items
    from clio.ingest import ingest
    from clio.pipeline.publish import (
        ReleaseSettings,
        facet_values_by_conversation,
        gate_clusters,
    )
    from clio.release import write_release
    from clio.released import RunRow
    from clio.store import PrivateStore

    wanted = set(stages)
    unknown = wanted - set(ALL_STAGES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; known: {', '.join(ALL_STAGES)}")
    config = RunConfig()
    load_at_start = os.getloadavg()
    sampler = RssSampler()
    sampler.start()
    m = Measurements(sampler)
    path, generate_seconds = input_file(n, seed, data_dir, input_dir)
    own_dir = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="clio-scale-")) if own_dir else Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC).replace(tzinfo=None)
    details: dict[str, Any] = {}
    try:
        with m.stage("ingest"):
            ingested = ingest([path], config.ingest)
        raw = ingested.conversations
        details["conversations"] = len(raw)
        details["quarantined_at_ingest"] = len(ingested.quarantine)

        if "scrub" in wanted:
            mode = scrub_mode(scrub_workers)
            with m.stage("scrub"):
                scrubbed, scrub_quarantine = scrub(raw, mode, scrub_workers)
            details["scrub_mode"] = MODE_LABELS[mode].format(w=scrub_workers)
            details["quarantined_at_scrub"] = len(scrub_quarantine)
        else:
            scrubbed = pass_through(raw)
            details["scrub_mode"] = "left out (texts passed through as they are)"
        del raw, ingested

        needs_tree = bool(wanted & {"embed", "cluster", "hierarchy", "gate", "release", "llm"})
        if not needs_tree and "facets" not in wanted and "store" not in wanted:
            return _report(n, m, details, load_at_start, generate_seconds, None, 0)
        with m.stage("facets"):
            values = stand_in_facets(scrubbed, config)
        users = {c.conversation_id: c.user_pseudonym for c in scrubbed}
        facet_values = facet_values_by_conversation(users, values)
        item_convs = [cid for cid in users if FACET in facet_values[cid]]
        texts = [str(facet_values[cid][FACET]) for cid in item_convs]
        item_users = [users[cid] for cid in item_convs]
        details["items"] = len(texts)
        details["distinct_items"] = len(set(texts))
        details["users"] = len(set(users.values()))

        store = PrivateStore(work / "private.duckdb") if "store" in wanted else None
        if store is not None:
            with m.stage("store"):
                store.put_conversations(scrubbed, "scale-run")
                store.put_facets(values)

        if not needs_tree:
            return _report(n, m, details, load_at_start, generate_seconds, None, 0)
        embedder = build_embedder(config.embed)
        rng = np.random.default_rng(seed)
        raw_batch = [texts[i] for i in rng.permutation(len(texts))[: min(RAW_BATCH, len(texts))]]
        raw_before = raw_throughput(raw_batch, config.embed.batch_size)
        with m.stage("embed"):
            vectors = embed_texts(texts, embedder, store)
        raw_after = raw_throughput(raw_batch, config.embed.batch_size)
        encoded = len(set(texts))
        pipeline_rate = encoded / m.seconds["embed"] if m.seconds["embed"] else 0.0
        raw_rate = (raw_before + raw_after) / 2
        details["embedding"] = {
            "texts_encoded": encoded,
            "raw_batch": len(raw_batch),
            "raw_sentences_per_second_before": round(raw_before, 1),
            "raw_sentences_per_second_after": round(raw_after, 1),
            "stage_sentences_per_second": round(pipeline_rate, 1),
            "share_of_raw": round(pipeline_rate / raw_rate, 3) if raw_rate else None,
        }

        tree, labels = build_tree(texts, item_convs, item_users, vectors, config, m)
        del vectors
        if store is not None:
            with m.stage("store"):
                store.put_cluster_members("scale-run", FACET, tree)
                store.put_assignments(
                    "scale-run",
                    FACET,
                    [
                        (f"{item_convs[i]}#0", item_convs[i], k)
                        for i, k in base_cluster_of_items(tree).items()
                    ],
                )
            store.close()
        details["clusters_by_level"] = _levels(tree)
        details["cluster_method"] = config.cluster.method  # the default when this run started

        result = None
        if wanted & {"gate", "release"}:
            with m.stage("gate"):
                # Released ids keyed as `clio run` keys them (positional ids show gaps).
                public_id = keyed_ids(release_id_key("scale-bench"), "scale-run")
                result = gate_clusters(
                    tree, users, facet_values, ReleaseSettings.of(config), llm=None,
                    public_id=public_id,
                )  # fmt: skip
            details["released_clusters"] = len(result.clusters)
            details["released_cells"] = len(result.breakdowns)
            details["suppressed"] = result.suppressed
        if "release" in wanted and result is not None:
            with m.stage("release"):
                row = RunRow(
                    run_id="scale-run",
                    started_at=started_at,
                    finished_at=datetime.now(UTC).replace(tzinfo=None),
                    config_hash="scale-bench",
                    min_users=config.privacy.min_users,
                    min_conversations=config.privacy.min_conversations,
                    n_input=n,
                    n_quarantined=details["quarantined_at_ingest"]
                    + details.get("quarantined_at_scrub", 0),
                    n_conversations=len(scrubbed),
                    llm_calls=0,
                    llm_cached_calls=0,
                    input_tokens=0,
                    output_tokens=0,
                )
                write_release(work / "insights.duckdb", row, result)

        estimate = None
        if "llm" in wanted:
            estimate = measure_llm(scrubbed, texts, labels, config, llm_sample)
        return _report(n, m, details, load_at_start, generate_seconds, estimate, len(tree))
    finally:
        sampler.stop()
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)


def build_tree(
    texts: list[str],
    item_convs: list[str],
    item_users: list[str],
    vectors: np.ndarray,
    config: RunConfig,
    m: Measurements,
) -> tuple[list[Cluster], np.ndarray]:
    """`build_facet_tree` without an LLM; its base clustering is timed as `cluster`, the
    rest as `hierarchy`."""
    import clio.hierarchy as hierarchy

    inner: dict[str, float] = {"seconds": 0.0, "cpu": 0.0}
    captured: dict[str, np.ndarray] = {}

    def record(seconds: float, cpu: float) -> None:
        inner["seconds"] += seconds
        inner["cpu"] += cpu
        # The cluster stage's memory peak is the peak so far of the tree build.
        m.peak_rss["cluster"] = max(m.peak_rss.get("cluster", 0), m.sampler.stage_peak())

    def timed_clusterer(original: Callable[..., Any]) -> Callable[..., Any]:
        """The factory, with the fit of the clusterer it builds timed."""

        def build(*args: Any, **kwargs: Any) -> Any:
            clusterer = original(*args, **kwargs)
            fit = clusterer.fit

            def timed_fit(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                labels, centroids = _Timed(fit, record)(vectors)
                captured["labels"] = labels
                return labels, centroids

            clusterer.fit = timed_fit
            return clusterer

        return build

    settings = hierarchy.TreeSettings.from_config(config)
    with _patched(hierarchy, "build_clusterer", timed_clusterer), m.stage("hierarchy"):
        tree = hierarchy.build_facet_tree(
            FACET, item_convs, texts, item_users, vectors, None, settings
        )
    # `hierarchy` was timed as a whole: move the base clustering's share to `cluster`.
    m.seconds["hierarchy"] -= inner["seconds"]
    m.cpu_seconds["hierarchy"] -= inner["cpu"]
    m.seconds["cluster"] = m.seconds.get("cluster", 0.0) + inner["seconds"]
    m.cpu_seconds["cluster"] = m.cpu_seconds.get("cluster", 0.0) + inner["cpu"]
    labels = captured.get("labels", np.zeros(0, dtype=np.int64))
    return tree, labels


def _levels(tree: Sequence[Cluster]) -> dict[str, int]:
    levels: dict[str, int] = {}
    for node in tree:
        levels[f"L{node.level}"] = levels.get(f"L{node.level}", 0) + 1
    return dict(sorted(levels.items()))


def _report(
    n: int,
    m: Measurements,
    details: dict[str, Any],
    load_at_start: tuple[float, float, float],
    generate_seconds: float,
    estimate: LLMEstimate | None,
    n_clusters: int,
) -> dict[str, Any]:
    stages = {s: round(m.seconds[s], 3) for s in STAGES if s in m.seconds}
    peak = max(m.sampler.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    report: dict[str, Any] = {
        "n": n,
        "stages": stages,
        "non_llm_seconds": round(sum(stages.values()), 3),
        "llm_seconds": None,
        "peak_rss_mb": _mb(peak),
        # The non-LLM stages' peak (the run's peak also covers the raw-throughput batches
        # and the local LLM measured after them).
        "non_llm_peak_rss_mb": _mb(
            max((m.peak_rss[s] for s in STAGES if s in m.peak_rss), default=0)
        ),
        "stage_peak_rss_mb": {s: _mb(m.peak_rss[s]) for s in STAGES if s in m.peak_rss},
        "stage_cpu_seconds": {s: round(m.cpu_seconds[s], 2) for s in STAGES if s in m.seconds},
        "generate_seconds": round(generate_seconds, 2),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load_at_start],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        **details,
    }
    if estimate is not None:
        report["llm_seconds"] = round(estimate.extrapolate(n, n_clusters), 1)
        report["llm"] = {
            "extrapolated": True,
            "backend": "local (packaged Gemma 3 270M)",
            "facet_seconds_per_conversation": _round(estimate.facet_seconds_per_conversation),
            "facet_sample": estimate.facet_sample,
            "naming_seconds_per_cluster": _round(estimate.naming_seconds_per_cluster),
            "naming_sample": estimate.naming_sample,
            "clusters_to_name": n_clusters,
            "failures": estimate.failures,
            "note": estimate.note
            or "llm_seconds = facet s/conv x n + naming s/cluster x clusters (no audit calls)",
        }
    return report


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def print_table(report: dict[str, Any]) -> None:
    n = report["n"]
    print(
        f"n = {n} conversations ({report.get('users', '?')} users), {report['cpus']} CPUs, "
        f"load {report['load_average_at_start'][0]} at start"
    )
    print(f"{'stage':<10} {'seconds':>9} {'conv/s':>9} {'CPU s':>9} {'peak RSS MB':>12}")
    for stage, seconds in report["stages"].items():
        rate = f"{n / seconds:.1f}" if seconds > 0 else "-"
        print(
            f"{stage:<10} {seconds:>9.2f} {rate:>9} {report['stage_cpu_seconds'][stage]:>9.1f} "
            f"{report['stage_peak_rss_mb'][stage]:>12.1f}"
        )
    print(f"{'non-LLM':<10} {report['non_llm_seconds']:>9.2f}")
    print(
        f"peak RSS {report['peak_rss_mb']} MB (non-LLM stages {report['non_llm_peak_rss_mb']} MB)"
    )
    if "embedding" in report:
        e = report["embedding"]
        print(
            f"embedding: {e['stage_sentences_per_second']} texts/s in the stage, raw model "
            f"{e['raw_sentences_per_second_before']} / {e['raw_sentences_per_second_after']} "
            f"(before / after): {100 * (e['share_of_raw'] or 0):.0f}% of raw"
        )
    if report.get("llm"):
        llm = report["llm"]
        print(
            f"LLM (extrapolated): {report['llm_seconds']} s = "
            f"{llm['facet_seconds_per_conversation']} s/conv x {n} + "
            f"{llm['naming_seconds_per_cluster']} s/cluster x {llm['clusters_to_name']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, required=True, help="conversations to generate and run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--stages",
        default=",".join(ALL_STAGES),
        help="comma-separated stages to time (default: all); a left-out scrub passes texts "
        "through, a left-out store or llm is skipped, the others run when a later one needs them",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scrub-workers", type=int, default=2)
    parser.add_argument(
        "--llm-sample", type=int, default=4, help="conversations timed with the LLM (0: none)"
    )
    parser.add_argument("--work-dir", type=Path, help="keep the stores here (default: a temp dir)")
    add_data_dir_argument(parser)
    parser.add_argument(
        "--input-dir", type=Path, default=DEFAULT_INPUT_DIR, help="where generated inputs are kept"
    )
    parser.add_argument("--verbose", action="store_true", help="stage and progress logs on stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    report = run(
        args.n,
        stages=stages,
        seed=args.seed,
        scrub_workers=args.scrub_workers,
        llm_sample=args.llm_sample,
        work_dir=args.work_dir,
        data_dir=args.data_dir,
        input_dir=args.input_dir,
    )
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
