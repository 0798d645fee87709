"""Plain records passed between stages.

Raw text lives only in `Conversation` (between ingest and scrub, in memory).
Everything after scrub carries scrubbed text and a pseudonymous user id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Role = Literal["user", "assistant", "system"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Conversation:
    """One canonical conversation as read from a source (raw, unscrubbed)."""

    conversation_id: str
    user_id: str
    timestamp: datetime | None
    messages: tuple[Message, ...]
    source: str
    truncated: bool = False  # a message was cut to `ingest.max_message_chars`

    def content_hash(self) -> str:
        return content_hash(self.messages)


@dataclass(frozen=True)
class QuarantineRecord:
    """A record that could not be used, with where it was and why.

    No raw content is kept: `raw_sha256` identifies the bytes without storing them.
    """

    source: str
    location: str  # e.g. "line 17" or "row 3"
    reason: str  # a short machine-friendly code, e.g. "invalid_json"
    detail: str  # human explanation, never containing input text
    raw_sha256: str
    conversation_id: str | None = None
    stage: str = "ingest"


@dataclass(frozen=True)
class ScrubbedConversation:
    conversation_id: str
    user_pseudonym: str
    timestamp: datetime | None
    messages: tuple[Message, ...]  # scrubbed text with typed placeholders
    source: str
    content_hash: str  # hash of the raw messages, for dedup and incremental runs
    n_pii_spans: int = 0
    truncated: bool = False


@dataclass(frozen=True)
class FacetValue:
    """One facet of one conversation. `value` is None when extraction failed."""

    conversation_id: str
    facet: str
    value: str | float | list[str] | None
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None


@dataclass
class Cluster:
    """A node of a facet's hierarchy (level 0 = base cluster)."""

    facet: str
    level: int
    cluster_id: str
    parent_id: str | None
    member_ids: list[str]  # conversation ids (private; never released)
    name: str = ""
    description: str = ""
    keywords: list[str] = field(default_factory=list)
    x: float | None = None
    y: float | None = None
    children: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def content_hash(messages: tuple[Message, ...] | list[Message]) -> str:
    payload = json.dumps([[m.role, m.content] for m in messages], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def raw_hash(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()
