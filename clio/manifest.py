"""The run manifests: JSON files, written atomically.

A run writes two (`clio.pipeline.report`): a public one anyone may read (versions,
thresholds, what was released and suppressed) and an operator one under `private/`
with everything the run did. Both hold counts and settings only, never text.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from pathlib import Path, PurePath
from typing import Any


def write_manifest(path: Path, manifest: dict, mode: int | None = None) -> None:
    """Write `manifest` as JSON with sorted keys: temp file, fsync, then `os.replace`.

    Values must be JSON types, datetimes/dates (ISO 8601) or paths (strings);
    anything else, or a NaN/infinity, raises before any file is touched. With `mode`
    (e.g. 0o600 for the operator manifest) the file has exactly that mode from the
    moment it is created, so it is never readable by others, not even briefly;
    without it, the process umask decides as for any file.
    """
    path = Path(path)
    text = json.dumps(
        manifest, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False, default=_encode
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        temp.unlink(missing_ok=True)  # left by a killed writer with this pid
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        descriptor = os.open(temp, flags, 0o666 if mode is None else mode)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            if mode is not None:
                os.fchmod(handle.fileno(), mode)  # exactly `mode`, whatever the umask
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
