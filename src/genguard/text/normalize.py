"""Undo the usual prompt-filter evasions, keeping a map back to the user's own characters.

People who want a filter to miss a word disguise it: full-width or "math bold" letters,
Cyrillic look-alikes (``nudе`` with a Cyrillic ``е``), zero-width characters inside the
word, accents and combining marks, leetspeak (``nud3``, ``p0rn``), separators
(``n.u.d.e``, ``n u d e``) and case. :func:`normalize` removes all of that and returns a
:class:`Normalised` text whose every character knows which span of the original it came
from, so evidence can quote the user's words rather than our rewriting of them.

Two views come out:

* ``base``: compatibility-folded (NFKC), case-folded, accents and invisible characters
  removed, look-alike letters folded. Digits are still digits, so ages ("13 yo") are
  read here.
* ``text``: ``base`` plus separators collapsed and leetspeak read as letters. Lexicon terms
  are matched here.

Repeated letters (``nuuuude``) are *not* rewritten: the lexicon matcher tolerates them,
which keeps ``kill`` and ``ass`` distinct from ``kil`` and ``as``.

Homoglyph folding is script-aware: a non-Latin letter is folded only inside a word that
mixes it with Latin letters, or in a word made entirely of Latin look-alikes (``рогп``).
Japanese kana, CJK ideographs and other scripts are never folded, so kana lexicon
entries still match kana text.
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

#: Scripts/blocks whose letters may be folded to a Latin look-alike (by Unicode name).
_FOLDABLE_PREFIXES = (
    "LATIN",
    "GREEK",
    "CYRILLIC",
    "ARMENIAN",
    "CHEROKEE",
    "COPTIC",
    "MATHEMATICAL",
    "LISU",
    "MODIFIER LETTER",
    "SCRIPT SMALL",
    "DOUBLE-STRUCK",
    "BLACK-LETTER",
    "ROMAN NUMERAL",
)
#: Kana and CJK ideographs: never folded, only width-normalised.
KANA_CJK_RE = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")
#: Scripts matched as substrings: kana, CJK ideographs (no word spaces) and hangul (particles
#: attach to words: 누드를, 누드가), so lexicon terms are found anywhere in a run.
CJK_RE = re.compile(
    r"[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f"
    r"\uac00-\ud7a3\u1100-\u1112\u1161-\u1175\u11a8-\u11c2\u3131-\u318e]"
)
#: Latin letters that carry no decomposable accent but read as ASCII letters (Polish ł,
#: Vietnamese đ, Nordic ø), so "łódź" and "lodz" meet.
_LATIN_EXTRA = str.maketrans(
    {"ł": "l", "đ": "d", "ø": "o", "æ": "ae", "œ": "oe", "þ": "th", "ħ": "h", "ŧ": "t",
     "ŀ": "l", "ɨ": "i", "ð": "d"}
)  # fmt: skip
#: Arabic letter variants folded to one form (hamza seats on alef, alef maqsura, taa
#: marbuta): spellings vary freely in informal writing.
_ARABIC_FOLD = {"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه", "ـ": ""}
#: Fillers that render as blank space but are letters (Hangul fillers, braille blank).
_FILLERS = set("\u3164\uffa0\u115f\u1160")
#: Grade-1 braille letters (dots -> letter); U+2800 is a blank cell, read as a space.
_BRAILLE = dict(
    zip(
        "⠁⠃⠉⠙⠑⠋⠛⠓⠊⠚⠅⠇⠍⠝⠕⠏⠟⠗⠎⠞⠥⠧⠺⠭⠽⠵",
        "abcdefghijklmnopqrstuvwxyz",
        strict=True,
    )
)
#: Letters Unicode names as decorated Latin letters that NFKC leaves alone (or turns into
#: "(n)"): small capitals, squared and negative squared/circled letters, parenthesized
#: letters, modifier letters. "ɴᴜᴅᴇ", "🅽🆄🅳🅴", "⒩⒰⒟⒠" all read "nude".
_DECORATED_RE = re.compile(
    r"^(?:LATIN LETTER SMALL CAPITAL|(?:NEGATIVE )?(?:SQUARED|CIRCLED) LATIN CAPITAL LETTER|"
    r"PARENTHESIZED LATIN SMALL LETTER|MODIFIER LETTER (?:SMALL|CAPITAL)|"
    r"LATIN SUBSCRIPT SMALL LETTER|SUPERSCRIPT LATIN SMALL LETTER|"
    r"NEGATIVE SQUARED LATIN CAPITAL LETTER|TAG LATIN SMALL LETTER) ([A-Z])$"
)
#: Look-alikes where the confusables data picks a letter that evasion does not mean
#: (Greek eta is written for "n": "ηude").
_HOMOGLYPH_OVERRIDES = {"η": "n", "ɴ": "n", "ʀ": "r", "ʜ": "h", "ɢ": "g", "ʟ": "l"}

#: Leetspeak digits and symbols, read as letters inside words that also contain letters.
LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
        "@": "a", "$": "s", "!": "i", "|": "l", "€": "e", "+": "t"}  # fmt: skip
_LEET_CHARS = re.escape("".join(LEET))
#: A word containing at least one letter and at least one leet character.
_LEET_WORD_RE = re.compile(
    rf"(?<![\w{_LEET_CHARS}])(?=[\w{_LEET_CHARS}]*[a-z])(?=[\w{_LEET_CHARS}]*[{_LEET_CHARS}])"
    rf"[\w{_LEET_CHARS}]*[a-z\d][\w{_LEET_CHARS}]*"
)
_LEET_TABLE = str.maketrans(LEET)
_LEET_PRESENT_RE = re.compile(f"[{_LEET_CHARS}]")
#: Separators people put between the letters of a word.
_SEP = r"[\s.\-_*·•~/\\,:;|'+^=]"
#: Three or more single characters split by separators: n.u.d.e, n u d e, s-3-x.
_SPACED_RE = re.compile(rf"(?<![\w@$])[\w@$](?:{_SEP}{{1,3}}[\w@$](?![\w@$])){{2,}}")
#: Short chunks joined by in-word punctuation: nu.de, se_x. A lone "*" inside a word is a
#: mask, not a separator: the lexicon resolves it (p*rn).
_CHUNKED_RE = re.compile(r"(?<![\w@$])[\w@$]{1,3}(?:[._·•~-][\w@$]{1,3})+(?![\w@$])")
#: Digits with a unit or suffix are not leetspeak: 4k, 3d, 1080p, 16yo, 90s, 2nd, 35mm.
_UNIT_WORD_RE = re.compile(r"\d+(?:k|d|p|s|x|th|st|nd|rd|yo|y/o|mm|cm|px|fps|am|pm|hz|gb|mb)")
_SEP_CHAR_RE = re.compile(_SEP)
#: A letter then only digits is a code or rating, not leetspeak: r18, v12, a4, x86.
_CODE_WORD_RE = re.compile(r"[a-z]\d{2,}")
_HAS_LETTER_RE = re.compile(r"[a-z]")
_ASCII_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class Normalised:
    """A normalised prompt with its maps back to the original.

    ``starts[i]``/``ends[i]`` give the span of the original text that produced character
    ``i`` of ``text`` (``base_starts``/``base_ends`` the same for ``base``); ``None`` means
    the identity map (the common all-ASCII case, where nothing moved).
    """

    original: str
    base: str
    text: str
    base_starts: list[int] | None = None
    base_ends: list[int] | None = None
    starts: list[int] | None = None
    ends: list[int] | None = None
    notes: list[str] = field(default_factory=list)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original-text span of ``text[start:end]``."""
        return _map_span(self.starts, self.ends, start, end)

    def base_span(self, start: int, end: int) -> tuple[int, int]:
        """Original-text span of ``base[start:end]``."""
        return _map_span(self.base_starts, self.base_ends, start, end)

    @property
    def has_cjk(self) -> bool:
        """Whether the text contains kana or CJK ideographs (substring matching needed)."""
        return not self.base.isascii() and CJK_RE.search(self.base) is not None


