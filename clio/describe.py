"""Name and describe clusters with the LLM, falling back to keywords.

Each base cluster is shown to the model as its distinctive words and a few member
texts (nearest the centroid first, then a seeded random spread), contrasted with
texts from its nearest neighbouring clusters; all clusters go in one `ask_many`
batch. An answer that is missing or fails validation is replaced by a keyword-based
name, and the source is reported.

The prompts suit small base models (the packaged Gemma 3 270M): the distinctive
words come first, and two few-shot examples on unrelated topics show names built
from those words. Such models often copy an example instead of answering, so a name
that borrows an example's topic words absent from the input, or that repeats an
input text verbatim, is rejected.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

from clio.cluster import members_by_cluster
from clio.config import DescribeConfig
from clio.keywords import letter_runs
from clio.llm.base import Example, Prompt
from clio.naming import (
    MAX_DESCRIPTION_CHARS,
    MAX_NAME_CHARS,
    NAME_INSTRUCTION,
    PARENT_INSTRUCTION,
    clean_name,
    keyword_description,
    keyword_name,
    name_stems,
    shorten,
)

if TYPE_CHECKING:
    from clio.llm.client import StructuredLLM

_log = logging.getLogger("clio.describe")

NameSource = Literal["llm", "keywords"]
SAMPLE_CHARS = 200  # each sample shown to the model is cut to this; keeps prompts small
PROMPT_KEYWORDS = 5  # distinctive words shown in a prompt

_PLACEHOLDER_LIKE = re.compile(r"<[^<>]*>|\[[A-Z_]+\]")


class ClusterSummary(BaseModel):
    """What the model answers for one cluster."""

    name: str = Field(max_length=MAX_NAME_CHARS, description="Short summary, like a task title.")
    description: str = Field(
        max_length=MAX_DESCRIPTION_CHARS, description="Two sentences, no private details."
    )


def group_text(keywords: Sequence[str], inside: Sequence[str], outside: Sequence[str]) -> str:
    lines = ["Distinctive words: " + ", ".join(keywords[:PROMPT_KEYWORDS])] if keywords else []
    lines += ["Statements in the group:", *(f"- {shorten(t, SAMPLE_CHARS)}" for t in inside)]
    if outside:
        lines += ["Statements from other groups (not this one):"]
        lines += [f"- {shorten(t, SAMPLE_CHARS)}" for t in outside]
    return "\n".join(lines)


def parent_text(keywords: Sequence[str], child_names: Sequence[str]) -> str:
    lines = ["Distinctive words: " + ", ".join(keywords[:PROMPT_KEYWORDS])] if keywords else []
    lines += ["Groups:", *(f"- {name}" for name in child_names)]
    return "\n".join(lines)


@dataclass(frozen=True)
class _Shot:
    keywords: tuple[str, ...]
    lines: tuple[str, ...]  # member statements, or child names for a parent
    contrast: tuple[str, ...]
    name: str
    description: str


_NAME_SHOTS = (
    _Shot(
        keywords=("cover", "letter", "job"),
        lines=(
            "help me write a cover letter for a marketing job",
            "rewrite my cover letter so it sounds more confident",
        ),
        contrast=("fix the formatting of my resume",),
        name="Help with cover letters for jobs",
        description="Users ask for help writing cover letters. The requests are about job "
        "applications, not resumes.",
    ),
    _Shot(
        keywords=("pasta", "sauce", "spaghetti"),
        lines=("how long should i boil pasta", "what is a good sauce for spaghetti"),
        contrast=("recipe for banana bread",),
        name="Cook pasta and sauce",
        description="Users ask how to cook pasta. Some also ask about sauces.",
    ),
)
# The examples show contrast statements only when the prompt has them: a small model
# follows the examples' layout closely (and names worse with contrast than without).
NAME_EXAMPLES = tuple(
    Example(
        input=group_text(s.keywords, s.lines, s.contrast),
        output={"name": s.name, "description": s.description},
    )
    for s in _NAME_SHOTS
)
NAME_EXAMPLES_WITHOUT_CONTRAST = tuple(
    Example(
        input=group_text(s.keywords, s.lines, ()),
        output={"name": s.name, "description": s.description},
    )
    for s in _NAME_SHOTS
)

_PARENT_SHOTS = (
    _Shot(
        keywords=("job", "resume", "interview"),
        lines=("Help with cover letters", "Improve resume formatting", "Prepare for interviews"),
        contrast=(),
        name="Apply for jobs",
        description="Users want help with the documents and steps of applying for jobs. "
        "It covers cover letters, resumes and interviews.",
    ),
    _Shot(
        keywords=("recipe", "bake", "cook"),
        lines=("Cook pasta and sauce", "Bake bread and cakes", "Roast meat for dinner"),
        contrast=(),
        name="Cook and bake at home",
        description="Users ask how to prepare meals and baked goods. The requests are about "
        "home cooking.",
    ),
)
PARENT_EXAMPLES = tuple(
    Example(
        input=parent_text(s.keywords, s.lines),
        output={"name": s.name, "description": s.description},
    )
    for s in _PARENT_SHOTS
)


# Topic words of the few-shot examples: a name using one the input lacks was copied.
_EXAMPLE_WORDS = frozenset(
    stem for s in (*_NAME_SHOTS, *_PARENT_SHOTS) for k in s.keywords for stem in name_stems(k)
)
_EXAMPLE_DESCRIPTIONS = frozenset(s.description for s in (*_NAME_SHOTS, *_PARENT_SHOTS))


def _squash(text: str) -> str:
    return " ".join(letter_runs(text.lower()))


def clean_summary(
    answer: object, prompt_input: str = "", *, quoted: Sequence[str] = ()
) -> tuple[str, str] | None:
    """(name, description) from a model answer, or None if the name is unusable: empty,
    too long, a placeholder, borrowed from a few-shot example (topic words absent from
    `prompt_input`), or one of the `quoted` texts repeated verbatim (names summarise
    member texts, never quote them). An unusable description alone becomes "" (the
    caller fills it)."""
    if not isinstance(answer, ClusterSummary):
        return None
    input_words = name_stems(prompt_input)
    input_lines = [_squash(text) for text in quoted]

    def borrowed(text: str) -> bool:
        return bool((name_stems(text) & _EXAMPLE_WORDS) - input_words)

    def quotes_input(text: str) -> bool:
        squashed = _squash(text)
        return any(
            line and (line == squashed or (len(line) >= 20 and line in squashed))
            for line in input_lines
        )

    name = clean_name(answer.name)
    if (
        not name
        or len(name) > MAX_NAME_CHARS
        or not letter_runs(name)
        or _PLACEHOLDER_LIKE.search(name)
        or borrowed(name)
        or quotes_input(name)
    ):
        return None
    description = " ".join(answer.description.split()).strip(" \"'`")
    if (
        len(description) > MAX_DESCRIPTION_CHARS
        or not letter_runs(description)
        or _PLACEHOLDER_LIKE.search(description)
        or description in _EXAMPLE_DESCRIPTIONS
        or borrowed(description)
        or quotes_input(description)
    ):
        description = ""
    return name, description


def _unique_in_order(candidates: Sequence[int], texts: Sequence[str]) -> list[int]:
    seen: set[str] = set()
    kept = []
    for i in candidates:
        if texts[i] not in seen:
            seen.add(texts[i])
            kept.append(int(i))
    return kept


def central_first(members: np.ndarray, vectors: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    """Members ordered by cosine similarity to the centroid, most central first."""
    return members[np.argsort(-(vectors[members] @ centroid), kind="stable")]


def sample_inside(
    central: np.ndarray, texts: Sequence[str], count: int, rng: np.random.Generator
) -> list[int]:
    """Half the samples nearest the centroid (the core), the rest drawn at random from the
    remaining members (the spread); distinct texts only."""
    distinct = _unique_in_order(central, texts)
    core = distinct[: (count + 1) // 2]
    rest = distinct[len(core) :]
    spread_count = min(count - len(core), len(rest))
    spread = sorted(rng.choice(len(rest), size=spread_count, replace=False)) if spread_count else []
    return core + [rest[i] for i in spread]


def sample_outside(
    cluster: int,
    centroids: np.ndarray,
    central: Sequence[np.ndarray],
    texts: Sequence[str],
    count: int,
) -> list[int]:
    """The most central texts of the nearest other clusters, taken round-robin so the
    nearest neighbours come first; `central[c]` is cluster c's members, central first."""
    if count == 0 or len(centroids) < 2:
        return []
    similarity = centroids @ centroids[cluster]
    similarity[cluster] = -np.inf
    neighbours = np.argsort(-similarity, kind="stable")[: min(count, len(centroids) - 1)]
    queues = [_unique_in_order(central[c][: count + 1], texts) for c in neighbours]
    picked: list[int] = []
    seen: set[str] = set()
    for depth in range(count + 1):
        for queue in queues:
            if len(picked) == count:
                return picked
            if depth < len(queue) and texts[queue[depth]] not in seen:
                seen.add(texts[queue[depth]])
                picked.append(queue[depth])
    return picked


