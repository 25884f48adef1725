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
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

from genguard.decision import Match
from genguard.errors import ConfigError
from genguard.taxonomy import categories
from genguard.text.ages import AgeRules
from genguard.text.normalize import CJK_RE, Normalised, normalize_term

#: Words: runs of ASCII letters/digits, or runs of other letters (split at script changes).
_WORD_RE = re.compile(r"[a-z0-9]+|[^\W_a-z0-9]+")
_REPEAT_RE = re.compile(r"(.)\1")
_COLLAPSE_RE = re.compile(r"(.)\1+")
_ALLOW_ALL = "*"
#: A word with letters masked by asterisks: p**n, n*de, s*x.
_MASKED_RE = re.compile(r"(?<![a-z0-9*])[a-z0-9]*\*+[a-z0-9*]*(?![a-z0-9*])")

#: Arabic words carry attached article and particles: "والأطفال" is "and the children".
_ARABIC_PREFIXES = ("وال", "بال", "كال", "فال", "لل", "ال", "و", "ب", "ل", "ف", "ك")
#: Internal category of clothing words, read in negative prompts only (``clothing.*.txt``).
CLOTHING = "clothing"
#: Internal category of adult evidence (``adult.*.txt``, stated ages of 18 and over): it
#: discounts weak youth cues and flags nothing itself.
ADULT = "adult"
#: A prefix term (``nacktbild*``) needs this many letters, or it would swallow words.
MIN_PREFIX = 3
#: Listed words of at least this many letters are looked for inside joined words ...
MIN_JOINED = 3
#: ... of at most this many letters (longer runs are payloads, not joined words).
MAX_SEGMENTED = 48
_SEGMENTER_LOCK = threading.Lock()


#: Two-letter pieces a joined English name may contain (model-name suffixes, pronouns).
_SHORT_PIECES = frozenset({"xl", "hd", "ai", "vr", "me", "my", "up", "on", "in", "of", "v", "a"})
#: Function words of the other shipped Latin-script languages: a prompt written in one of
#: them is not segmented with English word frequencies.
_FOREIGN_FUNCTION_WORDS_TEXT = (
    "el la los las del con una uno por para que le les des du une avec pour dans est il "
    "lo gli della delle con che di da und der die das mit ein eine ist nicht het een van "
    "met voor niet do dos das em um uma com para nao na no w z na nie jest sie ve bir ile "
    "icin bu ve yang dan dengan di untuk ini itu mot cua va nhung cac im am auf zum zur "
    "vom beim unter vor nach aus bei au aux sur sous nel nella sul sulla"
)
FOREIGN_FUNCTION_WORDS = frozenset(_FOREIGN_FUNCTION_WORDS_TEXT.split())


def looks_foreign(words: list[str]) -> bool:
    """More function words of another Latin-script language than of English."""
    foreign = sum(w in FOREIGN_FUNCTION_WORDS for w in words)
    return foreign >= 1 and foreign > sum(w in _ENGLISH_WORDS for w in words)


_ENGLISH_WORDS_TEXT = (
    "the a an of in on with and or for to by at from is are his her their this that"
)
_ENGLISH_WORDS = frozenset(_ENGLISH_WORDS_TEXT.split())


def segment_words(token: str) -> list[str]:
    """Split a joined word into English words (``nudewoman`` -> ``nude woman``).

    Uses the word frequencies of :mod:`wordsegment` (loaded once, on first use, ~0.8 s).
    """
    import wordsegment

    if not wordsegment.UNIGRAMS:
        with _SEGMENTER_LOCK:
            if not wordsegment.UNIGRAMS:
                wordsegment.load()
    return wordsegment.segment(token[:64])


