"""Span tests in Presidio's style: text, expected entity type, expected substring.

They run the real engine (Presidio's predefined recognizers plus clio's) with the
default scrub config, so a recognizer that is not registered fails here too.
"""

import pytest

from clio.config import ScrubConfig
from clio.scrub import PresidioScrubber, build_scrubber
from clio.scrub.recognizers.code import code_regions, not_pii
from clio.scrub.recognizers.gazetteers import (
    common_words,
    everyday_words,
    given_names,
    is_english_word,
    is_public_place,
    lowercase_given_names,
    place_names,
    surnames_list,
)
from clio.scrub.recognizers.names import is_wordlike_name, name_parts, ner_person_label
from clio.scrub.recognizers.person_names import find_person_names
from clio.scrub.recognizers.places import find_places
from clio.scrub.recognizers.registry import (
    DIGIT_RECOGNIZERS,
    RECOGNIZERS,
    clio_recognizer_names,
    recognizers_version,
    version_of,
)


@pytest.fixture(scope="module")
def scrubber() -> PresidioScrubber:
    return build_scrubber(ScrubConfig())


def found(scrubber: PresidioScrubber, text: str) -> set[tuple[str, str]]:
    [spans] = scrubber.analyze([text])
    return {(span.entity_type, text[span.start : span.end]) for span in spans}


