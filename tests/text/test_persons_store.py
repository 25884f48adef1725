"""Protected persons: registry matching and the SQLAlchemy store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from genguard.errors import ConfigError
from genguard.store import open_store
from genguard.text.normalize import normalize
from genguard.text.persons import (
    Person,
    PersonRegistry,
    add_person,
    list_persons,
    remove_person,
)


@pytest.fixture(scope="module")
def registry() -> PersonRegistry:
    return PersonRegistry([Person("Jane Example", ("J. Example",))], builtin=False)


def names(registry: PersonRegistry, text: str) -> list[tuple[str, str]]:
    return [(m.term, m.quote) for m in registry.find(normalize(text))]


@pytest.mark.parametrize(
    ("text", "quote"),
    [
        ("a portrait of Jane Example", "Jane Example"),
        ("JANE   EXAMPLE at a desk", "JANE   EXAMPLE"),
        ("JaneExample on stage", "JaneExample"),  # spacing removed
        ("Jane Exampel on stage", "Jane Exampel"),  # typo
        ("J a n e  E x a m p l e", "J a n e  E x a m p l e"),  # spelled out
        ("Jаne Exаmple", "Jаne Exаmple"),  # Cyrillic a
        ("J. Example", "J. Example"),  # alias
    ],
)
def test_names_match_despite_typos_spacing_and_lookalikes(
    registry: PersonRegistry, text: str, quote: str
) -> None:
    assert names(registry, text) == [("Jane Example", quote)]


@pytest.mark.parametrize("text", ["a plain example", "Jane went home", "an example of jam"])
def test_unrelated_text_does_not_match(registry: PersonRegistry, text: str) -> None:
    assert names(registry, text) == []


def test_match_is_real_person_with_score(registry: PersonRegistry) -> None:
    (exact,) = registry.find(normalize("Jane Example"))
    (fuzzy,) = registry.find(normalize("Jane Exampel"))
    assert exact.category == "real_person" and exact.source == "person"
    assert exact.score == 1.0
    assert 0.8 <= fuzzy.score < 1.0


def test_builtin_examples_load_unless_disabled() -> None:
    assert names(PersonRegistry(), "Barack Obama waving") == [("Barack Obama", "Barack Obama")]
    assert names(PersonRegistry(builtin=False), "Barack Obama waving") == []
    # Common words that are also names are at most weak evidence (below every hard rule).
    weak = PersonRegistry().find(normalize("a swift river and a trump card"))
    assert all(m.score < 0.5 for m in weak)
    assert names(PersonRegistry(), "a tailor shifting gears") == []


def test_store_round_trip_in_sqlite_wal(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "genguard.db"
    with open_store(db) as store:
        add_person(store, "Jane Example", ["J. Example"])
        add_person(store, "Jane Example", ["Janey"])  # merges aliases
        add_person(store, "John Sample")
        people = list_persons(store)
        assert [p.name for p in people] == ["Jane Example", "John Sample"]
        assert people[0].aliases == ("J. Example", "Janey")
        assert remove_person(store, "janey")  # by alias, any case
        assert not remove_person(store, "Nobody")
        assert [p.name for p in list_persons(store)] == ["John Sample"]
        registry = PersonRegistry.from_store(store, builtin=False)
        assert names(registry, "John Sample smiling") == [("John Sample", "John Sample")]
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_store_accepts_sqlalchemy_urls(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'x.db'}") as store:
        add_person(store, "Ann Other")
        assert [p.name for p in list_persons(store)] == ["Ann Other"]
    assert (tmp_path / "x.db").is_file()


def test_store_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        open_store("nosuchdialect://host/db")
    with open_store(tmp_path / "y.db") as store:
        with pytest.raises(ConfigError, match="non-empty name"):
            add_person(store, "   ")
        with pytest.raises(ConfigError, match="non-empty name"):
            add_person(store, "\u200b")


def test_operators_can_exclude_and_restore_builtin_persons(tmp_path: Path) -> None:
    from genguard.text.persons import exclude_person, include_person, list_exclusions

    with open_store(tmp_path / "g.db") as store:
        assert names(PersonRegistry.from_store(store), "Tom Hanks smiling")
        exclude_person(store, "Tom Hanks")
        assert list_exclusions(store) == ["Tom Hanks"]
        assert names(PersonRegistry.from_store(store), "Tom Hanks smiling") == []
        assert names(PersonRegistry.from_store(store), "Taylor Swift smiling")  # others stay
        assert include_person(store, "tom hanks")
        assert names(PersonRegistry.from_store(store), "Tom Hanks smiling")
        with pytest.raises(ConfigError, match="not in the built-in list"):
            exclude_person(store, "Jane Nobody-Known")


def test_guard_from_policy_loads_the_registered_persons(tmp_path: Path, monkeypatch) -> None:
    from genguard.guard import Guard

    db = tmp_path / "g.db"
    with open_store(db) as store:
        add_person(store, "Quentin Marrowby-Faust")
    monkeypatch.setenv("GENGUARD_STORE", str(db))
    policy = tmp_path / "off-lexicon.toml"
    policy.write_text('extends = "off"\n[prompt]\nsemantic = false\n')
    guard = Guard.from_policy(policy, backends=[])
    decision = guard.check_prompt("Quentin Marrowby-Faust, nude")
    assert decision.hard_rule == "sexual_real_person"


def test_builtin_list_is_large_and_multinational() -> None:
    from genguard.text.persons import builtin_persons

    people = builtin_persons()
    assert len(people) >= 7000
    assert len({p.country for p in people}) >= 100
    assert {"politics", "film", "music", "sport", "online"} <= {p.domain for p in people}


def test_name_variants_as_people_write_them() -> None:
    registry = PersonRegistry()
    for text, person in [
        ("Tayler Swfit on stage", "Taylor Swift"),
        ("Faylor Swift on stage", "Taylor Swift"),  # a typo in the first letter
        ("Swift, Taylor", "Taylor Swift"),
        ("E. Watson at a premiere", "Emma Watson"),
        ("@taylorswift13", "Taylor Swift"),
        ("Дональд Трамп", "Donald Trump"),
        ("テイラー・スウィフト", "Taylor Swift"),
        ("Leonardo DiCarpio", "Leonardo DiCaprio"),
        ("IU in a cafe", "IU"),
    ]:
        assert person in {term for term, _ in names(registry, text)}, text
    for text in ("a curry in a bowl", "e watson", "iu", "musk perfume", "a frank talk"):
        assert all(m.score < 0.5 for m in registry.find(normalize(text))), text


def test_the_pickled_index_is_trusted_only_when_private(tmp_path: Path) -> None:
    """A pickle runs code when loaded: one others could write is never loaded."""
    import os

    from genguard.text.persons import _private_file

    cache = tmp_path / "persons-x.pkl"
    cache.write_bytes(b"not a pickle")
    os.chmod(cache, 0o600)
    assert _private_file(cache)
    os.chmod(cache, 0o666)
    assert not _private_file(cache)
    assert not _private_file(tmp_path / "missing.pkl")
