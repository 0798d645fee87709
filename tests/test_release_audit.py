"""The attack suite (`clio.release_audit`) on real released stores.

Each store is written by `clio.release.write_release` from rows built here, so it is
exactly what an analyst would read. Each attack gets a store with one planted leak,
which it must find, and a control store without that leak, where it finds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from clio.cli import main
from clio.release import write_release
from clio.release_audit import ATTACKS, Finding, audit_release, verdict
from clio.release_audit.history import load_history
from clio.released import ReleasedBreakdown, ReleasedCluster, RunRow
from tests.cli_run import clio_subprocess
from tests.ungated import ungated_result

REPO = Path(__file__).resolve().parents[1]
TOP = "request-L1-000"
A, B, C = "request-L0-000", "request-L0-001", "request-L0-002"


def base(
    cluster_id: str, users: int, conversations: int, parent: str | None = TOP, **fields
) -> ReleasedCluster:
    """A cluster row; `share` is filled in by `tree`."""
    values = dict(
        facet="request",
        level=0 if parent is not None else 1,
        cluster_id=cluster_id,
        parent_id=parent,
        name=f"name {cluster_id}",
        description=f"about {cluster_id}",
        keywords=["alpha"],
        n_users=users,
        n_conversations=conversations,
        share=0.0,
        concern_mean=None,
        x=None,
        y=None,
    )
    values.update(fields)
    return ReleasedCluster(**values)


def tree(
    *children: ReleasedCluster, top: dict | None = None, denominator: int | None = None
) -> list[ReleasedCluster]:
    """The children under one top cluster whose counts are their sums (or `top`'s), with
    shares of `denominator` (default: the top's conversations)."""
    fields = dict(
        n_users=sum(c.n_users for c in children),
        n_conversations=sum(c.n_conversations for c in children),
    )
    fields.update(top or {})
    parent = base(TOP, fields["n_users"], fields["n_conversations"], parent=None, **{
        k: v for k, v in fields.items() if k not in ("n_users", "n_conversations")
    })  # fmt: skip
    total = denominator or parent.n_conversations
    return [
        ReleasedCluster(**{**c.__dict__, "share": c.n_conversations / total})
        for c in (*children, parent)
    ]


def cell(cluster_id: str, value: str, users: int, conversations: int, facet: str = "language"):
    return ReleasedBreakdown(cluster_id, facet, value, users, conversations)


def write(
    path: Path,
    clusters: Sequence[ReleasedCluster],
    cells: Sequence[ReleasedBreakdown] = (),
    day: int = 1,
    min_users: int = 5,
    min_conversations: int = 5,
    **run_fields,
) -> Path:
    """Add one run (run id `run-<day>`) to the released store at `path`."""
    top_conversations = sum(c.n_conversations for c in clusters if c.parent_id is None)
    started = datetime(2024, 5, day, 3, 0)
    fields = dict(
        run_id=f"run-{day}",
        started_at=started,
        finished_at=started + timedelta(minutes=10),
        config_hash="cfg",
        min_users=min_users,
        min_conversations=min_conversations,
        n_input=top_conversations,
        n_quarantined=0,
        n_conversations=top_conversations,
        llm_calls=100 * day,
        llm_cached_calls=0,
        input_tokens=1000 * day,
        output_tokens=100 * day,
    )
    fields.update(run_fields)
    write_release(path, RunRow(**fields), ungated_result(clusters, cells))
    return path


def attack(path: Path, name: str) -> list[Finding]:
    function, _ = ATTACKS[name]
    return function(load_history(path))


def clean(path: Path, day: int = 1, grow: int = 0, **run_fields) -> Path:
    """A leak-free run: two base clusters (centred on the map, ids without gaps) under one
    top cluster, language cells that add up, no concern mean. `grow` adds that many
    users and conversations to each base cluster and its cells."""
    a = base(A, 10 + grow, 12 + grow, x=0.5, y=0.25)
    b = base(B, 8 + grow, 10 + grow, x=-0.5, y=-0.25)
    cells = [
        cell(A, "en", 10 + grow, 12 + grow),
        cell(B, "en", 8 + grow, 10 + grow),
        cell(TOP, "en", 18 + 2 * grow, 22 + 2 * grow),
    ]
    return write(path, tree(a, b), cells, day=day, **run_fields)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "insights.duckdb"


def test_a_clean_history_has_no_findings(store):
    clean(store, day=1)
    clean(store, day=2, grow=5)
    assert audit_release(store) == []
    assert verdict([]) == {"findings": 0, "by_attack": {name: 0 for name in ATTACKS}}


# -- across runs -------------------------------------------------------------------------


def test_run_counts_finds_one_user_added_between_runs(store):
    clean(store, day=1)
    write(store, tree(base(A, 11, 13, x=0.5, y=0.25), base(B, 8, 10, x=-0.5, y=-0.25)), day=2)
    found = {(f.cluster_ids, f.recovered, f.group_size) for f in attack(store, "run_counts")}
    assert ((A,), "n_users changed by +1", 1) in found
    assert ((TOP,), "n_conversations changed by +1", 1) in found
    assert all(f.run_ids == ("run-1", "run-2") for f in attack(store, "run_counts"))


def test_run_counts_finds_nothing_when_clusters_grow_by_the_threshold(store):
    clean(store, day=1)
    clean(store, day=2, grow=5)
    assert attack(store, "run_counts") == []


def test_run_counts_reads_the_thresholds_of_the_runs_table(store):
    clean(store, day=1, min_users=2, min_conversations=2)
    clean(store, day=2, grow=2, min_users=2, min_conversations=2)
    assert attack(store, "run_counts") == []  # +2 is releasable at min 2 (and +4 at the top)


def test_run_cells_finds_a_cell_moved_by_one_user(store):
    clean(store, day=1)
    cells = [cell(A, "en", 10, 12), cell(A, "fr", 5, 5)]
    write(store, tree(base(A, 10, 12), base(B, 8, 10)), cells, day=2)
    clean(store, day=3)  # fr back to hidden, A unchanged: no finding without a small change
    cells = [cell(A, "en", 11, 13), cell(A, "fr", 5, 5)]
    write(store, tree(base(A, 11, 13), base(B, 8, 10)), cells, day=4)
    found = {(f.run_ids, f.recovered, f.group_size) for f in attack(store, "run_cells")}
    assert (("run-3", "run-4"), "cell language=en: n_users changed by +1", 1) in found
    appeared = [f for f in attack(store, "run_cells") if f.recovered.startswith("cell language=fr")]
    assert [(f.run_ids, f.cluster_ids, f.figure, f.group_size) for f in appeared] == [
        (("run-3", "run-4"), (A,), 5, 1)
    ]  # the one user who joined A holds language fr (run 2 showed fr with A unchanged)


def test_run_cells_finds_nothing_when_cells_move_by_the_threshold(store):
    clean(store, day=1)
    a, b = base(A, 15, 17), base(B, 13, 15)
    cells = [cell(A, "en", 10, 12), cell(A, "fr", 5, 5), cell(B, "en", 13, 15)]
    cells.append(cell(TOP, "en", 23, 27))
    write(store, tree(a, b), cells, day=2)  # fr appears while A grew by 5 users
    assert attack(store, "run_cells") == []


def test_run_concern_decodes_the_score_of_one_added_conversation(store):
    # The measurement: 1.346939 * 49 - 1.354167 * 48 = 1.0.
    write(store, tree(base(A, 40, 48, concern_mean=65 / 48), base(B, 8, 10)), day=1)
    write(store, tree(base(A, 41, 49, concern_mean=66 / 49), base(B, 8, 10)), day=2)
    [finding] = attack(store, "run_concern")
    assert finding.cluster_ids == (A,) and finding.group_size == 1
    assert finding.figure == pytest.approx(1.0)


def test_run_concern_finds_nothing_over_a_releasable_change(store):
    write(store, tree(base(A, 40, 48, concern_mean=65 / 48), base(B, 8, 10)), day=1)
    write(store, tree(base(A, 45, 53, concern_mean=75 / 53), base(B, 8, 10)), day=2)
    assert attack(store, "run_concern") == []


def test_run_totals_finds_an_incremental_run_of_one_conversation(store):
    clean(store, day=1)
    clean(store, day=2, n_conversations=23, input_tokens=1234, output_tokens=56)
    [finding] = attack(store, "run_totals")
    assert finding.run_ids == ("run-1", "run-2") and finding.group_size == 1
    assert finding.figure == 1234 and "output_tokens 56" in finding.recovered


def test_run_totals_finds_nothing_when_a_run_adds_the_threshold(store):
    clean(store, day=1)
    clean(store, day=2, n_conversations=27)
    assert attack(store, "run_totals") == []


# -- within a run ------------------------------------------------------------------------


def test_parent_children_finds_a_suppressed_child_and_an_intersection(store):
    children = (base(A, 10, 12), base(B, 8, 10))
    cells = [cell(A, "en", 10, 12), cell(B, "en", 7, 9), cell(TOP, "en", 19, 23)]
    write(store, tree(*children, top={"n_users": 19, "n_conversations": 20}), cells)
    found = {f.recovered: f.group_size for f in attack(store, "parent_children")}
    assert found == {
        "cluster: parent minus released children = +1 n_users": 1,  # a hidden user
        "cluster: parent minus released children = -2 n_conversations": 2,  # an overlap
        "cell language=en: parent minus released children = +2 n_users": 2,
        "cell language=en: parent minus released children = +2 n_conversations": 2,
    }


def test_parent_children_finds_nothing_when_remainders_are_releasable(store):
    children = (base(A, 10, 12), base(B, 8, 10))
    cells = [cell(A, "en", 10, 12), cell(TOP, "en", 15, 17)]  # remainder 5: B's hidden cell
    write(store, tree(*children, top={"n_users": 23, "n_conversations": 27}), cells)
    assert attack(store, "parent_children") == []


def concern_cells(cluster_id: str, counts: dict[int, int]) -> list[ReleasedBreakdown]:
    return [cell(cluster_id, str(level), n, n, facet="concerning") for level, n in counts.items()]


def test_mean_decoding_finds_the_one_conversation_rated_5(store):
    # The example: 30 conversations, cells 1:12, 2:8, 3:5, mean 2.1333: the hidden
    # five sum to 21, which only four 4s and one 5 give.
    a = base(A, 30, 30, concern_mean=64 / 30)
    write(store, tree(a, base(B, 8, 10)), concern_cells(A, {1: 12, 2: 8, 3: 5}))
    found = {(f.figure, f.group_size) for f in attack(store, "mean_decoding")}
    assert found == {(4, 4), (5, 1)}  # (score, conversations)


def test_mean_decoding_finds_a_small_hidden_group_whose_mix_is_not_unique(store):
    # Cells 4:10, 5:10 and 4 hidden conversations from {1, 2, 3} summing to 8: three mixes
    # give 8, but the four are a group below the threshold and their sum is recovered.
    a = base(A, 24, 24, concern_mean=98 / 24)
    write(store, tree(a, base(B, 8, 10)), concern_cells(A, {4: 10, 5: 10}))
    [finding] = attack(store, "mean_decoding")
    assert (finding.figure, finding.group_size) == (pytest.approx(8.0), 4)


def test_mean_decoding_finds_nothing_when_hidden_scores_stay_ambiguous(store):
    # 10 hidden conversations from {3, 4, 5} summing to 40: many mixes, none pinned.
    a = base(A, 30, 30, concern_mean=(12 + 16 + 40) / 30)
    write(store, tree(a, base(B, 8, 10)), concern_cells(A, {1: 12, 2: 8}))
    assert attack(store, "mean_decoding") == []


def test_share_algebra_finds_a_suppressed_top_cluster_of_two(store):
    # A second top cluster of 2 conversations was suppressed; shares still divide by 24.
    write(store, tree(base(A, 10, 12), base(B, 8, 10), denominator=24), n_conversations=24)
    found = {f.recovered: f.group_size for f in attack(store, "share_algebra")}
    assert found == {
        "request: share denominator 24 minus released top clusters 22 = +2 conversations": 2,
        "request: the run's n_conversations 24 minus released top clusters 22 = +2 "
        "conversations": 2,
    }


def test_share_algebra_finds_nothing_when_tops_cover_the_denominator(store):
    write(store, tree(base(A, 10, 12), base(B, 8, 10)))
    assert attack(store, "share_algebra") == []


def test_map_centring_places_the_one_suppressed_base_cluster(store):
    # request-L0-001 was suppressed; the map was centred with it, at (-0.3, -0.15).
    a, c = base(A, 10, 12, x=0.5, y=0.25), base(C, 8, 10, x=-0.2, y=-0.1)
    write(store, tree(a, c))
    [finding] = attack(store, "map_centring")
    assert finding.cluster_ids == (B,)
    assert "sits at (-0.3000, -0.1500)" in finding.recovered


def test_map_centring_finds_nothing_on_a_map_centred_on_the_released(store):
    a, c = base(A, 10, 12, x=0.5, y=0.25), base(C, 8, 10, x=-0.5, y=-0.25)
    write(store, tree(a, c))
    assert attack(store, "map_centring") == []


def test_id_gaps_name_the_suppressed_cluster(store):
    write(store, tree(base(A, 10, 12), base(C, 8, 10)))
    [finding] = attack(store, "id_gaps")
    assert finding.cluster_ids == (B,) and finding.figure == 1


def test_id_gaps_find_nothing_in_consecutive_ids(store):
    write(store, tree(base(A, 10, 12), base(B, 8, 10)))
    assert attack(store, "id_gaps") == []


# -- the command ---------------------------------------------------------------------------


def test_audit_release_exit_codes(tmp_path):
    ok = clean(tmp_path / "ok.duckdb")
    done = clio_subprocess("audit-release", "--db", str(ok), cwd=REPO)
    assert (done.returncode, done.stdout.strip()) == (0, "no findings"), done.stderr

    leaky = write(tmp_path / "leaky.duckdb", tree(base(A, 10, 12), base(C, 8, 10)))
    done = clio_subprocess("audit-release", "--db", str(leaky), "--json", cwd=REPO)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["by_attack"]["id_gaps"] == 1
    assert {"attack", "run_ids", "cluster_ids", "recovered", "figure", "group_size"} <= set(
        report["list"][0]
    )
    done = clio_subprocess("audit-release", "--db", str(tmp_path / "missing.duckdb"), cwd=REPO)
    assert done.returncode == 2 and "clio audit-release:" in done.stderr


def test_audit_release_lists_findings_and_refuses_a_file_that_is_not_a_store(tmp_path, capsys):
    leaky = write(tmp_path / "leaky.duckdb", tree(base(A, 10, 12), base(C, 8, 10)))
    assert main(["audit-release", "--db", str(leaky)]) == 1
    out = capsys.readouterr().out
    assert "id_gaps" in out and B in out and out.strip().endswith("1 findings")

    not_a_store = tmp_path / "notes.txt"
    not_a_store.write_text("hello")
    assert main(["audit-release", "--db", str(not_a_store)]) == 2
    assert "clio audit-release: cannot open" in capsys.readouterr().err


def test_a_duckdb_file_without_the_contract_is_not_a_released_store(tmp_path):
    import duckdb

    from clio.release_audit import NotAReleasedStore

    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as connection:
        connection.execute("CREATE TABLE runs (run_id VARCHAR)")
    with pytest.raises(NotAReleasedStore, match="not a released store"):
        audit_release(other)


def test_a_keyed_id_of_decimal_digits_is_no_position():
    """A keyed id's 12 hex digits may all be decimal: it is not numbered by position, so
    there are no gaps below it (and counting them would never end)."""
    from clio.release_audit.history import Run
    from clio.release_audit.within_run import _missing_ids

    def run_of(*ids: str) -> Run:
        row = RunRow("r", datetime(2024, 1, 1), datetime(2024, 1, 1), "c", 5, 5, 5, 0, 5,
                     0, 0, 0, 0)  # fmt: skip
        return Run(row, {
            cid: ReleasedCluster("request", 0, cid, None, "n", "d", [], 5, 5, 1.0, None, 0, 0)
            for cid in ids
        })  # fmt: skip

    assert _missing_ids(run_of("request-L0-009123456789", "request-L0-3a2a9d00f4f6"),
                        "request", 0) == []  # fmt: skip
    assert _missing_ids(run_of("request-L0-000", "request-L0-002"), "request", 0) == [
        "request-L0-001"
    ]