def _map_span(
    starts: list[int] | None, ends: list[int] | None, start: int, end: int
) -> tuple[int, int]:
    if starts is None or ends is None:
        return start, end
    if end <= start:
        return starts[start], starts[start]
    # Decoded readings may run backwards (reversed text): take the outer bounds.
    return min(starts[start], starts[end - 1]), max(ends[start], ends[end - 1])


# ---------------------------------------------------------------------------------------
# Character tables (built once per process)
# ---------------------------------------------------------------------------------------


def _is_foldable_source(char: str) -> bool:
    name = unicodedata.name(char, "")
    if unicodedata.category(char) == "Sm":
        return True
    return any(name.startswith(p) or f" {p}" in name for p in _FOLDABLE_PREFIXES)


@lru_cache(maxsize=1)
def homoglyph_table() -> dict[str, str]:
    """Non-ASCII look-alike -> ASCII letter, from Unicode's confusables data.

    The data ships with the ``confusable-homoglyphs`` package (Unicode ``confusables.txt``
    as JSON). Only single-character look-alikes of ASCII letters are kept, from Latin-like
    scripts and math symbols; their case-folded forms are added so that ``Н`` and ``н``
    both fold to ``h``. Digits are not targets: ``б`` is a letter, not a ``6``.
    """
    raw = resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    data: dict[str, list[dict[str, str]]] = json.loads(raw)
    table: dict[str, str] = {}
    for key in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        target = key.lower()
        for entry in data.get(key, ()):
            glyph = entry["c"]
            if len(glyph) != 1 or glyph.isascii() or not _is_foldable_source(glyph):
                continue
            for form in (glyph, glyph.casefold()):
                if len(form) == 1 and not form.isascii():
                    table.setdefault(form, target)
    # Dotless i, long s and friends are Latin letters in their own right but read as ASCII.
    table.update({"ı": "i", "ſ": "s", "ȷ": "j"})
    table.update(_HOMOGLYPH_OVERRIDES)
    return table


