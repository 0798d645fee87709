import numpy as np
import pytest

from clio.cluster import centroids_of
from clio.config import DescribeConfig, LLMConfig
from clio.describe import ClusterSummary, clean_summary, describe_clusters, keyword_description
from clio.llm.base import LLMError
from clio.llm.client import StructuredLLM
from tests.fakes.llm import FakeBackend

# Three clusters: 0 (cover letters) and 1 (resumes) are neighbours, 2 (cakes) is far away.
DIRECTIONS = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]])
TEXTS = [
    *(f"help me write a cover letter number {i}" for i in range(5)),
    *(f"fix the layout of my resume version {i}" for i in range(5)),
    *(f"bake a chocolate cake for party {i}" for i in range(5)),
]
LABELS = np.repeat(np.arange(3), 5)
KEYWORDS = {0: ["cover", "letter", "write", "help"], 1: ["resume", "layout", "fix"], 2: []}


def _vectors() -> np.ndarray:
    rng = np.random.default_rng(0)
    vectors = DIRECTIONS[LABELS] + 0.1 * rng.normal(size=(len(LABELS), 3))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


VECTORS = _vectors()
CENTROIDS = centroids_of(VECTORS, LABELS, 3)


def _topic(prompt_input: str) -> str:
    first_sample = next(line for line in prompt_input.splitlines() if line.startswith("- "))
    return next(t for t in ("cover", "resume", "cake") if t in first_sample)


def _llm(answers_by_topic: dict[str, object]) -> tuple[StructuredLLM, FakeBackend]:
    def answer(call):
        return answers_by_topic[_topic(call.prompt.input)]

    backend = FakeBackend(answer)
    return StructuredLLM(backend, LLMConfig(max_retries=0), backoff_seconds=0.0), backend


def _describe(llm, config=None, seed=0):
    return describe_clusters(
        "request",
        TEXTS,
        LABELS,
        VECTORS,
        CENTROIDS,
        KEYWORDS,
        llm,
        config or DescribeConfig(samples_inside=3, samples_outside=2),
        seed,
    )


def _ok(name: str) -> dict[str, str]:
    return {"name": name, "description": f"Users ask about {name.lower()}. Nothing else."}


def test_valid_answers_name_clusters_in_one_call_each():
    llm, backend = _llm(
        {"cover": _ok("Write cover letters"), "resume": _ok("Fix resumes"), "cake": _ok("Bake")}
    )
    result = _describe(llm)
    assert result == [
        ("Write cover letters", "Users ask about write cover letters. Nothing else.", "llm"),
        ("Fix resumes", "Users ask about fix resumes. Nothing else.", "llm"),
        ("Bake", "Users ask about bake. Nothing else.", "llm"),
    ]
    assert len(backend.calls) == 3
    assert {c.prompt.task for c in backend.calls} == {"name_cluster"}


def test_failures_and_invalid_names_fall_back_to_keywords():
    llm, backend = _llm(
        {
            "cover": LLMError("timed out"),
            "resume": _ok("x" * 61),  # longer than 60 characters
            "cake": _ok("Greet <PERSON>"),  # a placeholder is never a name
        }
    )
    result = _describe(llm)
    assert result == [
        ("cover, letter, write", keyword_description(KEYWORDS[0]), "keywords"),
        ("resume, layout, fix", keyword_description(KEYWORDS[1]), "keywords"),
        ("request cluster 2", keyword_description([]), "keywords"),
    ]
    assert len(backend.calls) == 3
    assert "cover, letter, write, help" in keyword_description(KEYWORDS[0])


def test_a_bad_description_alone_keeps_the_llm_name():
    llm, _ = _llm(
        {
            "cover": {"name": "Write cover letters", "description": "Ask <PERSON_1> for it."},
            "resume": {"name": "  'Fix resumes.'  ", "description": ""},
            "cake": {"name": "...", "description": "Baking."},
        }
    )
    result = _describe(llm)
    assert result[0] == ("Write cover letters", keyword_description(KEYWORDS[0]), "llm")
    assert result[1] == ("Fix resumes", keyword_description(KEYWORDS[1]), "llm")
    assert result[2] == ("request cluster 2", keyword_description([]), "keywords")


def test_without_an_llm_every_cluster_gets_a_keyword_name():
    assert [r[0] for r in _describe(None)] == [
        "cover, letter, write",
        "resume, layout, fix",
        "request cluster 2",
    ]
    assert {r[2] for r in _describe(None)} == {"keywords"}


