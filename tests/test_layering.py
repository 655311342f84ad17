"""One-way layering, read from the source (parsed, never imported): the package imports no top-level script, and the
scripts in datasets_scripts/ import the installed package, never a sibling file."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "foveated_vlm"
TOP_LEVEL_SCRIPTS = {"train", "datasets_scripts", "experiments", "benchmarks"}


def imported_roots(source: str) -> set[str]:
    """The first component of every absolute import in `source`, `importlib.import_module("x.y")` included;
    relative imports (`from .x import y`) stay inside the package and are left out."""
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                roots.add(node.args[0].value.split(".")[0])
    return roots


def test_imported_roots_sees_every_form_of_import():
    source = (
        "import os.path\nfrom train import parse\nfrom .data import x\n"
        "def f():\n    import benchmarks.run\n    return importlib.import_module('experiments.foveation')\n"
    )
    assert imported_roots(source) == {"os", "train", "benchmarks", "experiments"}


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: str(path.relative_to(ROOT)))
def test_the_package_imports_no_top_level_script(path):
    assert not imported_roots(path.read_text()) & TOP_LEVEL_SCRIPTS


def test_dataset_scripts_import_the_package_not_each_other():
    scripts = sorted((ROOT / "datasets_scripts").glob("*.py"))
    assert scripts
    siblings = {path.stem for path in scripts}
    for path in scripts:
        roots = imported_roots(path.read_text())
        assert "foveated_vlm" in roots and not roots & (siblings | TOP_LEVEL_SCRIPTS), path.name
