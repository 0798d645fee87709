"""Where the labelled datasets live: `--data-dir`, else $CLIO_SHARED_DATA, else the
`shared/data` folder beside the repository."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


def default_data_dir() -> Path:
    return Path(os.environ.get("CLIO_SHARED_DATA", DEFAULT_DATA_DIR))


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding the datasets (default $CLIO_SHARED_DATA or ../shared/data)",
    )
