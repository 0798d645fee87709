"""Released rows chosen by hand, sealed as if the gate had produced them: for tests only.

`clio.release.write_release` writes only a `GateResult` that `clio.gate.apply_gate`
sealed. Tests of what writes or reads a released store (the writer, the page, `clio
sql`, the attack suite with its planted leaks) need rows chosen by hand; this is the
one place that seals such rows, through the gate's private `clio.gate.result._seal`.
`tests/test_architecture.py` checks that nothing else outside `clio.gate` imports it,
so a store written from `ungated_result` rows is always a test's deliberate choice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from clio.gate.result import GateResult, _seal
from clio.released import ReleasedBreakdown, ReleasedCluster


def ungated_result(
    clusters: Iterable[ReleasedCluster],
    breakdowns: Iterable[ReleasedBreakdown] = (),
    suppressed: Mapping[str, int] | None = None,
) -> GateResult:
    """`clusters` and `breakdowns` as a sealed gate result, without passing the gate."""
    return _seal(GateResult(list(clusters), list(breakdowns), dict(suppressed or {})))
