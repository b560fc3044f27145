"""Every module imports on its own, with no runtime import cycle, and no import climbs a floor.

A cycle shows up as an ImportError ("partially initialized module") only when the import starts
at one particular module, so each module is imported first, after every ``decayprune`` module has
been dropped from ``sys.modules``. One subprocess does the whole walk (a process per module would
cost seconds each).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import decayprune

WALK = r"""
import importlib, json, pkgutil, sys, traceback
import decayprune
names = sorted(m.name for m in pkgutil.walk_packages(decayprune.__path__, "decayprune."))
names = [n for n in names if not n.endswith("__main__")]
failures = {}
for name in ["decayprune"] + names:
    for loaded in [m for m in sys.modules if m == "decayprune" or m.startswith("decayprune.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failures[name] = traceback.format_exc(limit=3)
print(json.dumps({"checked": len(names) + 1, "failures": failures}))
"""


def _run(code: str) -> str:
    src = str(Path(decayprune.__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": src, "PATH": "", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def test_every_module_imports_first_without_a_cycle() -> None:
    report = json.loads(_run(WALK))
    assert report["checked"] > 30  # the walk found the package's modules
    assert report["failures"] == {}, "\n".join(f"{k}:\n{v}" for k, v in report["failures"].items())


LEAF_DEPENDENCIES = {"decayprune.config", "decayprune.errors", "decayprune.files", "decayprune.registry"}


def _module_level_imports(path: Path, package: str) -> set[str]:
    """Absolute names of the ``decayprune`` modules that ``path`` imports at module level."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names.add(module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.split(".")[0] == "decayprune"}


def test_config_is_a_leaf_that_imports_no_engine_code() -> None:
    config_dir = Path(decayprune.__file__).parent / "config"
    for path in sorted(config_dir.glob("*.py")):
        for name in _module_level_imports(path, "decayprune.config"):
            assert any(name == leaf or name.startswith(leaf + ".") for leaf in LEAF_DEPENDENCIES), (
                f"{path.name} imports {name}; config/ may import only {sorted(LEAF_DEPENDENCIES)}"
            )
    for leaf in ("registry", "errors", "files"):
        path = Path(decayprune.__file__).parent / f"{leaf}.py"
        assert _module_level_imports(path, "decayprune") <= {"decayprune"} | LEAF_DEPENDENCIES


# Floors of the package, top to bottom: a module may import only from rooms on lower floors (its own
# room aside). Every import counts: module level, inside a function, and under TYPE_CHECKING.
FLOORS: list[set[str]] = [
    {"__main__"},
    {"cli"},
    {"bench"},
    {"__init__"},  # the facade; serves check_model from jobs/ lazily
    {"jobs", "integrations"},  # integrations: callbacks for other trainers, imported lazily
    {"sensitivity", "scratch"},
    {"pruner"},
    {"methods"},
    {"sparse", "lowrank"},  # element masks and ranks: units and methods on the decay engine
    {"criteria", "decay"},
    {"structure"},
    {"train"},
    {"models", "data", "report", "measure"},
    {"config"},
    {"registry", "errors", "files"},
]


def _room(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _all_imports(path: Path, module: str, is_package: bool) -> list[tuple[str, int]]:
    """``(absolute decayprune module, line)`` of every import in ``path``, wherever it sits."""
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                targets = [".".join(p for p in (base, node.module or "") if p)]
            else:
                targets = [node.module or ""]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        out += [(t, node.lineno) for t in targets if t.split(".")[0] == "decayprune"]
    return out


def test_no_import_climbs_to_a_higher_floor() -> None:
    root = Path(decayprune.__file__).parent
    floor = {room: len(FLOORS) - i for i, rooms in enumerate(FLOORS) for room in rooms}
    climbs, unplaced = [], set()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        is_package = rel.name == "__init__"
        module = ".".join(rel.parts[:-1] if is_package else rel.parts)
        here = _room(module)
        for target, line in _all_imports(path, module, is_package):
            there = _room(target)
            unplaced |= {r for r in (here, there) if r not in floor}
            if here != there and here in floor and there in floor and floor[there] >= floor[here]:
                climbs.append(f"{path.relative_to(root)}:{line} imports {target} ({here} -> {there})")
    assert not unplaced, f"rooms missing from FLOORS: {sorted(unplaced)}"
    assert not climbs, "imports that do not go down a floor:\n" + "\n".join(climbs)


def test_the_floor_check_sees_function_local_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from ..pruner import Pruner\n    return Pruner\n")
    assert _all_imports(source, "decayprune.structure.m", False) == [("decayprune.pruner", 2)]
