"""The run manifest: one JSON file, written atomically.

The manifest records what a run did (config hash, versions, counts, what the
gate suppressed and why). It holds counts and settings only, never text.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from pathlib import Path, PurePath
from typing import Any


def write_manifest(path: Path, manifest: dict) -> None:
    """Write `manifest` as JSON with sorted keys: temp file, fsync, then `os.replace`.

    Values must be JSON types, datetimes/dates (ISO 8601) or paths (strings);
    anything else, or a NaN/infinity, raises before any file is touched.
    """
    path = Path(path)
    text = json.dumps(
        manifest, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False, default=_encode
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _encode(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"manifest value of type {type(value).__name__} is not JSON-serialisable")
