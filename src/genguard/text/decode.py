"""Read what a prompt says under its wrapping: front-end syntax, markup, encodings, reversal.

People who want a filter to miss a request wrap it: A1111/ComfyUI syntax
(``(nude:1.3)``, ``<lora:someNakedStyleXL:0.8>``, ``embedding:gore_v2``, ``{a|b}``),
camelCase and hashtags (``#NudeBeachGirl``), HTML inside words (``m<u>u</u>rder``,
``&#110;ude``), percent-encoding (``n%75de``), base64 or hex payloads, reversed or rot13
text, upside-down letters (``ǝpnu``). Each decoder here turns the prompt into a
:class:`View`: the text as a reader would read it, and for every character the span of the
user's original text it came from, so evidence still quotes the user's own words.

The analyser matches every view and keeps the union of what they find, so a decoder that
misreads a benign prompt costs nothing unless its reading contains a listed term. Every
decoder is bounded in time and size (at most :data:`MAX_PAYLOADS` payloads of
:data:`MAX_PAYLOAD_CHARS` characters, one nesting level, linear scans), and decoders that
would be wasted on ordinary prompts are gated by a cheap test first.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import codecs
import html
import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

#: At most this many base64/hex payloads are decoded per prompt ...
MAX_PAYLOADS = 8
#: ... each at most this long (characters of the encoded form) ...
MAX_PAYLOAD_CHARS = 4096
#: ... and a decoded payload is decoded once more at most (base64 of base64).
MAX_PAYLOAD_DEPTH = 2


@dataclass
class View:
    """A reading of the prompt: text plus, per character, its span in the original."""

    text: str
    starts: Sequence[int]
    ends: Sequence[int]
    how: str = ""  # what was decoded (a note), empty for the prompt itself

    @classmethod
    def of(cls, text: str) -> View:
        """The prompt itself (identity maps as ranges: no per-character lists)."""
        return cls(text, range(len(text)), range(1, len(text) + 1))

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original span of ``text[start:end]``."""
        if not self.starts:
            return 0, 0
        start = min(start, len(self.starts) - 1)
        if end <= start:
            return self.starts[start], self.starts[start]
        return self.starts[start], self.ends[end - 1]


Edit = tuple[int, int, str]  # replace view.text[start:end] with the string


def rewrite(view: View, edits: Iterable[Edit], how: str) -> View:
    """Apply non-overlapping edits; a replacement maps to the whole span it replaced."""
    text, starts, ends = view.text, view.starts, view.ends
    out: list[str] = []
    out_starts: list[int] = []
    out_ends: list[int] = []
    pos = 0
    for start, end, replacement in sorted(edits):
        if start < pos:
            continue  # overlapping edit: the first one wins
        out.append(text[pos:start])
        out_starts.extend(starts[pos:start])
        out_ends.extend(ends[pos:start])
        if replacement:
            a = starts[start] if start < len(starts) else (ends[-1] if ends else 0)
            b = ends[end - 1] if end > start else a
            out.append(replacement)
            out_starts.extend([a] * len(replacement))
            out_ends.extend([b] * len(replacement))
        pos = end
    out.append(text[pos:])
    out_starts.extend(starts[pos:])
    out_ends.extend(ends[pos:])
    return View("".join(out), out_starts, out_ends, how)


# ---------------------------------------------------------------------------------------
# Front-end syntax (A1111, Forge, ComfyUI, dynamic prompts) and joined words
# ---------------------------------------------------------------------------------------

