"""`clio eval pii`, `clio eval clusters`, `clio eval names` and `clio eval pipeline`
(argparse wiring only)."""

from __future__ import annotations

import argparse
import importlib

# subcommand -> module providing `add_arguments(parser)` and `run(args) -> int`
_HARNESSES = {
    "pii": (
        "clio.evaluation.pii",
        "span-level precision/recall/F2 of the scrubber on a labelled PII dataset",
    ),
    "clusters": (
        "clio.evaluation.clusters",
        "cluster quality (ARI, NMI, V-measure, reconstruction) against labelled topics",
    ),
    "names": (
        "clio.evaluation.names",
        "cluster names against label names: top-1 label, retrieval of the own cluster",
    ),
    "pipeline": (
        "clio.evaluation.pipeline",
        "labelled conversations through clio run: purity, NMI/ARI, coverage and names of "
        "the released tree, against k-means and BERTopic",
    ),
}


def add_eval_commands(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser(
        "eval",
        help="measure scrubbing or clustering quality on labelled data",
        description="Evaluation harnesses over the labelled datasets in ../shared/data "
        "(or a path). Each prints a table, or one JSON object with --json.",
    )
    harnesses = evaluate.add_subparsers(dest="harness", required=True, metavar="HARNESS")
    for name, (module_name, help_text) in _HARNESSES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # harness not part of this build
        parser = harnesses.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(parser)
        parser.set_defaults(func=module.run)
