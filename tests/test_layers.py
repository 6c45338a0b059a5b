"""The layer rules of docs/ARCHITECTURE.md, checked by import-linter with the contracts in pyproject.toml.

The real tree must keep every contract; a copy of the package with one forbidden import added must break the contract
that rule belongs to (so the contracts are really read and really checked, function-level imports included).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports with the repository's contracts on the ``batchlabel`` package found in ``package_parent``."""
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} missing: import-linter is in the dev extra (make install)")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(REPO / "pyproject.toml")],
        cwd=package_parent, env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )


def copy_package(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "batchlabel", tmp_path / "batchlabel", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def add_function_import(module: Path, statement: str) -> None:
    """Append a function whose body holds ``statement`` (a function-level import, the kind that hid the old cycles)."""
    module.write_text(module.read_text() + f"\n\ndef _injected() -> None:\n    {statement}  # noqa\n")


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "statement", "contract"),
    [
        ("infer/store.py", "from batchlabel.ingest import journal", "Layers point down"),
        ("serve/app.py", "from batchlabel.ingest import pipeline", "Layers point down"),
        ("annotate/preannotate.py", "from batchlabel.dataset import coco", "Layers point down"),
        ("ingest/sink.py", "from batchlabel.commands import ingest", "Layers point down"),
        ("learn/training.py", "from batchlabel.report import metrics", "Layers point down"),
        ("dataset/builder.py", "from batchlabel.learn import training", "Layers point down"),
        ("samples.py", "from batchlabel import cli", "Nothing imports commands or cli"),
        ("dataset/coco.py", "from batchlabel.dataset import builder", "No import cycles"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, statement: str, contract: str) -> None:
    root = copy_package(tmp_path)
    add_function_import(root / "batchlabel" / module, statement)
    result = lint_imports(root)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout
