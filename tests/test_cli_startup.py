"""`clio --help` and the parser do not load the scrubber's NLP stack (Presidio, spaCy,
torch): every command would otherwise take seconds to start."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("presidio_analyzer", "spacy", "torch")


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(done.stdout.split())


def test_building_the_parser_loads_no_nlp_stack():
    assert _loaded_after("import clio.cli\nclio.cli.build_parser()") == set()


def test_control_importing_the_scrubber_does():
    assert "presidio_analyzer" in _loaded_after("import clio.scrub")
