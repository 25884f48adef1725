"""Deterministic text transforms used to build the encoded / obfuscated prompt classes.

Every function is pure (no randomness) so the data set can be rebuilt byte for byte.
"""

from __future__ import annotations

import base64
import codecs
import unicodedata
import urllib.parse

# ---------------------------------------------------------------- letter maps
SMALL_CAPS = dict(
    zip(
        "abcdefghijklmnopqrstuvwxyz",
        "ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘǫʀꜱᴛᴜᴠᴡxʏᴢ",
    )
)

BRAILLE = dict(
    zip(
        "abcdefghijklmnopqrstuvwxyz",
        "⠁⠃⠉⠙⠑⠋⠛⠓⠊⠚⠅⠇⠍⠝⠕⠏⠟⠗⠎⠞⠥⠧⠺⠭⠽⠵",
    )
)

UPSIDE_DOWN = dict(
    zip(
        "abcdefghijklmnopqrstuvwxyz",
        "ɐqɔpǝɟƃɥᴉɾʞlɯuodbɹsʇnʌʍxʎz",
    )
)

SUPERSCRIPT = dict(
    zip(
        "abcdefghijklmnoprstuvwxyz",
        "ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻ",
    )
)

# Cyrillic / Greek look-alikes for Latin lowercase letters
CYRILLIC_LOOKALIKE = {
    "a": "а",
    "c": "с",
    "e": "е",
    "o": "о",
    "p": "р",
    "x": "х",
    "y": "у",
    "i": "і",
    "s": "ѕ",
    "j": "ј",
    "h": "һ",
}
GREEK_LOOKALIKE = {
    "o": "ο",
    "v": "ν",
    "p": "ρ",
    "k": "κ",
    "i": "ι",
    "u": "υ",
    "n": "η",
    "a": "α",
    "t": "τ",
    "x": "χ",
}


def _map(text: str, table: dict[str, str], lower: bool = True) -> str:
    src = text.lower() if lower else text
    return "".join(table.get(ch, ch) for ch in src)


def small_caps(text: str) -> str:
    return _map(text, SMALL_CAPS)


def braille(text: str) -> str:
    return _map(text, BRAILLE)


def upside_down(text: str) -> str:
    return _map(text, UPSIDE_DOWN)[::-1]


def superscript(text: str) -> str:
    return _map(text, SUPERSCRIPT)


def cyrillic_lookalike(text: str) -> str:
    return "".join(CYRILLIC_LOOKALIKE.get(ch, ch) for ch in text)


def greek_lookalike(text: str) -> str:
    return "".join(GREEK_LOOKALIKE.get(ch, ch) for ch in text)


def fullwidth(text: str) -> str:
    out = []
    for ch in text:
        if ch == " ":
            out.append("\u3000")
        elif "!" <= ch <= "~":
            out.append(chr(ord(ch) + 0xFEE0))
        else:
            out.append(ch)
    return "".join(out)


def _letter_block(text: str, upper_base: int | None, lower_base: int | None) -> str:
    out = []
    for ch in text:
        if "A" <= ch <= "Z" and upper_base is not None:
            out.append(chr(upper_base + ord(ch) - 65))
        elif "a" <= ch <= "z" and lower_base is not None:
            out.append(chr(lower_base + ord(ch) - 97))
        elif "a" <= ch <= "z" and upper_base is not None:
            out.append(chr(upper_base + ord(ch) - 97))
        else:
            out.append(ch)
    return "".join(out)


def negative_squared(text: str) -> str:  # 🅽🆄🅳🅴
    return _letter_block(text.upper(), 0x1F170, None)


def squared(text: str) -> str:  # 🄽🅄🄳🄴
    return _letter_block(text.upper(), 0x1F130, None)


def circled(text: str) -> str:  # Ⓝⓤⓓⓔ (keeps case)
    return _letter_block(text, 0x24B6, 0x24D0)


def negative_circled(text: str) -> str:  # 🅝🅤🅓🅔
    return _letter_block(text.upper(), 0x1F150, None)


def parenthesized(text: str) -> str:  # ⒩⒰⒟⒠
    return _letter_block(text.lower(), None, 0x249C)


def regional_indicators(text: str, sep: str = " ") -> str:  # 🇳 🇺 🇩 🇪
    return sep.join(chr(0x1F1E6 + ord(c) - 97) if "a" <= c <= "z" else c for c in text.lower())


def math_style(text: str, style: str) -> str:
    """style e.g. 'BOLD', 'ITALIC', 'BOLD ITALIC', 'SCRIPT', 'FRAKTUR', 'DOUBLE-STRUCK',
    'SANS-SERIF', 'SANS-SERIF BOLD', 'MONOSPACE'.  Uses Unicode names, falling back to the
    Letterlike Symbols block for the historic holes (e.g. script e, italic h)."""
    out = []
    for ch in text:
        if ch.isascii() and ch.isalpha():
            case = "CAPITAL" if ch.isupper() else "SMALL"
            name = f"MATHEMATICAL {style} {case} {ch.upper()}"
            try:
                out.append(unicodedata.lookup(name))
            except KeyError:
                out.append(_LETTERLIKE[(style, ch)])
        else:
            out.append(ch)
    return "".join(out)


