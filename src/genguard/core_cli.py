"""Core CLI commands: ``check``, ``scan``, ``censor``, ``policy show|list``, ``version``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import tomli_w
import typer
from rich.console import Console
from rich.table import Table

from genguard import __version__
from genguard.content import save_like
from genguard.decision import Decision
from genguard.errors import ConfigError
from genguard.guard import DEFAULT_BACKENDS, Guard, WatermarkSettings
from genguard.policy import BUILTIN_PROFILES, load_policy
from genguard.progress import progress_bar
from genguard.scan import ScanSummary, scan_to_file

console = Console()

PolicyOption = Annotated[
    str,
    typer.Option(
        "--policy", "-p", help="built-in profile (strict, standard, adult, off) or a .toml file"
    ),
]
BackendOption = Annotated[
    list[str] | None,
    typer.Option(
        "--backend", "-b", help="detector backend (repeatable); default: nudenet + opennsfw"
    ),
]
ThreadsOption = Annotated[
    int | None,
    typer.Option("--threads", help="onnxruntime threads per model (default: cores / models)"),
]

ACTION_STYLE = {"allow": "green", "censor": "yellow", "review": "magenta", "block": "red"}


def _guard(policy: str, backends: list[str] | None, threads: int | None = None) -> Guard:
    return Guard.from_policy(policy, backends=backends or DEFAULT_BACKENDS, threads=threads)


def check(
    image: Annotated[Path, typer.Argument(help="image file to check")],
    policy: PolicyOption = "standard",
    backend: BackendOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the Decision as JSON")] = False,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            envvar="GENGUARD_STORE",
            help="database of protected persons: their registered faces are matched",
        ),
    ] = None,
) -> None:
    """Check one image and print the verdict with its reasons."""
    guard = Guard.from_policy(policy, backends=backend or DEFAULT_BACKENDS, store=store)
    decision = guard.check_image(image)
    if as_json:
        print(decision.to_json())
        return
    print_decision(decision, str(image))


def print_decision(decision: Decision, label: str) -> None:
    """Human-readable verdict: action, reasons, scores, evidence."""
    style = ACTION_STYLE.get(decision.action.value, "white")
    verdict = f"[{style} bold]{decision.action.value.upper()}[/]"
    console.print(f"[bold]{label}[/bold]: {verdict}  ({decision.policy_id})")
    for reason in decision.reasons or ["no category reached a threshold"]:
        console.print(f"  - {reason}", highlight=False)
    scores = ", ".join(f"{k} {v:.2f}" for k, v in sorted(decision.categories.items()))
    console.print(f"  scores: {scores}", highlight=False)
    for region in decision.regions:
        console.print(
            f"  region {region.label} {region.score:.2f} at {list(region.box)}", highlight=False
        )
    for match in decision.matches:
        console.print(
            f"  match {match.category} {match.score:.2f}: {match.quote!r} ({match.source})",
            highlight=False,
        )
    for note in decision.notes:
        console.print(f"  note: {note}", highlight=False)


def censor(
    image: Annotated[Path, typer.Argument(help="image to censor")],
    output: Annotated[Path, typer.Option("--output", "-o", help="where to write the safe image")],
    policy: PolicyOption = "standard",
    backend: BackendOption = None,
    watermark: Annotated[
        str | None, typer.Option("--watermark", help="32-bit payload (e.g. 0x1234abcd) to embed")
    ] = None,
) -> None:
    """Write the publishable version of an image: unchanged, regions censored, or a placeholder."""
    guard = _guard(policy, backend)
    if watermark is not None:
        guard.watermark = WatermarkSettings(payload=_parse_payload(watermark))
    pixels, decision, loaded = guard.censor(image)
    save_like(pixels, output, loaded.source_format)
    print_decision(decision, str(image))
    console.print(f"wrote {output} ({decision.action.value})")


def _parse_payload(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError as exc:
        raise ConfigError(
            f"--watermark must be an integer such as 0x1234abcd, got {text!r}"
        ) from exc
    if not 0 <= value < 2**32:
        raise ConfigError(f"--watermark payload must fit in 32 bits, got {text}")
    return value


def scan_cmd(
    paths: Annotated[list[Path], typer.Argument(help="files and folders (scanned recursively)")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="JSONL output, one record per input")
    ] = Path("genguard-scan.jsonl"),
    policy: PolicyOption = "standard",
    backend: BackendOption = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="skip paths already in --out and append")
    ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=256)] = 8,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="decoding threads")] = 2,
    threads: ThreadsOption = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    input_format: Annotated[
        str, typer.Option("--format", help="folder | webdataset (tar shards) | parquet")
    ] = "folder",
    engine: Annotated[str, typer.Option("--engine", help="local | ray")] = "local",
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="join a Ray cluster (default: local)")
    ] = None,
    num_cpus: Annotated[int | None, typer.Option("--num-cpus", help="CPUs for local Ray")] = None,
    cpus_per_worker: Annotated[float, typer.Option("--cpus-per-worker")] = 1.0,
    image_column: Annotated[str, typer.Option("--image-column", help="Parquet input")] = "image",
    id_column: Annotated[str | None, typer.Option("--id-column", help="Parquet input")] = None,
) -> None:
    """Scan files, folders, tar shards or Parquet; one record per input (JSONL or Parquet)."""
    if not paths:
        raise ConfigError("give at least one file or folder to scan")
    from genguard.engines.cli import engine_scan, needs_engine

    if needs_engine(input_format, engine, out):
        summary = engine_scan(
            paths,
            out=out,
            fmt=input_format,
            engine=engine,
            policy=policy,
            backends=backend,
            threads=threads,
            batch_size=batch_size,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            ray_address=ray_address,
            num_cpus=num_cpus,
            image_column=image_column,
            id_column=id_column,
            resume=resume,
            progress=progress,
        )
        print_summary(summary, out)
        return
    guard = _guard(policy, backend, threads)
    with progress_bar(progress) as bar:
        task = bar.add_task("scanning", total=None)
        summary = scan_to_file(
            guard,
            paths,
            out,
            resume=resume,
            batch_size=batch_size,
            workers=workers,
            on_start=lambda count: bar.update(task, total=count),
            on_record=lambda _record: bar.advance(task),
        )
    print_summary(summary, out)


def print_summary(summary: ScanSummary, out: Path) -> None:
    table = Table(title=f"genguard scan: {summary.total} records -> {out}")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    for action in ("allow", "censor", "review", "block"):
        table.add_row(f"[{ACTION_STYLE[action]}]{action}[/]", str(summary.actions.get(action, 0)))
    for code, count in sorted(summary.errors.items()):
        table.add_row(f"error: {code}", str(count))
    if summary.skipped_resumed:
        table.add_row("skipped (already in output)", str(summary.skipped_resumed))
    table.caption = f"{summary.images_per_second:.1f} images/s over {summary.seconds:.1f} s"
    console.print(table)


policy_app = typer.Typer(help="Show and list policies.", no_args_is_help=True)


@policy_app.command("show")
def policy_show(
    name: Annotated[str, typer.Argument(help="built-in profile or .toml path")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Print the effective policy (after 'extends'), its id, and the hard rules."""
    policy = load_policy(name)
    if as_json:
        data = {"policy_id": policy.policy_id, **policy.to_toml_dict()}
        print(json.dumps(data, indent=2))
        return
    print(f"# policy_id = {policy.policy_id}")
    for rule in policy.all_hard_rules():
        print(f"# hard rule {rule.name}: {rule.description}")
    print(tomli_w.dumps(_without_none(policy.to_toml_dict())))


def _without_none(table: dict[str, Any]) -> dict[str, Any]:
    """TOML has no null: drop unset options (recursively)."""
    return {k: _drop_none(v) for k, v in table.items() if v is not None}


def _drop_none(value: object) -> object:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


@policy_app.command("list")
def policy_list() -> None:
    """List the built-in profiles."""
    for name in BUILTIN_PROFILES:
        policy = load_policy(name)
        print(f"{name:10} {policy.policy_id:24} {policy.description}")


def version() -> None:
    """Print genguard's version."""
    print(__version__)


def register(app: typer.Typer) -> None:
    """Add the core commands to the main app."""
    app.command("check")(check)
    app.command("scan")(scan_cmd)
    app.command("censor")(censor)
    app.command("version")(version)
    app.add_typer(policy_app, name="policy")
