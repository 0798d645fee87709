"""Extractive names are vetted by word support, not by the packaged model's audit or a
context-free re-scan (`ReleaseSettings.of`): each of their words was written by
`min_users` users of the cluster in texts the scrubber already scanned in context."""

from __future__ import annotations

import pytest

from clio.config import RunConfig
from clio.pipeline.publish import ReleaseSettings, gate_clusters
from clio.records import Cluster

MIN = 3


def _config(**privacy: object) -> RunConfig:
    return RunConfig.model_validate(
        {
            "llm": {"backend": "local"},
            "privacy": {"min_users": MIN, "min_conversations": MIN, **privacy},
        }
    )


def test_extractive_texts_skip_the_audit_and_the_rescan_llm_names_do_not():
    local = ReleaseSettings.of(_config()).privacy
    assert not local.audit_released_text and not local.rescan_released_text
    checked = ReleaseSettings.of(
        _config(audit_extractive_text=True, rescan_extractive_text=True)
    ).privacy
    assert checked.audit_released_text and checked.rescan_released_text
    remote = _config().model_copy(update={"llm": RunConfig().llm.model_copy(
        update={"backend": "anthropic", "model": "m"})})  # fmt: skip
    assert ReleaseSettings.of(remote).privacy.rescan_released_text


@pytest.mark.parametrize("rescan", [False, True])
def test_a_common_word_that_is_also_a_given_name_keeps_its_extractive_name(rescan):
    """ "Gun", scanned alone, reads as a PERSON; six users wrote "gun" in their requests.
    With the re-scan (the control) the name is withheld."""
    users = {f"c{i}": f"user-{i}" for i in range(6)}
    values = {c: {"request": f"where can I buy a gun {i}"} for i, c in enumerate(users)}
    cluster = Cluster("request", 0, "request-L0-000", None, list(users), "Gun", "", ["gun"])
    settings = ReleaseSettings.of(_config(rescan_extractive_text=rescan))
    result = gate_clusters([cluster], users, values, settings, llm=None)
    assert (result.clusters[0].name == "Gun") is not rescan
