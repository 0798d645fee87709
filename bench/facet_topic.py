"""Which `request` extractor keeps the topic: the LLM's summary or the user's own text.

Labelled conversations (seeded, `--seed`): from CLINC150 test (no out-of-scope) and
Banking77 test, `--labels` intents per dataset are drawn at random and `--per-label`
utterances of each. Each utterance becomes a two-turn conversation: the utterance as the
first user turn, an invented generic assistant reply, a generic user follow-up (drawn
from FOLLOW_UPS, none of which names a topic) and a generic assistant reply, so the
intent is in the first user turn only. The messages go through clio's real scrubber.
The first `--dev` utterances of each intent are the development part (looked at while
building this); the rest is the held-out part, reported apart.

Per dataset and part, the `request` facet comes from the real facet stage
(`clio.facets.extract_facets`) three ways: `llm` (the built-in facets' one combined call,
with the configured backend), `user_text` first turn and `user_text` all turns. The
texts are embedded with clio's embedder and clustered with clio's default clusterer and
with clio's k-means at the true intent count (mean over `--seeds` seeds). Scores are
NMI and ARI against the intents; a conversation whose facet failed is left unclustered,
as the pipeline leaves it out of every cluster (metrics.UNCLUSTERED).

The LLM is the `local` backend's packaged Gemma 3 270M with the default LLM config (the
run's default backend); the cache is in memory, so every call reaches the model.

Measured with the defaults (seed 0, 12 intents x 10 utterances per dataset, 3 of them dev;
240 conversations, about 10 minutes on a busy 2-core machine), held-out part, NMI / ARI of
k-means at k = 12 (mean of 5 seeds), failed requests of 84:
- CLINC150: llm 0.715 / 0.482 (1 failed), user_text first 0.906 / 0.780, all 0.877 / 0.731
- Banking77: llm 0.631 / 0.303 (3 failed), user_text first 0.860 / 0.685, all 0.854 / 0.629
clio's default clusterer (3 clusters at n = 84) ranks them the same way. Hence the
`local` default of the built-in request facet: user_text, first turn.

Usage: `python bench/facet_topic.py [--limit N] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clio.cluster import build_clusterer  # noqa: E402
from clio.config import (  # noqa: E402
    ClusterConfig,
    EmbedConfig,
    FacetConfig,
    LLMConfig,
    ScrubConfig,
    builtin_facets,
)
from clio.embed import Embedder, build_embedder, embed_texts  # noqa: E402
from clio.evaluation.cluster_datasets import load_banking77, load_clinc150  # noqa: E402
from clio.evaluation.data_dir import default_data_dir  # noqa: E402
from clio.evaluation.metrics import UNCLUSTERED, score_clustering  # noqa: E402
from clio.facets import extract_facets  # noqa: E402
from clio.llm.client import MemoryCache, StructuredLLM  # noqa: E402
from clio.llm.factory import build_backend  # noqa: E402
from clio.records import FacetValue, Message, ScrubbedConversation  # noqa: E402
from clio.scrub.presidio import build_scrubber  # noqa: E402

REPLIES = (
    "Sure, I can help with that.",
    "Of course. Here is what I would suggest.",
    "Happy to help. Let me walk you through it.",
)
FOLLOW_UPS = (
    "Thanks. Can you say a bit more?",
    "Okay, and what should I do next?",
    "Is there anything else I should know?",
    "Could you explain that more simply?",
)
CLOSING = "You're welcome. Let me know if you need anything else."
EXTRACTORS = ("llm", "user_text:first", "user_text:all")


def _conversation(utterance: str, rng: random.Random) -> list[tuple[str, str]]:
    return [
        ("user", utterance),
        ("assistant", rng.choice(REPLIES)),
        ("user", rng.choice(FOLLOW_UPS)),
        ("assistant", CLOSING),
    ]


def labelled_conversations(
    data_dir: Path, *, labels: int, per_label: int, dev: int, seed: int
) -> dict[tuple[str, str], tuple[list[list[tuple[str, str]]], list[str]]]:
    """{(dataset, part): (conversations as (role, text) turns, intents)}; part is `dev`
    (the first `dev` utterances of each drawn intent) or `held_out` (the rest)."""
    rng = random.Random(seed)
    out: dict[tuple[str, str], tuple[list[list[tuple[str, str]]], list[str]]] = {}
    for dataset in (load_clinc150(data_dir), load_banking77(data_dir)):
        by_label: dict[str, list[str]] = {}
        for text, label in zip(dataset.texts, dataset.labels, strict=True):
            by_label.setdefault(label, []).append(text)
        drawn = sorted(rng.sample(sorted(by_label), labels))
        for part in ("dev", "held_out"):
            out[(dataset.name, part)] = ([], [])
        for label in drawn:
            chosen = rng.sample(by_label[label], per_label)
            for i, utterance in enumerate(chosen):
                turns, gold = out[(dataset.name, "dev" if i < dev else "held_out")]
                turns.append(_conversation(utterance, rng))
                gold.append(label)
    return out


def scrubbed(
    name: str, conversations: Sequence[list[tuple[str, str]]]
) -> list[ScrubbedConversation]:
    """The conversations through clio's scrubber, as the facet stage reads them."""
    scrubber = build_scrubber(ScrubConfig())
    texts = [text for turns in conversations for _, text in turns]
    results = iter(scrubber.scrub(texts))
    out = []
    for i, turns in enumerate(conversations):
        messages = tuple(Message(role=role, content=next(results)[0]) for role, _ in turns)  # type: ignore[arg-type]
        cid = f"{name}-{i}"
        out.append(ScrubbedConversation(cid, f"user-{cid}", None, messages, "bench", cid))
    return out


