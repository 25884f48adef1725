"""Stated ages, in every shipped language: "12 year old", "aged 11", "douze ans", "12岁".

A stated age under 18 is ``minor`` evidence at full weight. How each language writes an
age is data, not code (``data/lexicons/ages.<lang>.toml``), so adding a language is adding
a file:

```toml
language = "it"
after = ["anni", "anno"]        # unit words that follow the number ("12 anni")
before = ["eta di"]             # words that precede it ("eta di 12")
before_bare = []                # like before, but only when the number ends the clause
after_any = ["mesi"]            # units where any number is a child ("18 mesi": months)
attached = false                # the unit attaches without a space (12岁, 12살)
[numbers]                       # number words 1..17, inflected forms included
dodici = 12
```

Rules are read on the digit-preserving ``base`` view (lowercase, accents stripped,
Arabic-Indic and full-width digits already ASCII). Why a bare-number list: "she is 12" is
an age, "she is 12 feet tall" is not, so ``before_bare`` words only count when nothing
but punctuation or the end follows the number.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from genguard.decision import Match
from genguard.errors import ConfigError
from genguard.text.normalize import Normalised, normalize

#: Stated ages below this are minors.
ADULT_AGE = 18
_KEYS = {
    "language", "after", "before", "before_bare", "after_any", "attached", "numbers", "around",
}  # fmt: skip
_CJK_NUMERALS = "〇零一二三四五六七八九十两兩"
_WORDS_RE = re.compile(r"[^\W\d_]+")
_DIGIT_RE = re.compile(r"\d")
_SPLIT_RE = re.compile(r"[\s-]+")


@dataclass
class AgeLanguage:
    """How one language states ages (one ``ages.<lang>.toml``)."""

    language: str
    numbers: dict[str, int] = field(default_factory=dict)
    after: list[str] = field(default_factory=list)
    before: list[str] = field(default_factory=list)
    before_bare: list[str] = field(default_factory=list)
    after_any: list[str] = field(default_factory=list)
    attached: bool = False
    #: (word before, unit after) pairs that state an age only together: Dutch "van 12 jaar"
    #: ("12 jaar" alone is also a duration).
    around: list[tuple[str, str]] = field(default_factory=list)


def read_age_file(path: Path) -> AgeLanguage:
    """Parse and check one ``ages.<lang>.toml`` (errors name the file and the key)."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read age rules: {exc}") from exc
    unknown = set(data) - _KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(_KEYS)}")
    lang = AgeLanguage(language=str(data.get("language", path.name.split(".")[1])))
    for key in ("after", "before", "before_bare", "after_any"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{path}: {key!r} must be a list of non-empty strings")
        setattr(lang, key, value)
    around = data.get("around", [])
    if not isinstance(around, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(w, str) and w for w in p)
        for p in around
    ):
        raise ConfigError(f"{path}: 'around' must be a list of [before, after] word pairs")
    lang.around = [(a, b) for a, b in around]
    attached = data.get("attached", False)
    if not isinstance(attached, bool):
        raise ConfigError(f"{path}: 'attached' must be true or false")
    lang.attached = attached
    numbers = data.get("numbers", {})
    if not isinstance(numbers, dict):
        raise ConfigError(f"{path}: [numbers] must be a table of word = number")
    for word, value in numbers.items():
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 200:
            raise ConfigError(f"{path}: numbers.{word} must be an integer 0..200")
        key = _base_term(word)
        if key:
            lang.numbers[key] = value
    return lang


def _base_term(text: str) -> str:
    """A rule word as the ``base`` view reads it (digits and punctuation kept)."""
    return " ".join(normalize(text).base.split())


def _unit_pattern(unit: str) -> str:
    """Regex for a unit phrase: words joined by spaces/hyphens, ``*`` = any word ending."""
    stem = unit.endswith("*")
    words = _base_term(unit.rstrip("*")).split()
    if not words:
        return ""
    body = r"[\s-]*".join(re.escape(w) for w in words)
    return body + (r"\w*" if stem else "")


def _alternation(items: Iterable[str]) -> str:
    parts = sorted({p for p in items if p}, key=len, reverse=True)
    return "|".join(parts)


