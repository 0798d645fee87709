"""One parent level built by the LLM, the Clio way.

From the clusters of one level (the children) to the level above:
1. neighbourhoods: spherical k-means on the children's centroids, about
   `neighbourhood_size` children each;
2. proposals: per neighbourhood the LLM sees its children's names and descriptions, and
   the names of the nearest children outside it (so its categories stay distinct from
   theirs), and proposes about one category per `branching` children;
3. merging: proposals that are the same words (ignoring case, order, plurals and small
   words) become one; then the LLM merges the proposals of nearby neighbourhoods (those
   of at most `MAX_MERGE_NAMES` proposals at once) into a list without duplicates;
4. assignment: each child is given the categories of its merge batch and picks one;
5. renaming: each category that received children is renamed and described by the LLM
   from its children (the proposal name stays where renaming fails).

A child whose choice cannot be matched to a category goes to the category sharing the
most words with it (ties: the first listed). A category left without children is
dropped. Everything is deterministic for a seed and a deterministic LLM.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import numpy as np
from pydantic import BaseModel, Field

from clio.cluster import centroids_of, compact_labels, spherical_kmeans
from clio.config import ClusterConfig, HierarchyConfig
from clio.describe import ClusterSummary, clean_summary, parent_prompt
from clio.llm.base import Example, Prompt
from clio.llm.client import LLMFailure
from clio.naming import MAX_NAME_CHARS, clean_name, name_stems, shorten

if TYPE_CHECKING:
    from clio.llm.client import StructuredLLM

_log = logging.getLogger("clio.hierarchy")

MAX_PROPOSALS = 12  # names one proposal answer may hold
MAX_MERGE_NAMES = 30  # proposals merged in one call (keeps answers within the output cap)
MAX_CHILD_NAMES = 15  # children listed when a category is renamed
DESCRIPTION_CHARS = 120  # each child description is cut to this in a proposal prompt

_SMALL_WORDS = frozenset(
    {"a", "an", "and", "the", "of", "for", "to", "in", "on", "with", "about", "or", "by"}
    | {"from", "at", "i", "are", "their", "your", "user", "request", "help", "ask", "question"}
)  # compared after a plural "s" is dropped ("as" -> "a", "is" -> "i", "users" -> "user")

ShortName = Annotated[str, Field(max_length=MAX_NAME_CHARS)]


class CategoryNames(BaseModel):
    names: list[ShortName] = Field(max_length=MAX_PROPOSALS, description="Category names.")


class MergedNames(BaseModel):
    names: list[ShortName] = Field(
        max_length=MAX_MERGE_NAMES, description="The categories, without duplicates."
    )


class CategoryChoice(BaseModel):
    category: ShortName = Field(description="One category name, exactly as listed.")


PROPOSE_INSTRUCTION = (
    "Propose broader categories for a list of groups of user requests: about as many as "
    "asked, each a short task title, together covering every group. Nearby groups listed "
    "separately belong to other categories: keep your categories distinct from them. Use "
    "general terms only: no names, places, numbers or other private details."
)
PROPOSE_EXAMPLES = (
    Example(
        input="Wanted: about 2 categories\nGroups:\n- Help with cover letters: Users ask for "
        "cover letters.\n- Prepare for job interviews: Users practise interview answers.\n"
        "- Cook pasta and sauce: Users ask how to cook pasta.\n- Bake bread: Users ask about "
        "baking bread.\nNearby groups elsewhere:\n- Plan a vegetable garden",
        output={"names": ["Apply for jobs", "Cook and bake at home"]},
    ),
)
MERGE_INSTRUCTION = (
    "These category names were proposed separately for parts of one list; some mean the "
    "same thing. Merge those into one name each and return every distinct category once, "
    "no more than asked."
)
MERGE_EXAMPLES = (
    Example(
        input="At most: 3 categories\nProposed:\n- Apply for jobs\n- Job applications\n"
        "- Cook at home\n- Write poems",
        output={"names": ["Apply for jobs", "Cook at home", "Write poems"]},
    ),
)
ASSIGN_INSTRUCTION = (
    "Choose the category that fits the group of user requests best. Answer with the "
    "category name exactly as listed."
)
ASSIGN_EXAMPLES = (
    Example(
        input="Group: Bake bread: Users ask about baking bread.\nCategories:\n"
        "- Apply for jobs\n- Cook and bake at home",
        output={"category": "Cook and bake at home"},
    ),
)


@dataclass(frozen=True)
class ParentLevel:
    child_to_parent: np.ndarray  # parent index (0..m-1, largest first) for every child
    summaries: list[tuple[str, str, str]]  # (name, description, name_source) per parent


def name_key(name: str) -> str:
    """Names that are the same words (any case or order, plurals, small words) share it."""
    words = name_stems(name)
    meaningful = sorted(words - _SMALL_WORDS) or sorted(words)
    return " ".join(meaningful)


def _words(text: str) -> set[str]:
    return set(name_key(text).split())


def _unique_names(names: Sequence[str]) -> list[str]:
    """Non-empty names, the first of each `name_key` kept, in order."""
    seen: set[str] = set()
    kept: list[str] = []
    for raw in names:
        name = clean_name(raw)
        key = name_key(name)
        if name and key and key not in seen:
            seen.add(key)
            kept.append(name)
    return kept


def neighbourhoods(centroids: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Neighbourhood index of every child: spherical k-means with about `size` per group."""
    n = len(centroids)
    count = max(1, math.ceil(n / size))
    if count == 1:
        return np.zeros(n, dtype=np.int64)
    vectors = np.ascontiguousarray(centroids, dtype=np.float32)
    defaults = ClusterConfig()
    labels = spherical_kmeans(
        vectors, count, seed, defaults.kmeans_iterations, defaults.kmeans_restarts
    )
    return compact_labels(labels)


