"""The pipeline composed: stages as plain functions and one run over them.

- `paths`: where a run keeps its files;
- `components`: the scrubber, embedder and LLM, built once per process from config;
- `plan`: reading the input for ids and hashes, the run id, the mode a run takes;
- `stages`: scrub, facets and embeddings in partitions, the facet trees, incremental
  assignment;
- `publish`: the gate's inputs, the gate, the release;
- `report`: the manifest's content;
- `run`: `run_pipeline`, the stages in order behind a `StageRunner`.

Nothing here imports a scheduler: `flows/` wraps these functions as Prefect tasks.
"""

from clio.pipeline.paths import RunPaths
from clio.pipeline.run import InProcess, StageRunner, run_pipeline

__all__ = ["InProcess", "RunPaths", "StageRunner", "run_pipeline"]
