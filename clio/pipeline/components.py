"""The run's pluggable parts, built once per process from their config sections.

Partition stages run many times in one worker process; the scrubber (Presidio and
spaCy) and the embedder are expensive to load, so they are kept per config.
"""

from __future__ import annotations

import hashlib
import os

from clio.config import EmbedConfig, LLMConfig, ScrubConfig
from clio.embed import Embedder, build_embedder
from clio.llm.client import ResponseCache, StructuredLLM
from clio.llm.factory import build_backend
from clio.scrub import Scrubber, build_scrubber
from clio.store import PrivateStore

HMAC_SECRET = "user_pseudonym_hmac_key"

_SCRUBBERS: dict[str, Scrubber] = {}
_EMBEDDERS: dict[str, Embedder] = {}


def scrubber_for(config: ScrubConfig) -> Scrubber:
    key = config.model_dump_json()
    if key not in _SCRUBBERS:
        _SCRUBBERS[key] = build_scrubber(config)
    return _SCRUBBERS[key]


def embedder_for(config: EmbedConfig) -> Embedder:
    key = config.model_dump_json()
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = build_embedder(config)
    return _EMBEDDERS[key]


def llm_for(config: LLMConfig, cache: ResponseCache | None) -> StructuredLLM:
    return StructuredLLM(build_backend(config), config, cache=cache)


def hmac_key(config: ScrubConfig, store: PrivateStore) -> str:
    """The user-pseudonym key: from the environment when set, else the store's own."""
    from_env = os.environ.get(config.hmac_key_env)
    return from_env if from_env else store.get_or_create_secret(HMAC_SECRET)


def key_fingerprint(key: str) -> str:
    """A check value that tells whether two processes use the same key, revealing nothing."""
    return hashlib.sha256(("clio-key-check:" + key).encode()).hexdigest()[:16]
