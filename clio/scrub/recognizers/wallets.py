"""Crypto wallets, reported as CRYPTO_WALLET: Presidio's checksum-validated Bitcoin
recognizer under clio's entity name, and Ethereum addresses, which Presidio lacks.
"""

from __future__ import annotations

from presidio_analyzer import Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import CryptoRecognizer

from clio.scrub.recognizers.text import pattern_recognizer


class BitcoinWalletRecognizer(CryptoRecognizer):
    """Presidio's checksum-validated Bitcoin recognizer, reporting CRYPTO_WALLET."""

    def __init__(self, supported_language: str = "en"):
        super().__init__(
            supported_language=supported_language,
            supported_entity="CRYPTO_WALLET",
            name="BitcoinWalletRecognizer",
        )


def ethereum_wallet_recognizer(language: str = "en") -> PatternRecognizer:
    return pattern_recognizer(
        "CRYPTO_WALLET",
        "EthereumWalletRecognizer",
        [Pattern("ethereum", r"\b0x[0-9a-fA-F]{40}\b", 0.7)],
        language,
    )
