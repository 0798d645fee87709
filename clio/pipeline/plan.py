"""Planning a run: what the input holds, which mode the run takes, and its id."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from clio.config import IngestConfig
from clio.incremental import Mode
from clio.ingest import ingest
from clio.records import Conversation, QuarantineRecord

T = TypeVar("T")


@dataclass
class InputPlan:
    """What the input holds, without its text: accepted conversations in input order."""

    conversation_ids: list[str] = field(default_factory=list)
    content_hashes: list[str] = field(default_factory=list)
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    n_input: int = 0
    n_truncated: int = 0
    n_missing_user: int = 0
    sources: list[str] = field(default_factory=list)


def plan_input(config: IngestConfig, input_paths: list[str], limit: int | None) -> InputPlan:
    """Read the input once for its ids, content hashes and quarantine; keeps no text."""
    ids: list[str] = []
    hashes: list[str] = []
    sources: set[str] = set()

    def note(_: int, conversation: Conversation) -> bool:
        ids.append(conversation.conversation_id)
        hashes.append(conversation.content_hash())
        sources.add(conversation.source)
        return False

    result = ingest(input_paths, config, limit=limit, keep=note)
    sources |= {q.source for q in result.quarantine}
    return InputPlan(
        conversation_ids=ids,
        content_hashes=hashes,
        quarantine=list(result.quarantine),
        n_input=result.n_input,
        n_truncated=result.n_truncated,
        n_missing_user=result.n_missing_user,
        sources=sorted(sources),
    )


def run_id_of(config_digest: str, content_hashes: Sequence[str], quarantine: Sequence[str]) -> str:
    """Same input and config give the same run id, so a re-run replaces its own rows."""
    digest = hashlib.sha256(config_digest.encode())
    for value in sorted(content_hashes):
        digest.update(value.encode())
    digest.update(b"|")
    for value in sorted(quarantine):
        digest.update(value.encode())
    return "run-" + digest.hexdigest()[:12]


def quarantine_key(q: QuarantineRecord) -> str:
    return f"{q.source}:{q.location}:{q.reason}"


def slices(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def resolve_mode(requested: Mode, build: tuple[str, str] | None, digest: str) -> tuple[Mode, str]:
    """The mode this run takes, and why (said in the report and the manifest)."""
    if requested == "incremental":
        if build is None:
            return "full", "no full build in this output directory yet, so a full build was made"
        if build[1] != digest:
            return "rebuild", (
                "settings that shape the clusters changed since the last full build, "
                "so it was rebuilt"
            )
        return "incremental", f"added to the full build {build[0]}"
    if requested == "rebuild":
        return "rebuild", "full build over the last build's conversations and the input"
    return "full", "full build over the input"