def propose_prompt(
    children: Sequence[tuple[str, str]], outside: Sequence[str], wanted: int
) -> Prompt:
    lines = [f"Wanted: about {wanted} categor{'y' if wanted == 1 else 'ies'}", "Groups:"]
    lines += [f"- {name}: {shorten(desc, DESCRIPTION_CHARS)}" for name, desc in children]
    if outside:
        lines += ["Nearby groups elsewhere:", *(f"- {name}" for name in outside)]
    return Prompt(
        task="propose_parents",
        instruction=PROPOSE_INSTRUCTION,
        input="\n".join(lines),
        examples=PROPOSE_EXAMPLES,
        input_label="Groups to categorise",
    )


def merge_prompt(proposals: Sequence[str], at_most: int) -> Prompt:
    lines = [f"At most: {at_most} categor{'y' if at_most == 1 else 'ies'}", "Proposed:"]
    lines += [f"- {name}" for name in proposals]
    return Prompt(
        task="merge_parents",
        instruction=MERGE_INSTRUCTION,
        input="\n".join(lines),
        examples=MERGE_EXAMPLES,
        input_label="Proposed categories",
    )


def assign_prompt(child: tuple[str, str], categories: Sequence[str]) -> Prompt:
    name, description = child
    lines = [f"Group: {name}: {shorten(description, DESCRIPTION_CHARS)}", "Categories:"]
    lines += [f"- {category}" for category in categories]
    return Prompt(
        task="assign_parent",
        instruction=ASSIGN_INSTRUCTION,
        input="\n".join(lines),
        examples=ASSIGN_EXAMPLES,
        input_label="Group and categories",
    )


