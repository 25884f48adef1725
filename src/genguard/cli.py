"""The `genguard` command line: a thin shell over the library.

Each subsystem adds its own commands through a ``register(app)`` function in its
``cli.py``, so this file stays a list of wiring, not logic. Every :class:`GenguardError`
becomes one red line on stderr and exit code 2 (usage or input error); anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from genguard.cancel import unwind_on_sigterm
from genguard.errors import GenguardError

app = typer.Typer(
    name="genguard",
    help="Safety layer for AI image generation: detect, decide, censor, watermark, audit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


def _register_subsystems() -> None:
    from genguard import core_cli
    from genguard.audit import cli as audit_cli
    from genguard.evaluation import cli as evaluation_cli
    from genguard.merge import cli as merge_cli
    from genguard.provenance import cli as provenance_cli
    from genguard.server import cli as server_cli
    from genguard.text import cli as text_cli
    from genguard.video import cli as video_cli
    from genguard.watch import cli as watch_cli

    subsystems = (
        core_cli,
        text_cli,
        provenance_cli,
        merge_cli,
        audit_cli,
        server_cli,
        evaluation_cli,
        video_cli,
        watch_cli,
    )
    for module in subsystems:
        module.register(app)


_register_subsystems()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning genguard errors into one line and exit code 2."""
    try:
        with unwind_on_sigterm():  # SIGTERM unwinds: partial files are cleaned up
            result = app(args=argv, standalone_mode=False)
    except GenguardError as exc:
        return _one_line_error(str(exc))
    except OSError as exc:
        # A missing output folder, a read-only file, a full disk: the user's to fix, so
        # a clear line (which file, what the system said), not a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        return _one_line_error(f"{where}{exc.strerror or exc}")
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err_console.print("[red]aborted[/red]")
        return 130
    except Exception as exc:  # usage errors arrive here in non-standalone mode
        if _is_usage_error(exc):
            exc.show()  # type: ignore[attr-defined]
            return 2
        raise
    # A command may return its exit status (click passes it through unchanged).
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def _one_line_error(text: str) -> int:
    """Print ``error: text`` on one line whatever the terminal width; exit status 2.

    Rich would wrap at 80 columns when stderr is not a terminal, and the message may hold
    anything (paths, brackets), so it is escaped and soft-wrapped.
    """
    message = escape(" ".join(text.split()))
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return 2


def _is_usage_error(exc: Exception) -> bool:
    """Click's (or Typer's vendored click's) usage errors: they know how to show themselves."""
    kinds: tuple[type, ...] = tuple(
        kind for kind in (getattr(typer, "TyperException", None),) if isinstance(kind, type)
    )
    try:
        import click

        kinds = (*kinds, click.ClickException)
    except ImportError:
        pass
    return isinstance(exc, kinds) and hasattr(exc, "show")


if __name__ == "__main__":
    sys.exit(main())
