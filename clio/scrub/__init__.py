"""Scrub stage: find PII with Presidio (offline) and replace it with numbered typed placeholders.

Every message is scrubbed, the assistant's too (assistants repeat names back). Within one
conversation the same value always gets the same placeholder (`<PERSON_1>` throughout),
a different value the next number. A conversation the analyzer fails on is quarantined,
never passed on unscrubbed.

Modules: `spans` (the `Scrubber` protocol, `Span` and the span algebra), `nlp` (spaCy
pipelines per language), `presidio` (the Presidio engine, `PresidioScrubber`), `batch`
(one batch of conversations), `parallel` (the process pool), `stage`
(`scrub_conversations`), and `recognizers/` (clio's recognizers and their registry).
This module is the public API callers import from.
"""

from clio.scrub.presidio import CHUNK_CHARS, PresidioScrubber, build_scrubber, scrub_code_version
from clio.scrub.spans import (
    Scrubber,
    Span,
    apply_placeholders,
    join_address_parts,
    propagate_values,
    resolve_overlaps,
)
from clio.scrub.stage import scrub_conversations, scrub_workers

__all__ = [
    "CHUNK_CHARS",
    "PresidioScrubber",
    "Scrubber",
    "Span",
    "apply_placeholders",
    "build_scrubber",
    "join_address_parts",
    "propagate_values",
    "resolve_overlaps",
    "scrub_code_version",
    "scrub_conversations",
    "scrub_workers",
]
