"""Scrubbing one batch of conversations: analyse all their messages in one call, fall
back to one conversation at a time when that fails, and turn each outcome into a
scrubbed conversation or a quarantine record. Both the stage and the pool's workers run
this, so a batch comes out the same wherever it was scrubbed.
"""

from __future__ import annotations

from collections.abc import Sequence

from clio.pseudonym import pseudonymize
from clio.records import Conversation, Message, QuarantineRecord, ScrubbedConversation
from clio.scrub.spans import Scrubber, Span, apply_placeholders, propagate_values

# What scrubbing a batch gives: its scrubbed conversations and its quarantine records.
Outcome = tuple[list[ScrubbedConversation], list[QuarantineRecord]]


def _analyze_checked(scrubber: Scrubber, texts: list[str]) -> list[list[Span]]:
    spans = scrubber.analyze(texts)
    if len(spans) != len(texts):
        raise ValueError(f"analyzer returned {len(spans)} results for {len(texts)} texts")
    return spans


def _analyze_batch(
    batch: Sequence[Conversation], scrubber: Scrubber
) -> list[list[list[Span]] | Exception]:
    """Spans per message per conversation, or the exception that conversation raised."""
    try:
        flat = _analyze_checked(scrubber, [m.content for c in batch for m in c.messages])
    except Exception:
        # One bad conversation must not quarantine its batch: retry them one by one.
        outcomes: list[list[list[Span]] | Exception] = []
        for conversation in batch:
            try:
                outcomes.append(
                    _analyze_checked(scrubber, [m.content for m in conversation.messages])
                )
            except Exception as exc:
                outcomes.append(exc)
        return outcomes
    outcomes, offset = [], 0
    for conversation in batch:
        outcomes.append(flat[offset : offset + len(conversation.messages)])
        offset += len(conversation.messages)
    return outcomes


def _scrubbed(
    conversation: Conversation, spans: list[list[Span]], hmac_key: str
) -> ScrubbedConversation:
    texts = [m.content for m in conversation.messages]
    replaced = apply_placeholders(texts, propagate_values(texts, spans))
    return ScrubbedConversation(
        conversation_id=conversation.conversation_id,
        user_pseudonym=pseudonymize(conversation.user_id, hmac_key),
        timestamp=conversation.timestamp,
        messages=tuple(
            Message(m.role, text)
            for m, (text, _) in zip(conversation.messages, replaced, strict=True)
        ),
        source=conversation.source,
        content_hash=conversation.content_hash(),
        n_pii_spans=sum(len(regions) for _, regions in replaced),
        truncated=conversation.truncated,
    )


def _quarantine(conversation: Conversation, error: Exception) -> QuarantineRecord:
    return QuarantineRecord(
        source=conversation.source,
        location=f"conversation {conversation.conversation_id}",
        reason="scrub_failed",
        detail=type(error).__name__,  # never the message: it may quote the text
        raw_sha256=conversation.content_hash(),
        conversation_id=conversation.conversation_id,
        stage="scrub",
    )


def scrub_batch(
    batch: Sequence[Conversation], scrubber: Scrubber, hmac_key: str
) -> tuple[list[ScrubbedConversation], list[QuarantineRecord]]:
    scrubbed: list[ScrubbedConversation] = []
    quarantined: list[QuarantineRecord] = []
    for conversation, spans in zip(batch, _analyze_batch(batch, scrubber), strict=True):
        if isinstance(spans, Exception):
            quarantined.append(_quarantine(conversation, spans))
            continue
        try:  # spans from a faulty analyzer (outside the text) land here
            scrubbed.append(_scrubbed(conversation, spans, hmac_key))
        except Exception as exc:
            quarantined.append(_quarantine(conversation, exc))
    return scrubbed, quarantined
