"""``genguard lora bake`` / ``genguard lora extract`` (see docs/lora.md).

Heavy imports happen inside the commands so ``genguard --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

console = Console(stderr=True)
lora_app = typer.Typer(
    help="Bake LoRA/LyCORIS files into a checkpoint, or extract a LoRA from two checkpoints.",
    no_args_is_help=True,
)

QUIET = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]


@contextmanager
def _progress(label: str, quiet: bool) -> Iterator[Callable[[int, int, str], None]]:
    """A transient progress bar on stderr; yields the callback the library calls."""
    with Progress(
        TextColumn(f"[bold]{label}[/bold]"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int, key: str) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@lora_app.command("bake")
def bake_cmd(
    base: Annotated[Path, typer.Argument(help="checkpoint .safetensors (or diffusers folder)")],
    loras: Annotated[
        list[str], typer.Argument(help="LoRA files, each optionally PATH:STRENGTH (default 1)")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="output .safetensors file")],
    block_strengths: Annotated[
        str | None,
        typer.Option(
            "--block-strengths",
            help="per-block strengths: 25/26 (SD1/2), 19/20 (SDXL) or 17/12 (LoRA Block "
            "Weight) comma-separated values, or NAME=VALUE pairs such as IN04=0.5,M00=0",
        ),
    ] = None,
    dtype: Annotated[str, typer.Option(help="output dtype: auto|fp16|bf16|fp32")] = "auto",
    force: Annotated[
        bool, typer.Option("--force", "-f", help="overwrite the output file if it exists")
    ] = False,
    quiet: QUIET = False,
) -> None:
    """Bake LoRAs into a checkpoint: W' = W + strength * (alpha/rank) * up @ down."""
    from genguard.merge.lora import bake, parse_lora_arg

    specs = [parse_lora_arg(text) for text in loras]
    report = bake(base, specs, out, block_strengths=block_strengths, dtype=dtype, overwrite=force)
    for spec, applied, unmapped in zip(specs, report.applied, report.unmapped, strict=True):
        console.print(
            f"{spec.path.name} (strength {spec.strength:g}): {applied} module(s) applied",
            highlight=False,
        )
        if unmapped:
            shown = ", ".join(unmapped[:5]) + (" ..." if len(unmapped) > 5 else "")
            console.print(
                f"[yellow]warning:[/yellow] {len(unmapped)} module(s) match no weight of "
                f"{base.name} and were skipped: {shown}",
                highlight=False,
            )
    console.print(
        f"wrote {report.output} ({report.bytes_written / 2**20:.1f} MiB, {report.patched} of "
        f"{report.tensors} tensors patched) - {report.architecture}, {report.seconds:.1f}s",
        highlight=False,
    )


@lora_app.command("extract")
def extract_cmd(
    tuned: Annotated[Path, typer.Argument(help="fine-tuned checkpoint")],
    base: Annotated[Path, typer.Argument(help="the checkpoint it was tuned from")],
    rank: Annotated[int, typer.Option("--rank", "-r", help="LoRA rank (dim); alpha = rank")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output LoRA .safetensors")],
    dtype: Annotated[str, typer.Option(help="factor dtype: auto|fp16|bf16|fp32")] = "auto",
    min_diff: Annotated[
        float, typer.Option(help="skip weights whose largest difference is at most this")
    ] = 0.0,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="overwrite the output file if it exists")
    ] = False,
    quiet: QUIET = False,
) -> None:
    """Extract a kohya-format LoRA (truncated SVD of TUNED - BASE per weight)."""
    from genguard.merge.lora import extract

    report = extract(tuned, base, out, rank=rank, dtype=dtype, min_diff=min_diff, overwrite=force)
    console.print(
        f"wrote {report.output}: {report.modules} module(s) at rank {rank}, "
        f"{report.skipped_unchanged} unchanged weight(s) skipped; worst relative error "
        f"{report.worst_relative_error:.3g} ({report.worst_module}) - "
        f"{report.architecture}, {report.seconds:.1f}s",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``genguard lora ...`` to the main app."""
    app.add_typer(lora_app, name="lora")