def _section(prompt_input: str, header: str) -> list[str]:
    lines = prompt_input.splitlines()
    start = lines.index(header) + 1
    section = []
    for line in lines[start:]:
        if not line.startswith("- "):
            break
        section.append(line[2:])
    return section


def test_prompt_shows_central_members_first_and_contrasts_the_nearest_cluster():
    llm, backend = _llm({t: _ok("A name") for t in ("cover", "resume", "cake")})
    _describe(llm, DescribeConfig(samples_inside=3, samples_outside=2))
    prompt = next(c.prompt for c in backend.calls if _topic(c.prompt.input) == "cover")
    inside = _section(prompt.input, "Statements in the group:")
    outside = _section(prompt.input, "Statements from other groups (not this one):")

    members = np.flatnonzero(LABELS == 0)
    most_central = members[np.argmax(VECTORS[members] @ CENTROIDS[0])]
    assert len(inside) == 3
    assert inside[0] == TEXTS[most_central]
    assert set(inside) <= {TEXTS[i] for i in members}
    # The nearest cluster is the resumes one, then the cakes one: one text from each.
    assert len(outside) == 2
    assert "resume" in outside[0]
    assert "cake" in outside[1]
    assert prompt.input.startswith("Distinctive words: cover, letter, write, help\n")


def test_sampling_is_deterministic_for_a_seed():
    def prompts(seed):
        llm, backend = _llm({t: _ok("A name") for t in ("cover", "resume", "cake")})
        _describe(llm, seed=seed)
        return sorted(c.prompt.input for c in backend.calls)

    assert prompts(3) == prompts(3)


def test_names_copied_from_the_examples_or_the_input_fall_back_to_keywords():
    llm, _ = _llm(
        {
            "cover": _ok("Cook pasta and sauce"),  # an example's name, unrelated topic
            "resume": _ok("Fix the layout of my resume version 0"),  # a member text, verbatim
            "cake": {
                "name": "Bake chocolate cakes",
                "description": "Users ask how to cook pasta. Some also ask about sauces.",
            },
        }
    )
    result = _describe(llm)
    assert [r[2] for r in result] == ["keywords", "keywords", "llm"]
    assert result[2] == ("Bake chocolate cakes", keyword_description([]), "llm")


GROUP = (
    "Distinctive words: bank, card\nStatements in the group:\n- my card was declined at the bank"
)


@pytest.mark.parametrize(
    ("name", "description", "expected"),
    [
        ("Plan trips", "Travel.", ("Plan trips", "Travel.")),
        ("  Plan\ntrips ", "a\nb", ("Plan trips", "a b")),
        ("42", "Numbers.", None),
        ("", "Empty.", None),
        ("Plan trips", "[EMAIL_ADDRESS]", ("Plan trips", "")),
        ("Help with cover letters for jobs", "Card problems.", None),  # borrowed words
        ("Fix declined bank cards", "Users ask about pasta.", ("Fix declined bank cards", "")),
        ("My card was declined at the bank!", "Card problems.", None),  # quotes the input
        (
            "Fix declined cards",
            "Users write: my card was declined at the bank.",  # quotes the input
            ("Fix declined cards", ""),
        ),
        ("Card declined", "Declined cards.", ("Card declined", "Declined cards.")),
    ],
)
def test_clean_summary(name, description, expected):
    answer = ClusterSummary(name=name, description=description)
    assert clean_summary(answer, GROUP, quoted=["my card was declined at the bank"]) == expected


def test_clean_summary_rejects_anything_but_a_summary():
    assert clean_summary(None, GROUP) is None


def test_a_parent_may_share_a_child_name_but_a_base_cluster_may_not_quote_a_member():
    answer = ClusterSummary(name="Fix bank cards", description="Card problems.")
    assert clean_summary(answer, "Groups:\n- Fix bank cards") == (
        "Fix bank cards",
        "Card problems.",
    )
    assert clean_summary(answer, "- fix bank cards", quoted=["fix bank cards"]) is None


@pytest.mark.parametrize("samples_outside", [0, 2])
def test_examples_follow_the_layout_of_the_prompt(samples_outside):
    llm, backend = _llm({t: _ok("A name") for t in ("cover", "resume", "cake")})
    _describe(llm, DescribeConfig(samples_inside=3, samples_outside=samples_outside))
    contrast = "Statements from other groups (not this one):"
    for call in backend.calls:
        assert (contrast in call.prompt.input) == (samples_outside > 0)
        assert len(call.prompt.examples) == 2
        for example in call.prompt.examples:
            assert (contrast in example.input) == (samples_outside > 0)
