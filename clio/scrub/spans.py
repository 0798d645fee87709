"""What a scrubber is and what it returns: the `Scrubber` protocol, `Span`, and the span
algebra the stage applies to its output (joining an address's parts, propagating found
values through a conversation, merging overlaps, numbering placeholders).

This is plain Python over offsets, independent of Presidio, so the evaluation scores
spans exactly as the stage replaces them and tests can check it without loading models.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import regex

from clio.scrub.recognizers.names import name_parts

ADDRESS_PART_TYPES = ("STREET_ADDRESS", "LOCATION", "POSTCODE")


@dataclass(frozen=True)
class Span:
    """One detected value: its entity type, character offsets in its text, and score."""

    entity_type: str
    start: int
    end: int
    score: float


class Scrubber(Protocol):
    """What the stage needs of a scrubber, so tests and the evaluation can stand in their
    own (and the stage never depends on Presidio itself)."""

    @property
    def identifier(self) -> str:
        """Stable: engine, model, recognizer set version and a hash of the scrub config."""
        ...

    @property
    def entities(self) -> list[str]:
        """The entity types it replaces (what an evaluation scores it on)."""
        ...

    def analyze(self, texts: Sequence[str]) -> list[list[Span]]:
        """Spans to replace in each text (dropped types, allow-listed values and values its
        keep policy leaves in place excluded)."""
        ...

    def keeps(self, entity_type: str, value: str) -> bool:
        """Whether a detected `value` of `entity_type` is left in place on purpose (the
        keep policy), so an evaluation scores a gold span of it as out of scope."""
        ...

    def scrub(self, texts: Sequence[str]) -> list[tuple[str, list[Span]]]:
        """Each text with its spans replaced, numbered as one conversation, and those spans."""
        ...


# What may follow a street address and still belong to it: separators, then a detected
# place or postcode, a capitalised town name, a state code or a postcode.
_ADDRESS_GAP = regex.compile(r"[ \t]*[,>\-–]?[ \t]*\n?[ \t]*[,>]?[ \t]*")
_ADDRESS_LABEL_GAP = regex.compile(r"[ \t]*,?[ \t]*\n[ \t]*\n[ \t]*")
# Town names may hold a lower-case joiner: "Soto del Barco", "Črni Vrh nad Idrijo".
_TOWN_JOINER = r"(?:de|del|la|le|les|sur|nad|na|pod|am|an|im|upon)"
_ADDRESS_TAIL = regex.compile(
    r"(?:(?i:apt\.?|apartment|suite|ste\.?|unit|flat|#)[ \t]*\d+[A-Za-z]?|"
    rf"\p{{Lu}}[\p{{L}}'’.-]*(?:[ \t](?:{_TOWN_JOINER}[ \t])?\p{{Lu}}[\p{{L}}'’.-]*){{0,2}}|"
    # A postcode, not the start of a phone number on the next line.
    r"[A-Z]{2}|(?:\d{4,5}(?:-\d{3,4})?|\d{2}-\d{3})(?![ \t().-]*\d)|"
    r"[A-Z]{1,2}\d[A-Z\d]?[ \t]\d[A-Z]{2}|"
    # What table exports write for an empty field ("Wrocław\n nan\n 53-320"): the address
    # goes on after it.
    r"nan|NaN|None|null|N/A)\b"
)
MAX_ADDRESS_TAIL_PARTS = 6


def join_address_parts(text: str, spans: list[Span]) -> list[Span]:
    """Grow each STREET_ADDRESS over what follows it on the same address (town, state,
    postcode, country), so one placeholder replaces one address."""
    streets = [s for s in spans if s.entity_type == "STREET_ADDRESS"]
    if not streets:
        return spans
    parts = sorted((s for s in spans if s.entity_type in ADDRESS_PART_TYPES), key=lambda s: s.start)
    grown: list[Span] = []
    absorbed: set[Span] = set()
    for street in streets:
        end = street.end
        for _ in range(MAX_ADDRESS_TAIL_PARTS):
            gap = _ADDRESS_GAP.match(text, end)
            position = gap.end() if gap else end
            # A detected place or postcode may also follow a blank line (address labels).
            wide = _ADDRESS_LABEL_GAP.match(text, end)
            wide_position = wide.end() if wide else end
            following = next(
                (p for p in parts if p.start in (position, wide_position) and p.end > end), None
            )
            if following is not None:
                absorbed.add(following)
                end = following.end
                continue
            tail = _ADDRESS_TAIL.match(text, position)
            if tail is None or tail.end() <= end:
                break
            end = tail.end()
        grown.append(Span("STREET_ADDRESS", street.start, end, street.score))
        absorbed.update(p for p in parts if street.start <= p.start and p.end <= end)
    kept = [s for s in spans if s not in absorbed and s.entity_type != "STREET_ADDRESS"]
    return kept + grown


def resolve_overlaps(spans: Sequence[Span]) -> list[Span]:
    """Merge overlapping spans into one region each, so no part of any span stays in the
    text; a region takes the type of its longest (then highest-scoring) member."""
    regions: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if regions and span.start < regions[-1].end:
            region = regions[-1]
            winner = max(region, span, key=lambda s: (s.end - s.start, s.score))
            regions[-1] = Span(
                winner.entity_type, region.start, max(region.end, span.end), winner.score
            )
        else:
            regions.append(span)
    return regions


def apply_placeholders(
    texts: Sequence[str], spans: Sequence[Sequence[Span]]
) -> list[tuple[str, list[Span]]]:
    """Replace each text's spans with `<TYPE_n>`, numbered by first appearance across all
    `texts` (one conversation); the same value (case and spacing aside) keeps its number.

    presidio-anonymizer has no numbering shared across texts (its custom operator sees one
    value at a time, last span first), hence this small replacement loop.
    """
    numbering: dict[tuple[str, str], str] = {}
    counts: Counter[str] = Counter()
    scrubbed = []
    for text, text_spans in zip(texts, spans, strict=True):
        regions = resolve_overlaps(text_spans)
        pieces, cursor = [], 0
        for region in regions:
            if not 0 <= region.start < region.end <= len(text):
                raise ValueError(f"span {region.start}-{region.end} outside a text of {len(text)}")
            value = " ".join(text[region.start : region.end].split()).casefold()
            key = (region.entity_type, value)
            if key not in numbering:
                counts[region.entity_type] += 1
                numbering[key] = f"<{region.entity_type}_{counts[region.entity_type]}>"
            pieces += [text[cursor : region.start], numbering[key]]
            cursor = region.end
        pieces.append(text[cursor:])
        scrubbed.append(("".join(pieces), regions))
    return scrubbed


MIN_PROPAGATED_CHARS = 4


def propagate_values(texts: Sequence[str], spans: Sequence[Sequence[Span]]) -> list[list[Span]]:
    """Add a span wherever a value detected in one text of a conversation appears again as a
    whole word in any of its texts: a name the analyzer caught in the user's turn is also
    replaced where the assistant repeats it without context, and a person's surname or
    given name alone where the full name was found ("Maciej Borkowski ... Borkowski")."""
    values: dict[str, Span] = {}
    for text, text_spans in zip(texts, spans, strict=True):
        for span in text_spans:
            value = text[span.start : span.end]
            if len(value.strip()) >= MIN_PROPAGATED_CHARS:
                values.setdefault(value.casefold(), span)
            if span.entity_type == "PERSON":
                for part in name_parts(value):
                    values.setdefault(part.casefold(), span)
    if not values:
        return [list(s) for s in spans]
    alternatives = "|".join(regex.escape(v) for v in sorted(values, key=len, reverse=True))
    pattern = regex.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", regex.IGNORECASE)
    result = []
    for text, text_spans in zip(texts, spans, strict=True):
        found = list(text_spans)
        covered = {(s.start, s.end, s.entity_type) for s in found}
        for match in pattern.finditer(text):
            source = values[match.group().casefold()]
            if (match.start(), match.end(), source.entity_type) not in covered:
                found.append(Span(source.entity_type, match.start(), match.end(), source.score))
        result.append(found)
    return result