POSITIVES = [
    # Presidio built-ins clio relies on
    ("My name is John Smith.", "PERSON", "John Smith"),
    ("write to jane.doe@example.com today", "EMAIL_ADDRESS", "jane.doe@example.com"),
    ("email me at bob@company.co.uk", "EMAIL_ADDRESS", "bob@company.co.uk"),
    ("Please call me at (415) 867-5309 tonight.", "PHONE_NUMBER", "(415) 867-5309"),
    ("Call +44 20 7946 0958 tomorrow", "PHONE_NUMBER", "+44 20 7946 0958"),
    ("my card is 4111 1111 1111 1111", "CREDIT_CARD", "4111 1111 1111 1111"),
    ("My IBAN is GB82 WEST 1234 5698 7654 32.", "IBAN_CODE", "GB82 WEST 1234 5698 7654 32"),
    ("the server is 192.168.1.20", "IP_ADDRESS", "192.168.1.20"),
    ("My social security number is 536-22-8163", "US_SSN", "536-22-8163"),
    ("the router's mac is 00:1A:2B:3C:4D:5E", "MAC_ADDRESS", "00:1A:2B:3C:4D:5E"),
    ("cisco style 0012.3456.789A here", "MAC_ADDRESS", "0012.3456.789A"),
    # API keys and tokens
    (
        "key sk-ant-api03-abcDEF1234567890xyzXYZ ok",
        "API_KEY",
        "sk-ant-api03-abcDEF1234567890xyzXYZ",
    ),
    (
        "OPENAI_API_KEY=sk-proj-4f9Qx2LmZ8aB7cD3eF1gH5jK",
        "API_KEY",
        "sk-proj-4f9Qx2LmZ8aB7cD3eF1gH5jK",
    ),
    (
        "token ghp_abcdefghijklmnopqrstuvwxyz0123456789 leaked",
        "API_KEY",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    ),
    ("slack xoxb-1234567890-abcdefghij works", "API_KEY", "xoxb-1234567890-abcdefghij"),
    ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "API_KEY", "AKIAIOSFODNN7EXAMPLE"),
    (
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjEyfQ.abc123",
        "API_KEY",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjEyfQ.abc123",
    ),
    # secrets in URLs: only the value
    (
        "https://example.com/cb?code=1&access_token=ya29A0ARrdaM",
        "URL_SECRET",
        "ya29A0ARrdaM",
    ),
    ("http://10.0.0.5/login?user=bob&password=S3cret!", "URL_SECRET", "S3cret!"),
    ("GET /files?id=7&sig=XYZ987abc HTTP/1.1", "URL_SECRET", "XYZ987abc"),
    ("postgres://admin:hunter2@db.internal:5432/app", "URL_SECRET", "admin:hunter2"),
    # crypto wallets
    (
        "send to 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
        "CRYPTO_WALLET",
        "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
    ),
    (
        "bech32 bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq please",
        "CRYPTO_WALLET",
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
    ),
    (
        "eth 0x52908400098527886E0F7030069857D2E4169EE7",
        "CRYPTO_WALLET",
        "0x52908400098527886E0F7030069857D2E4169EE7",
    ),
    # addresses and postcodes
    ("I live at 221B Baker Street now", "STREET_ADDRESS", "221B Baker Street"),
    ("Meet me at 10 Downing St. tomorrow", "STREET_ADDRESS", "10 Downing St."),
    ("Mail it to 1600 Pennsylvania Avenue NW", "STREET_ADDRESS", "1600 Pennsylvania Avenue NW"),
    ("my zip code is 94105.", "POSTCODE", "94105"),
    ("Washington, DC 20500", "POSTCODE", "20500"),
    ("postal code: EC1A 1BB", "POSTCODE", "EC1A 1BB"),
    ("our postcode is SW1A 1AA", "POSTCODE", "SW1A 1AA"),
    # dates of birth and passports, with their context
    ("I was born on 12/03/1985 in a small town", "DATE_OF_BIRTH", "12/03/1985"),
    ("DOB: March 3, 1985", "DATE_OF_BIRTH", "March 3, 1985"),
    ("My date of birth is 1990-07-14.", "DATE_OF_BIRTH", "1990-07-14"),
    ("I was born 4th July 1976 in Ohio", "DATE_OF_BIRTH", "4th July 1976"),
    ("my passport number is C01X00T47", "PASSPORT", "C01X00T47"),
    ("Passport No: 123456789", "PASSPORT", "123456789"),
    ("numéro de passeport : 12AB34567", "PASSPORT", "12AB34567"),
    # national identity numbers
    ("my NINO is QQ 12 34 56 C", "NATIONAL_ID", "QQ 12 34 56 C"),
    ("NIR 1 84 12 75 108 123 45 sur la carte", "NATIONAL_ID", "1 84 12 75 108 123 45"),
    ("mi DNI es 12345678Z", "NATIONAL_ID", "12345678Z"),
    ("national ID number: K-4471-92-XQ", "NATIONAL_ID", "K-4471-92-XQ"),
    # secrets after their name, handles
    ("the db password: Tq8xk2Lm9 please", "SECRET", "Tq8xk2Lm9"),
    ("access_token=ya29ABCdef123456 in the env", "SECRET", "ya29ABCdef123456"),
    ("thanks @jane_doe42 for the tip", "USERNAME", "@jane_doe42"),
    (
        "google AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW here",
        "API_KEY",
        "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW",
    ),
    # card and phone numbers Presidio's own recognizers reject, with their context
    ("What is the limit for card 213173282369527?", "CREDIT_CARD", "213173282369527"),
    ("Name: Emilie Broberg Phone: 72 128 827", "PHONE_NUMBER", "72 128 827"),
    ("Desk: +1-903-140-4508x769 Fax", "PHONE_NUMBER", "+1-903-140-4508x769"),
    ("71 Main St 21 253 109 8211-Office", "PHONE_NUMBER", "21 253 109 8211"),
    # names beyond the small NER model: given names, titles, naming phrases
    ("Tomomi Nishiyama lives in town", "PERSON", "Tomomi Nishiyama"),
    ("They were singing Ella H. Snider's song", "PERSON", "Ella H. Snider"),
    ("Mrs. Fairweather flew home.", "PERSON", "Fairweather"),
    ("hi, my name is vitoria", "PERSON", "vitoria"),
    ("What's your last name? Turgeon", "PERSON", "Turgeon"),
    # places from the gazetteer, streets of other countries
    ("We moved to TRONDHEIM last year", "LOCATION", "TRONDHEIM"),
    (
        "Tosh Olsen lives at 172 Maneeži 75, Saareküla",
        "STREET_ADDRESS",
        "172 Maneeži 75, Saareküla",
    ),
    ("Send it to Rua do Arenque 1634, please", "STREET_ADDRESS", "Rua do Arenque 1634"),
    ("office: 6750 Koskikatu 25 Apt. 864", "STREET_ADDRESS", "6750 Koskikatu 25 Apt. 864"),
    ("box: P.O. Box 242 Suite 787", "STREET_ADDRESS", "P.O. Box 242 Suite 787"),
    ("Je suis née le 14/07/1983 à Lyon", "DATE_OF_BIRTH", "14/07/1983"),
    ("code postal : 75011", "POSTCODE", "75011"),
    # surnames, lists of names, lower-case names, naming phrases
    ("This song by ex-Zombie Kastner is great", "PERSON", "Kastner"),
    ("our founders: Kónya, Becker and Vasquez.", "PERSON", "Kónya"),
    ("Usamov and Bowers were precision engineers.", "PERSON", "Usamov"),
    ("i wish im ryan", "PERSON", "ryan"),
    ("Sometimes people call me Csanád", "PERSON", "Csanád"),
    ("Name: Martim A Pereira Address: unknown", "PERSON", "Martim A Pereira"),
    ("Mrs. Barbara Yudina Apt. 675 62314 Mellemvej 32", "PERSON", "Barbara Yudina"),
    # European street numbering, flats on their own, intersections, foreign street words
    ("William Hughes  20789 Allika 46  Suite 501", "STREET_ADDRESS", "20789 Allika 46  Suite 501"),
    ("Ship to Suite 541 please", "STREET_ADDRESS", "Suite 541"),
    ("The bus station is on Villacher Strasse 89", "STREET_ADDRESS", "Villacher Strasse 89"),
    ("It is at 764 Fagradalsbraut 71 now", "STREET_ADDRESS", "764 Fagradalsbraut 71"),
    (
        "meet at the corner of Dalbraut 99 and Frederikke Coves",
        "STREET_ADDRESS",
        "the corner of Dalbraut 99 and Frederikke Coves",
    ),
    # small places after a travel or origin phrase, postcodes of other shapes
    ("Ms. Margarot flew to Loeches on Saturday", "LOCATION", "Loeches"),
    ("We moved here from Tjæreborg", "LOCATION", "Tjæreborg"),
    ("I'm Naomi, originally from PORT O' WARREN", "LOCATION", "PORT O' WARREN"),
    ("ZIP: 394 13", "POSTCODE", "394 13"),
    ("my zip code is 53-320", "POSTCODE", "53-320"),
    # a naming phrase or a title outranks the NER model's guess of a place
    ("What's your last name? Arcuri", "PERSON", "Arcuri"),
    ("Mrs. Schwarz flew home", "PERSON", "Schwarz"),
    # military mail and P.O. boxes in any case, with a house number before the box
    ("unit 1009 box 0219\ndpo ap 51065", "STREET_ADDRESS", "unit 1009 box 0219\ndpo ap 51065"),
    ("sent to uscgc aslakhanov\nfpo ae 44941?", "STREET_ADDRESS", "uscgc aslakhanov\nfpo ae 44941"),
    ("Satu Elomo\n\n45818 P.O. Box 242", "STREET_ADDRESS", "45818 P.O. Box 242"),
]