#: ``<lora:NAME:0.8>``, ``<lyco:NAME>``, ``<hypernet:NAME:1>``, ``<embedding:NAME>``.
_NETWORK_RE = re.compile(
    r"<\s*(?:lora|lyco|locon|hypernet|embedding|ti|lycoris)\s*:([^:<>]{1,200})(?::[^<>]{0,40})?>",
    re.I,
)
#: ComfyUI textual inversions: ``embedding:NAME`` or ``embedding:NAME.pt``.
_EMBEDDING_RE = re.compile(r"\bembedding:([\w.\-/\\]{1,200})", re.I)
#: Wildcards: ``__nsfw__``, ``__style/nude__``.
_WILDCARD_RE = re.compile(r"__([\w\-/]{1,100})__")
#: Weights and scheduling: ``:1.2)``, ``{2$$``, ``[a:b:0.5]`` -> separators.
_WEIGHT_RE = re.compile(r":\s*-?\d+(?:\.\d+)?\s*(?=[)\]>])|\d+(?:-\d+)?\$\$")
#: ``BREAK`` / ``AND`` keywords of A1111 are clause breaks.
_BREAK_RE = re.compile(r"\b(?:BREAK|AND)\b")
#: Joined words inside names and hashtags: camelCase, letters<->digits, snake_case.
_CAMEL_RE = re.compile(
    r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])"
)
_HASHTAG_RE = re.compile(r"(?<![&\w])#(\w{2,100})")
#: Runs of letters and digits (tokens), and the camelCase hint inside one.
_ALNUM_RUN_RE = re.compile(r"[A-Za-z0-9]+")
_CAMEL_HINT_RE = re.compile(r"[a-z][A-Z]")
#: Longer runs are not words joined by camelCase (base64, hashes): not split.
MAX_JOINED = 64
#: Anything front-end syntax could hide words in (case matters for camelCase).
_FRONTEND_HINT_RE = re.compile(r"[<{|$#_]|[Ee][Mm][Bb][Ee][Dd][Dd][Ii][Nn][Gg]:|[a-z][A-Z]|BREAK")


def _split_name(name: str) -> str:
    """``someNakedStyleXL_v2.safetensors`` -> ``some Naked Style XL v 2``."""
    name = re.sub(r"\.(?:safetensors|pt|ckpt|bin|pth)$", "", name, flags=re.I)
    name = name.replace("_", " ").replace("-", " ").replace(".", " ").replace("/", " ")
    return " " + _CAMEL_RE.sub(" ", name) + " "


def read_frontend(view: View) -> View | None:
    """Front-end syntax read as words: network and embedding names, wildcards, weights,
    ``BREAK``, dynamic-prompt braces, camelCase and hashtags; ``None`` when none is found.
    """
    text = view.text
    if _FRONTEND_HINT_RE.search(text) is None:
        return None
    edits: list[Edit] = []
    for regex in (_NETWORK_RE, _EMBEDDING_RE, _WILDCARD_RE, _HASHTAG_RE):
        for m in regex.finditer(text):
            edits.append((m.start(), m.end(), _split_name(m.group(1))))
    content = len(edits)  # edits that bring words out (names, tags), not punctuation
    for m in _WEIGHT_RE.finditer(text):
        edits.append((m.start(), m.end(), " "))
    for m in _BREAK_RE.finditer(text):
        edits.append((m.start(), m.end(), ", "))
    for m in re.finditer(r"[{}|\[\]]", text):
        edits.append((m.start(), m.end(), " , "))
        if m.group() == "|" and 0 < m.start() < len(text) - 1:
            # "{clothed|nude}": between letters, "|" would be read as leetspeak "l"
            content += int(text[m.start() - 1].isalnum() and text[m.start() + 1].isalnum())
    covered = _covered(edits)
    for m in _ALNUM_RUN_RE.finditer(text):
        token = m.group()
        if (
            len(token) <= MAX_JOINED
            and _CAMEL_HINT_RE.search(token)
            and _looks_joined(token)
            and not covered(m.start())
        ):
            edits.append((m.start(), m.end(), _CAMEL_RE.sub(" ", token)))
            content += 1
    if not content:
        return None  # only weights and brackets: the words are already there
    return rewrite(view, _non_overlapping(edits), "read front-end syntax")


#: ``(clothes:-1.0)``: a negative weight in the prompt itself steers away, like a negative
#: prompt does.
_NEGATIVE_WEIGHT_RE = re.compile(r"\(([^():]{1,200}):\s*-\s*\d*\.?\d+\s*\)")


def negated_phrases(text: str) -> list[tuple[int, str]]:
    """(offset, phrase) of phrases the prompt gives a negative weight (``(clothes:-1.0)``)."""
    return [(m.start(1), m.group(1)) for m in _NEGATIVE_WEIGHT_RE.finditer(text)]


