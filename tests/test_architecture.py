"""The dependency rules of docs/ARCHITECTURE.md, checked on every module's imports.

Each rule reads the import statements (top level and inside functions) of the files it
governs with `ast`, so a lazy import inside a function cannot slip past it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "clio"


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """Every module `path` imports, absolute, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _modules(folder: Path) -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(folder.rglob("*.py"))}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


CLIO = _modules(PACKAGE)


def _offenders(modules: dict[str, set[str]], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for module, imported in modules.items():
        bad = sorted(i for i in imported if any(_within(i, f) for f in forbidden))
        if bad:
            out[module] = bad
    return out


def test_the_rules_see_the_package():
    assert "clio.pipeline.run" in CLIO and "clio.gate.apply" in CLIO
    assert "clio.pipeline.stages" in CLIO["clio.pipeline.run"]


def test_clio_never_imports_prefect_or_flows_except_the_cli():
    rest = {m: i for m, i in CLIO.items() if m != "clio.cli"}
    assert _offenders(rest, ("prefect", "prefect_dask", "flows")) == {}


def test_nothing_but_the_cli_imports_the_cli():
    rest = {m: i for m, i in CLIO.items() if m != "clio.cli"}
    assert _offenders(rest, ("clio.cli",)) == {}


def _clio_imports_outside(package: str, allowed: tuple[str, ...]) -> dict[str, list[str]]:
    """Modules of `package` that import a clio module outside `allowed`, with those imports."""
    modules = {m: i for m, i in CLIO.items() if _within(m, package)}
    assert modules, f"no modules in {package}"
    outside = {
        module: sorted(
            i for i in imported if _within(i, "clio") and not any(_within(i, a) for a in allowed)
        )
        for module, imported in modules.items()
    }
    return {m: i for m, i in outside.items() if i}


def test_the_web_layer_reads_only_the_released_store():
    assert _clio_imports_outside("clio.web", ("clio.web", "clio.released")) == {}


def test_the_release_audit_reads_only_the_released_store():
    allowed = ("clio.release_audit", "clio.released")
    assert _clio_imports_outside("clio.release_audit", allowed) == {}


@pytest.mark.parametrize(
    "backend", ["clio.llm.local", "clio.llm.openai_compat", "clio.llm.anthropic_backend"]
)
def test_each_llm_backend_is_reached_only_through_the_factory(backend):
    # The Anthropic backend shares one HTTP helper of the openai-compatible module.
    allowed = {"clio.llm.factory", backend, "clio.llm.anthropic_backend"}
    users = {m for m, imported in CLIO.items() if m not in allowed and backend in imported}
    assert users == set()


def test_the_gate_knows_nothing_of_naming_prompts_or_the_pipeline():
    gate = {m: i for m, i in CLIO.items() if _within(m, "clio.gate")}
    assert _offenders(gate, ("clio.describe", "clio.pipeline", "clio.store")) == {}


def test_the_runtime_never_imports_tests():
    assert _offenders(CLIO, ("tests",)) == {}


def _seal_users(root: Path = ROOT) -> set[str]:
    """Files that import or reach the gate's private sealing function `_seal`."""
    found = set()
    for folder in ("clio", "flows", "bench", "tests"):
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                imported = isinstance(node, ast.ImportFrom) and any(
                    a.name == "_seal" for a in node.names
                )
                if imported or (isinstance(node, ast.Attribute) and node.attr == "_seal"):
                    found.add(path.relative_to(root).as_posix())
    return found


def test_only_the_gate_seals_released_rows():
    """`write_release` writes only sealed results, so the seal is only worth something if
    `apply_gate` is the one caller at run time; the tests that write rows chosen by hand
    go through one named module."""
    assert _seal_users() == {"clio/gate/apply.py", "tests/ungated.py"}


def test_the_seal_rule_fails_on_another_caller(tmp_path):
    module = tmp_path / "clio" / "pipeline" / "shortcut.py"
    module.parent.mkdir(parents=True)
    module.write_text("from clio.gate import result\n\ndef f(r):\n    return result._seal(r)\n")
    assert _seal_users(tmp_path) == {"clio/pipeline/shortcut.py"}


def test_flows_only_wrap_the_pipeline():
    flows = _modules(ROOT / "flows")
    allowed = ("clio.pipeline", "clio.config", "clio.incremental")
    outside = {
        module: sorted(
            i for i in imported if _within(i, "clio") and not any(_within(i, a) for a in allowed)
        )
        for module, imported in flows.items()
    }
    assert {m: i for m, i in outside.items() if i} == {}


def test_a_rule_fails_on_a_forbidden_import(tmp_path):
    module = tmp_path / "clio" / "web" / "leaky.py"
    module.parent.mkdir(parents=True)
    module.write_text("def f():\n    from ..store import PrivateStore\n")
    imported = {"clio.web.leaky": _imports(module, tmp_path)}
    assert _offenders(imported, ("clio.store",)) == {
        "clio.web.leaky": ["clio.store", "clio.store.PrivateStore"]
    }
