"""The gate's output, sealed: `write_release` writes only what `apply_gate` produced.

Invariant 1 (nothing reaches the released store except through the gate) used to be a
convention: `GateResult` is a plain dataclass anyone can build. Now `apply_gate` seals
its result: an HMAC-SHA256, under a random key made when this module is imported, over
a canonical serialisation of everything the result holds (every column of every
cluster and breakdown row, in order, and the suppression, text-check and DP reports).
`clio.release.write_release` calls `check_seal` and refuses a result that carries no
seal (built by hand), whose rows changed after the gate sealed them (a row edited,
added, dropped or reordered, a list mutated in place), or that another process sealed
(the key never leaves the process that made it).

What it protects against: code paths that bypass the gate by mistake, such as a new
caller that builds release rows itself, a step after the gate that "fixes" a figure,
or a `dataclasses.replace` of a gate result. What it does not: anyone who can run code
in this process can read the key or call `_seal` (Python hides nothing), and the run
row (`clio.released.RunRow`) is not part of the gate's output, so it is not sealed;
`write_release` checks it against the thresholds on its own.

`_seal` is the one way to seal. It is private: `apply_gate` is its only caller in the
runtime, and the tests that need rows chosen by hand (the writer's, the page's, the
attack suite's planted leaks) reach it through one named module, `tests/ungated.py`;
`tests/test_architecture.py` checks that nothing else imports it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field, fields, replace
from typing import Any

from clio.released import ReleasedBreakdown, ReleasedCluster, ReleasedLineage

_KEY = secrets.token_bytes(32)  # this process's sealing key; never exported or stored
_CLUSTER_COLUMNS = tuple(f.name for f in fields(ReleasedCluster))
_BREAKDOWN_COLUMNS = tuple(f.name for f in fields(ReleasedBreakdown))
_LINEAGE_COLUMNS = tuple(f.name for f in fields(ReleasedLineage))


@dataclass(frozen=True)
class GateResult:
    """What may leave the pipeline: the only input `clio.release.write_release` accepts,
    and only with the seal `apply_gate` gave it (see the module doc)."""

    clusters: list[ReleasedCluster]
    breakdowns: list[ReleasedBreakdown]
    suppressed: dict[str, int] = field(default_factory=dict)  # counts by reason, only > 0
    text_checks: dict[str, int] = field(default_factory=dict)  # what the text checks did
    dp: dict[str, Any] | None = None  # the DP budget and mechanisms, when DP is on
    lineage: list[ReleasedLineage] = field(default_factory=list)  # links to the run before
    seal: str = field(default="", repr=False, compare=False)  # HMAC of the above, or ""


class UnsealedGateResult(ValueError):
    """A `GateResult` that `apply_gate` did not produce, or that changed since."""


def _seal(result: GateResult) -> GateResult:
    """`result` sealed with this process's key. Only `apply_gate` calls it at run time."""
    return replace(result, seal=_digest(result))


def check_seal(result: GateResult) -> None:
    """Raise `UnsealedGateResult` unless `result` is exactly as `apply_gate` sealed it in
    this process."""
    if not result.seal:
        raise UnsealedGateResult(
            "this GateResult carries no seal: only rows produced by clio.gate.apply_gate "
            "may be written to the released store"
        )
    if not hmac.compare_digest(result.seal, _digest(result)):
        raise UnsealedGateResult(
            "this GateResult does not match its seal: its rows changed after "
            "clio.gate.apply_gate produced them (or another process sealed it); only the "
            "gate's rows, unchanged, may be written to the released store"
        )


def _digest(result: GateResult) -> str:
    """HMAC over a canonical serialisation: JSON of each row's columns in contract order
    (floats exactly, lists and tuples alike), then the reports with sorted keys."""
    content = {
        "clusters": [_row(c, _CLUSTER_COLUMNS) for c in result.clusters],
        "breakdowns": [_row(b, _BREAKDOWN_COLUMNS) for b in result.breakdowns],
        "suppressed": result.suppressed,
        "text_checks": result.text_checks,
        "dp": result.dp,
        "lineage": [_row(k, _LINEAGE_COLUMNS) for k in result.lineage],
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=repr)
    return hmac.new(_KEY, text.encode(), hashlib.sha256).hexdigest()


def _row(row: object, columns: tuple[str, ...]) -> list[object]:
    """The row's type and columns; a row of another type serialises differently, so it
    fails the check instead of raising here."""
    return [type(row).__name__, *(getattr(row, c, None) for c in columns)]
