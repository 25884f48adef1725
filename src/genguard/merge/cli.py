"""CLI commands of genguard.merge (registered on the main app by genguard.cli).

``genguard merge recipe.yaml --out merged.safetensors`` streams the merge with a progress
bar; ``genguard merge-methods`` lists the registered methods and their parameters.
``--audit SUITE`` then audits the merged file against its sources with genguard's model
audit (``genguard.audit``) and prints the reports side by side: a merge can bring back
what one of its parents had removed, and this is the moment to find out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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

if TYPE_CHECKING:
    from genguard.audit.classify import ImageClassifier
    from genguard.audit.suites import PromptSuite
    from genguard.merge.config import MergeConfig

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
    audit: Annotated[
        str | None,
        typer.Option(
            help="after merging, audit the result and its sources on this prompt suite "
            "(built-in name or .toml/.txt file)"
        ),
    ] = None,
    audit_out: Annotated[
        Path | None, typer.Option(help="audit report folder (default: OUT's name + .audit)")
    ] = None,
    audit_seeds: Annotated[int, typer.Option(help="audit: seeds per prompt", min=1)] = 4,
    audit_steps: Annotated[int, typer.Option(help="audit: sampling steps", min=1)] = 25,
    audit_size: Annotated[int, typer.Option(help="audit: image width and height", min=8)] = 512,
    audit_generator: Annotated[
        str, typer.Option(help="audit: diffusers, or fake for a dry run")
    ] = "diffusers",
    audit_classifier: Annotated[str, typer.Option(help="audit: registered classifier")] = "guard",
    audit_device: Annotated[str, typer.Option(help="audit: torch device")] = "cpu",
    audit_config: Annotated[
        str | None,
        typer.Option(help="audit: local diffusers folder with configs for single files"),
    ] = None,
    audit_threshold: Annotated[
        float, typer.Option(help="audit: category score counted as present")
    ] = 0.5,
) -> None:
    """Merge checkpoints as a recipe describes, streaming one tensor at a time."""
    from genguard.merge.config import load_config, parse_config
    from genguard.merge.engine import merge

    cfg = load_config(config)
    overrides = {k: v for k, v in (("dtype", dtype), ("on_missing", on_missing)) if v}
    if overrides:
        data = cfg.model_dump(mode="json") | overrides
        cfg = parse_config(data)
    audit_plan = None
    if audit is not None:  # suite and classifier are checked before the (long) merge
        audit_plan = MergeAudit.prepare(
            audit,
            audit_out or out.with_name(out.stem + ".audit"),
            seeds=audit_seeds,
            steps=audit_steps,
            size=audit_size,
            generator=audit_generator,
            classifier=audit_classifier,
            generator_options={"device": audit_device, "config": audit_config},
            threshold=audit_threshold,
        )
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
    if audit_plan is not None:
        summary, page = audit_plan.run(cfg, report.output, quiet=quiet)
        out_console = Console()  # wide enough not to wrap the table when piped
        out_console.width = max(out_console.width, 120)
        out_console.print(audit_table(summary))
        console.print(f"audit report: {page}", highlight=False)


@dataclass
class MergeAudit:
    """An audit of a merge's output next to its sources, checked before the merge runs."""

    suite: PromptSuite
    out: Path
    seeds: list[int]
    settings: Any  # GenerationSettings (imported lazily: the audit pulls in PIL)
    generator: str
    classifier: ImageClassifier
    generator_options: dict[str, Any]
    threshold: float

    @classmethod
    def prepare(
        cls,
        suite: str,
        out: Path,
        *,
        seeds: int,
        steps: int,
        size: int,
        generator: str,
        classifier: str,
        generator_options: dict[str, Any],
        threshold: float,
    ) -> MergeAudit:
        """Load the suite, the classifier and the generator's registration: a typo in any
        of them fails now, not after a merge that can take minutes."""
        from genguard.audit.classify import create_classifier
        from genguard.audit.suites import load_suite
        from genguard.generators import GENERATORS, GenerationSettings

        prompts = load_suite(suite)
        GENERATORS.get(generator)
        return cls(
            suite=prompts,
            out=out,
            seeds=list(range(seeds)),
            settings=GenerationSettings(
                steps=steps, width=size, height=size, negative_prompt=prompts.negative_prompt
            ),
            generator=generator,
            classifier=create_classifier(classifier),
            generator_options=generator_options,
            threshold=threshold,
        )

    def run(self, cfg: MergeConfig, merged: Path, *, quiet: bool) -> tuple[dict[str, Any], Path]:
        """Audit every source of ``cfg`` and ``merged``; returns the summary and the HTML."""
        from genguard.audit.report import summarize, write_report
        from genguard.audit.runner import run_audit

        models, labels = audit_models(cfg, merged)
        with Progress(
            TextColumn("[bold]auditing[/bold] {task.description}"),
            BarColumn(),
            console=console,
            disable=quiet,
            transient=True,
        ) as bar:
            task = bar.add_task("", total=len(models) * len(self.suite.prompts) * len(self.seeds))

            def progress(done: int, total: int, what: str) -> None:
                bar.update(task, completed=done, description=what)

            result = run_audit(
                models,
                self.suite,
                self.seeds,
                self.settings,
                self.out,
                self.classifier,
                generator=self.generator,
                generator_options=self.generator_options,
                labels=labels,
                progress=progress,
            )
        page = write_report(result, self.out, self.threshold)
        return summarize(result, self.threshold), page


