"""Word lists per prompt category, matched on normalised text with word boundaries.

Why not a substring search: "Scunthorpe", "Essex" and "cocktail" contain listed words.
Matching whole words (and whole word sequences for multi-word terms) avoids that class of
false hits; an allow list of benign phrases ("breast cancer", "kid goat") suppresses the
rest. Kana and kanji have no spaces between words, so terms in those scripts are found as
substrings instead.

Lookup is a dictionary probe per word (not a regex alternation per term), which keeps the
cost proportional to the prompt length whatever the lexicon size. Each probe also tries
the word without a plural ending and with repeated letters collapsed (``nuuuude``); a
collapsed hit is then verified against the term so that ``as`` never matches ``ass``.

Lexicon files are plain text (see ``data/lexicons/README.md``); users extend them with
their own directories.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from genguard.decision import Match
from genguard.errors import ConfigError
from genguard.taxonomy import categories
from genguard.text.normalize import CJK_RE, Normalised, normalize_term

#: Words: runs of ASCII letters/digits, or runs of other letters (split at script changes).
_WORD_RE = re.compile(r"[a-z0-9]+|[^\W_a-z0-9]+")
_REPEAT_RE = re.compile(r"(.)\1")
_COLLAPSE_RE = re.compile(r"(.)\1+")
_ALLOW_ALL = "*"
#: A word with letters masked by asterisks: p**n, n*de, s*x.
_MASKED_RE = re.compile(r"(?<![a-z0-9*])[a-z0-9]*\*+[a-z0-9*]*(?![a-z0-9*])")

_NUMBER_WORDS = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
]
_NUM = r"(\d{1,3}|" + "|".join(_NUMBER_WORDS) + r")"
#: Stated ages, read on the digit-preserving ``base`` view. Group 1 is the number.
AGE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(rf"\b{_NUM}[\s-]*(?:years?|yrs?|yr)[\s-]*old\b"),
    re.compile(rf"\b{_NUM}[\s-]*(?:yo|y/o|y\.o\.?|yrs?|years?)(?![a-z])"),
    re.compile(r"\b(?:aged?|age of)\s*(\d{1,3})\b"),
    re.compile(r"\b(\d{1,3})\s*(?:ans|an)\b"),  # French
    re.compile(r"\b(\d{1,3})\s*anos\b"),  # Spanish (años, accents folded)
    re.compile(r"\b(\d{1,3})[\s-]*(?:jahre?\s*alt(?:e[nrs]?)?|jahrige?[nrs]?)\b"),  # German
    re.compile(r"(\d{1,3})\s*(?:歳|才|さい)"),  # Japanese
)
_AGE_HINT_RE = re.compile(_NUM + r"[\s-]*(?:y|an|jahr|歳|才|さい)|\bage")
#: Stated ages below this are minors.
ADULT_AGE = 18


@dataclass(frozen=True)
class Term:
    """One lexicon entry."""

    category: str
    text: str  # as written in the file (reported in matches)
    words: tuple[str, ...]  # normalised words
    weight: float
    prefix: bool = False  # trailing "*": any word starting with the term
    cjk: bool = False  # kana/kanji: substring match


def _strip_comment(line: str) -> str:
    return line.split("#", 1)[0].strip()


def parse_lexicon_line(line: str, category: str, where: str) -> Term | None:
    """Parse ``term [| weight]``; ``None`` for blank/comment lines."""
    body = _strip_comment(line)
    if not body:
        return None
    raw, _, weight_text = body.partition("|")
    raw = raw.strip()
    try:
        weight = float(weight_text) if weight_text.strip() else 1.0
    except ValueError as exc:
        raise ConfigError(f"{where}: weight {weight_text.strip()!r} is not a number") from exc
    if not 0.0 < weight <= 1.0:
        raise ConfigError(f"{where}: weight {weight} must be in (0, 1]")
    prefix = raw.endswith("*")
    normalised = normalize_term(raw.rstrip("*"))
    if not normalised:
        raise ConfigError(f"{where}: term {raw!r} is empty after normalisation")
    cjk = CJK_RE.search(normalised) is not None
    words = (normalised,) if cjk else tuple(_WORD_RE.findall(normalised))
    return Term(category, raw, words, weight, prefix=prefix, cjk=cjk)


@dataclass(frozen=True)
class AllowPhrase:
    """A benign phrase; lexicon hits inside it are dropped for ``categories``."""

    words: tuple[str, ...]
    categories: frozenset[str]
    cjk: bool


def _collapse(word: str) -> str:
    return _COLLAPSE_RE.sub(r"\1", word)


@lru_cache(maxsize=4096)
def _stretch_re(word: str) -> re.Pattern[str]:
    """Regex accepting ``word`` with any letter repeated (``nude`` -> ``n+u+d+e+``).

    A doubled letter in the term must stay at least doubled (``ass`` -> ``a+ss+``).
    """
    parts = []
    i = 0
    while i < len(word):
        j = i
        while j < len(word) and word[j] == word[i]:
            j += 1
        parts.append(re.escape(word[i]) * (j - i) + "+")
        i = j
    return re.compile("".join(parts) + "(?:e?s)?")


def _word_matches(token: str, word: str) -> bool:
    """Whether a prompt word is the lexicon word: same, plural, or letters stretched."""
    if token == word:
        return True
    if token.endswith("s") and (
        token[:-1] == word or (token.endswith("es") and token[:-2] == word)
    ):
        return True
    return bool(_REPEAT_RE.search(token)) and _stretch_re(word).fullmatch(token) is not None


def _token_keys(token: str) -> set[str]:
    keys = {token}
    if token.endswith("s"):
        keys.add(token[:-1])
        if token.endswith("es"):
            keys.add(token[:-2])
    if _REPEAT_RE.search(token):
        collapsed = _collapse(token)
        keys.add(collapsed)
        if collapsed.endswith("s"):
            keys.add(collapsed[:-1])
    return keys


def builtin_lexicon_dir() -> Path:
    """The lexicon files shipped with genguard."""
    return Path(str(resources.files("genguard").joinpath("data/lexicons")))


class Lexicon:
    """All category word lists plus the allow list, indexed for per-word lookup."""

    def __init__(self, extra_dirs: Sequence[Path] = (), *, builtin: bool = True) -> None:
        self.terms: list[Term] = []
        self.allow: list[AllowPhrase] = []
        dirs = ([builtin_lexicon_dir()] if builtin else []) + [Path(d) for d in extra_dirs]
        for directory in dirs:
            self._load_dir(directory)
        self._index()

    # -- loading ------------------------------------------------------------------------

    def _load_dir(self, directory: Path) -> None:
        if not directory.is_dir():
            raise ConfigError(f"lexicon directory {directory} does not exist")
        known = {c.name for c in categories("prompt")}
        for path in sorted(directory.glob("*.txt")):
            if path.name == "allow.txt":
                self.allow.extend(self._read_allow(path))
                continue
            category = path.name.split(".", 1)[0]
            if category not in known:
                raise ConfigError(
                    f"{path}: unknown prompt category {category!r} "
                    f"(file names start with one of: {', '.join(sorted(known))})"
                )
            for lineno, line in enumerate(path.read_text("utf-8").splitlines(), 1):
                term = parse_lexicon_line(line, category, f"{path}:{lineno}")
                if term is not None:
                    self.terms.append(term)

    @staticmethod
    def _read_allow(path: Path) -> Iterable[AllowPhrase]:
        for line in path.read_text("utf-8").splitlines():
            body = _strip_comment(line)
            if not body:
                continue
            phrase, _, cats = body.partition("|")
            names = frozenset(c.strip() for c in cats.split(",") if c.strip()) or frozenset(
                {_ALLOW_ALL}
            )
            normalised = normalize_term(phrase)
            cjk = CJK_RE.search(normalised) is not None
            words = (normalised,) if cjk else tuple(_WORD_RE.findall(normalised))
            if words:
                yield AllowPhrase(words, names, cjk)

    def _index(self) -> None:
        self._by_first: _Index = _Index()
        self._prefix: dict[int, dict[str, list[Term]]] = {}
        cjk_terms: dict[str, list[Term]] = {}
        for term in self.terms:
            if term.cjk:
                cjk_terms.setdefault(term.words[0], []).append(term)
            elif term.prefix and len(term.words) == 1:
                word = term.words[0]
                self._prefix.setdefault(len(word), {}).setdefault(word, []).append(term)
            else:
                first = term.words[0]
                for key in {first, _collapse(first)}:
                    self._by_first.setdefault(key, []).append(term)
        self._cjk_terms = cjk_terms
        self._single_by_len: dict[int, list[Term]] = {}
        for term in self.terms:
            if len(term.words) == 1 and not term.prefix and not term.cjk:
                self._single_by_len.setdefault(len(term.words[0]), []).append(term)
        prefixes = {w: [] for table in self._prefix.values() for w in table}
        alternation = _alternation(prefixes)
        self._prefix_re = re.compile(rf"\b(?:{alternation.pattern})") if alternation else None
        self._cjk_re = _alternation(cjk_terms)
        self._allow_first: dict[str, list[AllowPhrase]] = {}
        allow_cjk: dict[str, list[AllowPhrase]] = {}
        for phrase in self.allow:
            if phrase.cjk:
                allow_cjk.setdefault(phrase.words[0], []).append(phrase)
            else:
                self._allow_first.setdefault(phrase.words[0], []).append(phrase)
        self._allow_cjk = allow_cjk
        self._allow_cjk_re = _alternation(allow_cjk)

    # -- matching -----------------------------------------------------------------------

    def find(self, norm: Normalised) -> tuple[list[Match], list[str]]:
        """Lexicon and age-rule matches in ``norm``, plus notes on how they were found."""
        text = norm.text
        words = _WORD_RE.findall(text)
        by_first = self._by_first
        candidates = [
            i
            for i, token in enumerate(words)
            if token in by_first
            or (token[-1] == "s" and (token[:-1] in by_first or token[:-2] in by_first))
            or (_REPEAT_RE.search(token) and not by_first.isdisjoint(_token_keys(token)))
        ]
        if self._prefix_re is not None and self._prefix_re.search(text):
            candidates.extend(
                i
                for i, token in enumerate(words)
                if any(token[:n] in table for n, table in self._prefix.items())
            )
        word_hits: list[tuple[int, int, Term]] = []
        stretched = self._word_hits(words, sorted(set(candidates)), word_hits)
        hits: list[tuple[int, int, Term]] = []
        tokens: list[tuple[int, int]] = []
        if word_hits:
            tokens = [m.span() for m in _WORD_RE.finditer(text)]
            hits = [(tokens[i][0], tokens[j][1], term) for i, j, term in word_hits]
        cjk = norm.has_cjk
        if cjk and self._cjk_re is not None:
            for m in self._cjk_re.finditer(text):
                for term in self._cjk_terms[m.group()]:
                    hits.append((m.start(), m.end(), term))
        masked = self._masked_hits(text) if "*" in text else []
        hits.extend(masked)
        matches = find_ages(norm)
        if not hits:
            return matches, []
        if not tokens:
            tokens = [m.span() for m in _WORD_RE.finditer(text)]
        hits = self._drop_allowed(hits, words, tokens, text, cjk)
        matches.extend(
            Match(
                category=term.category,
                term=term.text,
                start=(span := norm.span(s, e))[0],
                end=span[1],
                quote=norm.original[span[0] : span[1]],
                score=term.weight,
                source="lexicon",
            )
            for s, e, term in hits
        )
        notes = [f"matched {stretched} word(s) with repeated letters"] if stretched else []
        if masked:
            notes.append(f"matched {len({(s, e) for s, e, _ in masked})} masked word(s)")
        return _dedupe(matches), notes

    def _masked_hits(self, text: str) -> list[tuple[int, int, Term]]:
        """Words with letters masked by ``*`` (``p**n``, ``n*de``) read as lexicon words.

        A mask only matches listed words of the same length, and at most half of a word
        may be masked, so ``***`` or ``a**`` never match anything.
        """
        out = []
        for m in _MASKED_RE.finditer(text):
            word = m.group()
            letters = sum(c != "*" for c in word)
            if letters < 2 or letters * 2 < len(word):
                continue
            pattern = re.compile("".join("[a-z]" if c == "*" else re.escape(c) for c in word))
            for term in self._single_by_len.get(len(word), ()):
                if pattern.fullmatch(term.words[0]):
                    out.append((m.start(), m.end(), term))
        return out

    def _word_hits(
        self, words: list[str], candidates: list[int], hits: list[tuple[int, int, Term]]
    ) -> int:
        """Append (first word, last word, term) hits at candidate positions.

        Returns how many hits needed repeated-letter tolerance (reported as a note).
        """
        stretched = 0
        for i in candidates:
            token = words[i]
            for key in _token_keys(token):
                for term in self._by_first.get(key, ()):
                    last = self._match_words(words, i, term.words)
                    if last is not None:
                        hits.append((i, last, term))
                        if token != term.words[0] and _REPEAT_RE.search(token):
                            stretched += 1
            for length, table in self._prefix.items():
                for term in table.get(token[:length], ()) if len(token) >= length else ():
                    hits.append((i, i, term))
        return stretched

    @staticmethod
    def _match_words(words: list[str], i: int, term_words: tuple[str, ...]) -> int | None:
        """Index of the last word when ``term_words`` match ``words`` from ``i``, else None."""
        if i + len(term_words) > len(words):
            return None
        for k, word in enumerate(term_words):
            if not _word_matches(words[i + k], word):
                return None
        return i + len(term_words) - 1

    def _allowed_spans(
        self, words: list[str], tokens: list[tuple[int, int]], text: str, cjk: bool
    ) -> list[tuple[int, int, frozenset[str]]]:
        spans = []
        for i, token in enumerate(words):
            for key in _token_keys(token):
                for phrase in self._allow_first.get(key, ()):
                    last = self._match_words(words, i, phrase.words)
                    if last is not None:
                        spans.append((tokens[i][0], tokens[last][1], phrase.categories))
        if cjk and self._allow_cjk_re is not None:
            for m in self._allow_cjk_re.finditer(text):
                for phrase in self._allow_cjk[m.group()]:
                    spans.append((m.start(), m.end(), phrase.categories))
        return spans

    def _drop_allowed(
        self,
        hits: list[tuple[int, int, Term]],
        words: list[str],
        tokens: list[tuple[int, int]],
        text: str,
        cjk: bool,
    ) -> list[tuple[int, int, Term]]:
        spans = self._allowed_spans(words, tokens, text, cjk)
        if not spans:
            return hits
        return [
            (s, e, term)
            for s, e, term in hits
            if not any(
                a <= s and e <= b and (term.category in cats or _ALLOW_ALL in cats)
                for a, b, cats in spans
            )
        ]


class _Index(dict[str, list[Term]]):
    """First-word index (a dict with a set-style disjointness test)."""

    def isdisjoint(self, keys: set[str]) -> bool:
        return not any(k in self for k in keys)


def _alternation(table: dict[str, list]) -> re.Pattern[str] | None:
    if not table:
        return None
    return re.compile("|".join(re.escape(k) for k in sorted(table, key=len, reverse=True)))


def _dedupe(matches: Iterable[Match]) -> list[Match]:
    """One match per (category, span): the strongest term wins.

    "kids" hits both ``kid`` and ``kids``; counting both would inflate the category score.
    """
    best: dict[tuple[str, int, int], Match] = {}
    for m in matches:
        key = (m.category, m.start, m.end)
        if key not in best or m.score > best[key].score:
            best[key] = m
    return sorted(best.values(), key=lambda m: (m.start, m.category))


def find_ages(norm: Normalised) -> list[Match]:
    """Stated ages under :data:`ADULT_AGE` ("13 year old", "15yo", "12 ans") as ``minor``."""
    base = norm.base
    if _AGE_HINT_RE.search(base) is None:
        return []
    out = []
    seen: set[int] = set()
    for pattern in AGE_PATTERNS:
        for m in pattern.finditer(base):
            number = m.group(1)
            age = int(number) if number.isdigit() else _NUMBER_WORDS.index(number) + 1
            if age >= ADULT_AGE or m.start() in seen:
                continue
            seen.add(m.start())
            start, end = norm.base_span(m.start(), m.end())
            out.append(
                Match(
                    category="minor",
                    term=f"age {age}",
                    start=start,
                    end=end,
                    quote=norm.original[start:end],
                    score=1.0,
                    source="rule",
                )
            )
    return out