@pytest.mark.parametrize(("text", "entity_type", "expected"), POSITIVES)
def test_recognizes(scrubber, text, entity_type, expected):
    assert (entity_type, expected) in found(scrubber, text)


NEGATIVES = [
    ("Upgrade to version 1.2.3 today", None),
    ("I love baking bread with my family on weekends.", None),
    ("Use sk-learn-is-a-very-popular-library for that", "API_KEY"),
    ("He was the bearer of bad news", "API_KEY"),
    ("set token=abc123 in the config file", "URL_SECRET"),
    ("Our CPU flag is 0x1F", "CRYPTO_WALLET"),
    ("The ratio a1:b2 is fine", "MAC_ADDRESS"),
    ("The 3 cars in the street were red", "STREET_ADDRESS"),
    ("In 2020 The Way of Kings sold well", "STREET_ADDRESS"),
    ("There were 94105 people there", "POSTCODE"),
    ("It happened on 12/03/1985", "DATE_OF_BIRTH"),
    ("Renew your passport at the passport office", "PASSPORT"),
    ("my passport number is required", "PASSPORT"),
    ("the password is required to log in", "SECRET"),
    ("set a strong password like this one", "SECRET"),
    ("write to jane.doe@example.com today", "USERNAME"),
    ("Hope this helps, and Grace period ends soon", "PERSON"),
    ("Can you help me? Will it rain?", "PERSON"),
    ("my card was declined twice", "CREDIT_CARD"),
    ("In 2020 there were 1500 people", "PHONE_NUMBER"),
    ("Top 10 Movies 2020 list", "STREET_ADDRESS"),
    ("the marina was nice and the ginger tea too", "PERSON"),
    ("I am in Love with it", "LOCATION"),
    ("For my take, see Guilty Pleasures: 5 Musicians", "PERSON"),
    ("Apple and Google announced it", "PERSON"),
]