def audit_models(cfg: MergeConfig, merged: Path) -> tuple[list[str], list[str]]:
    """Paths and labels to audit: each model, the base (if any), then the merge (last)."""
    models = [str(spec.model) for spec in cfg.models]
    labels = [spec.label for spec in cfg.models]
    if cfg.base_model is not None:
        models.append(str(cfg.base_model))
        labels.append(f"base:{cfg.base_model.stem}")
    return [*models, str(merged)], [*labels, f"merged:{merged.stem}"]


def _pct(p: dict[str, Any]) -> str:
    low, high = p["ci95"]
    return f"{100 * p['rate']:.1f}% [{100 * low:.1f}-{100 * high:.1f}]"


def audit_table(summary: dict[str, Any]) -> Table:
    """The models side by side (one column each, the merge last), one row per measure.

    Rows: images, the flagged rate and each category's share at or above the threshold
    (Wilson 95% intervals), then ``merged - this``: the merge's flagged rate minus that
    model's, in percentage points, with the two-proportion test's p-value, so a merge
    that flags more than its parents on innocent prompts stands out. Columns per model
    keep the table narrow however many categories the classifier reports.
    """
    models = summary["models"]
    merged = models[-1]["label"]
    merged_rate = models[-1]["flagged"]["rate"]
    categories = sorted({c for m in models for c in m["categories"]})
    # comparisons pair (a, b) in model order, so b is the merge; the difference is taken
    # from the rates (merged - a), not by negating a - b, which would print "-0.0 pts"
    versus = {c["a"]: c["flagged"] for c in summary["comparisons"] if c["b"] == merged}
    table = Table(
        title=f"audit: suite {summary['suite']['name']} ({summary['suite']['prompts']} "
        f"prompts x {len(summary['seeds'])} seeds); flagged = action != allow; "
        f"categories: share scoring >= {summary['threshold']:g}; [95% CI]"
    )
    table.add_column("", no_wrap=True)
    for m in models:
        table.add_column(m["label"], no_wrap=True)
    table.add_row("images", *(str(m["images"]) for m in models))
    table.add_row("flagged", *(_pct(m["flagged"]) for m in models))
    for c in categories:
        table.add_row(c, *(_pct(m["categories"][c]) for m in models))
    table.add_row(
        "merged - this",
        *(
            f"{100 * (merged_rate - m['flagged']['rate']):+.1f} pts (p={t['p_value']:.3f})"
            if (t := versus.get(m["label"])) is not None
            else ""
            for m in models
        ),
    )
    return table


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
    from genguard.merge import lora_cli  # `genguard lora bake|extract`

    lora_cli.register(app)
