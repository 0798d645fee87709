import pytest

from clio.cli import _resolve_limit, build_parser, main
from clio.run_report import render_report

COMMANDS = ["run", "report", "sql", "audit-release", "schedule", "config"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: clio {command}" in capsys.readouterr().out


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize(
    "value,expected", [("all", "all"), ("ALL", "all"), ("0", "all"), ("7", 7), ("500", 500)]
)
def test_limit_parsing(value, expected):
    args = build_parser().parse_args(["run", "--limit", value])
    assert args.limit == expected


@pytest.mark.parametrize(
    "limit,has_input,expected",
    [(None, False, 500), (None, True, None), ("all", False, None), (7, True, 7)],
)
def test_limit_default_depends_on_the_input(limit, has_input, expected):
    assert build_parser().parse_args(["run"]).limit is None
    assert _resolve_limit(limit, has_input) == expected


def test_negative_limit_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["run", "--limit", "-3"])
    assert exit_info.value.code == 2
    assert "--limit" in capsys.readouterr().err


def test_run_with_missing_input_is_a_clear_error(tmp_path, capsys):
    code = main(["run", "--input", str(tmp_path / "nope.jsonl"), "--output-dir", str(tmp_path)])
    assert code == 2
    assert "input not found" in capsys.readouterr().err


def test_run_with_a_bad_progress_interval_stops_before_it_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CLIO_PROGRESS_SECONDS", "soon")
    code = main(["run", "--output-dir", str(tmp_path / "out")])
    assert code == 2
    assert "CLIO_PROGRESS_SECONDS must be a number of seconds" in capsys.readouterr().err
    assert not (tmp_path / "out" / "private").exists()


def test_run_with_invalid_config_is_a_clear_error(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("privacy: {min_users: -1}\n")
    code = main(["run", "--config", str(config), "--output-dir", str(tmp_path / "out")])
    assert code == 2
    assert "min_users" in capsys.readouterr().err


def test_report_without_a_run(tmp_path, capsys):
    assert main(["report", "--output-dir", str(tmp_path)]) == 1
    assert "no run found" in capsys.readouterr().err


def test_sql_without_a_store(tmp_path, capsys):
    assert main(["sql", "SELECT 1", "--db", str(tmp_path / "x.duckdb")]) == 1
    assert "no released store" in capsys.readouterr().err


def test_config_docs_and_effective_config(capsys):
    assert main(["config", "--docs"]) == 0
    assert "privacy.min_users" in capsys.readouterr().out
    assert main(["config"]) == 0
    assert "min_users: 25" in capsys.readouterr().out


RELEASE = {
    "clusters_built": 5,
    "clusters_released": 3,
    "clusters_released_by_level": {"request/L0": 2, "request/L1": 1},
    "breakdown_cells_released": 4,
    "suppressed": {"cluster_below_min_users": 2},
}


def test_render_report_shows_counts():
    manifest = {
        "run_id": "run-abc",
        "config_hash": "h",
        "counts": {
            "n_input": 12,
            "n_conversations": 10,
            "n_quarantined": 2,
            "quarantine_reasons": {"invalid_json": 2},
            "n_truncated": 1,
            "n_pii_spans_replaced": 4,
            "facet_failures": {},
        },
        "llm": {"backend": "local", "model": "m", "calls": 3, "cached_calls": 1},
        "release": RELEASE,
        "stage_seconds": {"facets": 1.5},
        "outputs": {"released_store": "o/insights.duckdb", "manifest": "o/manifest.json"},
    }
    text = render_report(manifest)
    assert "run-abc" in text
    assert "quarantined        2  {'invalid_json': 2}" in text
    assert "released 3" in text
    assert "cluster_below_min_users" in text
    assert "release audit" not in text  # a manifest from before the audit

    manifest["release"]["audit"] = {"findings": 2, "by_attack": {"id_gaps": 2, "run_counts": 0}}
    assert "release audit      2 findings {'id_gaps': 2}" in render_report(manifest)
    manifest["release"]["audit"] = {"findings": 0, "by_attack": {"id_gaps": 0}}
    assert "release audit      no findings" in render_report(manifest)


def test_render_report_of_a_public_manifest_shows_what_it_holds():
    manifest = {
        "audience": "public",
        "run_id": "run-pub",
        "config_hash": "h",
        "mode": "full",
        "mode_reason": "full build over the input",
        "llm": {"backend": "local", "model": "m"},
        "release": RELEASE,
        "withheld": "input counts are in the operator manifest",
    }
    text = render_report(manifest)
    assert "run-pub" in text
    assert "released 3" in text
    assert "cluster_below_min_users" in text
    assert "public manifest: input counts are in the operator manifest" in text


@pytest.mark.parametrize(
    "flags,mode", [([], "full"), (["--incremental"], "incremental"), (["--rebuild"], "rebuild")]
)
def test_run_modes(flags, mode):
    from clio.cli import _mode

    for command in ("run", "schedule"):
        extra = ["--cron", "0 3 * * *"] if command == "schedule" else []
        assert _mode(build_parser().parse_args([command, *extra, *flags])) == mode


def test_incremental_and_rebuild_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["run", "--incremental", "--rebuild"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_render_report_shows_incremental_counts():
    manifest = {
        "run_id": "run-inc",
        "config_hash": "h",
        "mode": "incremental",
        "mode_reason": "added to the full build run-b",
        "counts": {
            "n_input": 30,
            "n_conversations": 40,
            "n_quarantined": 0,
            "quarantine_reasons": {},
            "n_truncated": 0,
            "n_pii_spans_replaced": 0,
            "facet_failures": {},
            "n_already_processed": 24,
        },
        "incremental": {
            "new_conversations": 6,
            "items_assigned": 5,
            "items_unassigned": 1,
            "max_distance": 0.5,
            "unassigned_conversations_waiting": 3,
        },
        "llm": {"backend": "local", "model": "m"},
        "release": {
            "clusters_built": 2,
            "clusters_released": 2,
            "clusters_released_by_level": {},
            "breakdown_cells_released": 0,
            "suppressed": {},
        },
        "stage_seconds": {},
        "outputs": {"released_store": "o/insights.duckdb", "manifest": "o/manifest.json"},
    }
    text = render_report(manifest)
    assert "mode               incremental: added to the full build run-b" in text
    assert "24 already processed, 6 new; facet texts assigned 5, beyond the cut-off 1" in text
    assert "waiting            3 conversations" in text