def build_parent_level(
    child_summaries: Sequence[tuple[str, str, str]],
    child_centroids: np.ndarray,
    child_sizes: np.ndarray,
    child_keywords: Sequence[Sequence[str]],
    n_wanted: int,
    llm: StructuredLLM,
    settings: HierarchyConfig,
    seed: int,
    *,
    label: str,
) -> ParentLevel:
    """The level above the given children (about `n_wanted` parents), or every child
    under one parent when there is a single child."""
    n = len(child_summaries)
    pairs = [(name, description) for name, description, _ in child_summaries]
    hoods = neighbourhoods(child_centroids, settings.neighbourhood_size, seed)
    n_hoods = int(hoods.max()) + 1 if n else 0

    # 2. proposals per neighbourhood
    prompts = []
    for hood in range(n_hoods):
        members = np.flatnonzero(hoods == hood)
        wanted = max(1, round(len(members) * n_wanted / n))
        outside = _nearest_outside(child_centroids, members, settings.outside_neighbours)
        prompts.append(
            propose_prompt([pairs[i] for i in members], [pairs[i][0] for i in outside], wanted)
        )
    answers = llm.ask_many(prompts, CategoryNames, label=f"{label} propose")
    proposals = [_unique_names(a.names) if isinstance(a, CategoryNames) else [] for a in answers]
    for hood, names in enumerate(proposals):
        if not names:  # no usable proposal: each child there stands for itself
            proposals[hood] = _unique_names([pairs[i][0] for i in np.flatnonzero(hoods == hood)])

    # 3. merge duplicates: by words, then by the LLM within batches of nearby neighbourhoods
    batches = _merge_batches(child_centroids, hoods, [len(p) for p in proposals], seed)
    categories: list[list[str]] = []
    merge_prompts: list[Prompt | None] = []
    for batch in batches:
        names = _unique_names([name for hood in batch for name in proposals[hood]])
        share = sum(int((hoods == hood).sum()) for hood in batch) / n
        at_most = max(1, round(n_wanted * share))
        categories.append(names)
        merge_prompts.append(merge_prompt(names, at_most) if n_hoods > 1 else None)
    asked = [i for i, p in enumerate(merge_prompts) if p is not None]
    if asked:
        merged = llm.ask_many(
            [merge_prompts[i] for i in asked], MergedNames, label=f"{label} merge"
        )
        for i, answer in zip(asked, merged, strict=True):
            names = _unique_names(answer.names) if isinstance(answer, MergedNames) else []
            if names:
                categories[i] = names

    # the same words merged in two batches are one category
    all_names = _unique_names([name for names in categories for name in names])
    index_of = {name_key(name): index for index, name in enumerate(all_names)}
    global_index = [[index_of[name_key(name)] for name in names] for names in categories]

    # 4. assignment: each child picks among its batch's categories
    batch_of_hood = {hood: b for b, batch in enumerate(batches) for hood in batch}
    choice_prompts = [
        assign_prompt(pairs[child], categories[batch_of_hood[int(hoods[child])]])
        for child in range(n)
    ]
    choices = llm.ask_many(choice_prompts, CategoryChoice, label=f"{label} assign")
    raw_parent = np.zeros(n, dtype=np.int64)
    unmatched = 0
    for child, choice in enumerate(choices):
        batch = batch_of_hood[int(hoods[child])]
        names = categories[batch]
        picked = _match(choice.category, names) if isinstance(choice, CategoryChoice) else None
        if picked is None:
            unmatched += 1
            picked = _most_shared_words(pairs[child], child_keywords[child], names)
        raw_parent[child] = global_index[batch][picked]
    if unmatched:
        _log.info(f"{label}: {unmatched} of {n} children matched by words, not by the LLM")

    # 5. drop empty categories, number parents largest first, rename from the children
    child_to_parent = compact_labels(raw_parent, weights=child_sizes.astype(np.float64))
    n_parents = int(child_to_parent.max()) + 1
    proposal_of = {int(child_to_parent[c]): all_names[int(raw_parent[c])] for c in range(n)}
    summaries = rename_parents(
        child_to_parent, child_summaries, child_sizes, proposal_of, n_parents, llm, label
    )
    return ParentLevel(child_to_parent, summaries)