@dataclass(frozen=True)
class _CharInfo:
    """How one non-ASCII character normalises."""

    kind: str  # "keep", "drop_invisible", "drop_control", "drop_surrogate", "mark", "space"
    repl: str  # replacement (NFKC, case-folded, accents stripped) for "keep"
    fold: str | None  # ASCII look-alike of ``repl`` when it has one
    changed: bool  # NFKC/case/accent changed something other than case


_INVISIBLE = set("\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u2061\u2062\u2063\u2064\u034f")


@lru_cache(maxsize=8192)
def _char_info(char: str) -> _CharInfo:
    code = ord(char)
    cat = unicodedata.category(char)
    if 0xD800 <= code <= 0xDFFF:
        return _CharInfo("drop_surrogate", "", None, True)
    if (
        char in _INVISIBLE
        or char in _FILLERS
        or cat == "Cf"
        or 0xFE00 <= code <= 0xFE0F
        or code >= 0xE0000
    ):
        return _CharInfo("drop_invisible", "", None, True)
    if cat == "Cc":
        if char in "\t\n\r\x85":
            return _CharInfo("space", " ", None, False)
        return _CharInfo("drop_control", "", None, True)
    if cat in ("Mn", "Me"):
        return _CharInfo("mark", char, None, True)
    if cat == "Zs" or char in "\u2028\u2029":
        return _CharInfo("space", " ", None, char != " ")
    if 0x1F1E6 <= code <= 0x1F1FF:  # regional indicator letters: 🇳🇺🇩🇪
        return _CharInfo("keep", chr(code - 0x1F1E6 + ord("a")), None, True)
    if char in _ARABIC_FOLD:
        return _CharInfo("keep", _ARABIC_FOLD[char], None, True)
    if char == "\u2800":
        return _CharInfo("space", " ", None, True)
    if char in _BRAILLE:
        return _CharInfo("keep", _BRAILLE[char], None, True)
    decorated = _DECORATED_RE.match(unicodedata.name(char, ""))
    if decorated:
        return _CharInfo("keep", decorated.group(1).lower(), None, True)
    if cat == "Nd":  # Arabic-Indic, Devanagari ... digits read as ASCII digits (ages)
        return _CharInfo("keep", str(unicodedata.decimal(char)), None, True)
    nfkc = unicodedata.normalize("NFKC", char)
    folded = nfkc.casefold()
    if CJK_RE.search(folded):
        # Kana/CJK: width-fold only (half-width katakana -> full-width), never strip marks.
        return _CharInfo("keep", folded, None, folded != char)
    decomposed = unicodedata.normalize("NFD", folded)
    stripped = "".join(c for c in decomposed if unicodedata.category(c) not in ("Mn", "Me"))
    repl = (unicodedata.normalize("NFC", stripped) or folded).translate(_LATIN_EXTRA)
    table = homoglyph_table()
    fold = None
    if not repl.isascii() and all(c in table or c.isascii() for c in repl):
        fold = "".join(table.get(c, c) for c in repl)
    changed = repl != char.lower() and repl != char.casefold()
    return _CharInfo("keep", repl, fold, changed)


# ---------------------------------------------------------------------------------------
# Pipeline
# ---------------------------------------------------------------------------------------