class AgeRules:
    """All languages' age rules compiled into a few regexes."""

    def __init__(self, languages: Sequence[AgeLanguage]) -> None:
        self.languages = list(languages)
        self.numbers: dict[str, int] = {}
        for lang in self.languages:
            for word, value in lang.numbers.items():
                self.numbers.setdefault(word, value)
        spaced = _alternation(
            _unit_pattern(u) for lang in self.languages if not lang.attached for u in lang.after
        )
        attached = _alternation(
            _unit_pattern(u) for lang in self.languages if lang.attached for u in lang.after
        )
        anyage = _alternation(_unit_pattern(u) for lang in self.languages for u in lang.after_any)
        before = _alternation(_unit_pattern(u) for lang in self.languages for u in lang.before)
        bare = _alternation(_unit_pattern(u) for lang in self.languages for u in lang.before_bare)
        tail = r"(?![^\W\d_])"
        # Each pattern is tried only right after (or before) a number found by one scan,
        # which keeps long alternations of unit words cheap.
        self._after = re.compile(rf"[\s-]*(?:{spaced}){tail}") if spaced else None
        self._attached = re.compile(rf"\s*(?:{attached})") if attached else None
        self._any = re.compile(rf"[\s-]*(?:{anyage}){tail}") if anyage else None
        self._before = re.compile(rf"(?<!\w)(?:{before})[\s:=-]*\Z") if before else None
        self._bare = re.compile(rf"(?<!\w)(?:{bare})\s+\Z") if bare else None
        self._around = [
            (
                re.compile(rf"(?<!\w){_unit_pattern(a)}\s+\Z"),
                re.compile(rf"[\s-]*{_unit_pattern(b)}{tail}"),
            )
            for lang in self.languages
            for a, b in lang.around
        ]
        self._bare_end = re.compile(r"\s*(?:$|[,.;!?)\]]|(?:and|with|but|wearing|yet)\b|&)")
        cjk = f"[{_CJK_NUMERALS}]{{1,3}}"
        self._digits_re = re.compile(rf"\d{{1,3}}(?!\d)|{cjk}")
        # Number words of several words ("dix-huit", "twenty one") are read whole first,
        # so "dix-huit ans" (18) is not read as "huit ans" (8).
        self._compounds = {
            tuple(_SPLIT_RE.split(w)): w for w in self.numbers if _SPLIT_RE.search(w)
        }
        compound = _alternation(
            r"[\s-]+".join(re.escape(p) for p in parts) for parts in self._compounds
        )
        lead = rf"(?<!\w)(?:{compound})(?!\w)|" if compound else ""
        self._numbers_re = re.compile(rf"{lead}\d{{1,3}}(?!\d)|{cjk}|[^\W\d_]+")
        self._hint_words = set(self.numbers)

    @classmethod
    def from_dirs(cls, directories: Sequence[Path]) -> AgeRules:
        return cls([read_age_file(p) for d in directories for p in sorted(d.glob("ages.*.toml"))])

    def value(self, number: str) -> int | None:
        if number.isdigit():
            return int(number)
        if number in self.numbers:
            return self.numbers[number]
        return _cjk_value(number)

    def find(self, norm: Normalised) -> list[Match]:
        """``minor`` matches for stated ages under :data:`ADULT_AGE`, ``adult`` ones for
        the others ("a 30 year old woman": evidence against weak youth cues).

        Underscores read as spaces (one character for one, so spans stay valid): tag-style
        prompts write ages as ``12_year_old`` or ``aged_11``."""
        base = norm.base.replace("_", " ")
        # Cheap gate: a number word, a digit or a CJK numeral must be present.
        has_words = not self._hint_words.isdisjoint(_WORDS_RE.findall(base))
        cjk = not base.isascii() and any(c in _CJK_NUMERALS for c in base)
        if not (has_words or cjk or _DIGIT_RE.search(base)):
            return []
        out: list[Match] = []
        previous_end: int | None = None
        scanner = self._numbers_re if has_words else self._digits_re
        for m in scanner.finditer(base):
            number = m.group()
            follows_number = (
                previous_end is not None and base[previous_end : m.start()].strip(" -") == ""
            )
            is_number = (
                number.isdigit()
                or number in self.numbers
                or number[0] in _CJK_NUMERALS
                or " " in number
                or "-" in number
            )
            if is_number:
                previous_end = m.end()
                if follows_number and not number.isdigit():
                    continue  # the tail of a compound number: "dix-huit" is not "huit"
            if " " in number or "-" in number:
                number = self._compounds[tuple(_SPLIT_RE.split(number))]
            if not (number.isdigit() or number in self.numbers or number[0] in _CJK_NUMERALS):
                continue
            age = self.value(number)
            if age is None:
                continue
            start, end = m.start(), m.end()
            before = base[start - 1] if start else " "
            if number.isdigit() and ((before.isascii() and before.isalnum()) or before in ".,"):
                continue  # part of a longer number or word (1.5, v12)
            stated = self._stated(base, start, end, age)
            if stated is None:
                continue
            span, baby = stated
            a, b = norm.base_span(*span)
            out.append(
                Match(
                    category="minor" if baby or age < ADULT_AGE else "adult",
                    term=f"age {age}",
                    start=a,
                    end=b,
                    quote=norm.original[a:b],
                    score=1.0,
                    source="rule",
                )
            )
        return out

    def _stated(
        self, base: str, start: int, end: int, age: int
    ) -> tuple[tuple[int, int], bool] | None:
        """(span of the age statement around ``start:end``, whether it is in months, weeks
        or days: a baby whatever the number), or None."""
        if self._any is not None and (m := self._any.match(base, end)):
            return (start, m.end()), True
        span = self._span(base, start, end)
        return (span, False) if span is not None else None

    def _span(self, base: str, start: int, end: int) -> tuple[int, int] | None:
        for pattern in (self._after, self._attached):
            if pattern is not None and (m := pattern.match(base, end)):
                return start, m.end()
        head = base[max(0, start - 40) : start]
        if self._before is not None and (m := self._before.search(head)):
            return start - (len(head) - m.start()), end
        if (
            self._bare is not None
            and (m := self._bare.search(head))
            and self._bare_end.match(base, end)
        ):
            return start - (len(head) - m.start()), end
        for before, after in self._around:
            if (m := before.search(head)) and (unit := after.match(base, end)):
                return start - (len(head) - m.start()), unit.end()
        return None


def _cjk_value(text: str) -> int | None:
    """Value of a CJK numeral up to 99 (十二 = 12, 二十 = 20), else None."""
    digits = {"〇": 0, "零": 0, "一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5,
              "六": 6, "七": 7, "八": 8, "九": 9}  # fmt: skip
    if not text or any(c not in digits and c != "十" for c in text):
        return None
    if "十" not in text:
        return digits[text] if len(text) == 1 else None
    tens, _, ones = text.partition("十")
    high = digits.get(tens) if tens else 1
    low = digits.get(ones) if ones else 0
    if high is None or low is None:
        return None
    return high * 10 + low
