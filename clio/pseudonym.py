"""Keyed pseudonyms for user ids: stable under one key, unlinkable without it."""

from __future__ import annotations

import hashlib
import hmac

PSEUDONYM_HEX_CHARS = 24  # 96 bits: no collisions in practice at any realistic user count


def pseudonymize(user_id: str, key: str) -> str:
    """HMAC-SHA256 of `user_id` under `key`, as `u_` plus 24 hex characters."""
    if not key:
        raise ValueError("the pseudonym key must not be empty")
    digest = hmac.new(key.encode("utf-8"), user_id.encode("utf-8"), hashlib.sha256)
    return "u_" + digest.hexdigest()[:PSEUDONYM_HEX_CHARS]