@pytest.mark.parametrize(("text", "entity_type"), NEGATIVES)
def test_no_false_positive(scrubber, text, entity_type):
    types = {found_type for found_type, _ in found(scrubber, text)}
    if entity_type is None:
        assert types == set()
    else:
        assert entity_type not in types


def test_replaced_builtins_are_gone_and_extras_are_active(scrubber):
    assert "CRYPTO" not in scrubber.entities
    for entity_type in (
        "API_KEY",
        "URL_SECRET",
        "MAC_ADDRESS",
        "CRYPTO_WALLET",
        "STREET_ADDRESS",
        "POSTCODE",
        "DATE_OF_BIRTH",
        "PASSPORT",
        "IBAN_CODE",
        "EMAIL_ADDRESS",
        "NATIONAL_ID",
        "SECRET",
        "USERNAME",
    ):
        assert entity_type in scrubber.entities
    assert f"recognizers-{recognizers_version()}" in scrubber.identifier


def test_every_registered_recognizer_is_installed(scrubber):
    names = {r.name for r in scrubber._analyzers["en"].registry.recognizers}
    assert {make("en").name for make in RECOGNIZERS} <= names
    assert clio_recognizer_names() <= names


def _digit_recognizers(scrubber: PresidioScrubber) -> list:
    registry = scrubber._analyzers["en"].registry
    return [r for r in registry.recognizers if r.name in DIGIT_RECOGNIZERS]


def test_digit_recognizers_run_only_on_texts_with_a_digit(scrubber, monkeypatch):
    gated = _digit_recognizers(scrubber)
    assert {r.name for r in gated} == DIGIT_RECOGNIZERS  # every name is a recognizer
    ran: list[str] = []
    for recognizer in gated:
        base = type(recognizer).__mro__[1]
        monkeypatch.setattr(base, "analyze", lambda self, *_a, **_k: ran.append(self.name) or [])
    for recognizer in gated:
        recognizer.analyze("Call me on the office line, Anna", recognizer.supported_entities)
    assert ran == []
    # Control: a digit, also a non-ASCII one, and every one of them runs.
    for text in ("Call me on 0171 555 0100", "رقمي ٠١٧١٥٥٥٠١٠٠"):
        ran.clear()
        for recognizer in gated:
            recognizer.analyze(text, recognizer.supported_entities)
        assert sorted(ran) == sorted(DIGIT_RECOGNIZERS)


