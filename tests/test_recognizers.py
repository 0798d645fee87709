"""Span tests in Presidio's style: text, expected entity type, expected substring.

They run the real engine (Presidio's predefined recognizers plus clio's) with the
default scrub config, so a recognizer that is not registered fails here too.
"""

import pytest

from clio.config import ScrubConfig
from clio.recognizers import (
    RECOGNIZERS_VERSION,
    common_words,
    find_person_names,
    find_places,
    given_names,
    place_names,
)
from clio.scrub import PresidioScrubber, build_scrubber


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
    assert f"recognizers-{RECOGNIZERS_VERSION}" in scrubber.identifier


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Derek met Anna Lindqvist", ["Derek", "Anna Lindqvist"]),
        ("Zoe Young and Lena J Key", ["Zoe Young", "Lena J Key"]),
        ("my name is john and I like tea", ["john"]),
        ("the weather is nice", []),
        ("Will you call Mark?", []),  # names that are everyday words are left to NER
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


def test_gazetteers_are_loaded_from_their_packages():
    names, words = given_names(), common_words()
    assert {"tomomi", "sofie", "mette", "john"} <= names
    assert not {"will", "the", "can", "hope"} & names
    assert {"weather", "house"} <= words
    assert ("new", "zealand") in place_names()["new"]