def request_facet(extractor: str) -> tuple[list[FacetConfig], FacetConfig]:
    """(facets to extract, the request facet among them) for one compared extractor."""
    if extractor == "llm":
        facets = builtin_facets("llm")
        return facets, facets[0]
    turns = extractor.split(":")[1]
    request = builtin_facets("user_text")[0].model_copy(update={"user_turns": turns})
    return [request], request


@cache
def _embedder() -> Embedder:
    return build_embedder(EmbedConfig())


def cluster_scores(gold: Sequence[str], values: Sequence[FacetValue], seeds: int) -> dict[str, Any]:
    """NMI/ARI of clio's default clusterer and of k-means at the true intent count."""
    embedder = _embedder()
    ok = [i for i, v in enumerate(values) if v.status == "ok"]
    vectors = embed_texts([str(values[i].value) for i in ok], embedder)
    k = len(set(gold))

    def scored(config: ClusterConfig) -> dict[str, float | int]:
        labels = np.full(len(values), UNCLUSTERED, dtype=np.int64)
        if ok:
            labels[ok] = build_clusterer(config).fit(vectors)[0]
        return score_clustering(gold, labels)

    default = scored(ClusterConfig())
    at_k = [
        scored(ClusterConfig(min_k=k, max_k=k, merge_unseparated=False, seed=s))
        for s in range(seeds)
    ]
    return {
        "default_nmi": round(default["nmi"], 3),
        "default_ari": round(default["ari"], 3),
        "default_clusters": default["n_clusters"],
        "k": k,
        "k_nmi": round(float(np.mean([s["nmi"] for s in at_k])), 3),
        "k_ari": round(float(np.mean([s["ari"] for s in at_k])), 3),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = LLMConfig()
    llm = StructuredLLM(build_backend(config), config, MemoryCache())
    sets = labelled_conversations(
        args.data_dir, labels=args.labels, per_label=args.per_label, dev=args.dev, seed=args.seed
    )
    rows = []
    for (dataset, part), (turns, gold) in sets.items():
        if args.limit is not None:  # a quick check on the development part only
            if part != "dev":
                continue
            turns, gold = turns[: args.limit], gold[: args.limit]
        conversations = scrubbed(f"{dataset}-{part}", turns)
        for extractor in EXTRACTORS:
            facets, request = request_facet(extractor)
            start = time.perf_counter()
            values = extract_facets(
                conversations,
                facets,
                llm if extractor == "llm" else None,
                max_input_chars=config.max_input_chars,
            )
            seconds = time.perf_counter() - start
            requests = [v for v in values if v.facet == request.name]
            failed = sum(v.status == "failed" for v in requests)
            row = {
                "dataset": dataset,
                "part": part,
                "extractor": extractor,
                "n": len(requests),
                "failed": failed,
                "seconds": round(seconds, 1),
                **cluster_scores(gold, requests, args.seeds),
                "examples": [str(v.value) for v in requests[:3]],
            }
            rows.append(row)
            print(_line(row), file=sys.stderr, flush=True)
    return {
        "backend": config.backend,
        "model": config.model,
        "seed": args.seed,
        "labels_per_dataset": args.labels,
        "per_label": args.per_label,
        "dev_per_label": args.dev,
        "rows": rows,
    }


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['dataset']:<10} {row['part']:<9} {row['extractor']:<16} {row['n']:>4} "
        f"{row['failed']:>6} {row['k']:>3} {row['k_nmi']:>6.3f} {row['k_ari']:>6.3f} "
        f"{row['default_clusters']:>4} {row['default_nmi']:>6.3f} {row['default_ari']:>6.3f} "
        f"{row['seconds']:>7.1f}"
    )


HEADER = (
    f"{'dataset':<10} {'part':<9} {'extractor':<16} {'n':>4} {'failed':>6} {'k':>3} "
    f"{'NMI@k':>6} {'ARI@k':>6} {'kdef':>4} {'NMIdef':>6} {'ARIdef':>6} {'seconds':>7}"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--labels", type=int, default=12, help="intents drawn per dataset")
    parser.add_argument("--per-label", type=int, default=10, help="utterances per intent")
    parser.add_argument("--dev", type=int, default=3, help="of them, development utterances")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=5, help="k-means seeds at the true k")
    parser.add_argument(
        "--limit", type=int, default=None, help="quick run: this many dev conversations each"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    print(HEADER, file=sys.stderr)
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(HEADER)
        for row in report["rows"]:
            print(_line(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
