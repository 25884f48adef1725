"""Lexicon matching: word boundaries, allow list, languages, ages, user extensions."""

from __future__ import annotations

from pathlib import Path

import pytest

from genguard.errors import ConfigError
from genguard.text.lexicon import Lexicon, parse_lexicon_line
from genguard.text.normalize import normalize


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon()


def found(lexicon: Lexicon, text: str) -> dict[str, float]:
    """Best weight per category for ``text``."""
    matches, _ = lexicon.find(normalize(text))
    out: dict[str, float] = {}
    for m in matches:
        out[m.category] = max(out.get(m.category, 0.0), m.score)
    return out


@pytest.mark.parametrize(
    "text",
    [
        "Scunthorpe United",
        "Essex and Middlesex",
        "a cocktail bar",
        "breast cancer awareness poster",
        "chicken breast recipe",
        "breastfeeding awareness week",
        "baby bath toys",
        "a kid goat on a farm",
        "shooting star over the sea",
        "a naked mole rat",
        "a minor chord on a piano",
        "Nacktschnecke im Garten",  # German: a slug, not a nude picture
        "ロリポップ キャンディ",  # lollipop in katakana starts with ロリ
        "El Niño weather map",
        "assassin on a rooftop",
    ],
)
def test_benign_phrases_with_tricky_words_do_not_match(lexicon: Lexicon, text: str) -> None:
    assert found(lexicon, text) == {}


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("a nude woman", "sexual"),
        ("une femme nue", "sexual"),
        ("mujer desnuda", "sexual"),
        ("nackte Frau", "sexual"),
        ("ein Nacktbild", "sexual"),  # German compound via prefix term
        ("ヌードの女性", "sexual"),  # kana as substring
        ("hentai art", "sexual"),
        ("a child in a park", "minor"),
        ("kids on a beach", "minor"),  # plural
        ("une petite fille", "minor"),
        ("niños jugando", "minor"),
        ("ein kleines Mädchen", "minor"),
        ("小学生の女の子", "minor"),
        ("ロリ キャラ", "minor"),
        ("loli", "minor"),
        ("shota", "minor"),
        ("a schoolgirl", "minor"),
        ("underage", "minor"),
        ("a decapitated soldier", "violence"),
        ("self-harm scars", "self_harm"),
        ("a swastika flag", "hate"),
    ],
)
def test_listed_terms_match_in_every_language(lexicon: Lexicon, text: str, category: str) -> None:
    assert found(lexicon, text).get(category, 0.0) >= 0.5


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("a 13 year old", 13),
        ("15yo", 15),
        ("a 14 y/o", 14),
        ("12-year-old boy", 12),
        ("twelve-year-old", 12),
        ("aged 9", 9),
        ("une fille de 12 ans", 12),
        ("un niño de 10 años", 10),
        ("ein 14 jahre altes Mädchen", 14),
        ("12歳", 12),
    ],
)
def test_stated_ages_under_18_are_minor(lexicon: Lexicon, text: str, age: int) -> None:
    matches, _ = lexicon.find(normalize(text))
    assert any(m.term == f"age {age}" and m.category == "minor" for m in matches)


@pytest.mark.parametrize("text", ["a 25 year old woman", "30yo man", "18 years old", "4k 1080p"])
def test_adult_ages_and_numbers_are_not_minor(lexicon: Lexicon, text: str) -> None:
    assert "minor" not in found(lexicon, text)


def test_repeated_letters_match_but_do_not_merge_words(lexicon: Lexicon) -> None:
    matches, notes = lexicon.find(normalize("nuuuuude"))
    assert [m.term for m in matches] == ["nude"]
    assert notes == ["matched 1 word(s) with repeated letters"]
    # "teeen" stretches "teen"; but "kid" must not match "kidd" only by collapsing.
    assert "minor" in found(lexicon, "teeeen")


def test_match_quotes_original_text_even_when_obfuscated(lexicon: Lexicon) -> None:
    raw = "photo of a N.U.D.3 person"
    matches, _ = lexicon.find(normalize(raw))
    (m,) = matches
    assert m.quote == "N.U.D.3"
    assert raw[m.start : m.end] == m.quote


def test_one_match_per_span_keeps_the_strongest_term(lexicon: Lexicon) -> None:
    matches, _ = lexicon.find(normalize("kids"))
    assert len(matches) == 1


def test_user_lexicon_dir_extends_terms_and_allow_list(tmp_path: Path) -> None:
    (tmp_path / "violence.custom.txt").write_text("# mine\nfoobarize | 0.9\n", "utf-8")
    (tmp_path / "allow.txt").write_text("foobarize the widget | violence\n", "utf-8")
    lexicon = Lexicon([tmp_path])
    assert found(lexicon, "please foobarize him") == {"violence": 0.9}
    assert found(lexicon, "foobarize the widget") == {}


def test_bad_lexicon_files_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "nonsense.txt").write_text("word\n", "utf-8")
    with pytest.raises(ConfigError, match="unknown prompt category"):
        Lexicon([tmp_path])
    with pytest.raises(ConfigError, match="does not exist"):
        Lexicon([tmp_path / "missing"])
    with pytest.raises(ConfigError, match="not a number"):
        parse_lexicon_line("word | heavy", "sexual", "x.txt:1")
    with pytest.raises(ConfigError, match="must be in"):
        parse_lexicon_line("word | 1.5", "sexual", "x.txt:1")


@pytest.mark.parametrize(
    ("text", "term"), [("p**n", "porn"), ("n*de", "nude"), ("d3sn*da", "desnuda"), ("s*x", "sex")]
)
def test_masked_letters_match_listed_words_of_the_same_length(
    lexicon: Lexicon, text: str, term: str
) -> None:
    matches, notes = lexicon.find(normalize(f"a {text} photo"))
    assert [(m.term, m.quote) for m in matches] == [(term, text)]
    assert notes == ["matched 1 masked word(s)"]


@pytest.mark.parametrize("text", ["***", "f*** this", "a *** rated film", "best*seller", "a*b"])
def test_mostly_masked_or_unlisted_words_do_not_match(lexicon: Lexicon, text: str) -> None:
    assert found(lexicon, text) == {}