def _looks_joined(token: str) -> bool:
    """camelCase words ("NudeBeachGirl"), not random-looking strings (base64, hashes)."""
    changes = sum(1 for a, b in itertools.pairwise(token) if a.islower() and b.isupper())
    return changes <= max(1, len(token) // 5) and sum(c.isdigit() for c in token) <= 2


def _covered(edits: list[Edit]) -> Callable[[int], bool]:
    """Whether a position falls inside one of the edits (binary search)."""
    spans = sorted((s, e) for s, e, _ in edits)
    starts = [s for s, _ in spans]

    def inside(pos: int) -> bool:
        k = bisect.bisect_right(starts, pos) - 1
        return k >= 0 and pos < spans[k][1]

    return inside


def _non_overlapping(edits: list[Edit]) -> list[Edit]:
    """Longest edit first at each position, later overlapping edits dropped."""
    out: list[Edit] = []
    end = -1
    for edit in sorted(edits, key=lambda e: (e[0], -e[1])):
        if edit[0] >= end:
            out.append(edit)
            end = edit[1]
    return out


# ---------------------------------------------------------------------------------------
# Markup and percent-encoding
# ---------------------------------------------------------------------------------------

_SCRIPT_RE = re.compile(r"<(script|style)\b[^>]{0,500}>.{0,2000}?</\1\s*>", re.I | re.S)
_COMMENT_RE = re.compile(r"<!--.{0,2000}?-->", re.S)
_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9-]{0,30}(?:\s[^<>]{0,500})?/?>")
_ENTITY_RE = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});?")
_PERCENT_RE = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_MARKUP_HINTS = ("<", "&", "*", "\\", "~", "`", "__")
#: Markdown emphasis inside or around words: **to**pless, ~~nu~~de, `se`x.
_MARKDOWN_RE = re.compile(r"(?<=\w)(?:\*\*|__|~~|`)|(?:\*\*|__|~~|`)(?=\w)")
#: Escaped code points: \x6e, \u006e, \U0001F600.
_ESCAPE_RE = re.compile(r"(?:\\x[0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8})+")


def strip_markup(view: View) -> View | None:
    """HTML tags (script/style with their content, comments) removed, entities decoded."""
    text = view.text
    if not any(marker in text for marker in _MARKUP_HINTS):
        return None
    edits: list[Edit] = []
    for m in _MARKDOWN_RE.finditer(text):
        edits.append((m.start(), m.end(), ""))
    for m in _ESCAPE_RE.finditer(text):
        decoded = _unescape(m.group())
        if decoded:
            edits.append((m.start(), m.end(), decoded))
    for regex in (_SCRIPT_RE, _COMMENT_RE, _TAG_RE):
        for m in regex.finditer(text):
            edits.append((m.start(), m.end(), ""))
    for m in _ENTITY_RE.finditer(text):
        decoded = html.unescape(m.group())
        if decoded != m.group():
            edits.append((m.start(), m.end(), decoded))
    if not edits:
        return None
    return rewrite(view, _non_overlapping(edits), "removed markup")


def _unescape(escaped: str) -> str:
    """``\\x6e\\x75`` -> ``nu`` (bytes as UTF-8), ``\\u006e`` -> ``n``."""
    if escaped.startswith("\\x"):
        data = bytes.fromhex(escaped.replace("\\x", ""))
        return data.decode("utf-8", "replace")
    out = []
    for part in re.findall(r"\\u([0-9A-Fa-f]{4})|\\U([0-9A-Fa-f]{8})", escaped):
        code = int(part[0] or part[1], 16)
        if code <= 0x10FFFF:
            out.append(chr(code))
    return "".join(out)


def _from_hex(digits: str) -> str:
    return bytes.fromhex(digits).decode("utf-8", "replace")


def percent_decode(view: View) -> View | None:
    """``n%75de`` -> ``nude`` (runs of %XX bytes decoded as UTF-8); in text without
    spaces, ``+`` reads as a space (``naked+man+in+the+shower``)."""
    text = view.text
    edits: list[Edit] = []
    if "%" in text:
        edits = [
            (
                m.start(),
                m.end(),
                bytes.fromhex(m.group().replace("%", "")).decode("utf-8", "replace"),
            )
            for m in _PERCENT_RE.finditer(text)
        ]
    if "+" in text and " " not in text.strip():
        edits.extend((m.start(), m.end(), " ") for m in re.finditer(r"\+", text))
    return rewrite(view, edits, "decoded percent-encoding") if edits else None


_NATO = {
    "alfa": "a", "alpha": "a", "bravo": "b", "charlie": "c", "delta": "d", "echo": "e",
    "foxtrot": "f", "golf": "g", "hotel": "h", "india": "i", "juliett": "j", "juliet": "j",
    "kilo": "k", "lima": "l", "mike": "m", "november": "n", "oscar": "o", "papa": "p",
    "quebec": "q", "romeo": "r", "sierra": "s", "tango": "t", "uniform": "u", "victor": "v",
    "whiskey": "w", "whisky": "w", "xray": "x", "x-ray": "x", "yankee": "y", "zulu": "z",
}  # fmt: skip
_NATO_RE = re.compile(
    r"(?<![\w-])(?:"
    + "|".join(sorted(map(re.escape, _NATO), key=len, reverse=True))
    + r")(?![\w-])",
    re.I,
)


