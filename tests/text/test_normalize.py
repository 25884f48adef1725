"""Normalisation undoes evasions and maps every character back to the original."""

from __future__ import annotations

import pytest

from genguard.text.normalize import homoglyph_table, normalize, normalize_term


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("NuDe", "nude"),
        ("nud\u0435", "nude"),  # Cyrillic ie
        ("ｎｕｄｅ", "nude"),  # full-width
        ("𝐧𝐮𝐝𝐞", "nude"),  # math bold
        ("n\u200bu\u200cd\u2060e", "nude"),  # zero-width
        ("nu\u00adde", "nude"),  # soft hyphen
        ("n̶u̶d̶e̶", "nude"),  # combining strike-through
        ("nud3", "nude"),
        ("p0rn", "porn"),
        ("s3x", "sex"),
        ("n.u.d.e", "nude"),
        ("n u d e", "nude"),
        ("n-u-d-e", "nude"),
        ("n_u_d_e", "nude"),
        ("nu.de", "nude"),
        ("p*0*r*n", "porn"),
        ("🇳🇺🇩🇪", "nude"),  # regional indicator letters
    ],
)
def test_evasions_are_undone(raw: str, expected: str) -> None:
    assert normalize(raw).text == expected


def test_plain_ascii_is_only_lowercased_and_maps_identically() -> None:
    norm = normalize("A Portrait of a Woman, 4K")
    assert norm.text == "a portrait of a woman, 4k"
    assert norm.notes == []
    assert norm.span(2, 10) == (2, 10)


def test_span_maps_back_to_the_users_own_characters() -> None:
    raw = "a photo, n\u200bu\u200bd\u0435 and p0rn"
    norm = normalize(raw)
    start = norm.text.index("nude")
    s, e = norm.span(start, start + 4)
    assert raw[s:e] == "n\u200bu\u200bd\u0435"
    start = norm.text.index("porn")
    s, e = norm.span(start, start + 4)
    assert raw[s:e] == "p0rn"


def test_separator_collapse_keeps_the_article_apart() -> None:
    assert normalize("a n-u-d-e woman").text == "a nude woman"
    assert normalize("a m u r d e r scene").text == "a murder scene"
    assert normalize("B a r a c k  O b a m a").text == "barack  obama"


def test_short_spaced_letters_are_left_alone() -> None:
    assert normalize("plan a b").text == "plan a b"


def test_notes_say_what_was_undone() -> None:
    notes = normalize("n\u200bu\u200bd\u0435 s3x").notes
    assert "removed 2 zero-width/invisible characters" in notes
    assert "folded 1 homoglyph" in notes
    assert any("leetspeak" in n for n in notes)


def test_numbers_with_units_are_not_leet() -> None:
    norm = normalize("4k 3d render, 1080p, 16yo, 35mm, 1990s")
    assert norm.text == "4k 3d render, 1080p, 16yo, 35mm, 1990s"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("7th_grade_girl", "7th_grade_girl"), ("16yo_model", "16yo_model"),
     ("4k_wallpaper", "4k_wallpaper"), ("s3x_girl", "sex_girl"), ("nud3_pic", "nude_pic")],
)  # fmt: skip
def test_underscore_joined_tags_are_read_part_by_part(raw: str, expected: str) -> None:
    """Each part of a tag keeps its own word rules: ordinals and ages are not leetspeak,
    leetspeak in a neighbouring part still is."""
    assert normalize(raw).text == expected


def test_digits_stay_digits_in_the_base_view() -> None:
    norm = normalize("a 13 year old, sch00l")
    assert "13 year old" in norm.base
    assert "sch00l" in norm.base
    assert "school" in norm.text


def test_kana_is_not_folded_and_half_width_kana_is_widened() -> None:
    assert normalize("ロリの絵").text == "ロリの絵"
    assert normalize("ﾛﾘ").text == "ロリ"  # half-width katakana -> full-width
    # ロ is listed as confusable with the CJK 口, but kana are never folded.
    assert "ロ" not in homoglyph_table()


def test_kana_voicing_mark_is_composed_not_dropped() -> None:
    assert normalize("か\u3099").text == "が"


def test_legit_cyrillic_word_with_non_lookalike_letters_is_kept() -> None:
    assert normalize("жизнь").text == "жизнь"


def test_mixed_script_word_is_folded_but_pure_foreign_word_is_kept() -> None:
    assert normalize("pоrn").text == "porn"  # Latin p + Cyrillic o
    assert normalize("мир").text == "мир"


def test_accents_are_stripped_from_latin_letters() -> None:
    assert normalize("niña Mädchen écolière").text == "nina madchen ecoliere"


def test_odd_unicode_is_survivable() -> None:
    # Lone surrogate (from a JSON "\ud800" escape), RTL override, emoji, combining marks.
    raw = "\ud800a \u202ecat\u202c 🐱 e\u0301"
    norm = normalize(raw)
    assert norm.text == "a cat 🐱 e"
    assert any("surrogate" in n for n in norm.notes)
    s, e = norm.span(0, len(norm.text))
    assert 0 <= s <= e <= len(raw)


def test_control_characters_are_removed_and_newlines_become_spaces() -> None:
    assert normalize("nu\x00de\nphoto\x07").text == "nude photo"


def test_term_normalisation_matches_text_normalisation() -> None:
    assert normalize_term("  Mädchen  ") == "madchen"
    assert normalize_term("self-harm") == "self-harm"
