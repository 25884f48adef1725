"""Stated ages in every shipped language: minors found, adults and durations not."""

from __future__ import annotations

from pathlib import Path

import pytest

from genguard.errors import ConfigError
from genguard.text.ages import AgeRules, read_age_file
from genguard.text.lexicon import Lexicon, builtin_lexicon_dir
from genguard.text.normalize import normalize

#: (text, age) per language: digits, number words, phrasings.
MINOR_AGES = [
    ("a 12 year old", 12), ("a twelve-year-old", 12), ("aged 9", 9), ("she is 12", 12),
    ("a girl who just turned 13", 13), ("a boy who looks twelve", 12), ("a 15 y/o", 15),
    ("a girl of fourteen", 14), ("a 13th birthday party", 13),
    ("une fille de 12 ans", 12), ("une fille de dix-sept ans", 17),
    ("un niño de 10 años", 10), ("una ragazza di 12 anni", 12), ("uma menina de 12 anos", 12),
    ("ein 14 jahre altes Mädchen", 14), ("ein 12-jähriges Mädchen", 12),
    ("een meisje van 12 jaar", 12), ("девочка 12 лет", 12), ("dziewczynka 12 lat", 12),
    ("12 yaşında bir kız", 12), ("12歳の少女", 12), ("十二岁女孩", 12), ("12살 소녀", 12),
    ("열두 살 소녀", 12), ("gadis 12 tahun", 12), ("mười hai tuổi", 12),
    ("فتاة عمرها ١٢ سنة", 12),
]  # fmt: skip
NOT_MINORS = [
    "a 30 year old woman", "she is 12 feet tall", "version 12", "a 1.12 release",
    "une fille de dix-huit ans", "a 25yo model", "12 colors", "10 years ago",
]  # fmt: skip


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon()


def minors(lexicon: Lexicon, text: str) -> list[str]:
    matches, _ = lexicon.find(normalize(text))
    return [m.term for m in matches if m.source == "rule" and m.category == "minor"]


@pytest.mark.parametrize(("text", "age"), MINOR_AGES)
def test_stated_minor_ages(lexicon: Lexicon, text: str, age: int) -> None:
    assert f"age {age}" in minors(lexicon, text)


@pytest.mark.parametrize("text", NOT_MINORS)
def test_adults_measures_and_durations_are_not_minor_ages(lexicon: Lexicon, text: str) -> None:
    assert minors(lexicon, text) == []


def test_babies_in_months_are_minors_whatever_the_number(lexicon: Lexicon) -> None:
    assert minors(lexicon, "an 18 months old baby")


def test_adult_ages_are_adult_evidence(lexicon: Lexicon) -> None:
    matches, _ = lexicon.find(normalize("a 30 year old woman"))
    assert [m.category for m in matches if m.source == "rule"] == ["adult"]


def test_every_shipped_language_has_age_rules() -> None:
    languages = {p.name.split(".")[1] for p in builtin_lexicon_dir().glob("ages.*.toml")}
    assert {"en", "fr", "es", "de", "ja", "it", "pt", "ru", "pl", "nl", "tr", "zh", "ko", "ar",
            "id", "vi"} <= languages  # fmt: skip


def test_bad_age_files_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "ages.xx.toml"
    bad.write_text('after = "not a list"\n')
    with pytest.raises(ConfigError, match="'after' must be a list"):
        read_age_file(bad)
    bad.write_text("[numbers]\nten = -1\n")
    with pytest.raises(ConfigError, match=r"numbers\.ten"):
        read_age_file(bad)
    bad.write_text("surprise = 1\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        read_age_file(bad)
    assert AgeRules([]).find(normalize("a 12 year old")) == []