def _listed_texts(prompt: Prompt) -> list[str]:
    return [line[2:] for line in prompt.input.splitlines() if line.startswith("- ")]


def cluster_prompt(
    inside: Sequence[str], outside: Sequence[str], keywords: Sequence[str]
) -> Prompt:
    return Prompt(
        task="name_cluster",
        instruction=NAME_INSTRUCTION,
        input=group_text(keywords, inside, outside),
        examples=NAME_EXAMPLES if outside else NAME_EXAMPLES_WITHOUT_CONTRAST,
        input_label="Group",
    )


def parent_prompt(child_names: Sequence[str], keywords: Sequence[str]) -> Prompt:
    return Prompt(
        task="name_parent_cluster",
        instruction=PARENT_INSTRUCTION,
        input=parent_text(keywords, child_names),
        examples=PARENT_EXAMPLES,
        input_label="Related groups",
    )


def summarise_with_fallback(
    prompts: Sequence[Prompt | None],
    keywords: Sequence[Sequence[str]],
    fallback_names: Sequence[str],
    llm: StructuredLLM | None,
    *,
    label: str,
) -> list[tuple[str, str, NameSource]]:
    """Ask the LLM (one batch) for every non-None prompt; keyword names where it fails."""
    answers: list[object] = [None] * len(prompts)
    asked = [i for i, p in enumerate(prompts) if p is not None]
    if llm is not None and asked:
        replies = llm.ask_many([prompts[i] for i in asked], ClusterSummary, label=label)
        for i, reply in zip(asked, replies, strict=True):
            answers[i] = reply
    out: list[tuple[str, str, NameSource]] = []
    for prompt, answer, words, fallback in zip(
        prompts, answers, keywords, fallback_names, strict=True
    ):
        cleaned = clean_summary(
            answer,
            prompt.input if prompt is not None else "",
            quoted=_listed_texts(prompt)
            if prompt is not None and prompt.task == "name_cluster"
            else (),
        )
        if cleaned is None:
            out.append((keyword_name(words, fallback), keyword_description(words), "keywords"))
        else:
            name, description = cleaned
            out.append((name, description or keyword_description(words), "llm"))
    if llm is not None and asked:
        n_fallback = sum(1 for i in asked if out[i][2] == "keywords")
        _log.info(f"{label}: {len(asked)} asked, {n_fallback} fell back to keywords")
    return out


