"""CLI: ``genguard eval``, ``genguard calibrate``, ``genguard backends list``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from genguard.decision import Action
from genguard.errors import ConfigError
from genguard.evaluation.calibrate import fit_policy
from genguard.evaluation.dataset import ScoredImage, read_dataset, score_dataset
from genguard.evaluation.report import evaluate, render_html
from genguard.guard import DEFAULT_BACKENDS, Guard
from genguard.policy import BUILTIN_PROFILES, load_policy

console = Console()

LabelsOption = Annotated[
    Path | None, typer.Option("--labels", help="CSV path,label[,category]; default: sub-folders")
]
BackendOption = Annotated[
    list[str] | None, typer.Option("--backend", "-b", help="detector backend (repeatable)")
]


def _score(folder: Path, labels: Path | None, guard: Guard) -> list[ScoredImage]:
    items = read_dataset(folder, labels)
    with Progress(
        TextColumn("[bold]scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("scoring", total=len(items))
        return score_dataset(guard, items, on_progress=lambda n: bar.advance(task, n))


def eval_cmd(
    folder: Annotated[Path, typer.Argument(help="labelled folder (safe/, unsafe/, <category>/)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="report folder")] = Path("eval"),
    labels: LabelsOption = None,
    policy: Annotated[str, typer.Option("--policy", "-p")] = "standard",
    backend: BackendOption = None,
    target_fpr: Annotated[float, typer.Option("--target-fpr", min=0.0, max=1.0)] = 0.02,
    thumbnails: Annotated[
        bool, typer.Option("--thumbnails", help="embed small thumbnails (flagged ones pixelated)")
    ] = False,
) -> None:
    """Measure backends and fusion on labelled images (ROC AUC, recall/FPR, calibration)."""
    guard = Guard.from_policy(policy, backends=backend or DEFAULT_BACKENDS)
    scored = _score(folder, labels, guard)
    report = evaluate(scored, guard.policy, target_fpr)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "index.html").write_text(render_html(report, scored if thumbnails else None))
    _print_summary(report)
    console.print(f"wrote {out / 'index.html'} and {out / 'report.json'}")


def _print_summary(report: dict) -> None:
    table = Table(title=f"genguard eval ({report['images']} images, {report['unsafe']} unsafe)")
    for column in ("target", "source", "ROC AUC", "recall@policy", "FPR@policy", "thr@FPR"):
        table.add_column(column, justify="right")
    for target, entry in report["targets"].items():
        if "error" in entry:
            table.add_row(target, "-", entry["error"], "", "", "")
            continue
        for source, m in entry["sources"].items():
            at_policy = m.get("at_policy", {})
            table.add_row(
                target,
                source,
                f"{m['auc']:.3f}",
                f"{at_policy['recall']:.3f}" if at_policy else "-",
                f"{at_policy['fpr']:.3f}" if at_policy else "-",
                f"{m['at_target_fpr']['threshold']:.3f}",
            )
    console.print(table)


def calibrate_cmd(
    folder: Annotated[Path, typer.Argument(help="labelled folder (safe/, <category>/)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="policy TOML to write")],
    labels: LabelsOption = None,
    base: Annotated[str, typer.Option("--base", help="built-in profile to extend")] = "standard",
    target_fpr: Annotated[float | None, typer.Option("--target-fpr", min=0.0, max=1.0)] = None,
    target_recall: Annotated[
        float | None, typer.Option("--target-recall", min=0.0, max=1.0)
    ] = None,
    method: Annotated[str, typer.Option("--method", help="isotonic or platt")] = "isotonic",
    action: Annotated[
        str, typer.Option("--action", help="action where the base has none")
    ] = "block",
    backend: BackendOption = None,
) -> None:
    """Fit thresholds and score calibration to a target FPR or recall; write a policy TOML."""
    if base not in BUILTIN_PROFILES:
        raise ConfigError(f"--base must be a built-in profile: {', '.join(BUILTIN_PROFILES)}")
    if method not in ("isotonic", "platt"):
        raise ConfigError(f"unknown --method {method!r}: use isotonic or platt")
    base_policy = load_policy(base)
    guard = Guard(
        base_policy.model_copy(
            update={"image": base_policy.image.model_copy(update={"calibration": {}})}
        ),
        Guard.from_policy(base, backends=backend or DEFAULT_BACKENDS).detectors,
    )
    scored = _score(folder, labels, guard)
    text, policy = fit_policy(
        scored,
        base_policy,
        name=output.stem,
        target_fpr=target_fpr,
        target_recall=target_recall,
        method=method,  # type: ignore[arg-type]
        default_action=Action(action),
    )
    output.write_text(text)
    for category, fitted in policy.fit["metrics"].items():
        console.print(
            f"{category}: threshold {policy.image.categories[category].threshold:.3f} "
            f"recall {fitted['recall']:.3f} FPR {fitted['fpr']:.3f} (AUC {fitted['auc']:.3f})",
            highlight=False,
        )
    console.print(f"wrote {output} ({policy.policy_id})")


backends_app = typer.Typer(help="Detector backends.", no_args_is_help=True)


@backends_app.command("list")
def backends_list() -> None:
    """What is installed, what each backend detects, weights found or not."""
    from genguard.detectors.base import describe_backends

    table = Table(title="genguard backends")
    for column in ("backend", "detects", "weights", "description"):
        table.add_column(column)
    for info in describe_backends():
        weights = f"[green]{info.weights}[/]" if info.available else f"[red]{info.weights}[/]"
        table.add_row(info.name, ", ".join(info.categories), weights, info.description)
    console.print(table)


@backends_app.command("coverage")
def backends_coverage(
    backend: Annotated[
        list[str] | None,
        typer.Option("--backend", "-b", help="backends (default: the default set)"),
    ] = None,
    policy: Annotated[str, typer.Option("--policy", "-p", help="profile or .toml")] = "standard",
) -> None:
    """Which image categories a backend set scores, and what each hard rule rests on."""
    from genguard.coverage import category_coverage, rule_coverage

    names = list(backend or DEFAULT_BACKENDS)
    effective = load_policy(policy)  # a bad policy or backend fails before any output
    rows = rule_coverage(effective, names)
    table = Table(title=f"image categories seen by {', '.join(names)}")
    table.add_column("category", no_wrap=True, min_width=15)
    table.add_column("scored by", overflow="fold")
    for row in category_coverage(names):
        table.add_row(row.category, ", ".join(row.backends) or "[red]nothing in this set[/]")
    console.print(table)
    # One line per rule (never truncated, whatever the width): what the rule rests on.
    console.print(f"\n[bold]hard rules of policy {policy}[/]")
    for rule in rows:
        missing = [" or ".join(group) for group in rule.missing_on_images]
        images = "yes" if rule.fires_on_images_alone else "no"
        prompts = "yes" if rule.fires_on_prompts_alone else "no"
        needs = f"; no image signal for {'; '.join(missing)}: needs the prompt as context"
        console.print(
            f"{rule.rule}: fires on images alone: {images}; on prompts alone: {prompts}"
            + (needs if missing else ""),
            soft_wrap=True,
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("calibrate")(calibrate_cmd)
    app.add_typer(backends_app, name="backends")
