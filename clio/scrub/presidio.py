"""The Presidio engine: an analyzer per language (spaCy NER plus the recognizer registry),
language routing, chunking of long texts, and the corrections applied to the NER
model's spans, behind the `Scrubber` protocol as `PresidioScrubber`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from importlib import metadata

from lingua import IsoCode639_1, LanguageDetectorBuilder
from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine, RecognizerResult
from presidio_analyzer.chunkers import CharacterBasedTextChunker

from clio.config import ScrubConfig
from clio.scrub.nlp import build_nlp_engine, check_language, model_version
from clio.scrub.recognizers.code import code_regions, not_pii
from clio.scrub.recognizers.gazetteers import is_public_place
from clio.scrub.recognizers.names import is_wordlike_name, ner_person_label
from clio.scrub.recognizers.registry import build_registry, recognizers_version
from clio.scrub.spans import (
    Scrubber,
    Span,
    apply_placeholders,
    join_address_parts,
    resolve_overlaps,
)

CHUNK_CHARS = 5000  # longer texts are analysed in overlapping chunks, spans mapped back
CHUNK_OVERLAP_CHARS = 200


def create_analyzer(language: str = "en", disabled: tuple[str, ...] = ()) -> AnalyzerEngine:
    """A fresh analyzer: Presidio's predefined recognizers plus clio's, nothing downloaded;
    recognizers named in `disabled` are left out."""
    check_language(language)
    nlp_engine = build_nlp_engine(language)
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
        languages = _languages(config)
        for language in languages:
            check_language(language)
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

    def keeps(self, entity_type: str, value: str) -> bool:
        """Whether a detected `value` of `entity_type` is left in place by the keep policy
        (`scrub.keep_public_places`): a LOCATION naming public places only."""
        return (
            self._config.keep_public_places
            and entity_type == "LOCATION"
            and is_public_place(value, self._config.public_city_min_population)
        )

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
            code = code_regions(text)
            found = [
                _corrected_ner_person(text, _to_span(r)) if _from_ner(r, "PERSON") else _to_span(r)
                for r in results
                if self._passes_threshold(r)
                and not _ner_word_phrase(text, r)
                and not not_pii(text, r.entity_type, r.start, r.end, code)
            ]
            # After the join: a public place inside a street address stays a part of it.
            found = self._without_kept(text, join_address_parts(text, found))
            spans.append(sorted(found, key=lambda s: (s.start, s.end, s.entity_type)))
        return spans

    def _without_kept(self, text: str, spans: list[Span]) -> list[Span]:
        """`spans` less those the keep policy leaves in place. It judges each region the
        placeholders would replace (overlapping detections merged): a region is kept when
        its text names public places only and its strongest detection is a LOCATION that
        no other type ties, so a weak name-list guess inside a place ("States" in "the
        United States") goes with it, while a place name that a naming phrase or a title
        makes a person ("my name is Chad") is still replaced."""
        result: list[Span] = []
        for region in resolve_overlaps(spans):
            members = [s for s in spans if region.start <= s.start < region.end]
            place = max((m.score for m in members if m.entity_type == "LOCATION"), default=None)
            kept = (
                place is not None
                and all(m.score < place for m in members if m.entity_type != "LOCATION")
                and self.keeps("LOCATION", text[region.start : region.end])
            )
            if not kept:
                result.extend(members)
        return result

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
        "keep": keep_policy(config),
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()
    return f"{_code_version(languages)}+{digest[:12]}"


def _code_version(languages: list[str]) -> str:
    models = "+".join(model_version(language) for language in languages)
    presidio = metadata.version("presidio-analyzer")
    return f"presidio-{presidio}+{models}+recognizers-{recognizers_version()}"


def _languages(config: ScrubConfig) -> list[str]:
    return [config.language, *[x for x in config.extra_languages if x != config.language]]


def keep_policy(config: ScrubConfig) -> str:
    """What the keep policy leaves in place, as a label: `places>=N` or `none`."""
    if not config.keep_public_places:
        return "none"
    return f"places>={config.public_city_min_population}"


def scrub_code_version(config: ScrubConfig) -> str:
    """The versions of what scrubs under `config` (Presidio, the NER models, clio's
    recognizers) and its keep policy, without loading any of it: with the config, what
    decides the output."""
    return f"{_code_version(_languages(config))}+keep-{keep_policy(config)}"


def build_scrubber(config: ScrubConfig) -> Scrubber:
    return PresidioScrubber(config)