def test_digit_recognizers_find_nothing_once_the_digits_are_gone(scrubber):
    """What the gate skips cannot be found anyway: the texts with digits among the span
    tests, digits dropped or turned into look-alike letters, give the ungated
    recognizers nothing (and the texts as they are give them something: the control)."""
    texts = [text for text, *_ in POSITIVES + NEGATIVES if any(c.isdigit() for c in text)]
    gated = _digit_recognizers(scrubber)

    def findings(texts: list[str]) -> int:
        return sum(
            len(type(r).__mro__[1].analyze(r, text, r.supported_entities, None))
            for r in gated
            for text in texts
        )

    assert findings(texts) > 0
    for letter in ("", "O", "l", "I"):
        assert findings(["".join(letter if c.isdigit() else c for c in t) for t in texts]) == 0


def test_recognizers_version_is_derived_from_source_and_data():
    sources, data = {"a.py": b"x = 1\n", "b.py": b"y = 2\n"}, {"names": "0.3.0"}
    version = version_of(sources, data)
    assert len(version) == 12 and int(version, 16) >= 0
    assert version_of(dict(reversed(sources.items())), data) == version
    assert version_of({**sources, "a.py": b"x = 2\n"}, data) != version
    assert version_of({**sources, "c.py": b""}, data) != version
    assert version_of(sources, {"names": "0.4.0"}) != version
    assert recognizers_version() == recognizers_version()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Derek met Anna Lindqvist", ["Derek", "Anna Lindqvist"]),
        ("Zoe Young and Lena J Key", ["Zoe Young", "Lena J Key"]),
        ("my name is john and I like tea", ["john"]),
        ("the weather is nice", []),
        ("Will you call Mark?", []),  # names that are everyday words are left to NER
        ("They had 6: Efimiya, Mary and Ariana.", ["Efimiya", "Mary", "Ariana"]),
        ("Morrison, Rogers and Torres.", ["Morrison", "Rogers", "Torres"]),
        ("Reed Elsevier and Loveland Technologies", ["Reed Elsevier"]),
        ("naomi ryan sewer pipe", ["naomi ryan"]),
        ("I'm Amanda's daughter", ["Amanda"]),
        ("Hi Freddy, I'm here", ["Freddy"]),
        ("Brad L Key and Lena J Key", ["Lena J Key"]),
        ("I want to add Irenke Sörös as", ["Irenke Sörös"]),  # two unknown words in a row
        ("Google Public Data Explorer", []),
        ("shows on Marina Fort Street were", []),  # a street named after a person
        ("WAS THAT ELEKTRA", ["ELEKTRA"]),  # a name in capitals after shouted words
        ("my IBAN FR76 3000", []),  # but not an acronym that is also a name
        ("please change it to Tristan Dennis", ["Tristan Dennis"]),  # a rare given name
        ("Anna van Dijk wrote", ["Anna van Dijk"]),  # a particle inside the name
        ("> Mijail C Adomo\n> Asc Partners", ["Mijail C Adomo"]),  # unknown words, initial
        # lower case: a surname that is also a noun, a middle initial
        ("ask sarah ross today", ["sarah ross"]),
        ("follow up with benjamin a seiler soon", ["benjamin a seiler"]),
        ("the codey m ross version", ["codey m ross"]),
        ("give emily a call", ["emily"]),
        ("tell sophia a story", []),
        # addressed at the start of a line, or a speaker label beside a known name
        ("Warrane, can I please speak to your boss?", ["Warrane"]),
        ("Ubul: What a wife.\nNicole: Remember me", ["Ubul", "Nicole"]),
        ("Kubernetes: a system\nDocker: another", []),
        ("Hello, can you help", []),
    ],
)
def test_find_person_names(text, expected):
    assert [text[start:end] for start, end, _ in find_person_names(text)] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("From New Zealand to Oslo", ["New Zealand", "Oslo"]),
        ("we sailed past the mobile home", []),
        ("He lives in Rio de Janeiro now", ["Rio de Janeiro"]),
    ],
)
def test_find_places(text, expected):
    assert [text[start:end] for start, end in find_places(text)] == expected


