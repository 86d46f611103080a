"""The import order of bgnn_sim's packages (see bgnn_sim/app/__init__.py): a package imports only
the ones at or below its level, so inference never pulls in training code and no stage reaches up
into the application layer."""

from __future__ import annotations

import ast
from pathlib import Path

import bgnn_sim

ROOT = Path(bgnn_sim.__file__).parent

# Level of each top-level module or package of bgnn_sim ("" is bgnn_sim/__init__.py).
LEVELS = {
    **dict.fromkeys(["", "errors", "configfile", "physics", "defaults", "device"], 0),
    **dict.fromkeys(["geometry", "io", "trajectory"], 1),
    "dem": 2,
    "graph": 3,
    "engine": 4,
    **dict.fromkeys(["models", "pretrained"], 5),
    "analysis": 6,
    "training": 7,
    "app": 8,
}
# (importer, imported) pairs allowed to go up, each with the reason it still exists.
ALLOWED: set[tuple[str, str]] = set()


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(("bgnn_sim", *parts)), path


def _imports(path: Path) -> set[str]:
    """Every bgnn_sim module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path}: relative import (bgnn_sim uses absolute imports)")
    return {name for name in found if name == "bgnn_sim" or name.startswith("bgnn_sim.")}


def _level(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    assert top in LEVELS, f"{module}: give bgnn_sim.{top} a level in tests/test_layers.py"
    return LEVELS[top]


def _module_of(name: str, known: set[str]) -> str | None:
    """The bgnn_sim module an imported name refers to (`from a.b import c`: a.b, or a.b.c where
    that is a module), None for a name that is not one of ours."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def test_no_package_imports_a_higher_one():
    modules = dict(_modules())
    upward = set()
    for module, path in modules.items():
        for name in _imports(path):
            target = _module_of(name, set(modules))
            if target is None or (module, target) in ALLOWED:
                continue
            if _level(target) > _level(module):
                upward.add(f"{module} imports {target}")
    assert not upward, "imports against the package order:\n" + "\n".join(sorted(upward))


def test_inference_never_imports_training():
    modules = dict(_modules())
    offenders = [
        f"{module} imports {name}"
        for module, path in modules.items()
        if module.split(".")[1:2] in (["models"], ["engine"])
        for name in _imports(path)
        if name.startswith(("bgnn_sim.training", "bgnn_sim.app"))
    ]
    assert not offenders, "\n".join(offenders)


def test_every_module_has_a_level():
    for module, _ in _modules():
        _level(module)


def test_the_check_sees_an_upward_import(tmp_path):
    """The walk finds imports inside functions too (a lazy import is still a dependency)."""
    source = tmp_path / "lazy.py"
    source.write_text("def f():\n    from bgnn_sim.training import lamslide\n")
    assert "bgnn_sim.training.lamslide" in _imports(source)
