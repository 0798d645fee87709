from pathlib import Path

import pytest
from pydantic_core import PydanticUndefined

from clio.config import (
    ConfigError,
    FacetConfig,
    RunConfig,
    builtin_facets,
    config_hash,
    load_config,
)
from clio.config_docs import iter_settings, render_config_docs

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path,field", iter_settings(RunConfig), ids=lambda v: str(v)[:40])
def test_every_setting_has_description_and_default(path, field):
    assert field.description and len(field.description) > 8, path
    has_default = field.default is not PydanticUndefined or field.default_factory is not None
    assert has_default, path


def test_config_reference_doc_matches_the_models():
    assert (ROOT / "docs" / "CONFIG.md").read_text() == render_config_docs(RunConfig)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_validate(name):
    assert isinstance(load_config(ROOT / "configs" / name), RunConfig)


def test_default_yaml_spells_out_the_built_in_defaults():
    assert load_config(ROOT / "configs" / "default.yaml") == RunConfig()
    assert load_config(None) == RunConfig()


def test_production_default_threshold_is_at_least_25_users():
    assert RunConfig().privacy.min_users >= 25


@pytest.mark.parametrize(
    "text,message",
    [
        ("privacy: {min_users: 0}", "min_users"),
        ("privacy: {min_userz: 5}", "min_userz"),
        ("llm: {backend: gpt}", "backend"),
        ("- just\n- a list", "mapping"),
        ("facets: [{name: x, kind: category, question: q}]", "needs `values`"),
        ("facets: [{name: x, kind: number, question: q, cluster: true}]", "clustered"),
        ("facets: [{name: a, question: q}, {name: a, question: q}]", "unique"),
        ("key: [unclosed", "YAML"),
        ("facets: [{name: request, extractor: metadata}]", "not computed by clio"),
        ("facets: [{name: x, kind: list, extractor: user_text}]", "text facets only, not list"),
        ("facets: [{name: x, kind: text, extractor: user_text, user_turns: last}]", "user_turns"),
        ("facets: [{name: x, kind: text, question: ''}]", "needs a `question`"),
    ],
)
def test_bad_configs_give_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")


def test_config_hash_changes_with_any_setting():
    base = RunConfig()
    changed = RunConfig(privacy={"min_users": 26})
    assert config_hash(base) == config_hash(RunConfig())
    assert config_hash(base) != config_hash(changed)


def test_custom_facet_declared_in_yaml(tmp_path):
    path = tmp_path / "custom.yaml"
    path.write_text(
        "facets:\n"
        "  - name: request\n"
        "    question: What was asked?\n"
        "    cluster: true\n"
        "  - name: sentiment\n"
        "    kind: category\n"
        "    question: How does the user feel?\n"
        "    values: [positive, neutral, negative]\n"
        "    breakdown: true\n"
    )
    config = load_config(path)
    assert [f.name for f in config.facets] == ["request", "sentiment"]
    assert config.facet("sentiment") == FacetConfig(
        name="sentiment",
        kind="category",
        question="How does the user feel?",
        values=["positive", "neutral", "negative"],
        breakdown=True,
    )


def test_user_text_facet_needs_no_question(tmp_path):
    path = tmp_path / "user_text.yaml"
    path.write_text("facets: [{name: asked, extractor: user_text, user_turns: all, cluster: true}]")
    (facet,) = load_config(path).facets
    assert (facet.extractor, facet.user_turns, facet.question) == ("user_text", "all", "")


@pytest.mark.parametrize(
    ("backend", "extractor"),
    [("local", "user_text"), ("openai-compatible", "llm"), ("anthropic", "llm")],
)
def test_built_in_request_facet_extractor_follows_the_backend(tmp_path, backend, extractor):
    path = tmp_path / "backend.yaml"
    path.write_text(f"llm: {{backend: {backend}}}")
    config = load_config(path)
    assert config.facet("request").extractor == extractor
    assert config.facets == builtin_facets(extractor)
    # Every other built-in facet is the same whatever the backend.
    assert config.facets[1:] == builtin_facets("llm")[1:]


def test_default_config_clusters_the_users_first_turn():
    request = RunConfig().facet("request")
    assert (request.extractor, request.user_turns, request.cluster) == ("user_text", "first", True)


@pytest.mark.parametrize("backend", ["local", "openai-compatible", "anthropic"])
def test_explicit_facets_are_never_rewritten_by_the_backend_default(tmp_path, backend):
    path = tmp_path / "explicit.yaml"
    path.write_text(
        f"llm: {{backend: {backend}}}\n"
        "facets:\n"
        "  - {name: request, question: 'What was asked?', cluster: true}\n"
        "  - {name: asked, extractor: user_text}\n"
    )
    facets = load_config(path).facets
    assert [(f.name, f.extractor) for f in facets] == [("request", "llm"), ("asked", "user_text")]


def test_a_dumped_config_loads_back_equal():
    """The effective config (as `clio config` shows it) reads back as the same config,
    whichever backend chose the facets."""
    for config in (RunConfig(), RunConfig(llm={"backend": "anthropic"})):
        assert RunConfig.model_validate(config.model_dump()) == config