def describe_clusters(
    facet: str,
    texts: Sequence[str],
    labels: np.ndarray,
    vectors: np.ndarray,
    centroids: np.ndarray,
    keywords: dict[int, list[str]],
    llm: StructuredLLM | None,
    config: DescribeConfig,
    seed: int,
) -> list[tuple[str, str, str]]:
    """(name, description, name_source) per base cluster index 0..k-1."""
    labels = np.asarray(labels, dtype=np.int64)
    k = len(centroids)
    if len(texts) != len(labels) or len(vectors) != len(labels):
        raise ValueError("texts, labels and vectors must have one entry per item")
    rng = np.random.default_rng(seed)
    prompts: list[Prompt | None] = [None] * k
    if llm is not None:
        central = [
            central_first(members, vectors, centroids[c])
            for c, members in enumerate(members_by_cluster(labels, k))
        ]
        for cluster in range(k):
            if len(central[cluster]) == 0:
                continue
            inside = sample_inside(central[cluster], texts, config.samples_inside, rng)
            outside = sample_outside(cluster, centroids, central, texts, config.samples_outside)
            prompts[cluster] = cluster_prompt(
                [texts[i] for i in inside],
                [texts[i] for i in outside],
                keywords.get(cluster, []),
            )
    return summarise_with_fallback(
        prompts,
        [keywords.get(c, []) for c in range(k)],
        [f"{facet} cluster {c}" for c in range(k)],
        llm,
        label=f"describe {facet}",
    )