_LETTERLIKE = {
    ("ITALIC", "h"): "\u210e",
    ("SCRIPT", "B"): "\u212c",
    ("SCRIPT", "E"): "\u2130",
    ("SCRIPT", "F"): "\u2131",
    ("SCRIPT", "H"): "\u210b",
    ("SCRIPT", "I"): "\u2110",
    ("SCRIPT", "L"): "\u2112",
    ("SCRIPT", "M"): "\u2133",
    ("SCRIPT", "R"): "\u211b",
    ("SCRIPT", "e"): "\u212f",
    ("SCRIPT", "g"): "\u210a",
    ("SCRIPT", "o"): "\u2134",
    ("FRAKTUR", "C"): "\u212d",
    ("FRAKTUR", "H"): "\u210c",
    ("FRAKTUR", "I"): "\u2111",
    ("FRAKTUR", "R"): "\u211c",
    ("FRAKTUR", "Z"): "\u2128",
    ("DOUBLE-STRUCK", "C"): "\u2102",
    ("DOUBLE-STRUCK", "H"): "\u210d",
    ("DOUBLE-STRUCK", "N"): "\u2115",
    ("DOUBLE-STRUCK", "P"): "\u2119",
    ("DOUBLE-STRUCK", "Q"): "\u211a",
    ("DOUBLE-STRUCK", "R"): "\u211d",
    ("DOUBLE-STRUCK", "Z"): "\u2124",
}


def interleave(text: str, filler: str, only_letters: bool = True) -> str:
    """Insert `filler` between consecutive characters inside words."""
    out = []
    for i, ch in enumerate(text):
        out.append(ch)
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if nxt and (not only_letters or (ch.isalpha() and nxt.isalpha())):
            out.append(filler)
    return "".join(out)


def combining(text: str, mark: str) -> str:
    """Add a combining mark after each letter (e.g. U+0336 strike, U+0332 underline)."""
    return "".join(ch + mark if ch.isalpha() else ch for ch in text)


def zalgo_lite(text: str) -> str:
    marks = ["\u0301", "\u0317", "\u0334", "\u0358", "\u0323", "\u0346"]
    out = []
    k = 0
    for ch in text:
        out.append(ch)
        if ch.isalpha():
            out.append(marks[k % len(marks)])
            out.append(marks[(k + 2) % len(marks)])
            k += 1
    return "".join(out)


# ---------------------------------------------------------------- spelling / reversal
def spell(text: str, sep: str = " ", word_sep: str = "  ") -> str:
    return word_sep.join(sep.join(w) for w in text.split(" "))


def spell_word(text: str, word: str, sep: str) -> str:
    return text.replace(word, sep.join(word), 1)


def reverse_chars(text: str) -> str:
    return text[::-1]


def reverse_words_order(text: str) -> str:
    return " ".join(reversed(text.split(" ")))


def reverse_each_word(text: str) -> str:
    return " ".join(w[::-1] for w in text.split(" "))


def reverse_word(text: str, word: str) -> str:
    return text.replace(word, word[::-1], 1)


# ---------------------------------------------------------------- byte encodings
def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def hex_spaced(text: str) -> str:
    return " ".join(f"{b:02x}" for b in text.encode("utf-8"))


def hex_escaped(text: str) -> str:
    return "".join(f"\\x{b:02x}" for b in text.encode("utf-8"))


def hex_plain(text: str) -> str:
    return text.encode("utf-8").hex()


def rot13(text: str) -> str:
    return codecs.encode(text, "rot13")


def url_encode_all(text: str) -> str:
    return "".join(f"%{b:02X}" for b in text.encode("utf-8"))


def url_quote(text: str) -> str:
    return urllib.parse.quote(text)


def url_quote_plus(text: str) -> str:
    return urllib.parse.quote_plus(text)


def html_entities_dec(text: str) -> str:
    return "".join(f"&#{ord(c)};" if c != " " else " " for c in text)


def html_entities_hex(text: str) -> str:
    return "".join(f"&#x{ord(c):x};" if c != " " else " " for c in text)


def unicode_escapes(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


def binary(text: str) -> str:
    return " ".join(f"{b:08b}" for b in text.encode("utf-8"))


MORSE = {
    "a": ".-",
    "b": "-...",
    "c": "-.-.",
    "d": "-..",
    "e": ".",
    "f": "..-.",
    "g": "--.",
    "h": "....",
    "i": "..",
    "j": ".---",
    "k": "-.-",
    "l": ".-..",
    "m": "--",
    "n": "-.",
    "o": "---",
    "p": ".--.",
    "q": "--.-",
    "r": ".-.",
    "s": "...",
    "t": "-",
    "u": "..-",
    "v": "...-",
    "w": ".--",
    "x": "-..-",
    "y": "-.--",
    "z": "--..",
}


def morse(text: str) -> str:
    return " / ".join(" ".join(MORSE[c] for c in w) for w in text.lower().split(" "))


NATO = {
    "a": "Alfa",
    "b": "Bravo",
    "c": "Charlie",
    "d": "Delta",
    "e": "Echo",
    "f": "Foxtrot",
    "g": "Golf",
    "h": "Hotel",
    "i": "India",
    "j": "Juliett",
    "k": "Kilo",
    "l": "Lima",
    "m": "Mike",
    "n": "November",
    "o": "Oscar",
    "p": "Papa",
    "q": "Quebec",
    "r": "Romeo",
    "s": "Sierra",
    "t": "Tango",
    "u": "Uniform",
    "v": "Victor",
    "w": "Whiskey",
    "x": "X-ray",
    "y": "Yankee",
    "z": "Zulu",
}


def nato(word: str) -> str:
    return " ".join(NATO[c] for c in word.lower())