def nato_view(view: View) -> View | None:
    """Runs of 3+ NATO-alphabet words read as the word they spell ("Sierra Echo X-ray")."""
    text = view.text
    matches = list(_NATO_RE.finditer(text))
    if len(matches) < 3:
        return None
    edits: list[Edit] = []
    run: list[re.Match[str]] = []

    def flush() -> None:
        if len(run) >= 3:
            word = "".join(_NATO[m.group().lower()] for m in run)
            edits.append((run[0].start(), run[-1].end(), word))

    for m in matches:
        if run and text[run[-1].end() : m.start()].strip(" ,-") != "":
            flush()
            run = []
        run.append(m)
    flush()
    return rewrite(view, edits, "read NATO spelling") if edits else None


def read_view(text: str) -> View | None:
    """The prompt read through front-end syntax, markup and percent-encoding, or None
    when none of them is present (the common case costs three substring tests)."""
    view = View.of(text)
    changed = False
    notes = []
    for step in (read_frontend, strip_markup, percent_decode, nato_view):
        result = step(view)
        if result is not None and result.text != view.text:
            view, changed = result, True
            notes.append(result.how)
    if not changed:
        return None
    view.how = ", ".join(notes)
    return view


# ---------------------------------------------------------------------------------------
# Payloads: base64 and hex
# ---------------------------------------------------------------------------------------

