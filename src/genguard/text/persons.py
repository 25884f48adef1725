"""Protected persons: names whose appearance in a prompt signals ``real_person``.

Deepfakes of real people (above all sexual ones) are the harm. genguard ships a list of
~9,700 well-known public figures (``data/persons/*.jsonl``: politicians, royals, actors,
musicians, athletes, streamers, business people, from many countries, with nicknames,
handles and native-script names), protected under every profile; operators add their own
people (``genguard persons add``) and may exclude built-in entries.

Names are matched the ways people write them:

* exactly, on the normalised prompt (look-alike letters, spacing tricks already undone),
  for the name and every alias; kana/hangul/CJK aliases as substrings;
* joined or as a handle: ``TaylorSwift``, ``@taylorswift13``, ``taylor_swift``;
* initials, reversed order and middle names: ``E. Watson``, ``Swift, Taylor``,
  ``Taylor Alison Swift``;
* with typos anywhere, the first letters included: a phonetic code of the name (consonant
  classes, vowels dropped) is indexed with its one-deletion variants, so ``Tayler Swfit``
  or ``Faylor Swift`` find their candidate in a few dictionary probes, and a similarity
  check (rapidfuzz) confirms it;
* transliterated: Cyrillic, Greek and Indic runs are romanised (anyascii) and compared
  with every listed Latin name on simplified spellings (``Вильгельмина`` for
  ``Wilhelmina``); kana, hangul, Arabic and Hebrew romanise too loosely for that and are
  compared, on consonants, with the operator's own registered names only (the built-in
  list carries those spellings as aliases: ``テイラー・スウィフト``).

One-word stage names that are also ordinary words (``Drake``, ``Madonna``) are marked
``ambiguous`` and only count when written with a capital letter.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from anyascii import anyascii
from rapidfuzz import fuzz, process
from sqlalchemy import select

from genguard import settings
from genguard.decision import Match
from genguard.errors import ConfigError
from genguard.store import PersonExclusionRow, PersonRow, Store
from genguard.text.lexicon import FOREIGN_FUNCTION_WORDS, looks_foreign
from genguard.text.normalize import CJK_RE, Normalised, normalize_term

#: Scores of the match kinds (a hard rule needs ``real_person`` >= 0.5).
EXACT, JOINED, ARRANGED, FUZZY, TRANSLITERATED = 1.0, 0.95, 0.9, 0.85, 0.8
#: A one-word stage name that is also a word (``Drake``, ``Madonna``): it counts when
#: written with a capital letter; in lowercase it is weak evidence only.
AMBIGUOUS_CAPITALISED, AMBIGUOUS_LOWER = 0.6, 0.3
#: A first name many listed people share (``Lisa``, ``Jennifer``) alone: evidence, never
#: enough for a hard rule.
GIVEN_NAME = 0.4
#: A rare surname alone (``Kardashian``, ``Chalamet``, ``Musk``): a real person.
SURNAME = 0.7
#: An @handle built from a listed name (``@marisol_ok``, ``@bquenneville``).
HANDLE = 0.9
#: One-word names among this many most frequent English words are not indexed at all
#: ("Rose", "Future", "Pink" alone say nothing about a person) ...
COMMON_WORD_RANK = 3000
#: ... one-word names among this many are dictionary words ("willow", "trump"): they count
#: only when written with a capital letter ...
DICTIONARY_RANK = 20000
#: ... words among this many are "plain" dictionary words (see NameIndex.plain) ...
PLAIN_RANK = 30000
#: ... and surnames become aliases only when rarer than this rank ("Musk" yes, "Watson" no).
RARE_SURNAME_RANK = 20000
#: A first name shared by this many listed people is a given name, not a person.
SHARED_GIVEN_NAME = 3
#: Fuzzy matching needs this many letters in a name (without spaces) ...
FUZZY_MIN_LETTERS = 8
#: ... and this rapidfuzz ratio (0-100) between the prompt's words and the name.
FUZZY_CUTOFF = 80.0
#: One-word names need this many letters for fuzzy matching.
FUZZY_MIN_LETTERS_ONE_WORD = 7
#: Similarity (0-100) of a romanised name with a listed one, on simplified spellings.
TRANSLIT_CUTOFF = 80.0
#: The same for kana, hangul, Arabic and Hebrew, on consonants, against registered names.
LOOSE_TRANSLIT_CUTOFF = 75.0
#: Runs of words longer than this (letters, spaces removed) are no one's name: not
#: compared (bounds the work on adversarial 4,000-letter "words").
MAX_NAME_LETTERS = 40
#: Phonetic codes shorter than this are not indexed (too many names share them).
MIN_CODE = 5
_WORD_RE = re.compile(r"[a-z0-9]+|[^\W_a-z0-9]+")
_STRETCH_RE = re.compile(r"(.)\1{2,}")
_HANDLE_RE = re.compile(r"(?<![\w@])@([A-Za-z0-9_.]{3,40})")
#: Scripts romanised for matching: Greek, Cyrillic, Hebrew, Arabic, Devanagari and other
#: Indic scripts. Kana, hangul and CJK names match through their listed aliases only
#: (their romanisations drift too far: テイラー -> "teira").
_TRANSLITERATED_RE = re.compile(
    r"[\u0370-\u03ff\u0400-\u052f\u0590-\u06ff\u0900-\u0dff\u30a0-\u30ff\uac00-\ud7a3]"
)
#: Scripts whose romanisation keeps too little of a name (Arabic and Hebrew write few
#: vowels; kana and hangul add vowels and merge l/r): compared with the operator's own
#: registered names only, on consonants.
_LOOSE_SCRIPTS_RE = re.compile(r"[\u0590-\u06ff\u30a0-\u30ff\uac00-\ud7a3]")
#: Phonetic classes: letters that typos and transliterations swap stay in one class.
_CODES = dict(zip("bpfvckqgjszxdtlmnr", "112233344555667890", strict=True))
#: Spelling simplifications applied before comparing a romanised name with a listed one.
_SIMPLIFY = (
    ("ph", "f"),
    ("w", "v"),
    ("y", "i"),
    ("j", "i"),
    ("c", "k"),
    ("q", "k"),
    ("x", "ks"),
    ("z", "s"),
)
#: Words that do not start a name (windows starting there are not fuzzy-matched).
_STOPWORDS_TEXT = (
    "a an the of in on at to with and or for by from is as this that his her their "
    "its my photo picture image portrait painting of"
)
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split()) | FOREIGN_FUNCTION_WORDS


@lru_cache(maxsize=65536)
def phonetic_code(compact: str) -> str:
    """Consonant-class skeleton of a name: ``taylorswift`` -> ``346213``.

    Letters map to classes (b/p, f/v, c/k/q, g/j, s/z/x, d/t, l, m, n, r), vowels and
    h/w/y drop out, repeats of one class collapse. Typos in vowels, doubled letters and most
    transliterations (``svift``, ``suuifuto``) keep the code; one consonant typo costs one
    deletion, which the index tolerates.
    """
    out: list[str] = []
    last = ""
    for c in compact:
        code = _CODES.get(c, "")
        if code and code != last:
            out.append(code)
        if code or c in "aeiouhwy":
            last = code
    return "".join(out)


def _consonants(text: str) -> str:
    return re.sub(r"[aeiou]", "", text)


def _simplified(text: str) -> str:
    for a, b in _SIMPLIFY:
        text = text.replace(a, b)
    return re.sub(r"(.)\1+", r"\1", text)


@lru_cache(maxsize=1)
def _word_ranks() -> dict[str, int]:
    """English words by frequency rank (0 = most frequent), from :mod:`wordsegment`."""
    from genguard.text.lexicon import segment_words

    segment_words("warmup")  # loads the word frequencies once
    import wordsegment

    ranked = sorted(wordsegment.UNIGRAMS.items(), key=lambda kv: -kv[1])[
        : max(RARE_SURNAME_RANK, PLAIN_RANK)
    ]
    return {w: i for i, (w, _) in enumerate(ranked)}


@lru_cache(maxsize=1)
def _common_words() -> frozenset[str]:
    """The most frequent English words (a one-word name among them is not indexed)."""
    return frozenset(w for w, r in _word_ranks().items() if r < COMMON_WORD_RANK)


def _deletions(code: str) -> set[str]:
    return {code[:i] + code[i + 1 :] for i in range(len(code))}


@dataclass(frozen=True)
class Person:
    """A protected person and the names that refer to them."""

    name: str
    aliases: tuple[str, ...] = ()
    builtin: bool = False
    ambiguous: bool = False
    country: str = ""
    domain: str = ""

    @property
    def all_names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def builtin_persons_dir() -> Path:
    return Path(str(resources.files("genguard").joinpath("data/persons")))


@lru_cache(maxsize=1)
def builtin_persons() -> tuple[Person, ...]:
    """The shipped list (``data/persons/*.jsonl``), one entry per name, aliases merged."""
    merged: dict[str, Person] = {}
    for path in sorted(builtin_persons_dir().glob("*.jsonl")):
        for lineno, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                person = Person(
                    name=row["name"],
                    aliases=tuple(row.get("aliases", ())),
                    builtin=True,
                    ambiguous=bool(row.get("ambiguous", False)),
                    country=row.get("country", ""),
                    domain=row.get("domain", ""),
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}:{lineno}: bad person entry: {exc}") from exc
            key = person.name.casefold()
            if key in merged:
                old = merged[key]
                aliases = tuple(dict.fromkeys((*old.aliases, *person.aliases)))
                person = Person(old.name, aliases, True, old.ambiguous, old.country, old.domain)
            merged[key] = person
    return tuple(merged.values())


@dataclass(frozen=True)
class _Name:
    """One indexed name of a person (the name itself or an alias)."""

    person: Person
    words: tuple[str, ...]
    compact: str
    ambiguous: bool
    score: float = EXACT  # what an exact match of this name is worth
    case: str = ""  # short aliases ("AOC", "IU"): the letter case they must be written in


class NameIndex:
    """The lookup tables for a set of persons (see :class:`PersonRegistry`).

    Built once for the shipped list and cached (in memory and pickled under the cache
    folder, keyed by the data files' hash), then copied and extended with an operator's own
    persons: building it from scratch normalises ~60,000 names (seconds).
    """

    def __init__(self) -> None:
        self._first: dict[str, list[_Name]] = {}
        self._compact: dict[str, _Name] = {}
        self._surname: dict[str, list[_Name]] = {}
        self._codes: dict[str, list[_Name]] = {}
        self._cjk: dict[str, list[_Name]] = {}
        self._handles: dict[str, list[_Name]] = {}
        self._max_words = 1
        self._roman_names: list[_Name] = []
        self._roman_keys: list[str] = []
        self._own_names: list[_Name] = []
        self._own_consonants: list[str] = []
        self._cjk_lengths: list[int] = []
        self._cjk_first: frozenset[str] = frozenset()
        #: Frequent English words (kept with the index, so loading a pickled index does
        #: not need the word-frequency tables).
        self.common: frozenset[str] = frozenset()
        #: Dictionary words: a window made of these only is no one's typo'd or joined name
        #: (correctly spelled names are found by the exact pass; most prompts are made of
        #: dictionary words and skip the fuzzy passes entirely).
        self.plain: frozenset[str] = frozenset()
        #: First words of multi-word names (an arranged name needs one nearby).
        self.given: frozenset[str] = frozenset()

    def copy(self) -> NameIndex:
        """A copy that can be extended without touching this one."""
        other = NameIndex()
        for key, value in self.__dict__.items():
            if isinstance(value, dict):
                value = {k: list(v) if isinstance(v, list) else v for k, v in value.items()}
            elif isinstance(value, list):
                value = list(value)
            other.__dict__[key] = value
        return other

    def add(self, persons: Sequence[Person]) -> None:
        """Index ``persons`` (names, aliases, rare surnames, handle spellings)."""
        common = _common_words()
        ranks = _word_ranks()
        dictionary = frozenset(w for w, r in ranks.items() if r < DICTIONARY_RANK)
        self.common = common
        given_counts: dict[str, int] = {}
        for p in persons:
            parts = p.name.split()
            if len(parts) > 1:
                first = normalize_term(parts[0])
                given_counts[first] = given_counts.get(first, 0) + 1
        for person in persons:
            for index, raw in enumerate(person.all_names):
                self._index_name(person, index, raw, common, given_counts, dictionary)
            self._index_surname(person, ranks)
            self._index_handles(person)
        self._finish()

    def _index_surname(self, person: Person, ranks: dict[str, int]) -> None:
        """A rare surname alone ("Chalamet") names a real person; a common one does not."""
        parts = person.name.split()
        if len(parts) < 2:
            return
        last_words = tuple(_WORD_RE.findall(normalize_term(parts[-1])))
        last = "".join(last_words)
        if (
            last_words
            and len(last) >= 4
            and ranks.get(last, RARE_SURNAME_RANK) >= RARE_SURNAME_RANK
            and last not in self._compact
        ):
            # A surname alone counts only written with a capital ("Chalamet", not the
            # German noun "garten" or "musk" the scent).
            name = _Name(person, last_words, last, True, SURNAME)
            self._first.setdefault(last_words[0], []).append(name)

    def _finish(self) -> None:
        self.plain = frozenset(w for w, r in _word_ranks().items() if r < PLAIN_RANK)
        self.given = frozenset(
            n.words[0] for names in self._surname.values() for n in names if len(n.words) > 1
        )
        self._roman_names = [
            n
            for names in self._first.values()
            for n in names
            if n.score >= EXACT and len(n.compact) >= FUZZY_MIN_LETTERS and n.compact.isascii()
        ]
        self._roman_keys = [_simplified(n.compact) for n in self._roman_names]
        self._own_names = [n for n in self._roman_names if not n.person.builtin]
        self._own_consonants = [_consonants(_simplified(n.compact)) for n in self._own_names]
        self._cjk_lengths = sorted({len(k) for k in self._cjk})
        self._cjk_first = frozenset(k[0] for k in self._cjk)

    def _index_name(
        self,
        person: Person,
        index: int,
        raw: str,
        common: frozenset[str],
        given_counts: dict[str, int],
        dictionary: frozenset[str] = frozenset(),
    ) -> None:
        normalised = normalize_term(raw)
        if not normalised:
            return
        if CJK_RE.search(normalised):
            key = normalised.replace(" ", "")
            if len(key) >= 2:
                self._cjk.setdefault(key, []).append(_Name(person, (key,), key, False))
            return
        words = tuple(w for w in _WORD_RE.findall(normalised) if w)
        if not words:
            return
        compact = "".join(words)
        score, case, ambiguous = EXACT, "", False
        if len(words) == 1:
            letters = re.sub(r"[^A-Za-z0-9]", "", raw)
            if len(compact) <= 3:
                case = letters  # "AOC", "IU", "xQc": only as written
                if not any(c.isupper() for c in case):
                    return
            elif compact in common:
                return  # "Rose", "Future": no evidence of a person on their own
            elif given_counts.get(compact, 0) >= SHARED_GIVEN_NAME:
                score = GIVEN_NAME
            elif (person.ambiguous and index == 0) or compact in dictionary:
                ambiguous = True  # "Drake", "Willow", "Trump": only when capitalised
        name = _Name(person, words, compact, ambiguous, score, case)
        self._first.setdefault(words[0], []).append(name)
        self._max_words = max(self._max_words, len(words))
        if ambiguous or case or score < EXACT:
            return
        if len(compact) >= 6 and (len(words) > 1 or len(compact) >= 7):
            self._compact.setdefault(compact, name)
        if len(words) > 1:
            self._surname.setdefault(words[-1], []).append(name)
            if len(words) > 2:
                self._surname.setdefault(words[1], []).append(name)
        minimum = FUZZY_MIN_LETTERS if len(words) > 1 else FUZZY_MIN_LETTERS_ONE_WORD
        code = phonetic_code(compact)
        # Typos are matched on the person's name only: a typo of a nickname made of
        # everyday words ("Baby Spice") is an everyday phrase ("baby spinach").
        if index == 0 and len(compact) >= minimum and len(code) >= MIN_CODE and compact.isascii():
            for key in {code, *_deletions(code)}:
                self._codes.setdefault(key, []).append(name)

    def _index_handles(self, person: Person) -> None:
        """Handle spellings people derive from a name: first name + surname, initials,
        first letters: ``@marisol_ok``, ``@mina.sd``, ``@bquenneville``, ``@evanderq``."""
        parts = person.name.split()
        if len(parts) < 2:
            return
        surname_words = _WORD_RE.findall(normalize_term(" ".join(parts[1:])))
        if not surname_words:
            return
        surname = "".join(surname_words)
        initials = "".join(w[0] for w in surname_words)
        givens = {"".join(_WORD_RE.findall(normalize_term(parts[0])))}
        for alias in person.aliases:
            alias_words = _WORD_RE.findall(normalize_term(alias))
            if alias_words and alias_words[0].isascii() and len(alias_words[0]) >= 3:
                givens.add(alias_words[0])
        keys: set[str] = set()
        for given in givens:
            if not given.isascii():
                continue
            keys.update({given + surname, given + initials, given + initials[0]})
            keys.update({given + surname[:2], given + surname[:3], surname + given})
            keys.update(given + w for w in surname_words)
            keys.add(given[0] + surname)
            keys.update(given[0] + w for w in surname_words if len(w) >= 4)
        name = _Name(person, tuple(surname_words), surname, False, HANDLE)
        for key in keys:
            if len(key) >= 5 and key.isascii():
                self._handles.setdefault(key, []).append(name)


#: Bump when NameIndex's fields or the matching rules that build it change: the pickled
#: index is keyed by it.
_INDEX_VERSION = "persons-index/7"


@lru_cache(maxsize=1)
def builtin_index() -> NameIndex:
    """The index of the shipped list: from memory, a pickled copy, or built (and saved)."""
    from genguard.text.semantic import default_cache_dir

    digest = hashlib.sha256(_INDEX_VERSION.encode())
    for path in sorted(builtin_persons_dir().glob("*.jsonl")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    cache = default_cache_dir() / f"persons-{digest.hexdigest()[:16]}.pkl"
    try:
        if not _private_file(cache):
            raise OSError("cache file not private to this user: rebuilt instead")
        with cache.open("rb") as f:
            index = pickle.load(f)  # our own file (written below), owned by this user
        if isinstance(index, NameIndex) and vars(index).keys() == vars(NameIndex()).keys():
            return index
    except Exception:
        pass
    index = NameIndex()
    index.add(builtin_persons())
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            pickle.dump(index, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(cache)
    except OSError:
        pass  # a read-only home: rebuild next time
    return index


def _private_file(path: Path) -> bool:
    """Whether ``path`` is owned by this user and writable by nobody else: a pickle runs
    code when loaded, so one in a shared or tampered cache folder is never trusted."""
    getuid = getattr(os, "getuid", None)
    if getuid is None:
        return False  # no ownership to check (Windows): always rebuild
    try:
        info = path.stat()
    except OSError:
        return False
    return info.st_uid == getuid() and not info.st_mode & 0o022


class PersonRegistry:
    """Names to look for, indexed for exact, joined, arranged, fuzzy and transliterated
    matching (see the module docstring)."""

    def __init__(
        self,
        persons: Iterable[Person] = (),
        *,
        builtin: bool = True,
        exclude: Iterable[str] = (),
    ) -> None:
        self._excluded = {" ".join(n.split()).casefold() for n in exclude}
        own = list(persons)
        self.persons: list[Person] = []
        if builtin:
            self.persons.extend(
                p
                for p in builtin_persons()
                if p.name.casefold() not in self._excluded
                and not any(a.casefold() in self._excluded for a in p.aliases)
            )
        self.persons.extend(own)
        if builtin:
            index = builtin_index()
            if own:
                index = index.copy()
                index.add(own)
        else:
            index = NameIndex()
            index.add(own)
        self._ix = index
        self._common = index.common
        self._plain = index.plain
        self._fuzzy_cache: dict[str, tuple[_Name, ...]] = {}
        self._translit_cache: dict[tuple[str, str], int | None] = {}

    @classmethod
    def from_store(cls, store: Store, *, builtin: bool = True) -> PersonRegistry:
        """The registry of a database, plus the built-in list (minus what the operator
        excluded) unless ``builtin=False``."""
        return cls(list_persons(store), builtin=builtin, exclude=list_exclusions(store))

    def __len__(self) -> int:
        return len(self.persons)

    # -- matching --------------------------------------------------------------------------

    def find(self, norm: Normalised) -> list[Match]:
        """``real_person`` matches for every protected name in the prompt."""
        text = norm.text
        if _STRETCH_RE.search(text):
            tokens = [
                (m.start(), m.end(), _STRETCH_RE.sub(r"\1", m.group()))
                for m in _WORD_RE.finditer(text)
            ]
        else:
            tokens = [(m.start(), m.end(), m.group()) for m in _WORD_RE.finditer(text)]
        found: dict[str, Match] = {}  # best match per person
        if tokens:
            self._exact(norm, tokens, found)
            self._arranged(norm, tokens, found)
            plain = self._ix.plain
            if not all(t[2] in plain or not t[2].isalpha() for t in tokens):
                self._joined(norm, tokens, found)
                self._fuzzy(norm, tokens, found)
        if "@" in norm.original:
            self._handle_matches(norm, found)
        if self._ix._cjk and not text.isascii() and CJK_RE.search(text):
            self._cjk_matches(norm, found)
        strong = [m for m in found.values() if m.score > SURNAME]
        kept = [
            m
            for m in found.values()
            if m.score > SURNAME or not any(s.start <= m.start and m.end <= s.end for s in strong)
        ]  # "Barack Obama" is not also "Michelle Obama" by her surname
        return sorted(kept, key=lambda m: m.start)

    def _cjk_matches(self, norm: Normalised, found: dict[str, Match]) -> None:
        """Kana/hangul/CJK aliases as substrings (spaces ignored): a dictionary probe per
        position that starts like some alias and per alias length."""
        text = norm.text
        offsets = [i for i, c in enumerate(text) if c != " "]
        joined = "".join(text[i] for i in offsets)
        table, lengths, firsts = self._ix._cjk, self._ix._cjk_lengths, self._ix._cjk_first
        for k, char in enumerate(joined):
            if char not in firsts:
                continue
            for n in lengths:
                names = table.get(joined[k : k + n])
                if names:
                    start, end = offsets[k], offsets[min(k + n, len(offsets)) - 1] + 1
                    for name in names:
                        self._add(found, norm, start, end, name.person, EXACT)

    def _handle_matches(self, norm: Normalised, found: dict[str, Match]) -> None:
        for m in _HANDLE_RE.finditer(norm.original):
            key = re.sub(r"[^a-z]", "", m.group(1).lower())
            for name in self._ix._handles.get(key, ()):
                if name.person.builtin and name.person.name.casefold() in self._excluded:
                    continue
                current = found.get(name.person.name)
                if current is None or current.score < HANDLE:
                    found[name.person.name] = Match(
                        category="real_person",
                        term=name.person.name,
                        start=m.start(),
                        end=m.end(),
                        quote=m.group(),
                        score=HANDLE,
                        source="person",
                    )

    def _add(
        self,
        found: dict[str, Match],
        norm: Normalised,
        start: int,
        end: int,
        person: Person,
        score: float,
    ) -> None:
        if person.builtin and self._excluded and person.name.casefold() in self._excluded:
            return  # the operator chose not to protect this built-in person
        current = found.get(person.name)
        if current is not None and current.score >= score:
            return
        s, e = norm.span(start, end)
        found[person.name] = Match(
            category="real_person",
            term=person.name,
            start=s,
            end=e,
            quote=norm.original[s:e],
            score=score,
            source="person",
        )

    def _exact(
        self, norm: Normalised, tokens: list[tuple[int, int, str]], found: dict[str, Match]
    ) -> None:
        words = [t[2] for t in tokens]
        foreign: bool | None = None
        first = self._ix._first
        if first.keys().isdisjoint(words):
            return
        for i, token in enumerate(words):
            for name in first.get(token, ()):
                n = len(name.words)
                if tuple(words[i : i + n]) != name.words:
                    continue
                if name.score == SURNAME:
                    if foreign is None:
                        foreign = looks_foreign(words)
                    if foreign:
                        continue  # "im Garten" is a garden, not Ina Garten
                start, end = tokens[i][0], tokens[i + n - 1][1]
                score = name.score
                if name.ambiguous or name.case:
                    a, b = norm.span(start, end)
                    written = re.sub(r"[^A-Za-z0-9]", "", norm.original[a:b])
                    if name.case:
                        if written != name.case:
                            continue  # "in" is not the idol "I.N"
                        score = EXACT
                    else:
                        capital = norm.original[a : a + 1].isupper()
                        score = AMBIGUOUS_CAPITALISED if capital else AMBIGUOUS_LOWER
                self._add(found, norm, start, end, name.person, score)

    def _arranged(
        self, norm: Normalised, tokens: list[tuple[int, int, str]], found: dict[str, Match]
    ) -> None:
        """Initials (``e watson``), reversed order (``swift, taylor``), middle names."""
        words = [t[2] for t in tokens]
        surname = self._ix._surname
        if surname.keys().isdisjoint(words):
            return
        # A surname needs a first name or an initial next to it: check that first.
        initials = any(len(w) == 1 and (w not in "ai" or "." in norm.original) for w in words)
        if not initials and self._ix.given.isdisjoint(words):
            return
        present = set(words)
        for i, token in enumerate(words):
            names = surname.get(token)
            if not names:
                continue
            for name in names:
                first, rest = name.words[0], name.words[1:]
                if first not in present and not (initials and first[0] in present):
                    continue  # neither the first name nor its initial is in the prompt
                # the surname part may be several words ("sarkissian dube")
                j = i - rest.index(token) if token in rest else i
                if j < 0 or tuple(words[j : j + len(rest)]) != rest:
                    continue
                end_index = j + len(rest) - 1
                span = None
                if (
                    j >= 1
                    and len(words[j - 1]) == 1
                    and words[j - 1] == first[0]
                    and self._written_as_initial(norm, tokens[j - 1])
                ):
                    span = (j - 1, end_index)  # initial
                elif end_index + 1 < len(words) and words[end_index + 1] == first:
                    span = (j, end_index + 1)  # reversed
                else:
                    for back in (2, 3):
                        if j - back >= 0 and words[j - back] == first:
                            span = (j - back, end_index)  # middle name(s)
                            break
                if span is not None:
                    start, end = tokens[span[0]][0], tokens[span[1]][1]
                    self._add(found, norm, start, end, name.person, ARRANGED)

    @staticmethod
    def _written_as_initial(norm: Normalised, token: tuple[int, int, str]) -> bool:
        """ "E. Watson", "E Watson": a capital letter, and "a"/"i" only with a period
        ("a curry" is not Ann Curry)."""
        start, end = norm.span(token[0], token[1])
        letter = norm.original[start:end]
        if not letter.isupper():
            return False
        if letter in "AI":
            return norm.original[end : end + 1] == "."
        return True

    def _joined(
        self, norm: Normalised, tokens: list[tuple[int, int, str]], found: dict[str, Match]
    ) -> None:
        """Names written without spaces or as handles (``@taylorswift13``, ``tay lor``)."""
        words = [t[2] for t in tokens]
        common = self._common
        for i in range(len(words)):
            joined = ""
            if words[i] in _STOPWORDS:
                continue
            all_common = True
            for j in range(i, min(len(words), i + min(self._ix._max_words, 3) + 1)):
                joined += words[j]
                if len(joined) > MAX_NAME_LETTERS:
                    break
                all_common = all_common and words[j] in common
                if all_common:
                    continue  # everyday words written apart are not a joined name
                key = joined.rstrip("0123456789")
                name = self._ix._compact.get(key)
                if name is not None and (j > i or len(name.words) > 1 or key != joined):
                    self._add(found, norm, tokens[i][0], tokens[j][1], name.person, JOINED)

    def _fuzzy(
        self, norm: Normalised, tokens: list[tuple[int, int, str]], found: dict[str, Match]
    ) -> None:
        """Typos anywhere and transliterations, through the phonetic-code index."""
        if not self._ix._codes:
            return
        words = [t[2] for t in tokens]
        latin = [w.isascii() for w in words]
        common = self._common
        for i in range(len(words)):
            if words[i] in _STOPWORDS:
                continue
            joined = ""
            all_common = True
            for j in range(i, min(len(words), i + (3 if latin[i] else 4))):
                if latin[j] != latin[i]:
                    break
                joined += words[j]
                if len(joined) > MAX_NAME_LETTERS:
                    break
                all_common = all_common and (words[j] in common or words[j] in self._plain)
                if latin[i]:
                    # Windows of everyday words only ("cat sitting") are no one's typo'd
                    # name; skipping them keeps ordinary prompts cheap.
                    if all_common or len(joined) < FUZZY_MIN_LETTERS_ONE_WORD:
                        continue
                    if not joined.isalpha():
                        continue
                    for name in self._fuzzy_names(joined):
                        self._add(found, norm, tokens[i][0], tokens[j][1], name.person, FUZZY)
                elif _TRANSLITERATED_RE.search(words[j]) and not self._covered(
                    found, norm, tokens, i, j
                ):
                    roman = re.sub(r"[^a-z]", "", anyascii(joined).lower())
                    if len(roman) >= FUZZY_MIN_LETTERS_ONE_WORD:
                        self._transliterated(norm, tokens, found, i, j, roman, words[j])

    @staticmethod
    def _covered(
        found: dict[str, Match],
        norm: Normalised,
        tokens: list[tuple[int, int, str]],
        i: int,
        j: int,
    ) -> bool:
        """Whether an exact match already covers these words (no need to romanise them)."""
        if not found:
            return False
        start, end = norm.span(tokens[i][0], tokens[j][1])
        return any(m.start <= start and end <= m.end and m.score >= EXACT for m in found.values())

    def _transliterated(
        self,
        norm: Normalised,
        tokens: list[tuple[int, int, str]],
        found: dict[str, Match],
        i: int,
        j: int,
        roman: str,
        sample: str,
    ) -> None:
        """A romanised Cyrillic/Greek/Arabic/Indic run against every listed Latin name.

        A brute-force similarity search (rapidfuzz, a few ms), run only on such runs:
        transliterations change letters in ways one index key cannot anticipate
        (Вильгельмина -> vilgelmina for Wilhelmina). Arabic and Hebrew write few vowels, so
        they are compared on consonants only.
        """
        if not self._ix._roman_names:
            return
        key = (roman, sample[:1])
        if key in self._translit_cache:
            hit_index = self._translit_cache[key]
            if hit_index is not None:
                name = self._ix._roman_names[hit_index]
                self._add(found, norm, tokens[i][0], tokens[j][1], name.person, TRANSLITERATED)
            return
        if len(self._translit_cache) > 20_000:
            self._translit_cache.clear()
        self._translit_cache[key] = None
        loose = _LOOSE_SCRIPTS_RE.search(sample) is not None
        query = _simplified(roman)
        if loose:
            query, choices, names = (
                _consonants(query),
                self._ix._own_consonants,
                self._ix._own_names,
            )
        else:
            choices, names = self._ix._roman_keys, self._ix._roman_names
        if len(query) < (5 if loose else FUZZY_MIN_LETTERS_ONE_WORD) or not choices:
            return
        cutoff = LOOSE_TRANSLIT_CUTOFF if loose else TRANSLIT_CUTOFF
        hit = process.extractOne(query, choices, scorer=fuzz.ratio, score_cutoff=cutoff)
        if hit is not None:
            name = names[hit[2]]
            self._translit_cache[key] = hit[2] if not loose else None
            self._add(found, norm, tokens[i][0], tokens[j][1], name.person, TRANSLITERATED)

    def _fuzzy_names(self, compact: str) -> tuple[_Name, ...]:
        """Names within typo distance of ``compact`` (phonetic index + ratio), cached."""
        cached = self._fuzzy_cache.get(compact)
        if cached is not None:
            return cached
        code = phonetic_code(compact)
        result: tuple[_Name, ...] = ()
        if len(code) >= MIN_CODE:
            candidates: dict[int, _Name] = {}
            for key in (code, *_deletions(code)):
                for name in self._ix._codes.get(key, ()):
                    candidates[id(name)] = name
            result = tuple(
                name
                for name in candidates.values()
                if abs(len(compact) - len(name.compact)) <= 3
                and fuzz.ratio(compact, name.compact) >= FUZZY_CUTOFF
            )
        if len(self._fuzzy_cache) > 50_000:
            self._fuzzy_cache.clear()
        self._fuzzy_cache[compact] = result
        return result


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


def exclude_person(store: Store, name: str) -> Person:
    """Stop protecting a built-in person (by name or alias); raises when not built in."""
    wanted = " ".join(name.split()).casefold()
    for person in builtin_persons():
        if wanted in {n.casefold() for n in person.all_names}:
            with store.session() as session:
                exists = session.scalar(
                    select(PersonExclusionRow).where(PersonExclusionRow.name == person.name)
                )
                if exists is None:
                    session.add(PersonExclusionRow(name=person.name))
            return person
    raise ConfigError(f"{name!r} is not in the built-in list of protected persons")


def include_person(store: Store, name: str) -> bool:
    """Protect an excluded built-in person again; returns whether one was excluded."""
    wanted = " ".join(name.split()).casefold()
    with store.session() as session:
        for row in session.scalars(select(PersonExclusionRow)):
            if row.name.casefold() == wanted:
                session.delete(row)
                return True
    return False


def list_exclusions(store: Store) -> list[str]:
    """Built-in persons the operator chose not to protect."""
    with store.session() as session:
        return [r.name for r in session.scalars(select(PersonExclusionRow))]


def load_registry(store: str | Path | None = None, *, builtin: bool = True) -> PersonRegistry:
    """The registry every surface uses: the database's persons (``store``, else
    ``$GENGUARD_STORE``, else ``./genguard-data/genguard.db`` when it exists) plus the
    built-in list minus the operator's exclusions. A missing default database is not
    created just to read it."""
    from genguard.store import DEFAULT_DB_PATH, open_store

    location = store if store is not None else settings.store_location()
    if location is None and not DEFAULT_DB_PATH.is_file():
        return PersonRegistry(builtin=builtin)
    with open_store(location) as opened:
        return PersonRegistry.from_store(opened, builtin=builtin)


def list_persons(store: Store) -> list[Person]:
    """Every person in the database, by name."""
    with store.session() as session:
        rows = session.scalars(select(PersonRow).order_by(PersonRow.name))
        return [Person(r.name, tuple(r.aliases)) for r in rows]
