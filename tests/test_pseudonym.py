import re

import pytest

from clio.pseudonym import pseudonymize


def test_pseudonym_is_stable_for_one_key():
    assert pseudonymize("user-17", "key-a") == pseudonymize("user-17", "key-a")


def test_pseudonym_differs_across_keys():
    assert pseudonymize("user-17", "key-a") != pseudonymize("user-17", "key-b")


def test_pseudonym_differs_across_users():
    assert pseudonymize("user-17", "key-a") != pseudonymize("user-18", "key-a")


def test_pseudonym_shape_hides_the_user_id():
    pseudonym = pseudonymize("alice@example.com", "key-a")
    assert re.fullmatch(r"u_[0-9a-f]{24}", pseudonym)
    assert "alice" not in pseudonym


def test_empty_key_is_refused():
    with pytest.raises(ValueError, match="key"):
        pseudonymize("user-17", "")