def rename_parents(
    child_to_parent: np.ndarray,
    child_summaries: Sequence[tuple[str, str, str]],
    child_sizes: np.ndarray,
    proposal_of: dict[int, str],
    n_parents: int,
    llm: StructuredLLM,
    label: str,
) -> list[tuple[str, str, str]]:
    """(name, description, source) per parent, renamed from its largest children; a parent
    with one child is that child seen from higher up and keeps its summary."""
    prompts: list[Prompt | None] = []
    children_of = []
    for parent in range(n_parents):
        members = np.flatnonzero(child_to_parent == parent)
        members = members[np.argsort(-child_sizes[members], kind="stable")]
        children_of.append(members)
        names = [child_summaries[c][0] for c in members[:MAX_CHILD_NAMES]]
        prompts.append(parent_prompt(names, [proposal_of[parent]]) if len(members) > 1 else None)
    asked = [p for p, prompt in enumerate(prompts) if prompt is not None]
    answers = llm.ask_many([prompts[p] for p in asked], ClusterSummary, label=f"{label} rename")
    answer_of = dict(zip(asked, answers, strict=True))
    out: list[tuple[str, str, str]] = []
    for parent in range(n_parents):
        if parent not in answer_of:
            out.append(child_summaries[int(children_of[parent][0])])
            continue
        prompt = prompts[parent]
        assert prompt is not None
        answer = answer_of[parent]
        cleaned = None if isinstance(answer, LLMFailure) else clean_summary(answer, prompt.input)
        if cleaned is None or not cleaned[1]:
            children = ", ".join(child_summaries[int(c)][0] for c in children_of[parent][:3])
            name = cleaned[0] if cleaned else proposal_of[parent]
            out.append((name, f"Groups such as: {children}."[:300], "llm"))
        else:
            out.append((cleaned[0], cleaned[1], "llm"))
    return out


def _nearest_outside(centroids: np.ndarray, members: np.ndarray, count: int) -> np.ndarray:
    """The `count` children outside `members` nearest to the members' mean direction."""
    if count == 0 or len(members) == len(centroids):
        return np.zeros(0, dtype=np.int64)
    centre = centroids[members].mean(axis=0)
    similarity = centroids @ centre
    similarity[members] = -np.inf
    order = np.argsort(-similarity, kind="stable")
    return order[: min(count, len(centroids) - len(members))]


def _merge_batches(
    centroids: np.ndarray, hoods: np.ndarray, n_proposals: Sequence[int], seed: int
) -> list[list[int]]:
    """Neighbourhoods merged together: all at once when their proposals fit one call, else
    nearby neighbourhoods (k-means on their centroids) in batches of about that size."""
    n_hoods = len(n_proposals)
    total = sum(n_proposals)
    count = math.ceil(total / MAX_MERGE_NAMES)
    if count <= 1 or n_hoods <= 1:
        return [list(range(n_hoods))]
    hood_centroids = centroids_of(centroids, hoods, n_hoods)
    groups = neighbourhoods(hood_centroids, max(1, math.ceil(n_hoods / count)), seed)
    return [list(np.flatnonzero(groups == g)) for g in range(int(groups.max()) + 1)]


def _match(answer: str, names: Sequence[str]) -> int | None:
    cleaned = clean_name(answer).lower()
    for index, name in enumerate(names):
        if name.lower() == cleaned:
            return index
    key = name_key(answer)
    for index, name in enumerate(names):
        if name_key(name) == key:
            return index
    return None


def _most_shared_words(
    child: tuple[str, str], keywords: Sequence[str], names: Sequence[str]
) -> int:
    words = _words(child[0]) | _words(child[1]) | {w for k in keywords for w in _words(k)}
    overlaps = [len(words & _words(name)) for name in names]
    return int(np.argmax(overlaps))