@dataclass(frozen=True)
class Term:
    """One lexicon entry."""

    category: str
    text: str  # as written in the file (reported in matches)
    words: tuple[str, ...]  # normalised words
    weight: float
    stems: tuple[bool, ...] = ()  # per word: trailing "*", any word starting with it
    cjk: bool = False  # kana/kanji/hangul: substring match
    lang: str = ""  # from the file name (sexual.en.txt -> "en")

    @property
    def prefix(self) -> bool:
        """Whether the first word is a stem (``nacktbild*``)."""
        return bool(self.stems) and self.stems[0]


def _strip_comment(line: str) -> str:
    return line.split("#", 1)[0].strip()


def parse_lexicon_line(line: str, category: str, where: str, lang: str = "") -> Term | None:
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
    normalised = normalize_term(raw.replace("*", " "))
    if not normalised:
        raise ConfigError(f"{where}: term {raw!r} is empty after normalisation")
    if CJK_RE.search(normalised) is not None or not _WORD_RE.search(normalised):
        # kana/kanji/hangul, and symbols such as emoji: matched as substrings
        return Term(
            category, raw, (normalised.replace(" ", ""),), weight, (False,), cjk=True, lang=lang
        )
    words: list[str] = []
    stems: list[bool] = []
    for piece in raw.split():
        piece_words = _WORD_RE.findall(normalize_term(piece.rstrip("*")))
        if not piece_words:
            continue
        words.extend(piece_words)
        stems.extend([False] * (len(piece_words) - 1) + [piece.endswith("*")])
    if not words:
        raise ConfigError(f"{where}: term {raw!r} has no letters after normalisation")
    if all(w.isdigit() for w in words):
        raise ConfigError(f"{where}: term {raw!r} is only a number after normalisation")
    for word, stem in zip(words, stems, strict=True):
        if stem and len(word) < MIN_PREFIX:
            raise ConfigError(
                f"{where}: prefix {word!r}* is shorter than {MIN_PREFIX} letters "
                "(it would match too many words)"
            )
    return Term(category, raw, tuple(words), weight, tuple(stems), lang=lang)


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


def _word_matches(token: str, word: str, stem: bool = False) -> bool:
    """Whether a prompt word is the lexicon word: same, plural, letters stretched, or
    (for a stem) any word starting with it; Arabic words also without their prefixes."""
    for form in _arabic_forms(token):
        if stem:
            if form.startswith(word) or _collapse(form).startswith(word):
                return True
            continue
        if form == word:
            return True
        if form.endswith("s") and (
            form[:-1] == word or (form.endswith("es") and form[:-2] == word)
        ):
            return True
        if _REPEAT_RE.search(form) and _stretch_re(word).fullmatch(form) is not None:
            return True
    return False


def _arabic_forms(token: str) -> tuple[str, ...]:
    """The token, plus (for Arabic script) the token without attached article/particles."""
    if not token or not "\u0600" <= token[0] <= "\u06ff":
        return (token,)
    forms = [token]
    for prefix in _ARABIC_PREFIXES:
        if token.startswith(prefix) and len(token) - len(prefix) >= 2:
            forms.append(token[len(prefix) :])
    return tuple(forms)


@lru_cache(maxsize=65536)
def _token_keys(token: str) -> frozenset[str]:
    """Index keys a prompt word may be listed under (plural, stretched, Arabic prefixes)."""
    keys: set[str] = set()
    for form in _arabic_forms(token):
        keys.add(form)
        if form.endswith("s"):
            keys.add(form[:-1])
            if form.endswith("es"):
                keys.add(form[:-2])
        if _REPEAT_RE.search(form):
            collapsed = _collapse(form)
            keys.add(collapsed)
            if collapsed.endswith("s"):
                keys.add(collapsed[:-1])
    return frozenset(keys)


def builtin_lexicon_dir() -> Path:
    """The lexicon files shipped with genguard."""
    return Path(str(resources.files("genguard").joinpath("data/lexicons")))


