"""A run estimated before it runs (`clio run --estimate`): LLM calls, tokens, time, cost.

Nothing is asked of the LLM, nothing is scrubbed and nothing is written. The input is
read as a run reads it (`clio.ingest.ingest` with the run's ingest settings and limit:
the same quarantine, the same duplicates), and every accepted conversation's facet
prompt is built by the run's own code (`clio.facets.facet_call`) from its raw text, in
memory only (a run builds it from the scrubbed text; scrubbing swaps a few spans for
placeholders of about their length). The calls after the facets depend on clusters not
made yet, so they are counted from the configured cluster size and hierarchy (the
k-means k from n is a ceiling the run may merge below, and every cluster is assumed
released), each priced with a representative prompt from the same prompt functions.

- Prompt tokens: the local backend counts with its GGUF file's own vocabulary (read
  without the weights); the HTTP backends at `estimate.chars_per_token`. Past
  `EXACT_PROMPTS` facet prompts the rest are counted by the tokens per character of
  those (a 2 KB prompt takes about 2 ms to tokenize).
- Answer tokens: the task's few-shot example answers (what its prompts show the model),
  a stand-in of half the allowed length for a custom facet without one. On the local
  backend's guided decoding only the values are sampled; elsewhere the whole JSON.
- Time: `Speed` per stream (a llama.cpp context of the local model, which evaluates the
  prompt part every call of a task shares once; or one call in flight) over the streams
  the run keeps busy, within `llm.requests_per_minute` and `llm.tokens_per_minute`;
  the stages without the LLM at the per-conversation rate measured in docs/SCALE.md.
- Cost: `clio.llm.client.prices`, as the run's manifest prices its usage.
- Cached: a conversation the output directory's private store already holds (by content
  hash) gives its exact scrubbed prompt, and an answer the store holds under that
  prompt's cache key costs no call. Only facet answers are looked up.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from clio import audit, describe, hierarchy_llm
from clio.cluster import choose_k
from clio.config import FacetConfig, LLMBackendName, RunConfig
from clio.facets import FacetCall, facet_call, user_turns_text
from clio.hierarchy import Naming, TreeSettings, next_level_size, parent_level_sizes
from clio.ingest import ingest
from clio.llm import guided
from clio.llm.base import Example, LLMBackend, LLMUnavailable, Prompt, TokenCounter
from clio.llm.client import StructuredLLM, cache_key, fitted_prompt, prices
from clio.llm.factory import build_backend, prompt_style, token_counter
from clio.llm.render import chat_prompt, completion_parts
from clio.mapping import UMAP_NEIGHBOURS
from clio.naming import shorten
from clio.pipeline.paths import RunPaths
from clio.pipeline.plan import slices
from clio.pipeline.publish import ReleaseSettings
from clio.records import Conversation
from clio.store import PrivateStore

EXACT_PROMPTS = 2000  # facet prompts tokenized one by one; the rest by their length
CACHE_LOOKUP_BATCH = 2000  # stored conversations read at once to look their answers up


@dataclass(frozen=True)
class Speed:
    """How fast one stream answers, and how often a prompt is asked again."""

    prompt_tokens_per_second: float
    output_tokens_per_second: float
    attempts_per_prompt: float
    source: str


# Per-backend figures, from docs/SCALE.md ("Estimating a run"), where they were measured.
BACKEND_SPEEDS: dict[LLMBackendName, Speed] = {
    "local": Speed(
        prompt_tokens_per_second=170.0,
        output_tokens_per_second=33.0,
        attempts_per_prompt=1.01,
        source="measured by bench/llm_speed.py (packaged Gemma 3 270M, two one-thread "
        "llama.cpp contexts at once on the project's idle 2-core machine; other jobs on it "
        "made it 1.5 times slower) and on runs of the sample (docs/SCALE.md)",
    ),
    "openai-compatible": Speed(
        prompt_tokens_per_second=170.0,
        output_tokens_per_second=21.0,
        attempts_per_prompt=1.0,
        source="llama.cpp's own server running the packaged Gemma 3 270M on the project's "
        "2-core machine: 48 ms per written token measured, prompt speed taken as the "
        "embedded model's (docs/SCALE.md); a served GPU model is far faster: set estimate.*",
    ),
    "anthropic": Speed(
        prompt_tokens_per_second=5000.0,
        output_tokens_per_second=60.0,
        attempts_per_prompt=1.0,
        source="assumed, not measured (no network here): set estimate.* to figures measured "
        "on your account",
    ),
}

# The rest of a run on the project's 2-core machine (docs/SCALE.md): the stages without
# the LLM (ingest, scrub, embed, cluster, gate, release) at the rate bench/scale.py
# measured at 1k and 100k conversations (fitted: 19 s + 20.5 ms per conversation), UMAP's
# first call compiling when a map has more than `UMAP_NEIGHBOURS` clusters, and the start
# of `clio run` itself (imports, its Prefect server), both measured on runs of the sample.
OTHER_STAGES_FIXED_SECONDS = 19.0
OTHER_STAGES_SECONDS_PER_CONVERSATION = 0.0205
UMAP_COMPILE_SECONDS = 15.0
STARTUP_SECONDS = 110.0
# The gate's LLM calls per released cluster: the privacy audit of each distinct text
# (names, descriptions, keywords, breakdown values), renames from keywords and their
# audit, by how clusters are named; measured in docs/SCALE.md.
GATE_CALLS_PER_CLUSTER: dict[Naming, float] = {"extractive": 2.8, "llm": 3.9}


@dataclass
class Step:
    """One kind of LLM call a run makes, and what it is expected to cost."""

    name: str
    prompts: int  # prompts the run asks
    cached: int  # of them answered from the private store's cache
    calls: float  # backend calls expected: fresh prompts times attempts per prompt
    input_tokens: int
    output_tokens: int
    seconds: float
    basis: str  # how the prompts were counted


@dataclass
class Estimate:
    n_input: int
    n_quarantined: int
    quarantine_reasons: dict[str, int]
    n_conversations: int
    backend: str
    model: str
    tokenizer: str
    streams: int
    speed: Speed
    steps: list[Step]
    other_stages_seconds: float
    startup_seconds: float
    price_per_million: tuple[float, float]
    cost: float
    assumptions: list[str] = field(default_factory=list)

    @property
    def llm_seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    @property
    def seconds(self) -> float:
        """The whole run, start to end."""
        return self.llm_seconds + self.other_stages_seconds + self.startup_seconds

    def as_dict(self) -> dict[str, Any]:
        steps = [asdict(s) for s in self.steps]
        for step in steps:
            step["calls"] = round(step["calls"], 1)
            step["seconds"] = round(step["seconds"], 1)
        return {
            "input": {
                "records": self.n_input,
                "quarantined": self.n_quarantined,
                "quarantine_reasons": self.quarantine_reasons,
                "conversations": self.n_conversations,
            },
            "llm": {
                "backend": self.backend,
                "model": self.model,
                "tokenizer": self.tokenizer,
                "streams": self.streams,
                "speed": asdict(self.speed),
            },
            "steps": steps,
            "total": {
                "prompts": sum(s.prompts for s in self.steps),
                "cached": sum(s.cached for s in self.steps),
                "calls": round(sum(s.calls for s in self.steps), 1),
                "input_tokens": sum(s.input_tokens for s in self.steps),
                "output_tokens": sum(s.output_tokens for s in self.steps),
                "llm_seconds": round(self.llm_seconds, 1),
                "other_stages_seconds": round(self.other_stages_seconds, 1),
                "startup_seconds": round(self.startup_seconds, 1),
                "seconds": round(self.seconds, 1),
            },
            "cost": {
                "price_per_million_input_tokens": self.price_per_million[0],
                "price_per_million_output_tokens": self.price_per_million[1],
                "estimated_cost": round(self.cost, 6),
            },
            "assumptions": self.assumptions,
        }


# -- tokens of one call ---------------------------------------------------------------


class CharCounter:
    """Tokens at a fixed number of characters per token (no tokenizer at hand)."""

    def __init__(self, chars_per_token: float):
        self.chars_per_token = chars_per_token
        self.name = f"{chars_per_token:g} characters per token"

    def count(self, text: str, *, bos: bool = False) -> int:
        return math.ceil(len(text) / self.chars_per_token) + int(bos)


@dataclass(frozen=True)
class Shape:
    """The tokens of one call: the prompt part every call of its task shares, its own
    part (with the answer's structure where the local model is fed it) and its answer."""

    shared: int
    own: float
    output: float


@dataclass(frozen=True)
class Tokens:
    """How the configured backend sees prompts."""

    counter: TokenCounter
    style: Literal["completion", "chat"]
    backend: LLMBackendName

    def shared_and_own(self, prompt: Prompt, schema: dict[str, Any]) -> tuple[str, str]:
        if self.style == "completion":
            return completion_parts(prompt)
        chat = chat_prompt(prompt, schema)
        shared = "\n".join([chat.system, *(m["content"] for m in chat.messages[:-1])])
        return shared, chat.messages[-1]["content"]

    def guided_fields(self, schema: dict[str, Any]) -> tuple[guided.FieldPlan, ...] | None:
        """The fields the local model samples values of, the answer's structure fed to it
        (`clio.llm.guided`); None where the whole answer is generated."""
        if self.backend != "local" or self.style != "completion":
            return None
        return guided.plan(schema)

    def answer(self, answer: dict[str, Any], schema: dict[str, Any]) -> tuple[int, int]:
        """(structure tokens fed, tokens sampled) of one answer."""
        whole = self.counter.count(json.dumps(answer, ensure_ascii=False))
        fields = self.guided_fields(schema)
        if fields is None:
            return 0, whole + 1  # the end of the answer is a token too
        sampled = 0
        for plan in fields:
            if plan.kind == "choice":
                sampled += 1  # one pick among the allowed values' tokens
                continue
            # each value's tokens, and the one that closes it (a quote, comma or bracket)
            values = _leaves(answer.get(plan.name, ""))
            sampled += sum(self.counter.count(_value_text(v)) + 1 for v in values)
        return max(whole - sampled, 0), sampled

    def answers(
        self, answers: Sequence[dict[str, Any]], schema: dict[str, Any]
    ) -> tuple[float, float]:
        """The mean (structure tokens fed, tokens sampled) of `answers`."""
        pairs = [self.answer(a, schema) for a in answers]
        if not pairs:
            return 0.0, 0.0
        return sum(p[0] for p in pairs) / len(pairs), sum(p[1] for p in pairs) / len(pairs)

    def shape(
        self, prompt: Prompt, schema: dict[str, Any], answers: Sequence[dict[str, Any]]
    ) -> Shape:
        shared, own = self.shared_and_own(prompt, schema)
        fed, sampled = self.answers(answers, schema)
        return Shape(
            shared=self.counter.count(shared, bos=True),
            own=self.counter.count(own) + fed,
            output=sampled,
        )


def _leaves(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def _outputs(examples: Sequence[Example]) -> list[dict[str, Any]]:
    return [dict(e.output) for e in examples]


# -- reading the input ----------------------------------------------------------------


@dataclass
class InputFacts:
    """What the estimate needs of the input, counted in one pass; raw text is not kept
    beyond a few user texts for the representative naming prompt."""

    n_input: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    content_hashes: list[str] = field(default_factory=list)
    own_chars: list[int] = field(default_factory=list)  # each facet prompt's own part
    own_tokens: list[int] = field(default_factory=list)  # the first EXACT_PROMPTS of them
    user_text_items: dict[str, int] = field(default_factory=dict)  # clustered user_text facets
    user_texts: dict[str, list[str]] = field(default_factory=dict)  # a few, per facet

    @property
    def n_conversations(self) -> int:
        return len(self.content_hashes)

    def facet_own_tokens(self) -> float:
        """Own-part tokens over every facet prompt: counted, then by tokens per character."""
        counted = sum(self.own_tokens)
        rest = sum(self.own_chars[len(self.own_tokens) :])
        ratio = counted / max(sum(self.own_chars[: len(self.own_tokens)]), 1)
        return counted + rest * ratio


# A prompt as the backend takes it (`clio.llm.client.fitted_prompt`): cut to its context.
Fit = Callable[[Prompt, dict[str, Any]], Prompt]


def read_input(
    config: RunConfig,
    input_paths: list[str],
    limit: int | None,
    call: FacetCall | None,
    tokens: Tokens,
    samples: int,
    fit: Fit,
) -> InputFacts:
    facts = InputFacts()
    clustered = [f for f in config.facets if f.cluster and f.extractor == "user_text"]
    schema = _schema(call.model) if call is not None else {}

    def note(_: int, conversation: Conversation) -> bool:
        facts.content_hashes.append(conversation.content_hash())
        if call is not None:
            prompt = fit(call.prompt(conversation.messages), schema)
            _, own = tokens.shared_and_own(prompt, schema)
            facts.own_chars.append(len(own))
            if len(facts.own_tokens) < EXACT_PROMPTS:
                facts.own_tokens.append(tokens.counter.count(own))
        for facet in clustered:
            text = user_turns_text(conversation, facet.user_turns, facet.max_chars)
            if text:
                facts.user_text_items[facet.name] = facts.user_text_items.get(facet.name, 0) + 1
                kept = facts.user_texts.setdefault(facet.name, [])
                if len(kept) < samples:
                    kept.append(text)
        return False  # keep nothing: the run reads the input again

    result = ingest(input_paths, config.ingest, limit=limit, keep=note)
    facts.n_input = result.n_input
    facts.quarantine_reasons = result.quarantine_counts()
    return facts


def cached_facet_prompts(
    private: Path,
    facts: InputFacts,
    call: FacetCall,
    backend: LLMBackend,
    config: RunConfig,
    fit: Fit,
) -> int:
    """Facet prompts whose answer the private store already holds: the stored scrubbed
    text of a conversation with the same content hash gives the exact prompt."""
    if not private.exists() or not facts.content_hashes:
        return 0
    schema = _schema(call.model)
    cached = 0
    with PrivateStore(private, read_only=True) as store:
        ids = sorted(set(store.conversation_ids_by_hash(facts.content_hashes).values()))
        for part in slices(ids, CACHE_LOOKUP_BATCH):
            for conversation in store.get_conversations(part):
                key = cache_key(
                    backend.identifier,
                    fit(call.prompt(conversation.messages), schema),
                    schema,
                    config.llm.temperature,
                    config.llm.max_output_tokens,
                )
                cached += store.get_llm_response(key) is not None
    return cached


# -- the calls after the facets ---------------------------------------------------------


@dataclass(frozen=True)
class Calls:
    """Prompts of one task and a representative prompt with its typical answers."""

    name: str
    prompts: int
    prompt: Prompt
    schema: dict[str, Any]
    answers: list[dict[str, Any]]
    basis: str


def _items(facet: FacetConfig, facts: InputFacts, call: FacetCall | None) -> int:
    """Texts a clustered facet gives to cluster: one per conversation (a list facet: the
    mean list length of its example answers)."""
    if facet.extractor == "user_text":
        return facts.user_text_items.get(facet.name, 0)
    if facet.kind != "list":
        return facts.n_conversations
    examples = call.examples if call is not None else ()
    lengths = [len(e.output[facet.name]) for e in examples if facet.name in e.output]
    per = sum(lengths) / len(lengths) if lengths else math.ceil(facet.max_items / 2)
    return round(facts.n_conversations * per)


def _texts(facet: FacetConfig, facts: InputFacts, call: FacetCall | None, count: int) -> list[str]:
    """Representative member texts of a clustered facet: the input's own user texts, or
    an llm facet's example answers."""
    if facet.extractor == "user_text":
        texts = facts.user_texts.get(facet.name, [])
    else:
        examples = call.examples if call is not None else ()
        texts = [
            t for e in examples for t in _leaves(e.output.get(facet.name, [])) if isinstance(t, str)
        ]
    texts = texts or ["a request in general terms"]
    return [texts[i % len(texts)] for i in range(count)]


def _summary_schema() -> dict[str, Any]:
    return describe.ClusterSummary.model_json_schema()


def _example_names() -> list[tuple[str, str]]:
    return [(str(e.output["name"]), str(e.output["description"])) for e in describe.NAME_EXAMPLES]


def _repeat(items: Sequence[Any], count: int) -> list[Any]:
    return [items[i % len(items)] for i in range(max(count, 1))]


def cluster_calls(
    config: RunConfig, facts: InputFacts, call: FacetCall | None
) -> tuple[list[Calls], list[int], int]:
    """The naming and hierarchy calls of every clustered facet, its base cluster count
    and the clusters built in all."""
    settings = TreeSettings.from_config(config)
    h = config.hierarchy
    calls: list[Calls] = []
    n_clusters = 0
    base: list[int] = []
    names = _example_names()
    for facet in (f for f in config.facets if f.cluster):
        n_items = _items(facet, facts, call)
        if n_items == 0:
            continue
        c = config.cluster
        k = choose_k(n_items, c.target_cluster_size, c.min_k, c.max_k)
        n_clusters += k
        base.append(k)
        basis = f"{n_items} texts / target_cluster_size {c.target_cluster_size} = k {k}"
        if settings.names == "extractive":
            n_clusters += sum(parent_level_sizes(k, h))
            continue  # extractive names, parents from centroids: no LLM call
        d = config.describe
        inside = _texts(facet, facts, call, min(d.samples_inside, c.target_cluster_size))
        outside = _texts(facet, facts, call, d.samples_outside)[: d.samples_outside]
        prompt = describe.cluster_prompt(
            [shorten(t, describe.SAMPLE_CHARS) for t in inside],
            [shorten(t, describe.SAMPLE_CHARS) for t in outside],
            ["word"] * describe.PROMPT_KEYWORDS,
        )
        examples = describe.NAME_EXAMPLES if outside else describe.NAME_EXAMPLES_WITHOUT_CONTRAST
        calls.append(
            Calls(
                f"name {facet.name} clusters",
                k,
                prompt,
                _summary_schema(),
                _outputs(examples),
                basis + ", one call per cluster",
            )
        )
        if settings.procedure == "centroids":
            sizes = parent_level_sizes(k, h)
            n_clusters += sum(sizes)
            if h.name_parents_with_llm and sizes:
                children = _repeat([n for n, _ in names], min(h.branching, 15))
                calls.append(
                    Calls(
                        f"name {facet.name} parents",
                        sum(sizes),
                        describe.parent_prompt(children, ["word"] * describe.PROMPT_KEYWORDS),
                        _summary_schema(),
                        _outputs(describe.PARENT_EXAMPLES),
                        f"levels {' > '.join(map(str, sizes))} over k {k}, one call per parent",
                    )
                )
        else:
            llm_levels, parents = _llm_hierarchy_calls(facet.name, k, config, names)
            calls.extend(llm_levels)
            n_clusters += parents
    return calls, base, n_clusters


def _llm_hierarchy_calls(
    facet: str, k: int, config: RunConfig, names: list[tuple[str, str]]
) -> tuple[list[Calls], int]:
    """The Clio procedure's calls (`clio.hierarchy_llm`), level by level, assuming each
    level gets the parents it asks for."""
    h = config.hierarchy
    propose = merge = assign = rename = 0
    children, parents, sizes = k, 0, []
    while len(sizes) < h.max_levels and children > h.top_clusters and children >= 2:
        wanted = next_level_size(children, h)
        hoods = max(1, math.ceil(children / h.neighbourhood_size))
        propose += hoods
        merge += 0 if hoods == 1 else max(1, math.ceil(wanted / hierarchy_llm.MAX_MERGE_NAMES))
        assign += children
        rename += wanted
        parents += wanted
        sizes.append(wanted)
        children = wanted
    if not sizes:
        return [], 0
    levels = f"levels {' > '.join(map(str, sizes))} over k {k}"
    per_hood = min(h.neighbourhood_size, k)
    category_names = [n for n, _ in names]
    return [
        Calls(
            f"{facet} hierarchy: propose",
            propose,
            hierarchy_llm.propose_prompt(
                _repeat(names, per_hood),
                _repeat(category_names, h.outside_neighbours)[: h.outside_neighbours],
                max(1, round(per_hood / h.branching)),
            ),
            hierarchy_llm.CategoryNames.model_json_schema(),
            _outputs(hierarchy_llm.PROPOSE_EXAMPLES),
            f"{levels}, one per neighbourhood of {h.neighbourhood_size}",
        ),
        Calls(
            f"{facet} hierarchy: merge",
            merge,
            hierarchy_llm.merge_prompt(
                _repeat(category_names, hierarchy_llm.MAX_MERGE_NAMES), sizes[0]
            ),
            hierarchy_llm.MergedNames.model_json_schema(),
            _outputs(hierarchy_llm.MERGE_EXAMPLES),
            f"{levels}, one per {hierarchy_llm.MAX_MERGE_NAMES} proposals",
        ),
        Calls(
            f"{facet} hierarchy: assign",
            assign,
            hierarchy_llm.assign_prompt(names[0], _repeat(category_names, sizes[0])),
            hierarchy_llm.CategoryChoice.model_json_schema(),
            _outputs(hierarchy_llm.ASSIGN_EXAMPLES),
            f"{levels}, one per child",
        ),
        Calls(
            f"{facet} hierarchy: rename",
            rename,
            describe.parent_prompt(_repeat(category_names, h.branching), [category_names[0]]),
            _summary_schema(),
            _outputs(describe.PARENT_EXAMPLES),
            f"{levels}, one per parent",
        ),
    ], parents


def audit_calls(config: RunConfig, n_clusters: int) -> list[Calls]:
    """The gate's privacy audit (and renames from keywords) of the released texts."""
    if not ReleaseSettings.of(config).privacy.audit_released_text or n_clusters == 0:
        return []
    names = TreeSettings.from_config(config).names
    per_cluster = GATE_CALLS_PER_CLUSTER[names]
    return [
        Calls(
            "privacy audit",
            math.ceil(n_clusters * per_cluster),
            audit.audit_prompt(describe.NAME_EXAMPLES[0].output["name"]),
            audit.PrivacyAudit.model_json_schema(),
            _outputs(audit.AUDIT_EXAMPLES),
            f"{n_clusters} clusters x {per_cluster} calls each (measured with {names} names)",
        )
    ]


# -- time and cost ------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    speed: Speed
    streams: int
    reuses_prefix: bool  # a local context evaluates the shared part once per task
    requests_per_minute: int | None
    tokens_per_minute: int | None

    def step(
        self, name: str, prompts: int, cached: int, shape: Shape, own_total: float, basis: str
    ) -> Step:
        """`own_total`: the own-part tokens of all `prompts` (the facet prompts differ)."""
        fresh = prompts - cached
        attempts = fresh * self.speed.attempts_per_prompt
        own = own_total * (fresh / prompts) if prompts else 0.0
        per_attempt_own = own / fresh if fresh else 0.0
        input_tokens = attempts * (shape.shared + per_attempt_own)
        output_tokens = attempts * shape.output
        evaluated = attempts * per_attempt_own
        streams = min(self.streams, max(math.ceil(attempts), 1))
        evaluated += shape.shared * streams if self.reuses_prefix else attempts * shape.shared
        work = (
            evaluated / self.speed.prompt_tokens_per_second
            + output_tokens / self.speed.output_tokens_per_second
        )
        seconds = work / streams if attempts else 0.0
        if self.requests_per_minute and attempts:
            seconds = max(seconds, attempts * 60 / self.requests_per_minute)
        if self.tokens_per_minute and attempts:
            seconds = max(seconds, (input_tokens + output_tokens) * 60 / self.tokens_per_minute)
        return Step(
            name=name,
            prompts=prompts,
            cached=cached,
            calls=attempts,
            input_tokens=round(input_tokens),
            output_tokens=round(output_tokens),
            seconds=seconds,
            basis=basis,
        )


def speed_of(config: RunConfig) -> Speed:
    """The backend's figures, each overridden by the config's `estimate` section."""
    base = BACKEND_SPEEDS[config.llm.backend]
    e = config.estimate
    overridden = [
        e.prompt_tokens_per_second,
        e.output_tokens_per_second,
        e.attempts_per_prompt,
    ]
    if all(v is None for v in overridden):
        return base
    return Speed(
        prompt_tokens_per_second=e.prompt_tokens_per_second or base.prompt_tokens_per_second,
        output_tokens_per_second=e.output_tokens_per_second or base.output_tokens_per_second,
        attempts_per_prompt=e.attempts_per_prompt or base.attempts_per_prompt,
        source="the config's estimate section, the rest: " + base.source,
    )


# -- the estimate -------------------------------------------------------------------------


def estimate_run(
    config: RunConfig, input_paths: list[str], limit: int | None, output_dir: Path
) -> Estimate:
    """The expected LLM work of `clio run` over `input_paths` (a full build), without
    calling the LLM or writing anything."""
    missing = None
    try:
        counter = token_counter(config.llm) or CharCounter(config.estimate.chars_per_token)
    except LLMUnavailable as exc:  # e.g. no GGUF file at llm.model_path: a run would stop
        counter, missing = CharCounter(config.estimate.chars_per_token), str(exc)
    try:
        estimate = _estimate(config, input_paths, limit, output_dir, counter)
    finally:
        close = getattr(counter, "close", None)
        if close is not None:
            close()
    if missing is not None:
        estimate.assumptions.insert(0, f"no tokenizer: {missing}")
    return estimate


def _estimate(
    config: RunConfig,
    input_paths: list[str],
    limit: int | None,
    output_dir: Path,
    counter: TokenCounter,
) -> Estimate:
    assumptions: list[str] = []
    call = facet_call(config.facets, config.llm.max_input_chars)
    backend: LLMBackend | None = None
    streams = config.llm.concurrency
    try:
        backend = build_backend(config.llm)  # built, never called: its id and parallelism
        streams = StructuredLLM(backend, config.llm).parallel_calls
    except LLMUnavailable as exc:
        assumptions.append(f"the backend is not usable as configured: {exc}")
    tokens = Tokens(counter, prompt_style(config.llm), config.llm.backend)

    def fit(prompt: Prompt, schema: dict[str, Any]) -> Prompt:
        if backend is None:
            return prompt
        return fitted_prompt(backend, prompt, schema, max_tokens=config.llm.max_output_tokens)

    facts = read_input(
        config, input_paths, limit, call, tokens, config.describe.samples_inside, fit
    )
    speed = speed_of(config)
    timing = Timing(
        speed,
        streams,
        reuses_prefix=config.llm.backend == "local",
        requests_per_minute=config.llm.requests_per_minute,
        tokens_per_minute=config.llm.tokens_per_minute,
    )

    steps: list[Step] = []
    if call is not None and facts.n_conversations:
        private = RunPaths(output_dir).private
        cached = (
            cached_facet_prompts(private, facts, call, backend, config, fit)
            if backend is not None
            else 0
        )
        schema = _schema(call.model)
        shared, _ = tokens.shared_and_own(call.prompt(()), schema)
        fed, sampled = tokens.answers(_facet_answers(call), schema)
        shape = Shape(counter.count(shared, bos=True), fed, sampled)
        own_total = facts.facet_own_tokens() + fed * facts.n_conversations
        asked = ", ".join(f.name for f in call.asked)
        steps.append(
            timing.step(
                f"facets ({asked})",
                facts.n_conversations,
                cached,
                shape,
                own_total,
                "one combined call per conversation",
            )
        )
    later, base, n_clusters = cluster_calls(config, facts, call)
    for calls in [*later, *audit_calls(config, n_clusters)]:
        if calls.prompts == 0:
            continue
        shape = tokens.shape(calls.prompt, calls.schema, calls.answers)
        steps.append(
            timing.step(calls.name, calls.prompts, 0, shape, shape.own * calls.prompts, calls.basis)
        )
    usage_in = sum(s.input_tokens for s in steps)
    usage_out = sum(s.output_tokens for s in steps)
    price_in, price_out = prices(config.llm)
    assumptions += _assumptions(counter, speed)
    n = facts.n_conversations
    return Estimate(
        n_input=facts.n_input,
        n_quarantined=sum(facts.quarantine_reasons.values()),
        quarantine_reasons=facts.quarantine_reasons,
        n_conversations=n,
        backend=config.llm.backend,
        model=config.llm.model,
        tokenizer=counter.name,
        streams=streams,
        speed=speed,
        steps=steps,
        other_stages_seconds=other_stages_seconds(n, base),
        startup_seconds=STARTUP_SECONDS,
        price_per_million=(price_in, price_out),
        cost=(usage_in * price_in + usage_out * price_out) / 1_000_000,
        assumptions=assumptions,
    )


def other_stages_seconds(n_conversations: int, base_clusters: Sequence[int]) -> float:
    """The stages without the LLM (see `OTHER_STAGES_FIXED_SECONDS`)."""
    if n_conversations == 0:
        return 0.0
    seconds = OTHER_STAGES_FIXED_SECONDS + OTHER_STAGES_SECONDS_PER_CONVERSATION * n_conversations
    if any(k > UMAP_NEIGHBOURS for k in base_clusters):
        seconds += UMAP_COMPILE_SECONDS
    return seconds


def _facet_answers(call: FacetCall) -> list[dict[str, Any]]:
    """The example answers, each with a stand-in for an asked facet it has no value for."""
    answers = []
    for example in call.examples or (Example("", {}),):
        answer = {}
        for facet in call.asked:
            answer[facet.name] = example.output.get(facet.name, _stand_in(facet))
        answers.append(answer)
    return answers


def _stand_in(facet: FacetConfig) -> Any:
    """A typical answer of a custom facet the examples do not cover: half its length."""
    text = ("a short answer in general terms " * 20)[: max(facet.max_chars // 2, 1)].strip()
    if facet.kind == "category":
        return facet.values[0]
    if facet.kind == "number":
        return facet.minimum if facet.minimum is not None else 1
    if facet.kind == "list":
        return [text] * math.ceil(facet.max_items / 2)
    return text


def _assumptions(counter: TokenCounter, speed: Speed) -> list[str]:
    return [
        "a full build over the input; prompts from the raw text (a run uses the scrubbed "
        "text, a few placeholders different)",
        f"prompt tokens: {counter.name}; answers the size of the few-shot examples' answers",
        f"speed per stream: {speed.prompt_tokens_per_second:g} prompt and "
        f"{speed.output_tokens_per_second:g} answer tokens/s, {speed.attempts_per_prompt:g} "
        f"backend calls per prompt ({speed.source})",
        "clusters: k = texts / target_cluster_size (a ceiling: the run may merge below it), "
        "every cluster released, parents as the hierarchy settings ask",
        "privacy audit: calls per cluster measured on a run with the same kind of names, "
        "renames from keywords included",
        f"other stages at {OTHER_STAGES_FIXED_SECONDS:g} s + "
        f"{OTHER_STAGES_SECONDS_PER_CONVERSATION * 1000:g} ms per conversation, "
        f"{UMAP_COMPILE_SECONDS:g} s more for a map of over {UMAP_NEIGHBOURS} clusters; "
        f"start-up {STARTUP_SECONDS:g} s (docs/SCALE.md, the project's 2-core machine)",
        "cached: facet answers the output directory's private store holds for conversations "
        "it already has; later calls counted as new",
    ]


# -- the report ---------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def render_estimate(estimate: Estimate) -> str:
    """The estimate as a table, with its assumptions."""
    e = estimate
    quarantine = (
        " (" + ", ".join(f"{r} {n}" for r, n in e.quarantine_reasons.items()) + ")"
        if e.quarantine_reasons
        else ""
    )
    lines = [
        "clio run --estimate: the LLM was not called and nothing was written.",
        "",
        f"input: {e.n_input} records, {e.n_quarantined} quarantined{quarantine}, "
        f"{e.n_conversations} conversations to process",
        f"llm: {e.backend} ({e.model}), {e.streams} stream{'s' if e.streams != 1 else ''}; "
        f"tokens counted with {e.tokenizer}",
        "",
    ]
    header = ("step", "prompts", "cached", "calls", "input tok", "output tok", "time")
    rows = [
        (
            s.name,
            f"{s.prompts:,}",
            f"{s.cached:,}",
            f"{s.calls:,.0f}",
            f"{s.input_tokens:,}",
            f"{s.output_tokens:,}",
            _duration(s.seconds),
        )
        for s in e.steps
    ]
    rows.append(
        (
            "total LLM",
            f"{sum(s.prompts for s in e.steps):,}",
            f"{sum(s.cached for s in e.steps):,}",
            f"{sum(s.calls for s in e.steps):,.0f}",
            f"{sum(s.input_tokens for s in e.steps):,}",
            f"{sum(s.output_tokens for s in e.steps):,}",
            _duration(e.llm_seconds),
        )
    )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first, *(v.rjust(w) for v, w in zip(row[1:], widths[1:], strict=True))])

    lines += [line(header), line(["-" * w for w in widths]), *map(line, rows[:-1])]
    lines += [line(["-" * w for w in widths]), line(rows[-1])]
    if not e.steps:
        lines.append("(no LLM call: no facet asks the LLM and nothing is named or audited by it)")
    lines += [
        "",
        f"time: LLM {_duration(e.llm_seconds)}, other stages {_duration(e.other_stages_seconds)}, "
        f"start-up {_duration(e.startup_seconds)}: the whole run about {_duration(e.seconds)}",
        f"cost: {e.cost:.2f} at {e.price_per_million[0]:g} / {e.price_per_million[1]:g} per "
        "million input / output tokens (llm.price_table, else llm.price_per_million_*)",
        "",
        "how it is counted:",
        *(f"- {s.name}: {s.basis}" for s in e.steps),
        *(f"- {a}" for a in e.assumptions),
    ]
    return "\n".join(lines)