def test_english_only_rules_stay_out_of_other_languages():
    text = "la pierre et le Conseil Constitutionnel, avec ryan"
    english = [text[a:b] for a, b, _ in find_person_names(text)]
    assert english == ["pierre", "Conseil Constitutionnel", "ryan"]
    assert list(find_person_names(text, "fr")) == []


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("Please return to Leon and Eyrarodda 66 in case", "en", ["Leon"]),  # a street
        ("The restaurant is at 9816 214 Pavlou Drandaki", "en", []),  # after a house number
        ("I met Anna 3 times", "en", ["Anna"]),
        ("Sala de lo Penal. Los demandantes", "es", []),  # sentence-initial words
        ("la Sala y el Tribunal", "es", []),  # after an article
        ("el abogado Becker dijo", "es", ["Becker"]),
        ("de los Sres. Evaldsson y Hodell.", "es", ["Evaldsson", "Hodell"]),
        ("de MM. Ehrenkrona, Bratt et Södergren.", "fr", ["Ehrenkrona", "Bratt", "Södergren"]),
    ],
)
def test_names_by_place_in_the_sentence(text, language, expected):
    assert [text[a:b] for a, b, _ in find_person_names(text, language)] == expected


def test_a_naming_phrase_outranks_a_place_guess():
    """A given name that is also a place scores below the NER model's place guess alone,
    above it after a naming phrase, so the keep policy never keeps it as a place."""
    assert [s for _, _, s in find_person_names("Chad called")] == [0.6]
    assert [s for _, _, s in find_person_names("my name is Chad")] == [0.9]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Spain", True),
        ("spain's", True),
        ("the United States", True),
        ("U.S.", True),
        ("UK", True),
        ("North Korea", True),
        ("Philadelphia", True),  # 1.5 million people
        ("Dallas, Texas", True),
        ("Europe", True),
        ("Boston", False),  # 0.65 million
        ("Springfield, Illinois", False),
        ("Tjæreborg", False),
        ("Tremont", False),  # an alternate name of Boston in GeoNames, and a street there
        ("", False),
    ],
)
def test_public_places(text, expected):
    assert is_public_place(text, 1_000_000) is expected


def test_public_city_population_floor():
    assert is_public_place("Boston", 500_000)
    assert not is_public_place("Philadelphia", 2_000_000)
    assert is_public_place("Texas", 10**12)  # states and countries whatever the floor


def test_coordinated_names_outrank_a_place_guess():
    scores = {
        "Torres": [s for a, b, s in find_person_names("Morrison, Rogers and Torres") if a == 21],
        "alone": [s for _, _, s in find_person_names("Torres")],
    }
    assert scores == {"Torres": [0.9], "alone": [0.45]}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Guilty Pleasures", True),
        ("Salesperson", True),
        ("Kylie", False),  # a word, but a given name too
        ("Bill", False),
        ("Metallica", False),
        ("", False),
    ],
)
def test_is_wordlike_name(value, expected):
    assert is_wordlike_name(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Barbara Yudina Apt", ("PERSON", 14)),
        ("Marina Fort Street", ("STREET_ADDRESS", 18)),
        ("Inna Loop St", ("STREET_ADDRESS", 12)),
        ("Anna Lindqvist", None),
        ("Apt", None),
    ],
)
def test_ner_person_label(value, expected):
    assert ner_person_label(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Wacława Adamska", ["Wacława", "Adamska"]),
        ("Maciej Borkowski's", ["Maciej", "Borkowski"]),
        ("Zoe Young", []),  # "young" is a word: not replaced on its own
        ("Adamska", []),
        ("Ella H. Snider", ["Ella", "Snider"]),
    ],
)
def test_name_parts(value, expected):
    assert name_parts(value) == expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [("movies", True), ("Tips", True), ("stories", True), ("Allika", False), ("the", True)],
)
def test_is_english_word(word, expected):
    assert is_english_word(word) is expected