@dataclass
class _Counts:
    invisible: int = 0
    control: int = 0
    surrogate: int = 0
    marks: int = 0
    compat: int = 0
    homoglyph: int = 0
    leet: int = 0
    separators: int = 0

    def notes(self) -> list[str]:
        out = []
        for count, what in (
            (self.invisible, "zero-width/invisible character"),
            (self.control, "control character"),
            (self.surrogate, "lone surrogate"),
            (self.marks, "combining mark"),
        ):
            if count:
                out.append(f"removed {count} {what}{'s' if count > 1 else ''}")
        if self.compat:
            out.append(f"normalised {self.compat} compatibility/accented character(s)")
        if self.homoglyph:
            out.append(f"folded {self.homoglyph} homoglyph{'s' if self.homoglyph > 1 else ''}")
        if self.separators:
            out.append(f"joined letters split by {self.separators} separator(s)")
        if self.leet:
            out.append(f"read {self.leet} leetspeak character(s) as letters")
        return out


def _fold_unicode(text: str, counts: _Counts) -> tuple[str, list[int], list[int]]:
    """NFKC/case/accents/invisibles per character, then script-aware homoglyph folding."""
    pieces: list[str] = []
    folds: list[str | None] = []
    starts: list[int] = []
    ends: list[int] = []
    for i, char in enumerate(text):
        if char.isascii():
            if char.isprintable() or char == " ":
                pieces.append(char.lower())
            elif char in "\t\n\r":
                pieces.append(" ")
            else:
                counts.control += 1
                continue
            folds.append(None)
            starts.append(i)
            ends.append(i + 1)
            continue
        info = _char_info(char)
        if info.kind == "drop_invisible":
            counts.invisible += 1
            continue
        if info.kind == "drop_control":
            counts.control += 1
            continue
        if info.kind == "drop_surrogate":
            counts.surrogate += 1
            continue
        if info.kind == "mark":
            prev = pieces[-1] if pieces else ""
            if prev and KANA_CJK_RE.match(prev):
                composed = unicodedata.normalize("NFC", prev + char)
                if len(composed) == 1:  # e.g. kana + voicing mark -> voiced kana
                    pieces[-1] = composed
                    ends[-1] = i + 1
                    continue
            counts.marks += 1
            if pieces:
                ends[-1] = i + 1
            continue
        if info.changed:
            counts.compat += 1
        pieces.append(info.repl)
        folds.append(info.fold)
        starts.append(i)
        ends.append(i + 1)
    _apply_homoglyphs(pieces, folds, counts)
    out_chars: list[str] = []
    out_starts: list[int] = []
    out_ends: list[int] = []
    for piece, s, e in zip(pieces, starts, ends, strict=True):
        for c in piece:
            out_chars.append(c)
            out_starts.append(s)
            out_ends.append(e)
    return "".join(out_chars), out_starts, out_ends


def _apply_homoglyphs(pieces: list[str], folds: list[str | None], counts: _Counts) -> None:
    """Fold look-alikes word by word: only in mixed words or all-look-alike words."""
    n = len(pieces)
    i = 0
    while i < n:
        if pieces[i] == " ":
            i += 1
            continue
        j = i
        while j < n and pieces[j] != " ":
            j += 1
        word = range(i, j)
        if any(folds[k] for k in word):
            has_ascii_letter = any(pieces[k].isascii() and pieces[k].isalpha() for k in word)
            foreign_letters = [k for k in word if not pieces[k].isascii() and pieces[k].isalpha()]
            all_lookalike = all(folds[k] for k in foreign_letters)
            if has_ascii_letter or all_lookalike:
                for k in word:
                    fold = folds[k]
                    if fold:
                        pieces[k] = fold
                        counts.homoglyph += 1
        i = j


def _collapse_separators(text: str, counts: _Counts) -> list[int]:
    """Positions of separator characters to delete inside split-up words."""
    drop: list[int] = []
    for regex in (_SPACED_RE, _CHUNKED_RE):
        for m in regex.finditer(text):
            chunk = m.group()
            pieces = _split_runs(chunk, m.start()) if regex is _SPACED_RE else [(chunk, m.start())]
            for piece, offset in pieces:
                drop.extend(offset + k for k, c in enumerate(piece) if _SEP_CHAR_RE.match(c))
    if drop:
        drop = sorted(set(drop))
        counts.separators += len(drop)
    return drop


