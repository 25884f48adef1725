"""The import contract: the core never imports subsystems, the server or integrations.

Core (DESIGN.md): content, taxonomy, policy, decision, errors, settings, registry, store,
fusion, guard, detectors/, actions/, provenance/, text/. Subsystems (generators, audit,
merge, engines, video, evaluation, server, integrations, the CLI) build on the core, never
the reverse, so a library user imports the Guard without the web stack, Ray or torch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "genguard"
CORE = [
    "content.py", "taxonomy.py", "policy.py", "decision.py", "errors.py", "settings.py",
    "registry.py", "store.py", "fusion.py", "guard.py", "detectors", "actions", "provenance",
    "text",
]  # fmt: skip
SUBSYSTEMS = (
    "generators", "audit", "merge", "engines", "video", "evaluation", "server", "integrations",
)  # fmt: skip


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _core_files() -> list[Path]:
    files = []
    for entry in CORE:
        path = PACKAGE / entry
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return [f for f in files if not f.name.endswith("cli.py")]  # CLIs are shells, not core


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_modules_never_import_subsystems(path: Path) -> None:
    bad = sorted(
        name
        for name in _imports(path)
        if any(name == f"genguard.{s}" or name.startswith(f"genguard.{s}.") for s in SUBSYSTEMS)
        or name == "genguard.cli"
    )
    assert bad == [], f"{path.relative_to(PACKAGE)} imports {bad}"


def test_the_contract_covers_the_core() -> None:
    assert len(_core_files()) >= 30