class Lexicon:
    """All category word lists plus the allow lists and age rules, indexed per word."""

    @classmethod
    def default(cls) -> Lexicon:
        """The shipped lexicon, built once per process (parsing ~11,000 terms takes ~0.4 s)."""
        return _default_lexicon()

    def __init__(self, extra_dirs: Sequence[Path] = (), *, builtin: bool = True) -> None:
        self.terms: list[Term] = []
        self.allow: list[AllowPhrase] = []
        dirs = ([builtin_lexicon_dir()] if builtin else []) + [Path(d) for d in extra_dirs]
        for directory in dirs:
            self._load_dir(directory)
        self.ages = AgeRules.from_dirs(dirs)
        self._segment_cache: dict[str, tuple[str, ...] | None] = {}
        self._start_cache: dict[str, bool] = {}
        self._index()

    # -- loading ------------------------------------------------------------------------

    def _load_dir(self, directory: Path) -> None:
        if not directory.is_dir():
            raise ConfigError(f"lexicon directory {directory} does not exist")
        known = {c.name for c in categories("prompt")} | {CLOTHING, ADULT}
        for path in sorted(directory.glob("*.txt")):
            category = path.name.split(".", 1)[0]
            if category == "allow":
                self.allow.extend(self._read_allow(path))
                continue
            if category not in known:
                raise ConfigError(
                    f"{path}: unknown prompt category {category!r} "
                    f"(file names start with one of: allow, {', '.join(sorted(known))})"
                )
            parts = path.name.split(".")
            lang = parts[1] if len(parts) == 3 else ""
            for lineno, line in enumerate(path.read_text("utf-8").splitlines(), 1):
                term = parse_lexicon_line(line, category, f"{path}:{lineno}", lang)
                if term is not None:
                    self.terms.append(term)
                    if 2 <= len(term.words) <= 4 and not any(term.stems):
                        # "wrists her cutting": word order reversed is still the request.
                        self.terms.append(replace(term, words=term.words[::-1]))

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
            words = (normalised.replace(" ", ""),) if cjk else tuple(_WORD_RE.findall(normalised))
            if words:
                yield AllowPhrase(words, names, cjk)

    def _index(self) -> None:
        #: One-word terms by word; multi-word terms by (first, second) word, or by first
        #: word when the second is a stem. Why two words: "in her underwear", "a little
        #: girl" start with words every prompt has, and checking every term that starts with
        #: "in" at every "in" was most of the matching time.
        self._by_first: _Index = _Index()
        self._single: dict[str, list[Term]] = {}
        self._pairs: dict[tuple[str, str], list[Term]] = {}
        self._stem_second: dict[str, list[Term]] = {}
        #: Terms whose first word is a stem, by the stem's first three letters.
        self._stem_first: dict[str, list[Term]] = {}
        cjk_terms: dict[str, list[Term]] = {}
        for term in self.terms:
            if term.cjk:
                cjk_terms.setdefault(term.words[0], []).append(term)
            elif term.prefix:
                self._stem_first.setdefault(term.words[0][:MIN_PREFIX], []).append(term)
            else:
                first = term.words[0]
                for key in {first, _collapse(first)}:
                    self._by_first.setdefault(key, []).append(term)
                    if len(term.words) == 1:
                        self._single.setdefault(key, []).append(term)
                    elif term.stems[1]:
                        self._stem_second.setdefault(key, []).append(term)
                    else:
                        second = term.words[1]
                        for key2 in {second, _collapse(second)}:
                            self._pairs.setdefault((key, key2), []).append(term)
        self._cjk_terms = cjk_terms
        #: First characters of substring terms: a prompt without any skips that scan.
        self._substring_first = frozenset(k[0] for k in cjk_terms) | frozenset(
            p.words[0][0] for p in self.allow if p.cjk
        )
        self._single_by_len: dict[int, list[Term]] = {}
        for term in self.terms:
            if len(term.words) == 1 and not term.prefix and not term.cjk:
                self._single_by_len.setdefault(len(term.words[0]), []).append(term)
        self._cjk_re = _alternation(cjk_terms)
        #: ASCII words of terms, looked for inside joined tokens ("nudeart", "#NakedXL").
        self._segmentable = frozenset(
            term.words[0]
            for term in self.terms
            if not term.cjk and len(term.words[0]) >= MIN_JOINED and term.words[0].isascii()
        )
        self._segmentable_lengths = sorted({len(w) for w in self._segmentable})
        self.strong_words = frozenset(
            t.words[0] for t in self.terms if len(t.words) == 1 and t.weight >= 0.5 and not t.cjk
        )
        #: English strong words (reversed-text detection: "edun" -> "nude").
        self.strong_english_words = frozenset(
            t.words[0]
            for t in self.terms
            if len(t.words) == 1
            and t.weight >= 0.5
            and t.lang in ("en", "")
            and len(t.words[0]) >= 3
        )
        self._allow_first: dict[str, list[AllowPhrase]] = {}
        self._allow_single: dict[str, list[AllowPhrase]] = {}
        self._allow_pairs: dict[tuple[str, str], list[AllowPhrase]] = {}
        allow_cjk: dict[str, list[AllowPhrase]] = {}
        for phrase in self.allow:
            if phrase.cjk:
                allow_cjk.setdefault(phrase.words[0], []).append(phrase)
            else:
                self._allow_first.setdefault(phrase.words[0], []).append(phrase)
                if len(phrase.words) == 1:
                    self._allow_single.setdefault(phrase.words[0], []).append(phrase)
                else:
                    pair = (phrase.words[0], phrase.words[1])
                    self._allow_pairs.setdefault(pair, []).append(phrase)
        self._allow_cjk = allow_cjk
        #: How many words before a hit an allow phrase may start.
        self._allow_reach = max((len(p.words) for p in self.allow if not p.cjk), default=1)
        self._allow_cjk_re = _alternation(allow_cjk)

    # -- matching -----------------------------------------------------------------------

    def find(self, norm: Normalised) -> tuple[list[Match], list[str]]:
        """Lexicon and age-rule matches in ``norm``, plus notes on how they were found."""
        text = norm.text
        words = _WORD_RE.findall(text)
        word_hits: list[tuple[int, int, Term]] = []
        stretched = self._word_hits(words, word_hits)
        hits: list[tuple[int, int, Term]] = []
        tokens: list[tuple[int, int]] = []
        if word_hits:
            tokens = [m.span() for m in _WORD_RE.finditer(text)]
            hits = [(tokens[i][0], tokens[j][1], term) for i, j, term in word_hits]
        cjk = not text.isascii() and not self._substring_first.isdisjoint(text)
        if cjk and self._cjk_re is not None:
            compact, offsets = _without_spaces(text)
            for m in self._cjk_re.finditer(compact):
                for term in self._cjk_terms[m.group()]:
                    hits.append((offsets[m.start()], offsets[m.end() - 1] + 1, term))
        masked = self._masked_hits(text) if "*" in text else []
        hits.extend(masked)
        joined = self._joined_hits(words, word_hits)
        if joined:
            if not tokens:
                tokens = [m.span() for m in _WORD_RE.finditer(text)]
            hits.extend((tokens[i][0], tokens[i][1], term) for i, term in joined)
        matches = self.ages.find(norm)
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
        if joined:
            notes.append(f"split {len({i for i, _ in joined})} joined word(s)")
        if masked:
            notes.append(f"matched {len({(s, e) for s, e, _ in masked})} masked word(s)")
        return _dedupe(matches), notes

    def _joined_hits(
        self, words: list[str], word_hits: list[tuple[int, int, Term]]
    ) -> list[tuple[int, Term]]:
        """Terms inside joined words ("nudeart", "nakedwoman", "#goreporn").

        Only words that contain a listed word are segmented (English word frequencies,
        :mod:`wordsegment`), and a term counts only when it is one of the segments:
        "therapist" stays one word, so its "rapist" never matches; "killerwhale" becomes
        "killer whale", which the allow list then clears.
        """
        matched = {i for i, _, _ in word_hits}
        out: list[tuple[int, Term]] = []
        if looks_foreign(words):
            return out  # joined-word evasion is an English habit; other languages compound
        for i, token in enumerate(words):
            if i in matched or not MIN_JOINED + 2 <= len(token) <= MAX_SEGMENTED:
                continue
            if not token.isascii():
                continue
            segments = self._segments(token)
            if segments is None:
                continue
            hits: list[tuple[int, int, Term]] = []
            self._word_hits(list(segments), hits)
            if hits:
                spans = [(k, k + 1) for k in range(len(segments))]
                for _, _, term in self._drop_allowed(hits, list(segments), spans, "", False):
                    out.append((i, term))
        return out

    def _segments(self, token: str) -> tuple[str, ...] | None:
        """The token's segmentation when it contains a listed word, else None (cached)."""
        cached = self._segment_cache.get(token)
        if cached is not None or token in self._segment_cache:
            return cached
        found = any(
            token[k : k + n] in self._segmentable
            for n in self._segmentable_lengths
            if n < len(token)
            for k in range(len(token) - n + 1)
        )
        result = None
        if found:
            parts = tuple(segment_words(token))
            # Every piece must be a real word: "ventanal" is not "vent anal" with a stray
            # letter, "nakedxl" is "naked xl".
            if len(parts) > 1 and all(len(p) >= 3 or p in _SHORT_PIECES for p in parts):
                result = parts
        if len(self._segment_cache) > 100_000:
            self._segment_cache.clear()
        self._segment_cache[token] = result
        return result

    def allowed_categories(self, norm: Normalised) -> set[str]:
        """Categories some allow-list phrase in the prompt vouches for ("blood orange"
        for violence): the semantic check does not overrule the allow list on them."""
        text = norm.text
        words = _WORD_RE.findall(text)
        tokens = [m.span() for m in _WORD_RE.finditer(text)]
        cjk = not text.isascii() and not self._substring_first.isdisjoint(text)
        spans = self._allowed_spans(words, tokens, text, cjk, range(len(words)))
        return {c for _, _, cats in spans for c in cats}

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

    def _word_hits(self, words: list[str], hits: list[tuple[int, int, Term]]) -> int:
        """Append (first word, last word, term) hits for every position.

        Dictionary probes per word form (cached per word): one-word terms by the word,
        multi-word terms by the word and the next one; stems by their first three letters.
        Returns how many hits needed repeated-letter tolerance.
        """
        stretched = 0
        by_first, single, pairs = self._by_first, self._single, self._pairs
        stem_second, stem_first = self._stem_second, self._stem_first
        n = len(words)
        keys_of = [_token_keys(w) for w in words]
        starts = self._starts
        for i, token in enumerate(words):
            if not starts(token):
                continue  # most words of most prompts start no term: one cached probe
            keys = keys_of[i]
            if not by_first.isdisjoint(keys):
                seen: set[int] = set()
                candidates: list[Term] = []
                for key in keys:
                    candidates.extend(single.get(key, ()))
                    candidates.extend(stem_second.get(key, ()))
                    if i + 1 < n:
                        for key2 in keys_of[i + 1]:
                            candidates.extend(pairs.get((key, key2), ()))
                for term in candidates:
                    if id(term) in seen:
                        continue
                    seen.add(id(term))
                    last = self._match_words(words, i, term)
                    if last is not None:
                        hits.append((i, last, term))
                        if token != term.words[0] and _REPEAT_RE.search(token):
                            stretched += 1
            if stem_first:
                for form in _arabic_forms(token):
                    for term in stem_first.get(form[:MIN_PREFIX], ()):
                        if not form.startswith(term.words[0]):
                            continue
                        last = self._match_words(words, i, term)
                        if last is not None:
                            hits.append((i, last, term))
        return stretched

    def _starts(self, token: str) -> bool:
        """Whether some term can start at this word (cached per word and lexicon)."""
        cached = self._start_cache.get(token)
        if cached is None:
            cached = not self._by_first.isdisjoint(_token_keys(token)) or any(
                form[:MIN_PREFIX] in self._stem_first for form in _arabic_forms(token)
            )
            if len(self._start_cache) > 200_000:
                self._start_cache.clear()
            self._start_cache[token] = cached
        return cached

    @staticmethod
    def _match_words(words: list[str], i: int, term: Term) -> int | None:
        """Index of the last word when ``term`` matches ``words`` from ``i``, else None."""
        term_words = term.words
        if i + len(term_words) > len(words):
            return None
        stems = term.stems or (False,) * len(term_words)
        for k, (word, stem) in enumerate(zip(term_words, stems, strict=True)):
            if not _word_matches(words[i + k], word, stem):
                return None
        return i + len(term_words) - 1

    def _allowed_spans(
        self,
        words: list[str],
        tokens: list[tuple[int, int]],
        text: str,
        cjk: bool,
        near: Iterable[int] = (),
    ) -> list[tuple[int, int, frozenset[str]]]:
        """Spans of allow-list phrases, looked for only where they could cover a hit."""
        spans = []
        starts: set[int] = set()
        for index in near:
            starts.update(range(max(0, index - self._allow_reach), index + 1))
        for i in sorted(starts):
            if i >= len(words):
                continue
            keys2 = _token_keys(words[i + 1]) if i + 1 < len(words) else frozenset()
            for key in _token_keys(words[i]):
                phrases = list(self._allow_single.get(key, ()))
                for key2 in keys2:
                    phrases.extend(self._allow_pairs.get((key, key2), ()))
                for phrase in phrases:
                    last = self._match_phrase(words, i, phrase.words)
                    if last is not None:
                        spans.append((tokens[i][0], tokens[last][1], phrase.categories))
        if cjk and self._allow_cjk_re is not None:
            compact, offsets = _without_spaces(text)
            for m in self._allow_cjk_re.finditer(compact):
                for phrase in self._allow_cjk[m.group()]:
                    spans.append((offsets[m.start()], offsets[m.end() - 1] + 1, phrase.categories))
        return spans

    @staticmethod
    def _match_phrase(words: list[str], i: int, phrase: tuple[str, ...]) -> int | None:
        if i + len(phrase) > len(words):
            return None
        for k, word in enumerate(phrase):
            if not _word_matches(words[i + k], word):
                return None
        return i + len(phrase) - 1

    def _drop_allowed(
        self,
        hits: list[tuple[int, int, Term]],
        words: list[str],
        tokens: list[tuple[int, int]],
        text: str,
        cjk: bool,
    ) -> list[tuple[int, int, Term]]:
        near = {_token_index(tokens, s) for s, _, _ in hits}
        spans = self._allowed_spans(words, tokens, text, cjk, near)
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


def _token_index(tokens: list[tuple[int, int]], start: int) -> int:
    """Index of the token containing character ``start`` (binary search)."""
    lo, hi = 0, len(tokens) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if tokens[mid][0] <= start:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _without_spaces(text: str) -> tuple[str, list[int]]:
    """``text`` with spaces removed, and each kept character's index in ``text``.

    Kana/kanji/hangul terms are substrings: "누드 사진" and "누드사진" must both match.
    """
    offsets = [i for i, c in enumerate(text) if c != " "]
    return "".join(text[i] for i in offsets), offsets


@lru_cache(maxsize=1)
def _default_lexicon() -> Lexicon:
    return Lexicon()


class _Index(dict[str, list[Term]]):
    """First-word index (a dict with a set-style disjointness test)."""

    def isdisjoint(self, keys: Iterable[str]) -> bool:
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