def _split_runs(chunk: str, offset: int) -> list[tuple[str, int]]:
    """Split a run of separated letters into the parts that each spell one word.

    Separators must be consistent ("a n-u-d-e" is the article "a" then "n-u-d-e"; a double
    space separates two spelled words), and a space-separated run does not swallow a
    leading "a" or "i" ("a m u r d e r"). Parts shorter than 3 letters are left alone.
    """
    letters = [k for k, c in enumerate(chunk) if not _SEP_CHAR_RE.match(c)]
    seps = [chunk[p + 1 : c] for p, c in itertools.pairwise(letters)]
    groups: list[tuple[int, int, str]] = []  # (first letter index, last letter index, sep)
    for i, sep in enumerate(seps):
        if groups and groups[-1][2] == sep and groups[-1][1] == i:
            groups[-1] = (groups[-1][0], i + 1, sep)
        else:
            groups.append((i, i + 1, sep))
    taken: set[int] = set()
    out = []
    for first, last, sep in sorted(groups, key=lambda g: g[0] - g[1]):  # longest first
        # Neighbouring groups share at most their end letters: trim those, never walk
        # further (walking through taken letters made long runs quadratic).
        if first in taken:
            first += 1
        if last in taken:
            last -= 1
        if sep == " " and last - first >= 3 and chunk[letters[first]] in "ai":
            first += 1
        if last - first >= 2:
            taken.update(range(first, last + 1))
            start, end = letters[first], letters[last] + 1
            out.append((chunk[start:end], offset + start))
    return out


def _read_leet(text: str, counts: _Counts) -> str:
    """Translate leet characters inside words that also contain letters (``s3x``)."""
    if _LEET_PRESENT_RE.search(text) is None:
        return text

    def read(part: str) -> str:
        if not _HAS_LETTER_RE.search(part) or _UNIT_WORD_RE.fullmatch(part):
            return part
        if _CODE_WORD_RE.fullmatch(part):
            return part
        out = part.translate(_LEET_TABLE)
        counts.leet += sum(1 for a, b in zip(part, out, strict=True) if a != b)
        return out

    def repl(m: re.Match[str]) -> str:
        # Tag-style prompts join words with "_" (7th_grade_girl, 16yo_model): each part
        # gets the word rules of its own, so "7th" stays an ordinal and "16yo" an age.
        return "_".join(read(part) for part in m.group().split("_"))

    return _LEET_WORD_RE.sub(repl, text)


def normalize(text: str) -> Normalised:
    """Normalise ``text`` for matching; see the module docstring for what is undone."""
    counts = _Counts()
    base_starts: list[int] | None
    base_ends: list[int] | None
    if text.isascii():
        if _ASCII_CONTROL_RE.search(text):
            base, base_starts, base_ends = _fold_unicode(text, counts)
        else:
            base = text.lower().translate(_WS_TABLE)
            base_starts = base_ends = None
    else:
        base, base_starts, base_ends = _fold_unicode(text, counts)

    drop = _collapse_separators(base, counts)
    starts: list[int] | None
    ends: list[int] | None
    if drop:
        dropped = set(drop)
        keep = [i for i in range(len(base)) if i not in dropped]
        joined = "".join(base[i] for i in keep)
        starts = [base_starts[i] for i in keep] if base_starts is not None else keep
        ends = [base_ends[i] for i in keep] if base_ends is not None else [i + 1 for i in keep]
    else:
        joined, starts, ends = base, base_starts, base_ends
    matched_text = _read_leet(joined, counts)
    return Normalised(
        original=text,
        base=base,
        text=matched_text,
        base_starts=base_starts,
        base_ends=base_ends,
        starts=starts,
        ends=ends,
        notes=counts.notes(),
    )


_WS_TABLE = str.maketrans({"\t": " ", "\n": " ", "\r": " "})


@lru_cache(maxsize=262144)
def normalize_term(term: str) -> str:
    """Normalise a lexicon term the same way as text, so both sides meet in the middle.

    Cached: the persons list alone normalises ~60,000 names and name parts at start-up.
    """
    return " ".join(normalize(term).text.split())


def normalize_view(
    text: str, original: str, starts: Sequence[int], ends: Sequence[int]
) -> Normalised:
    """Normalise a decoded reading of ``original`` (see :mod:`genguard.text.decode`).

    ``starts``/``ends`` give, per character of ``text``, its span in ``original``; the
    result maps straight back to ``original``, so matches quote the user's own words.
    """
    norm = normalize(text)

    def compose(
        local_starts: list[int] | None, local_ends: list[int] | None, length: int
    ) -> tuple[list[int], list[int]]:
        if local_starts is None or local_ends is None:
            return list(starts[:length]), list(ends[:length])
        return [starts[i] for i in local_starts], [ends[j - 1] for j in local_ends]

    base_starts, base_ends = compose(norm.base_starts, norm.base_ends, len(norm.base))
    text_starts, text_ends = compose(norm.starts, norm.ends, len(norm.text))
    return Normalised(
        original=original,
        base=norm.base,
        text=norm.text,
        base_starts=base_starts,
        base_ends=base_ends,
        starts=text_starts,
        ends=text_ends,
        notes=norm.notes,
    )
