"""Protected persons: names whose appearance in a prompt signals ``real_person``.

Deepfakes of real people (above all sexual ones) are the harm; a deployment protects the
people it cares about by listing them. Names are matched on the normalised prompt, so
look-alike letters and spacing tricks are already undone, and then fuzzily (rapidfuzz) on
the prompt with its spaces removed, so "Tayler Swift" and "TaylorSwift" still match.
Short names match exactly only: one typo in five letters is another word.

The registry lives in the shared database (:mod:`genguard.store`); a small built-in list
of well-known public figures is an *example* of what to protect, loaded unless disabled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz import fuzz, process
from sqlalchemy import select

from genguard.decision import Match
from genguard.errors import ConfigError
from genguard.store import PersonRow, Store
from genguard.text.normalize import Normalised, normalize_term

#: Example protected persons (public figures often targeted by deepfakes). Operators add
#: their own with ``genguard persons add``; pass ``builtin=False`` to start empty.
BUILTIN_PERSONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Barack Obama", ("Obama",)),
    ("Joe Biden", ("Biden",)),
    ("Donald Trump", ("President Trump",)),
    ("Emmanuel Macron", ("Macron",)),
    ("Angela Merkel", ("Merkel",)),
    ("Taylor Swift", ()),
    ("Scarlett Johansson", ()),
    ("Tom Hanks", ()),
    ("Elon Musk", ()),
    ("Pope Francis", ()),
    ("King Charles III", ("King Charles",)),
)

#: Fuzzy matching needs this many letters in a name (without spaces) ...
FUZZY_MIN_LETTERS = 8
#: ... and this rapidfuzz partial-ratio score (0-100): one typo in 8-10 letters ...
FUZZY_CUTOFF = 87.0
#: ... or two typos (a swap counts as two) from 11 letters on.
FUZZY_CUTOFF_LONG = 80.0
FUZZY_LONG_LETTERS = 11
_WORD_RE = re.compile(r"[a-z0-9]+|[^\W_a-z0-9]+")
_STRETCH_RE = re.compile(r"(.)\1{2,}")


def _cutoff(key: str) -> float:
    return FUZZY_CUTOFF_LONG if len(key) >= FUZZY_LONG_LETTERS else FUZZY_CUTOFF


@dataclass(frozen=True)
class Person:
    """A protected person and the names that refer to them."""

    name: str
    aliases: tuple[str, ...] = ()
    builtin: bool = False

    @property
    def all_names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


class PersonRegistry:
    """Names to look for, indexed for exact word-sequence and fuzzy compact matching."""

    def __init__(self, persons: Iterable[Person] = (), *, builtin: bool = True) -> None:
        self.persons: list[Person] = []
        if builtin:
            self.persons.extend(Person(n, a, builtin=True) for n, a in BUILTIN_PERSONS)
        self.persons.extend(persons)
        self._build()

    @classmethod
    def from_store(cls, store: Store, *, builtin: bool = True) -> PersonRegistry:
        """The registry of a database, plus the built-in examples unless ``builtin=False``."""
        return cls(list_persons(store), builtin=builtin)

    def _build(self) -> None:
        self._exact: dict[tuple[str, ...], Person] = {}
        self._first: dict[str, list[tuple[str, ...]]] = {}
        self._fuzzy_keys: list[str] = []
        self._fuzzy_people: list[tuple[Person, str]] = []
        self._fuzzy_starts: set[str] = set()
        self._max_words = 1
        self._max_len = 0
        for person in self.persons:
            for name in person.all_names:
                words = tuple(_WORD_RE.findall(normalize_term(name)))
                if not words:
                    continue
                self._exact.setdefault(words, person)
                self._first.setdefault(words[0], []).append(words)
                compact = "".join(words)
                if len(compact) >= FUZZY_MIN_LETTERS:
                    self._max_words = max(self._max_words, len(words))
                    self._max_len = max(self._max_len, len(compact) + 3)
                    self._fuzzy_keys.append(compact)
                    self._fuzzy_starts.add(compact[:3])
                    self._fuzzy_people.append((person, name))

    def __len__(self) -> int:
        return len(self.persons)

    def find(self, norm: Normalised) -> list[Match]:
        """``real_person`` matches for every protected name in the prompt."""
        text = norm.text
        stretched = _STRETCH_RE.search(text) is not None
        if not stretched:
            first, starts = self._first, self._fuzzy_starts
            if not any(w in first or w[:3] in starts for w in _WORD_RE.findall(text)):
                return []
        if stretched:
            tokens = [
                (m.start(), m.end(), _STRETCH_RE.sub(r"\1", m.group()))
                for m in _WORD_RE.finditer(text)
            ]
        else:
            tokens = [(m.start(), m.end(), m.group()) for m in _WORD_RE.finditer(text)]
        found: dict[tuple[int, int], Match] = {}
        covered: set[str] = set()
        for i, (start, _, token) in enumerate(tokens):
            for words in self._first.get(token, ()):
                if tuple(t[2] for t in tokens[i : i + len(words)]) == words:
                    end = tokens[i + len(words) - 1][1]
                    person = self._exact[words]
                    found[(start, end)] = self._match(norm, start, end, person, 1.0)
                    covered.add(person.name)
        if self._fuzzy_keys and tokens:
            self._fuzzy(norm, tokens, found, covered)
        return _outermost(found.values())

    def _fuzzy(
        self,
        norm: Normalised,
        tokens: list[tuple[int, int, str]],
        found: dict[tuple[int, int], Match],
        covered: set[str],
    ) -> None:
        """Typo- and spacing-tolerant pass: runs of words, spaces removed, vs each name.

        Comparing whole runs of words (not substrings of the whole prompt) keeps word
        boundaries meaningful: "a tailor shifting gears" is not "Taylor Swift". Runs are
        only tried from words that start like a name (first three letters), which keeps the
        pass cheap; a typo in the first three letters is the price.
        """
        spans: list[tuple[int, int]] = []
        candidates: list[str] = []
        starts = self._fuzzy_starts
        for i in range(len(tokens)):
            if tokens[i][2][:3] not in starts:  # names keep their first three letters
                continue
            joined = ""
            for j in range(i, min(len(tokens), i + self._max_words + 1)):
                joined += tokens[j][2]
                if len(joined) > self._max_len:
                    break
                if len(joined) >= FUZZY_MIN_LETTERS - 1:
                    candidates.append(joined)
                    spans.append((tokens[i][0], tokens[j][1]))
        if not candidates:
            return
        scores = process.cdist(
            candidates,
            self._fuzzy_keys,
            scorer=fuzz.ratio,
            score_cutoff=min(FUZZY_CUTOFF, FUZZY_CUTOFF_LONG),
            dtype="float32",
        )
        rows, cols = scores.nonzero()
        for row, col in sorted(zip(rows, cols, strict=True), key=lambda rc: -scores[rc]):
            key = self._fuzzy_keys[col]
            score = float(scores[row, col])
            person, _ = self._fuzzy_people[col]
            if person.name in covered or score < _cutoff(key):
                continue
            start, end = spans[row]
            found.setdefault((start, end), self._match(norm, start, end, person, score / 100))
            covered.add(person.name)

    @staticmethod
    def _match(norm: Normalised, start: int, end: int, person: Person, score: float) -> Match:
        s, e = norm.span(start, end)
        return Match(
            category="real_person",
            term=person.name,
            start=s,
            end=e,
            quote=norm.original[s:e],
            score=score,
            source="person",
        )


def _outermost(matches: Iterable[Match]) -> list[Match]:
    """Drop a person's match nested in a longer one ("Macron" inside "Emmanuel Macron")."""
    ordered = sorted(matches, key=lambda m: (m.start, -m.end))
    out: list[Match] = []
    for m in ordered:
        if any(o.term == m.term and o.start <= m.start and m.end <= o.end for o in out):
            continue
        out.append(m)
    return out


