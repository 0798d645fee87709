"""The scrub stage: every message of every conversation, in batches, in this process or
with the process pool; failures are quarantined, never passed on unscrubbed.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence

from clio.config import ScrubConfig
from clio.progress import Progress
from clio.records import Conversation, QuarantineRecord, ScrubbedConversation
from clio.scrub.batch import Outcome, scrub_batch
from clio.scrub.parallel import scrub_in_parallel
from clio.scrub.spans import Scrubber

_log = logging.getLogger("clio.scrub")


CONVERSATIONS_PER_BATCH = 64  # also the blast radius of a batch failure before the retry


def scrub_workers(config: ScrubConfig) -> int:
    """Processes to scrub with: `config.workers`, or 2 on a machine with 2 or more cores."""
    if config.workers is not None:
        return config.workers
    return min(2, os.cpu_count() or 1)


def scrub_conversations(
    conversations: Sequence[Conversation],
    scrubber: Scrubber,
    hmac_key: str,
    *,
    progress_label: str = "scrub",
    conversations_per_batch: int = CONVERSATIONS_PER_BATCH,
    workers: int = 1,
    on_batch: Callable[[Outcome], None] | None = None,
) -> tuple[list[ScrubbedConversation], list[QuarantineRecord]]:
    """Scrub every message of every conversation; failures are quarantined, in input order.

    `on_batch` is called with each batch's outcome as soon as it is done (in the order
    batches finish), so a caller can keep them before the whole stage ends.

    With `workers` > 1 (and at least `MIN_PARALLEL_BATCHES` batches), this process and
    `workers - 1` others scrub batches side by side; the scrubber is pickled to them
    (`PresidioScrubber` is rebuilt from its config), and the output is the same as with one.
    """
    if not hmac_key:
        raise ValueError("hmac_key must not be empty")
    if workers < 1:
        raise ValueError("workers must be at least 1")
    batches = [
        conversations[start : start + conversations_per_batch]
        for start in range(0, len(conversations), conversations_per_batch)
    ]
    with Progress(progress_label, total=len(conversations)) as progress:
        if workers > 1 and len(batches) >= MIN_PARALLEL_BATCHES and _may_start_processes():
            outcomes = scrub_in_parallel(batches, scrubber, hmac_key, workers, progress, on_batch)
        else:
            outcomes = []
            for batch in batches:
                outcomes.append(scrub_batch(batch, scrubber, hmac_key))
                if on_batch is not None:
                    on_batch(outcomes[-1])
                progress.update(len(batch))
    scrubbed = [c for done, _ in outcomes for c in done]
    quarantined = [q for _, failed in outcomes for q in failed]
    if quarantined:
        _log.warning(
            "%s: %d of %d conversations quarantined (scrub_failed)",
            progress_label,
            len(quarantined),
            len(conversations),
        )
    return scrubbed, quarantined


# Starting a process and loading the models in it takes seconds: below this many batches
# the run's own process is as fast alone.
MIN_PARALLEL_BATCHES = 4


def _may_start_processes() -> bool:
    # A daemonic process (e.g. a Dask worker) may not have children.
    return not multiprocessing.current_process().daemon
