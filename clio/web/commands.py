"""`clio serve` and `clio export-html` (argparse wiring only)."""

from __future__ import annotations

import argparse


def add_web_commands(sub: argparse._SubParsersAction) -> None:
    """Register the web subcommands on the main parser."""
