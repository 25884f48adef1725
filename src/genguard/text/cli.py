"""CLI commands of genguard.text: ``check-prompt`` and ``persons add|list|remove``.

``check-prompt`` is a thin shell over ``Guard.check_prompt``: the same verdict as the
library and the gateway. Its JSONL mode reads one ``{"text": ..., "negative_prompt": ...}``
object per line and writes one verdict per line, in order; a line that cannot be used
(invalid UTF-8, not JSON, not an object, no "text", a bad prompt) becomes an error record
with its line number and the batch goes on.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from genguard.errors import ConfigError, ContentError, GenguardError

if TYPE_CHECKING:
    from genguard.guard import Guard
    from genguard.text.persons import PersonRegistry

err_console = Console(stderr=True)
console = Console()
#: Prompts sent to the analyser at once in JSONL mode (one semantic batch).
JSONL_CHUNK = 256

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="GENGUARD_STORE",
        help="database path or SQLAlchemy URL (default ./genguard-data/genguard.db)",
    ),
]
persons_app = typer.Typer(help="Manage protected persons (names that signal real_person).")


# ---------------------------------------------------------------------------------------
# check-prompt
# ---------------------------------------------------------------------------------------


def _registry(store: str | None, builtin: bool) -> PersonRegistry:
    """Persons from the database when there is one, plus the built-in list."""
    from genguard.text.persons import load_registry

    return load_registry(store, builtin=builtin)


def _prompt_guard(policy: str, store: str | None, semantic: bool, builtin: bool) -> Guard:
    from genguard.guard import Guard
    from genguard.policy import load_policy
    from genguard.text.analyser import PromptAnalyser

    loaded = load_policy(policy)
    analyser = PromptAnalyser(
        semantic=semantic and loaded.prompt.semantic,
        max_chars=loaded.prompt.max_chars,
        persons=_registry(store, builtin),
    )
    return Guard(loaded, [], prompt_analyser=analyser)


def check_prompt(
    text: Annotated[str | None, typer.Argument(help="the prompt to check")] = None,
    policy: Annotated[
        str,
        typer.Option("--policy", "-p", help="built-in profile or a policy .toml file"),
    ] = "standard",
    negative: Annotated[
        str | None,
        typer.Option("--negative", help="negative prompt (checked apart, never a request)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the Decision as JSON")] = False,
    jsonl: Annotated[
        Path | None,
        typer.Option("--jsonl", help='JSONL input: one {"text": ...} object per line'),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="JSONL output for --jsonl (default: stdout)"),
    ] = None,
    semantic: Annotated[
        bool, typer.Option("--semantic/--no-semantic", help="use the MiniLM semantic check")
    ] = True,
    builtin_persons: Annotated[
        bool,
        typer.Option("--builtin-persons/--no-builtin-persons", help="load the example list"),
    ] = True,
    store: StoreOption = None,
) -> None:
    """Check a prompt (or a JSONL file of prompts) and print the verdict with its reasons."""
    if (text is None) == (jsonl is None):
        raise ConfigError("give either a prompt or --jsonl FILE (not both)")
    guard = _prompt_guard(policy, store, semantic, builtin_persons)
    if jsonl is not None:
        summary = check_jsonl(guard, jsonl, out)
        err_console.print(summary.line(), highlight=False)
        return
    assert text is not None
    decision = guard.check_prompt(text, negative_prompt=negative)
    if as_json:
        print(decision.to_json())
        return
    from genguard.core_cli import print_decision

    print_decision(decision, repr(text) if len(text) <= 60 else repr(text[:57] + "..."))


@dataclass
class JsonlSummary:
    """Counts of a JSONL run."""

    total: int = 0
    errors: int = 0
    actions: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        actions = ", ".join(f"{k} {v}" for k, v in sorted((self.actions or {}).items()))
        return f"{self.total} prompts: {actions or 'none checked'}; {self.errors} error(s)"


@dataclass
class _Item:
    line: int
    text: str | None = None
    negative: str | None = None
    extra: dict[str, Any] | None = None
    error: GenguardError | None = None


#: Deepest JSON nesting accepted on a line (a prompt record is one flat object).
MAX_JSON_DEPTH = 32
_ID_RE = re.compile(rb'^\s*\{\s*"id"\s*:\s*("(?:[^"\\]|\\.){0,200}"|-?\d{1,30})')


def parse_jsonl_line(number: int, raw: bytes) -> _Item:
    """One input line -> an item to check, or an error item (never raises).

    Hostile lines stay one error record each: nesting deeper than :data:`MAX_JSON_DEPTH`
    is refused before parsing (Python's parser would recurse), ``NaN``/``Infinity`` are
    not JSON (an id of NaN becomes null), a UTF-8 byte-order mark is skipped.
    """
    raw = raw.rstrip(b"\r\n")
    if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _Item(number, error=ContentError(f"invalid UTF-8: {exc.reason}", code="bad_utf8"))
    depth = _nesting_depth(decoded)
    if depth > MAX_JSON_DEPTH:
        return _Item(
            number,
            extra=_leading_id(raw),
            error=ContentError(
                f"JSON nested {depth} levels deep (at most {MAX_JSON_DEPTH})", code="bad_json"
            ),
        )
    try:
        data = json.loads(decoded, parse_constant=_not_a_number)
    except (json.JSONDecodeError, RecursionError) as exc:
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else "too deeply nested"
        return _Item(
            number,
            extra=_leading_id(raw),
            error=ContentError(f"not JSON: {message}", code="bad_json"),
        )
    if not isinstance(data, dict):
        return _Item(
            number,
            error=ContentError(
                f"expected an object, got {type(data).__name__}", code="not_an_object"
            ),
        )
    text = data.get("text")
    if not isinstance(text, str):
        why = 'no "text" field' if "text" not in data else '"text" is not a string'
        return _Item(number, error=ContentError(why, code="missing_text"))
    negative = data.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        return _Item(
            number,
            error=ContentError('"negative_prompt" is not a string', code="bad_negative_prompt"),
        )
    extra = {"id": _strict(data["id"])} if "id" in data else None
    return _Item(number, text=text, negative=negative, extra=extra)


class _NotANumber(float):
    """``NaN``/``Infinity`` on an input line: not JSON, written back as null."""


def _not_a_number(constant: str) -> _NotANumber:
    return _NotANumber("nan")


def _nesting_depth(text: str) -> int:
    """Deepest bracket nesting outside strings (a linear scan, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _leading_id(raw: bytes) -> dict[str, Any] | None:
    """The ``"id"`` of a line that cannot be parsed, when it comes first (best effort)."""
    m = _ID_RE.match(raw)
    if m is None:
        return None
    try:
        return {"id": json.loads(m.group(1))}
    except ValueError:
        return None


def _strict(value: Any) -> Any:
    """``value`` made writable as strict JSON: NaN/Infinity -> null, lone surrogates ->
    U+FFFD (a prompt or id may carry them; UTF-8 cannot)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
        return value
    if isinstance(value, dict):
        return {_strict(k): _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def dump_record(record: dict[str, Any]) -> str:
    """One output line: strict JSON, valid UTF-8, whatever the input carried."""
    try:
        line = json.dumps(record, ensure_ascii=False, allow_nan=False)
        line.encode("utf-8")
        return line
    except (ValueError, UnicodeEncodeError):
        return json.dumps(_strict(record), ensure_ascii=False, allow_nan=False)


def _error_record(item: _Item, error: GenguardError) -> dict[str, Any]:
    record: dict[str, Any] = {"line": item.line}
    if item.extra:
        record.update(item.extra)
    record["error"] = {"code": error.code, "message": str(error)}
    return record


def _check_chunk(guard: Guard, items: list[_Item]) -> list[dict[str, Any]]:
    """Verdicts for a chunk, in order, through one batched call (negative prompts too)."""
    good = [i for i in items if i.error is None]
    results = guard.check_prompts(
        [i.text or "" for i in good], negative_prompts=[i.negative for i in good]
    )
    by_line = dict(zip((i.line for i in good), results, strict=True))
    records = []
    for item in items:
        result = item.error or by_line[item.line]
        if isinstance(result, GenguardError):
            records.append(_error_record(item, result))
        else:
            records.append({"line": item.line, **(item.extra or {}), **result.to_dict()})
    return records


@contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    if path is None or str(path) == "-":
        yield sys.stdout
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("w", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
    with handle:
        yield handle


def check_jsonl(guard: Guard, source: Path, out: Path | None) -> JsonlSummary:
    """Check every line of ``source``; write one record per line to ``out`` (or stdout)."""
    if not source.is_file():
        raise ConfigError(f"{source} is not a file")
    with source.open("rb") as f:  # a quick first pass, for the progress bar's total
        total = sum(1 for _ in f)
    summary = JsonlSummary()
    progress = Progress(
        TextColumn("checking prompts"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    with progress, _output(out) as handle, source.open("rb") as lines:
        task = progress.add_task("prompts", total=total)
        chunk: list[_Item] = []

        def flush() -> None:
            for record in _check_chunk(guard, chunk):
                handle.write(dump_record(record) + "\n")
                summary.total += 1
                if "error" in record:
                    summary.errors += 1
                else:
                    action = record["action"]
                    summary.actions[action] = summary.actions.get(action, 0) + 1
            progress.advance(task, len(chunk))
            chunk.clear()

        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                progress.advance(task)
                continue  # blank lines carry nothing; they are not records
            chunk.append(parse_jsonl_line(number, raw))
            if len(chunk) >= JSONL_CHUNK:
                flush()
        if chunk:
            flush()
    return summary


# ---------------------------------------------------------------------------------------
# persons
# ---------------------------------------------------------------------------------------


@persons_app.command("add")
def persons_add(
    name: Annotated[str, typer.Argument(help="the person's name")],
    alias: Annotated[
        list[str] | None, typer.Option("--alias", "-a", help="another name (repeatable)")
    ] = None,
    photo: Annotated[
        list[Path] | None,
        typer.Option(
            "--photo",
            help="reference photo of exactly one face (repeatable); only its embedding is kept",
        ),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Protect a person: prompts naming them, and with --photo images showing their face,
    signal real_person."""
    from genguard.store import open_store
    from genguard.text.persons import add_person

    faces = ""
    if photo:
        from genguard.faces.reference import reference_faces

        references = reference_faces(photo)  # every photo checked before anything is written
    with open_store(store) as opened:
        person = add_person(opened, name, alias or [])
        if photo:
            from genguard.faces.registry import face_counts, store_faces

            added = store_faces(opened, person.name, references)
            total = face_counts(opened).get(person.name, 0)
            faces = f", {added} face embedding(s) added ({total} in all)"
        where = opened.url
    aliases = f" (aliases: {', '.join(person.aliases)})" if person.aliases else ""
    console.print(f"protected {person.name}{aliases}{faces} in {where}", highlight=False)


@persons_app.command("list")
def persons_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    builtin: Annotated[
        bool, typer.Option("--builtin/--no-builtin", help="include the built-in list")
    ] = False,
    search: Annotated[
        str | None, typer.Option("--search", "-s", help="only names containing this text")
    ] = None,
    store: StoreOption = None,
) -> None:
    """List protected persons (yours; --builtin adds the shipped list, minus exclusions)."""
    from genguard.faces.registry import face_counts
    from genguard.store import open_store
    from genguard.text.persons import builtin_persons, list_exclusions, list_persons

    with open_store(store) as opened:
        people = list_persons(opened)
        excluded = {n.casefold() for n in list_exclusions(opened)}
        faces = face_counts(opened)
    if builtin:
        people += [p for p in builtin_persons() if p.name.casefold() not in excluded]
    if search:
        wanted = search.casefold()
        people = [p for p in people if any(wanted in n.casefold() for n in p.all_names)]
    if as_json:
        print(
            json.dumps(
                [
                    # "faces" only for persons with face embeddings: name-only entries
                    # keep the shape they always had.
                    {"name": p.name, "aliases": list(p.aliases), "builtin": p.builtin}
                    | ({"faces": faces[p.name]} if faces.get(p.name) and not p.builtin else {})
                    for p in people
                ],
                ensure_ascii=False,
            )
        )
        return
    if not people:
        console.print("no protected persons (add one with: genguard persons add NAME)")
    for p in people:
        aliases = f"  aliases: {', '.join(p.aliases)}" if p.aliases else ""
        tag = "  [dim](built-in)[/dim]" if p.builtin else ""
        count = faces.get(p.name, 0) if not p.builtin else 0
        face_note = f"  faces: {count}" if count else ""
        console.print(f"{p.name}{aliases}{face_note}{tag}", highlight=False)
    if excluded and builtin:
        console.print(f"{len(excluded)} built-in person(s) excluded", highlight=False)


@persons_app.command("remove")
def persons_remove(
    name: Annotated[str, typer.Argument(help="name or alias of the person to remove")],
    store: StoreOption = None,
) -> None:
    """Stop protecting a person: yours are deleted, built-in ones are excluded."""
    from genguard.faces.registry import remove_person_faces, resolve_person
    from genguard.store import open_store
    from genguard.text.persons import exclude_person, remove_person

    with open_store(store) as opened:
        owner = resolve_person(opened, name)
        faces = remove_person_faces(opened, owner) if owner is not None else 0
        removed = remove_person(opened, name)
        if not removed:
            try:
                person = exclude_person(opened, name)
            except ConfigError as exc:
                raise ConfigError(
                    f"no protected person named {name!r} (see: genguard persons list --builtin)"
                ) from exc
            console.print(f"excluded built-in person {person.name}", highlight=False)
            return
    note = f" and {faces} face embedding(s)" if faces else ""
    console.print(f"removed {name}{note}", highlight=False)


@persons_app.command("restore")
def persons_restore(
    name: Annotated[str, typer.Argument(help="name of an excluded built-in person")],
    store: StoreOption = None,
) -> None:
    """Protect an excluded built-in person again."""
    from genguard.store import open_store
    from genguard.text.persons import include_person

    with open_store(store) as opened:
        if not include_person(opened, name):
            raise ConfigError(f"{name!r} is not an excluded built-in person")
    console.print(f"protecting {name} again", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this subsystem's commands to the main `genguard` app."""
    app.command("check-prompt")(check_prompt)
    app.add_typer(persons_app, name="persons")
