"""Progress for long stages: a terminal bar plus periodic log lines with rate and ETA.

Log lines carry counts only, never content, so they are safe for Prefect's log store.
They come every `CLIO_PROGRESS_SECONDS` seconds (15 unless set; 0 logs every update).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from types import TracebackType

from tqdm import tqdm

_log = logging.getLogger("clio")


PROGRESS_SECONDS_ENV = "CLIO_PROGRESS_SECONDS"


def progress_interval() -> float:
    """Seconds between progress log lines: `CLIO_PROGRESS_SECONDS`, else 15."""
    raw = os.environ.get(PROGRESS_SECONDS_ENV, "").strip()
    if not raw:
        return 15.0
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(
            f"{PROGRESS_SECONDS_ENV} must be a number of seconds, not {raw!r}"
        ) from None
    if seconds < 0:
        raise ValueError(f"{PROGRESS_SECONDS_ENV} must not be negative, got {raw!r}")
    return seconds


class Progress:
    """`with Progress("scrub", total=n) as p: ... p.update(k)`."""

    def __init__(
        self,
        stage: str,
        total: int,
        *,
        unit: str = "conv",
        logger: logging.Logger | logging.LoggerAdapter | None = None,
        log_every_seconds: float | None = None,
    ):
        self.stage = stage
        self.total = total
        self.unit = unit
        self.done = 0
        self._logger = logger or _log
        self._log_every = (
            log_every_seconds if log_every_seconds is not None else progress_interval()
        )
        self._start = time.monotonic()
        self._last_log = self._start
        self._bar = tqdm(
            total=total,
            desc=stage,
            unit=unit,
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
            leave=False,
        )

    def update(self, n: int = 1) -> None:
        self.done += n
        self._bar.update(n)
        now = time.monotonic()
        if now - self._last_log >= self._log_every:
            self._last_log = now
            self._logger.info(self.status())

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def status(self) -> str:
        rate = self.done / self.elapsed if self.elapsed > 0 else 0.0
        remaining = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = f"{remaining:.0f}s" if remaining == remaining else "?"
        return (
            f"{self.stage}: {self.done}/{self.total} {self.unit} "
            f"({rate:.1f}/s, elapsed {self.elapsed:.0f}s, ETA {eta})"
        )

    def __enter__(self) -> Progress:
        self._logger.info(f"{self.stage}: starting, {self.total} {self.unit}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bar.close()
        rate = self.done / self.elapsed if self.elapsed > 0 else 0.0
        outcome = "failed" if exc_type else "done"
        self._logger.info(
            f"{self.stage}: {outcome}, {self.done}/{self.total} {self.unit} "
            f"in {self.elapsed:.1f}s ({rate:.1f}/s)"
        )
