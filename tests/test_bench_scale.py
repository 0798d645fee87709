"""The scale benchmark: its input generator, and `bench/scale.py --json` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from clio.config import IngestConfig
from clio.ingest import ingest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import scale_data  # noqa: E402

STAGES = ("ingest", "scrub", "facets", "store", "embed", "cluster", "hierarchy", "gate", "release")


def _records(n: int, seed: int, data_dir: Path) -> list[dict]:
    return list(scale_data.generate(n, seed, data_dir))


def test_generator_is_deterministic_for_a_seed(shared_data: Path) -> None:
    first = _records(300, 1, shared_data)
    assert first == _records(300, 1, shared_data)
    assert first != _records(300, 2, shared_data)


def test_generator_makes_no_duplicates_and_mixes_sources(shared_data: Path) -> None:
    records = _records(3000, 0, shared_data)
    assert len(records) == 3000
    firsts = [r["messages"][0]["content"][: scale_data.REQUEST_KEY_CHARS] for r in records]
    assert len(set(firsts)) == len(records)
    contents = {json.dumps(r["messages"], ensure_ascii=False) for r in records}
    assert len(contents) == len(records)
    pools = scale_data.load_pools(shared_data)
    chinese = sum(r["messages"][0]["content"] in pools.zh_users for r in records)
    other_script = sum(_other_script(r["messages"][0]["content"]) for r in records)
    english_sources = sum(r["messages"][-1]["content"] in pools.replies for r in records)
    assert 0 < chinese < len(records) * 0.15
    assert 0 < other_script < len(records) * 0.15  # SIB-200's non-Latin, non-Chinese scripts
    assert english_sources > len(records) * 0.7


def _other_script(text: str) -> bool:
    """A letter beyond Latin (Greek, Cyrillic, Arabic, Devanagari, kana ...) other than the
    CJK ideographs Chinese uses."""
    return any(ord(ch) > 0x24F and ch.isalpha() and not "\u4e00" <= ch <= "\u9fff" for ch in text)


def test_generator_user_ids_are_heavy_tailed(shared_data: Path) -> None:
    per_user = Counter(r["user_id"] for r in _records(5000, 0, shared_data))
    counts = sorted(per_user.values(), reverse=True)
    single = sum(1 for c in counts if c == 1)
    assert single > len(counts) / 2  # most users have one conversation
    assert counts[0] >= 10 * (5000 / len(counts))  # and the heaviest has far more than average
    assert counts[0] <= max(scale_data.MIN_CAP, 5000 // 200)


def test_generated_file_ingests_without_quarantine(shared_data: Path, tmp_path: Path) -> None:
    path = scale_data.write_jsonl(tmp_path / "scale.jsonl", 500, 0, shared_data)
    result = ingest([path], IngestConfig())
    assert result.n_input == 500
    assert len(result.conversations) == 500
    assert result.quarantine == []
    assert result.n_missing_user == 0


@pytest.mark.slow
def test_scale_json_has_every_stage(shared_data: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "scale.py"),
            "--n",
            "200",
            "--json",
            "--llm-sample",
            "1",
            "--input-dir",
            str(tmp_path),
            "--data-dir",
            str(shared_data),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["n"] == 200
    assert set(report["stages"]) == set(STAGES)
    assert all(seconds > 0 for seconds in report["stages"].values())
    assert report["non_llm_seconds"] == pytest.approx(sum(report["stages"].values()), abs=0.01)
    assert report["llm_seconds"] > 0
    assert report["llm"]["extrapolated"] is True
    assert report["peak_rss_mb"] >= max(report["stage_peak_rss_mb"].values()) > 0
    assert report["embedding"]["share_of_raw"] > 0
    assert report["conversations"] == 200