def test_name_lists_leave_everyday_words_out():
    surnames, lower = surnames_list(), lowercase_given_names()
    assert {"vasquez", "becker", "kastner", "johnson", "torres"} <= surnames
    assert not {"brown", "white", "young", "may", "apple", "docker"} & surnames
    assert {"emma", "ryan", "naomi"} <= lower
    assert not {"marina", "martin", "will", "mark", "ginger", "brandy"} & lower
    assert {"brown", "quick"} <= everyday_words()
    assert "johnson" not in everyday_words()


def test_gazetteers_are_loaded_from_their_packages():
    names, words = given_names(), common_words()
    assert {"tomomi", "sofie", "mette", "john"} <= names
    assert not {"will", "the", "can", "hope"} & names
    assert {"weather", "house"} <= words
    assert ("new", "zealand") in place_names()["new"]


# --- code and numbers that are not PII -------------------------------------------------


def not_pii_at(text: str, entity_type: str, value: str) -> bool:
    start = text.index(value)
    return not_pii(text, entity_type, start, start + len(value), code_regions(text))


@pytest.mark.parametrize(
    ("text", "entity_type", "value"),
    [
        # code characters in a name, a place or an address
        ("for i in range(1, n):", "LOCATION", "range(1"),
        ("n = len(str1) + len(str2)", "STREET_ADDRESS", "= len(str1"),
        # an identifier with no listed name in it
        ("compare str1 with str2", "PERSON", "str2"),
        ("the x86 instruction set", "LOCATION", "x86"),
        ("call os.path to join", "LOCATION", "os.path"),
        # a computing term
        ("Return the answer in JSON format", "LOCATION", "JSON"),
        ("how will ai change jobs", "LOCATION", "ai"),
        # inside Markdown code, fenced (closed or cut off) or inline
        ("Explain this:\n```\nMOV AX, 1\n```", "LOCATION", "MOV AX"),
        ("Explain this:\n```asm\nMOV AX, 1", "LOCATION", "MOV AX"),
        ("What does `MOV AX, BX` do?", "LOCATION", "MOV AX"),
        # a decimal price read as a phone number
        ("The total was 164.25 dollars", "PHONE_NUMBER", "164.25"),
        ("it costs 1,299.99 now", "PHONE_NUMBER", "1,299.99"),
    ],
)
def test_code_and_decimal_numbers_are_not_pii(text, entity_type, value):
    assert not_pii_at(text, entity_type, value)


@pytest.mark.parametrize(
    ("text", "entity_type", "value"),
    [
        ("call John at 555-123-4567", "PERSON", "John"),
        ("call John at 555-123-4567", "PHONE_NUMBER", "555-123-4567"),
        ("my number is 555.1234", "PHONE_NUMBER", "555.1234"),
        ("I live in 12 Oak Street", "STREET_ADDRESS", "12 Oak Street"),
        ("ship to Apt 4B, 12 Oak Street", "STREET_ADDRESS", "Apt 4B, 12 Oak Street"),
        ("I moved to Springfield last year", "LOCATION", "Springfield"),
        ("I met Ai at the station", "PERSON", "Ai"),
        # a bracket at the NER model's boundary, handles
        ("Toni Kroos - [here] (https://example.com)", "PERSON", "Toni Kroos - ["),
        ("[written by Jo] (https://example.com)", "PERSON", "Jo] (https://example.com)"),
        ("RT @Prettyboy_flako: who wins", "PERSON", "RT @Prettyboy_flako:"),
        # user names that hold a listed name stay replaced
        ("add john_smith to the group", "PERSON", "john_smith"),
        ("my login is jane93", "PERSON", "jane93"),
        # inside code, strings and comments are data
        ('```\nuser = "John Smith"\n```', "PERSON", "John Smith"),
        ("```\nx = 1  # by Maria Kowalczyk\n```", "PERSON", "Maria Kowalczyk"),
        # pattern types are not judged, even inside code
        ("`key = sk_live_abc`", "API_KEY", "sk_live_abc"),
    ],
)
def test_names_places_addresses_and_phones_outside_code_are_pii(text, entity_type, value):
    assert not not_pii_at(text, entity_type, value)
