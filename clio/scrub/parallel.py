"""The scrub stage's process pool: this process and `workers - 1` spawned ones scrub
batches side by side, and no batch is lost when a worker fails.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from clio.progress import Progress
from clio.records import Conversation, QuarantineRecord, ScrubbedConversation
from clio.scrub.batch import Outcome, scrub_batch
from clio.scrub.spans import Scrubber

_log = logging.getLogger("clio.scrub")


_worker_scrubber: Scrubber | None = None


# What a new worker runs first. It ends when the run's process dies, killed or not.
# Presidio imports transformers and torch for NLP engines clio does not use, which costs
# seconds per process; a worker only scrubs, so it starts without them (an import of
# either then fails there). The scrubber is unpickled after, as unpickling imports the
# scrub package and with it Presidio.
_WORKER_START = """
import pickle, sys
from clio.process import end_with_parent
end_with_parent(parent_pid)
for name in ("transformers", "torch"):
    sys.modules.setdefault(name, None)
from clio.scrub.parallel import _start_worker
_start_worker(pickle.loads(scrubber))
"""


def _start_worker(scrubber: Scrubber) -> None:
    global _worker_scrubber
    _worker_scrubber = scrubber


def _scrub_batch_in_worker(
    batch: Sequence[Conversation], hmac_key: str
) -> tuple[list[ScrubbedConversation], list[QuarantineRecord]]:
    assert _worker_scrubber is not None, "worker started without a scrubber"
    return scrub_batch(batch, _worker_scrubber, hmac_key)


def scrub_in_parallel(
    batches: list[Sequence[Conversation]],
    scrubber: Scrubber,
    hmac_key: str,
    workers: int,
    progress: Progress,
    on_batch: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """This process takes batches from the front, the pool from the back. When the front
    meets the back, batches the pool has not started are taken back; a batch whose worker
    failed (the process died, say) is scrubbed here, so its conversations are still
    scrubbed or quarantined one by one, never passed through. `on_batch` sees each
    outcome as it arrives."""
    outcomes: list[Outcome | None] = [None] * len(batches)
    front, back = 0, len(batches)
    in_flight: dict[Future[Outcome], int] = {}
    pool_usable, pool_answered = True, False

    def done(index: int, outcome: Outcome) -> None:
        outcomes[index] = outcome
        if on_batch is not None:
            on_batch(outcome)
        progress.update(len(batches[index]))

    def scrub_here(index: int) -> None:
        done(index, scrub_batch(batches[index], scrubber, hmac_key))

    # spawn: the run's process may hold threads (Prefect), which fork does not survive.
    pool = ProcessPoolExecutor(
        workers - 1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=exec,
        initargs=(_WORKER_START, {"scrubber": pickle.dumps(scrubber), "parent_pid": os.getpid()}),
    )
    try:
        while front < back or in_flight:
            # One batch per worker until the pool has answered (a worker takes seconds to
            # start, and a batch handed to it cannot be taken back), then two.
            limit = (workers - 1) * (2 if pool_answered else 1)
            while pool_usable and front < back and len(in_flight) < limit:
                back -= 1
                try:
                    in_flight[pool.submit(_scrub_batch_in_worker, batches[back], hmac_key)] = back
                except BrokenProcessPool:
                    pool_usable = False
                    back += 1
            for future in [f for f in in_flight if f.done()]:
                index = in_flight.pop(future)
                try:
                    outcome = future.result()
                except Exception as exc:
                    _log.warning(
                        "scrub: a worker failed (%s), scrubbing its batch here", type(exc).__name__
                    )
                    pool_usable = False
                    scrub_here(index)
                else:
                    done(index, outcome)
                    pool_answered = True
            if front < back:
                scrub_here(front)
                front += 1
            elif in_flight:
                taken_back = next((f for f in in_flight if f.cancel()), None)
                if taken_back is not None:
                    scrub_here(in_flight.pop(taken_back))
                else:
                    wait(in_flight, return_when=FIRST_COMPLETED)
    finally:
        # A worker still loading its models is not waited for: it exits once it is up.
        pool.shutdown(wait=False, cancel_futures=True)
    assert all(outcome is not None for outcome in outcomes)
    return [outcome for outcome in outcomes if outcome is not None]