# ---------------------------------------------------------------------------------------
# Database operations (used by `genguard persons ...` and the gateway)
# ---------------------------------------------------------------------------------------


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or not normalize_term(cleaned):
        raise ConfigError("a person needs a non-empty name")
    if len(cleaned) > 200:
        raise ConfigError("a person's name is limited to 200 characters")
    return cleaned


def add_person(store: Store, name: str, aliases: Iterable[str] = ()) -> Person:
    """Add a person, or merge new aliases into an existing entry with the same name."""
    name = _clean_name(name)
    alias_list = [_clean_name(a) for a in aliases]
    with store.session() as session:
        row = session.scalar(select(PersonRow).where(PersonRow.name == name))
        if row is None:
            row = PersonRow(name=name)
            row.aliases = sorted(set(alias_list))
            session.add(row)
        else:
            row.aliases = sorted(set(row.aliases) | set(alias_list))
        return Person(row.name, tuple(row.aliases))


def remove_person(store: Store, name: str) -> bool:
    """Remove a person by name or alias; returns whether one was removed."""
    name = " ".join(name.split())
    with store.session() as session:
        rows = list(session.scalars(select(PersonRow)))
        for row in rows:
            if row.name.casefold() == name.casefold() or name.casefold() in {
                a.casefold() for a in row.aliases
            }:
                session.delete(row)
                return True
    return False


def list_persons(store: Store) -> list[Person]:
    """Every person in the database, by name."""
    with store.session() as session:
        rows = session.scalars(select(PersonRow).order_by(PersonRow.name))
        return [Person(r.name, tuple(r.aliases)) for r in rows]
