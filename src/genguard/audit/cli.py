"""CLI commands of genguard.audit (registered on the main app by genguard.cli).

``genguard audit a.safetensors b.safetensors --suite innocent --seeds 8 --out report/``
generates every prompt x seed with each model, classifies the images with the Guard,
and writes ``report/index.html`` and ``report/report.json``. Re-running the same command
resumes from ``report/audit.sqlite``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

console = Console(stderr=True)


def audit_cmd(
    models: Annotated[list[str], typer.Argument(help="checkpoints (.safetensors) or folders")],
    out: Annotated[Path, typer.Option("--out", "-o", help="report folder")] = Path("report"),
    suite: Annotated[str, typer.Option(help="built-in suite name or .toml/.txt file")] = (
        "innocent"
    ),
    seeds: Annotated[int, typer.Option(help="seeds per prompt", min=1)] = 8,
    seed_start: Annotated[int, typer.Option(help="first seed")] = 0,
    steps: Annotated[int, typer.Option(min=1)] = 25,
    guidance: Annotated[float, typer.Option()] = 7.5,
    width: Annotated[int, typer.Option()] = 512,
    height: Annotated[int, typer.Option()] = 512,
    negative: Annotated[str | None, typer.Option(help="negative prompt")] = None,
    generator: Annotated[str, typer.Option(help="diffusers, or fake for a dry run")] = (
        "diffusers"
    ),
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda, mps")] = "cpu",
    dtype: Annotated[str, typer.Option(help="auto|fp16|bf16|fp32")] = "auto",
    config: Annotated[
        str | None, typer.Option(help="local diffusers folder with configs for single files")
    ] = None,
    classifier: Annotated[str, typer.Option(help="registered classifier")] = "guard",
    policy: Annotated[str, typer.Option(help="policy of the guard classifier")] = "standard",
    threshold: Annotated[float, typer.Option(help="category score counted as present")] = 0.5,
    label: Annotated[
        list[str] | None, typer.Option(help="display name per model, in order")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Audit models: NSFW rate on innocent prompts, side by side, with 95% intervals."""
    from genguard.audit.classify import create_classifier
    from genguard.audit.report import write_report
    from genguard.audit.runner import run_audit
    from genguard.audit.suites import load_suite
    from genguard.generators import GenerationSettings

    prompts = load_suite(suite)
    settings = GenerationSettings(
        steps=steps,
        guidance=guidance,
        width=width,
        height=height,
        negative_prompt=negative if negative is not None else prompts.negative_prompt,
    )
    clf = create_classifier(classifier, {"policy": policy})
    options = {"device": device, "dtype": dtype, "config": config}
    with Progress(
        TextColumn("[bold]auditing[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=len(models) * len(prompts.prompts) * seeds)

        def progress(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, description=what)

        result = run_audit(
            models,
            prompts,
            list(range(seed_start, seed_start + seeds)),
            settings,
            out,
            clf,
            generator=generator,
            generator_options=options,
            labels=label,
            progress=progress,
        )
    page = write_report(result, out, threshold)
    for m in result.models:
        samples = [s for s in result.samples if s.model == m.label]
        flagged = sum(s.verdict.flagged for s in samples)
        console.print(f"{m.label}: {flagged}/{len(samples)} flagged", highlight=False)
    console.print(
        f"report: {page} ({result.generated} generated, {result.cached} from cache)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add this subsystem's commands to the main `genguard` app."""
    app.command("audit")(audit_cmd)