_B64_RE = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{12,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX_RE = re.compile(r"(?<![0-9A-Fa-f])(?:0x)?(?:[0-9A-Fa-f]{2}[\s:]?){6,}(?![0-9A-Fa-f])")


def _printable_text(data: bytes) -> str | None:
    """``data`` as text when it reads as text (UTF-8, mostly printable, has letters)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text or sum(c.isprintable() or c in "\n\t" for c in text) < 0.9 * len(text):
        return None
    letters = sum(c.isalpha() for c in text)
    return text if letters >= 3 and letters >= 0.5 * len(text.replace(" ", "")) else None


def _decode_b64(blob: str) -> str | None:
    body = blob.rstrip("=")
    if len(body) % 4 == 1 or not any(c.isdigit() or c.isupper() or c in "+/=" for c in blob):
        return None  # plain long lowercase words are not payloads
    padded = body + "=" * (-len(body) % 4)
    try:
        if "-" in body or "_" in body:
            data = base64.urlsafe_b64decode(padded)
        else:
            data = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _printable_text(data)


def _decode_hex(blob: str) -> str | None:
    digits = re.sub(r"[\s:]|0x", "", blob)
    if len(digits) % 2 or digits.isdigit():
        return None
    try:
        return _printable_text(bytes.fromhex(digits))
    except ValueError:
        return None


def payload_views(view: View, depth: int = 1) -> list[View]:
    """Decoded base64/hex payloads, each a view mapped onto its encoded span."""
    out: list[View] = []
    text = view.text
    for regex, decoder, kind in ((_B64_RE, _decode_b64, "base64"), (_HEX_RE, _decode_hex, "hex")):
        for m in regex.finditer(text):
            if len(out) >= MAX_PAYLOADS:
                return out
            blob = m.group().strip()
            if len(blob) > MAX_PAYLOAD_CHARS:
                continue
            decoded = decoder(blob)
            if decoded is None:
                continue
            a, b = view.span(m.start(), m.start() + len(blob))
            decoded_view = View(decoded, [a] * len(decoded), [b] * len(decoded), f"decoded {kind}")
            out.append(decoded_view)
            if depth < MAX_PAYLOAD_DEPTH:
                out.extend(payload_views(decoded_view, depth + 1)[: MAX_PAYLOADS - len(out)])
    return out


# ---------------------------------------------------------------------------------------
# Upside-down, reversed and rot13 text
# ---------------------------------------------------------------------------------------

#: Upside-down letters -> the letter they stand for (the text is also reversed).
_UPSIDE_DOWN = {
    "ɐ": "a", "q": "b", "ɔ": "c", "p": "d", "ǝ": "e", "ə": "e", "ɟ": "f", "ƃ": "g",
    "ᵷ": "g", "ɥ": "h", "ᴉ": "i", "ı": "i", "ɾ": "j", "ſ": "j", "ʞ": "k", "ꞁ": "l",
    "ɯ": "m", "u": "n", "o": "o", "d": "p", "b": "q", "ɹ": "r", "s": "s", "ʇ": "t",
    "n": "u", "ʌ": "v", "ʍ": "w", "x": "x", "ʎ": "y", "z": "z", "∀": "a", "Ɔ": "c",
    "Ǝ": "e", "Ⅎ": "f", "⅁": "g", "ſ̣": "j", "⋊": "k", "˥": "l", "W": "m", "Ԁ": "p",
    "Ꝺ": "d", "Ɫ": "l", "⊥": "t", "∩": "u", "Λ": "v", "M": "w", "⅄": "y", "¡": "i",
    "¿": "?", "˙": ".", "'": ",", ",": "'",
}  # fmt: skip
_UPSIDE_DOWN_MARKERS = set("ɐǝɟƃɥᴉɾʞɯɹʇʌʍʎ∀ƆƎℲ⅁⋊˥Ԁ⊥∩Λ⅄")


def upside_down_view(text: str) -> View | None:
    """``ǝpnu`` -> ``nude``: flipped letters mapped back and the order reversed."""
    if text.isascii() or sum(c in _UPSIDE_DOWN_MARKERS for c in text) < 2:
        return None
    n = len(text)
    chars = [_UPSIDE_DOWN.get(c, c.lower()) for c in reversed(text)]
    starts = [n - 1 - i for i in range(n)]
    ends = [s + 1 for s in starts]
    return View("".join(chars), starts, ends, "read upside-down text")


def reversed_view(text: str) -> View:
    n = len(text)
    starts = [n - 1 - i for i in range(n)]
    return View(text[::-1], starts, [s + 1 for s in starts], "read reversed text")


def rot13_view(text: str) -> View:
    return View(
        codecs.encode(text, "rot13"), range(len(text)), range(1, len(text) + 1), "read rot13 text"
    )


#: Frequent English words of image prompts: a prompt whose words read as these only when
#: reversed (or rot13-shifted) was written that way on purpose.
_COMMON_WORDS_TEXT = (
    "the and with of in on a an at to for from by her his their its is are was "
    "wearing woman women man men girl girls boy boys person people photo picture "
    "image portrait painting drawing style art realistic photorealistic detailed "
    "high quality best masterpiece beautiful young old body face hair eyes standing "
    "sitting lying posing naked nude sexy hot body bed room beach street night "
    "light dark red blue black white killing dead blood murder gore knife gun shot "
    "cut cutting suicide kill body bodies lady guy child kid teen model showing "
    "without clothes no full view close up"
)
COMMON_WORDS = frozenset(_COMMON_WORDS_TEXT.split())

_TOKEN_RE = re.compile(r"[A-Za-z]{2,}")


@lru_cache(maxsize=8)
def _known_words(strong_terms: frozenset[str]) -> tuple[frozenset[str], ...]:
    """(known words, known words reversed, known words in rot13), built once per lexicon:
    testing a prompt's words against pre-transformed sets costs one lookup per word."""
    words = COMMON_WORDS | strong_terms
    reversed_words = frozenset(w[::-1] for w in words if w[::-1] != w)
    rot13_words = frozenset(codecs.encode(w, "rot13") for w in words)
    return words, reversed_words, rot13_words


def transformed_readings(text: str, strong_terms: frozenset[str]) -> list[View]:
    """Reversed and rot13 readings, when the prompt's words only make sense that way.

    Gate: more of the prompt's words are frequent prompt words or strong lexicon terms
    when read reversed (or rot13) than as written. One set lookup per word, so ordinary
    prompts pay almost nothing.
    """
    tokens = _TOKEN_RE.findall(text.lower())
    if not tokens:
        return []
    known, known_reversed, known_rot13 = _known_words(strong_terms)
    forward = sum(t in known for t in tokens)
    views = []
    backward = sum(t in known_reversed for t in tokens)
    # One reversed strong term among ordinary words ("a edun woman") is enough too.
    flipped_term = any(t[::-1] in strong_terms and t not in known for t in tokens)
    if backward > forward or flipped_term:
        views.append(reversed_view(text))
    shifted = sum(t in known_rot13 for t in tokens)
    if shifted > forward:
        views.append(rot13_view(text))
    return views
