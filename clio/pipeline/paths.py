"""Where a run keeps its files: everything a run writes is under one output directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PRIVATE_STORE = "private.duckdb"
RELEASED_STORE = "insights.duckdb"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class RunPaths:
    output_dir: Path

    @property
    def private(self) -> Path:
        return self.output_dir / "private" / PRIVATE_STORE

    @property
    def shards(self) -> Path:
        return self.output_dir / "private" / "shards"

    def shard(self, prefix: str, n: int) -> Path:
        """The shard file partition `n` of a stage writes (`<prefix>-NNNN.duckdb`)."""
        return self.shards / f"{prefix}-{n:04d}.duckdb"

    @property
    def released(self) -> Path:
        return self.output_dir / RELEASED_STORE

    @property
    def manifest(self) -> Path:
        """The public manifest of the last run (`clio.pipeline.report.public_manifest`)."""
        return self.output_dir / MANIFEST

    @property
    def run_manifests(self) -> Path:
        """Public manifests, one per run (`<run_id>.json`)."""
        return self.output_dir / "runs"

    @property
    def operator_manifest(self) -> Path:
        """The operator manifest of the last run: everything, beside the private store."""
        return self.output_dir / "private" / MANIFEST

    @property
    def operator_run_manifests(self) -> Path:
        """Operator manifests, one per run (`<run_id>.json`)."""
        return self.output_dir / "private" / "runs"
