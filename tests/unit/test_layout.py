"""bookd's shape, held: its layers (import-linter, as `make lint` runs it) and short code."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import tool

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "bookd"

MAX_CLASS_LINES = 200
"""No class of bookd is longer than this (Settings' declarations aside)."""
MAX_FUNCTION_LINES = 50


def definitions(kind: type) -> list[tuple[str, int]]:
    """(place, lines) of every class or function of bookd."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, kind):
                lines = node.end_lineno - node.lineno + 1
                found.append((f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", lines))
    return found


def test_no_class_is_longer_than_200_lines_but_the_settings_declarations():
    long = [
        (place, lines)
        for place, lines in definitions(ast.ClassDef)
        if lines > MAX_CLASS_LINES and not place.endswith(" Settings")
    ]
    assert long == []


def test_no_function_is_longer_than_50_lines():
    functions = definitions(ast.FunctionDef) + definitions(ast.AsyncFunctionDef)
    assert [(place, lines) for place, lines in functions if lines > MAX_FUNCTION_LINES] == []


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on the bookd package under ``root``, with the project's contracts."""
    return subprocess.run(
        [tool("lint-imports", "import-linter"), "--config", str(root / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # An import running back up a layer: the core reaching for the web side.
        ("core/books.py", "import bookd.web.app", "Each side imports only the sides below it"),
        # The rules importing metrics instead of telling their outcomes.
        (
            "rules/announcing.py",
            "import bookd.telemetry.metrics",
            "no AWS SDK, web, metrics or tracing",
        ),
        ("rules/work.py", "import boto3", "no AWS SDK, web, metrics or tracing"),
        # The rules tracing by themselves instead of through bookd.core.tracing.
        ("rules/work.py", "import opentelemetry.trace", "no AWS SDK, web, metrics or tracing"),
        # A circle between two modules of one package.
        ("rules/inflight.py", "import bookd.rules.settling", "No import circle"),
        # A new package nobody placed in a layer.
        ("extra.py", "import bookd.core.books", "Each side imports only the sides below it"),
    ],
)
def test_an_import_against_the_layers_breaks_the_lint(tmp_path, module, line, broken):
    # Given a copy of bookd with one import that the layers forbid,
    shutil.copytree(PACKAGE, tmp_path / "bookd")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / "bookd" / module
    target.write_text((target.read_text() if target.exists() else "") + f"\n{line}\n")
    # then the lint fails and names the contract it breaks.
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert f"{broken}" in result.stdout.replace("\n", " ")
    assert "BROKEN" in result.stdout
