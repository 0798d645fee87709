from __future__ import annotations

import csv
from pathlib import Path

import pytest

from clio.language import UNKNOWN, identify_language

SIB200 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sib200" / "data" / "annotated"
LANGUAGES = {"eng_Latn": "en", "zho_Hans": "zh", "fra_Latn": "fr", "deu_Latn": "de"}


def sib200_sentences(folder: str, n: int) -> list[str]:
    path = SIB200 / folder / "test.tsv"
    if not path.exists():
        pytest.skip(f"SIB-200 data not found at {path}")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row[2] for row in rows[1 : n + 1]]


@pytest.mark.parametrize("folder,code", sorted(LANGUAGES.items()))
def test_sib200_sentences_are_identified(folder, code):
    sentences = sib200_sentences(folder, 10)
    assert [identify_language(s) for s in sentences] == [code] * len(sentences)


@pytest.mark.parametrize("text", ["", "   ", "12345 !!! ...", "😀 👍"])
def test_text_without_letters_is_unknown(text):
    assert identify_language(text) == UNKNOWN


def test_code_is_iso_639_1_lower_case():
    assert identify_language("¿Dónde está la estación de tren más cercana?") == "es"
