"""Facet values as the gate reads them: numbers, breakdown labels and text.

Facet values come from the LLM (through `clio.facets`) and may be numbers, numeric
strings, booleans, lists or missing. The gate must read them the same way in every
step (a label counted in a cell must be the label released), so every reading is
defined once here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# conversation id -> {facet -> value}
FacetValues = Mapping[str, Mapping[str, object]]


def facet_scores(facet_values: FacetValues, facet: str) -> dict[str, float]:
    """Conversation id -> valid numeric value of `facet` (conversations without one left out)."""
    scores = {}
    for conversation, values in facet_values.items():
        score = as_number(values.get(facet))
        if score is not None:
            scores[conversation] = score
    return scores


def facet_labels(facet_values: FacetValues, facet: str) -> dict[str, list[str]]:
    """Conversation id -> breakdown labels of its value of `facet`."""
    labels = {}
    for conversation, values in facet_values.items():
        found = value_labels(values.get(facet))
        if found:
            labels[conversation] = found
    return labels


def is_present(value: object) -> bool:
    """Whether a conversation has a value for a facet (counts toward the facet's total)."""
    return value is not None and value != "" and value != []


def as_number(value: object) -> float | None:
    """A valid numeric facet value (numbers, or numeric strings), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def value_labels(value: object) -> list[str]:
    """The breakdown labels of one facet value: a list gives one label per distinct item."""
    items = value if isinstance(value, list | tuple) else [value]
    labels = []
    for item in items:
        label = as_label(item)
        if label and label not in labels:
            labels.append(label)
    return labels


def as_label(item: object) -> str | None:
    """A value as released text: 2.0 -> "2", 2.5 -> "2.5", True -> "true"; None when missing."""
    if item is None:
        return None
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, float):
        if not math.isfinite(item):
            return None
        return str(int(item)) if item.is_integer() else repr(item)
    return str(item).strip() or None


def value_text(value: object) -> str:
    """A facet value as text to count words in: a list's items one per line."""
    if isinstance(value, list | tuple):
        return "\n".join(str(item) for item in value if item is not None)
    return "" if value is None else str(value)
