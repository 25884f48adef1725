"""``genguard watch DIR``: check every new image a front-end writes into DIR.

genguard watch ~/stable-diffusion-webui/outputs --log watch.jsonl
genguard watch ComfyUI/output --mode censor --once     # catch up and exit (cron)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from genguard import settings
from genguard.guard import DEFAULT_BACKENDS, Guard
from genguard.progress import progress_bar
from genguard.store import open_store
from genguard.watch.pending import Timing
from genguard.watch.state import WatchState
from genguard.watch.watcher import Watcher, WatchSummary, resolve_options

console = Console(stderr=True)


def build_guard(policy: str, backends: list[str] | None, threads: int | None) -> Guard:
    """Module-level so tests can swap in a Guard with a fake detector."""
    return Guard.from_policy(policy, backends=backends or DEFAULT_BACKENDS, threads=threads)


def watch(
    folder: Annotated[Path, typer.Argument(help="the front-end's output folder (recursive)")],
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="censor: censored version replaces a flagged image; quarantine (default): "
            "the original is moved to --quarantine and the censored version left in place",
        ),
    ] = "quarantine",
    quarantine: Annotated[
        Path | None,
        typer.Option(
            "--quarantine",
            help="where originals go (default: FOLDER-genguard-quarantine next to FOLDER)",
        ),
    ] = None,
    log: Annotated[
        Path, typer.Option("--log", help="JSONL log, one row per file (appended)")
    ] = Path("genguard-watch.jsonl"),
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            envvar="GENGUARD_STORE",
            help="database remembering checked files (default ./genguard-data/genguard.db)",
        ),
    ] = None,
    policy: Annotated[
        str, typer.Option("--policy", "-p", help="built-in profile or a policy .toml")
    ] = "standard",
    backend: Annotated[
        list[str] | None, typer.Option("--backend", "-b", help="detector backend (repeatable)")
    ] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="threads per model")] = None,
    once: Annotated[
        bool, typer.Option("--once", help="check what is there now, then exit (cron, CI)")
    ] = False,
    settle: Annotated[
        float,
        typer.Option(
            "--settle",
            min=0.0,
            help="seconds a file must stay unchanged when no close event says it is done",
        ),
    ] = Timing.settle,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            min=0.1,
            help="seconds after its last change before an undecodable file is an error",
        ),
    ] = Timing.timeout,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=256, help="files taken per step (a burst)")
    ] = 32,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> int:
    """Watch a folder: check each new image once it is complete, act, log one row per file."""
    options = resolve_options(
        folder,
        quarantine=quarantine,
        log=log,
        mode=mode,
        timing=Timing(settle=settle, timeout=timeout),
        batch_size=batch_size,
    )
    guard = build_guard(policy, backend, threads)
    with open_store(store or settings.store_location()) as opened, progress_bar(progress) as bar:
        task = bar.add_task(f"watching {options.root}", total=None)

        def show(done: int, pending: int) -> None:
            bar.update(task, completed=done, total=done + pending)

        watcher = Watcher(guard, WatchState(opened), options, on_progress=show)
        console.print(
            f"quarantine: {options.quarantine}  log: {options.log}  mode: {options.mode}",
            highlight=False,
        )
        try:
            summary = watcher.run(once=once)
        except KeyboardInterrupt:
            print_summary(watcher.summary, "stopped (Ctrl-C)")
            return 130
    print_summary(summary, "done" if once else "stopped")
    return 0


def print_summary(summary: WatchSummary, how: str) -> None:
    """One line: what happened to the files seen in this run."""
    actions = ", ".join(f"{k} {v}" for k, v in sorted(summary.actions.items())) or "none"
    errors = sum(summary.errors.values())
    console.print(
        f"{how}: {summary.total} rows ({actions}; {errors} errors), "
        f"{summary.already_checked} already checked, {summary.vanished} vanished before "
        f"being checked, {summary.seconds:.1f} s",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``genguard watch`` to the main app."""
    app.command("watch")(watch)
