"""A sentence-transformers model run by ONNX Runtime with int8 weights (`embed.backend: onnx-int8`).

The ONNX file is made once per environment, offline, from the local model directory, and
kept under `<sys.prefix>/share/clio/onnx/`: torch.onnx traces the whole sentence-transformers
model (transformer, pooling, normalisation, so pooling is the model's own), then
onnxruntime's dynamic quantisation stores every MatMul weight as int8, scaled per output
channel (per-tensor scales lower the mean cosine to the torch vectors from 0.993 to
0.968). sentence-transformers' own `backend="onnx"` needs optimum-onnx, whose releases
require transformers < 4.58, older than the transformers clio pins; hence this export.

An export is written to a directory beside its final place and renamed into it, so
processes that start at once each see either no export or a complete one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_log = logging.getLogger("clio.embed.onnx")

# Bump when the export changes what it writes; an older export is then made again.
EXPORT_FORMAT = 1
MODEL_FILE = "model_qint8.onnx"
META_FILE = "clio_onnx.json"
OUTPUT_NAME = "sentence_embedding"
# Traced with texts of different lengths, so the graph is exported with padding in it.
TRACE_TEXTS = ("a short text", "a longer text, which the tokenizer pads the shorter one to")


def default_root() -> Path:
    """Where exports live: inside the Python environment, beside its packages."""
    return Path(sys.prefix) / "share" / "clio" / "onnx"


def source_fingerprint(source: Path) -> str:
    """Changes when any file of the model directory is replaced (name, size, mtime)."""
    digest = hashlib.sha256(str(source.resolve()).encode())
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(source)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def export_dir(source: Path, name: str, root: Path | None = None) -> Path:
    """The directory the export of `source` has (or will have)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[-60:]
    folder = f"{safe}-{source_fingerprint(source)}-qint8-v{EXPORT_FORMAT}"
    return (root or default_root()) / folder


def ensure_exported(source: Path, name: str, root: Path | None = None) -> Path:
    """The export directory of `source`, made first if missing."""
    final = export_dir(source, name, root)
    if (final / META_FILE).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(final)
    scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        _log.info(f"embed: exporting {name} to ONNX with int8 weights into {final} (once)")
        start = time.perf_counter()
        export(source, scratch)
        scratch.chmod(0o755)  # mkdtemp makes it private; the export is for every user
        try:
            os.rename(scratch, final)
        except OSError:
            if not (final / META_FILE).exists():
                raise
            _log.info(f"embed: another process exported {name} first; using its export")
        else:
            _log.info(f"embed: exported {name} in {time.perf_counter() - start:.1f} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


def _sentence_vectors(model: Any, input_names: list[str]) -> Any:
    """The SentenceTransformer as a module of token tensors -> sentence vectors."""
    import torch

    class SentenceVectors(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(input_names, tensors, strict=True)))[OUTPUT_NAME]

    return SentenceVectors()


def export(source: Path, out: Path) -> None:
    """Write the int8 ONNX model, its tokenizer and `clio_onnx.json` into `out`."""
    import onnxruntime
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(source), device="cpu").eval()
    features = model.preprocess(list(TRACE_TEXTS))
    input_names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in features]
    module = _sentence_vectors(model, input_names)
    fp32 = out / "model_fp32.onnx"
    inputs = tuple(features[name] for name in input_names)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dimension = int(module(*inputs).shape[1])
        torch.onnx.export(
            module,
            inputs,
            str(fp32),
            dynamo=False,
            input_names=input_names,
            output_names=[OUTPUT_NAME],
            dynamic_axes={name: {0: "batch", 1: "tokens"} for name in input_names}
            | {OUTPUT_NAME: {0: "batch"}},
            opset_version=17,
        )
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a line per tensor to the root logger
    try:
        quantize_dynamic(fp32, out / MODEL_FILE, weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
    fp32.unlink()
    model.tokenizer.save_pretrained(str(out))
    meta = {
        "format": EXPORT_FORMAT,
        "source": str(source.resolve()),
        "inputs": input_names,
        "max_seq_length": int(model.max_seq_length),
        "dimension": dimension,
        "quantization": "dynamic, int8 weights per output channel, uint8 activations",
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _remove_abandoned(final: Path) -> None:
    """Scratch directories of exports killed midway (an export takes well under an hour)."""
    cutoff = time.time() - 3600
    for scratch in final.parent.glob(f".{final.name}.*"):
        if scratch.is_dir() and scratch.stat().st_mtime < cutoff:
            shutil.rmtree(scratch, ignore_errors=True)


class OnnxSentenceModel:
    """An export loaded for encoding: its tokenizer and one ONNX Runtime session."""

    def __init__(self, directory: Path):
        import onnxruntime
        from transformers import AutoTokenizer

        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        self.input_names: list[str] = meta["inputs"]
        self.max_seq_length: int = meta["max_seq_length"]
        self.dimension: int = meta["dimension"]
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory))
        self.session = onnxruntime.InferenceSession(
            str(directory / MODEL_FILE), providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """float32 (len(texts), dimension), rows in the order of `texts`; batches hold
        texts of similar length, since each is padded to its longest."""
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = np.argsort([len(text) for text in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            tokens = self.tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=self.max_seq_length,
                return_tensors="np",
            )
            feed = {name: np.asarray(tokens[name], dtype=np.int64) for name in self.input_names}
            vectors[rows] = self.session.run([OUTPUT_NAME], feed)[0]
        return vectors


if __name__ == "__main__":
    # `python -m clio.embed_onnx`: export the packaged model now rather than at first use.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from clio.embed import OnnxInt8Embedder

    print(OnnxInt8Embedder().export_directory())
