"""CLI commands of genguard.merge (registered on the main app by genguard.cli).

``genguard merge recipe.yaml --out merged.safetensors`` streams the merge with a progress
bar; ``genguard merge-methods`` lists the registered methods and their parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

console = Console(stderr=True)


def merge_cmd(
    config: Annotated[Path, typer.Argument(help="YAML merge recipe (see docs/merge.md)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output .safetensors file")],
    dtype: Annotated[
        str | None, typer.Option(help="override the recipe's dtype: auto|fp16|bf16|fp32")
    ] = None,
    on_missing: Annotated[
        str | None, typer.Option(help="override on_missing: error|copy_base")
    ] = None,
    no_hash: Annotated[
        bool, typer.Option("--no-hash", help="skip the sources' SHA-256 in the metadata")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="overwrite the output file if it exists")
    ] = False,
) -> None:
    """Merge checkpoints as a recipe describes, streaming one tensor at a time."""
    from genguard.merge.config import load_config, parse_config
    from genguard.merge.engine import merge

    cfg = load_config(config)
    overrides = {k: v for k, v in (("dtype", dtype), ("on_missing", on_missing)) if v}
    if overrides:
        data = cfg.model_dump(mode="json") | overrides
        cfg = parse_config(data)
    with Progress(
        TextColumn("[bold]merging[/bold]"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=True,
    ) as bar:
        task = bar.add_task("merge", total=None)

        def progress(done: int, total: int, key: str) -> None:
            bar.update(task, completed=done, total=total)

        report = merge(cfg, out, progress=progress, hash_sources=not no_hash, overwrite=force)
    copied = len(report.copied_missing) + len(report.copied_mismatch)
    console.print(
        f"wrote {report.output} ({report.bytes_written / 2**20:.1f} MiB, {report.tensors} "
        f"tensors: {report.merged} merged, {copied} copied from the base by policy, "
        f"{report.copied_non_float} non-float copied) - {report.architecture}, "
        f"{report.method}, {report.seconds:.1f}s",
        highlight=False,
    )
    if report.copied_ids:
        console.print(
            f"[yellow]note:[/yellow] {len(report.copied_ids)} float position_ids copied from "
            f"the primary model, not merged ({report.copied_ids[0]})",
            highlight=False,
        )
    if report.dropped:
        console.print(
            f"[yellow]note:[/yellow] {len(report.dropped)} key(s) not in the primary model "
            f"were left out (e.g. {report.dropped[0]})",
            highlight=False,
        )


def methods_cmd() -> None:
    """List the merge methods with their parameters and defaults."""
    from genguard.merge.methods import MERGE_METHODS

    table = Table()
    table.add_column("method", no_wrap=True)
    for name in ("models", "base", "parameters", "per-model", "what"):
        table.add_column(name)
    for _, m in MERGE_METHODS.items():
        count = str(m.min_models) if m.min_models == m.max_models else f"{m.min_models}+"
        table.add_row(
            m.name,
            count,
            "yes" if m.needs_base else "",
            ", ".join(f"{k}={v:g}" for k, v in m.params.items()),
            ", ".join(f"{k}={v:g}" for k, v in m.model_params.items()),
            m.description,
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add this subsystem's commands to the main `genguard` app."""
    app.command("merge")(merge_cmd)
    app.command("merge-methods")(methods_cmd)
