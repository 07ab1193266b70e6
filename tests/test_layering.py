"""Who may import whom inside gear_trt, read from the code with ast.

Every `import gear_trt.x` / `from gear_trt.x import ...` counts, wherever it stands: at the top, inside
a function (a lazy import is still a dependency, and the way loops hide) or under TYPE_CHECKING.
LAYERS is the one table of the rules; docs/design.md gives each row's reason. NEVER are the
architecture's rules (../shared/design/ARCHITECTURE.md) that no row may break.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gear_trt"

BASE = {"errors", "_deps", "io", "spec", "choices"}  # plain modules everyone may use
RUN = {"records", "rundir"}  # the run directory's one owner and its typed records (stdlib only)
# Part of gear_trt (a subpackage, or a top-level module by its stem) -> the parts it may import.
LAYERS: dict[str, set[str]] = {
    "errors": set(),
    "_deps": {"errors"},
    "io": {"errors"},
    "choices": set(),
    "spec": {"errors", "choices"},
    "records": set(),
    "rundir": {"errors", "io", "records", "choices"},
    "artifacts": BASE,
    "models": BASE | {"artifacts"},
    "data": BASE | {"artifacts"},
    "corruptions": BASE | {"data"},
    "energy": BASE,
    "train": BASE | {"artifacts", "models", "data", "energy"},
    "grow": BASE | {"artifacts", "models", "data", "train"},
    "backends": BASE | {"artifacts", "models"},
    "runtime": BASE | {"artifacts", "backends"},
    "evaluate": BASE | RUN | {"artifacts", "backends", "models", "data", "corruptions", "energy"},
    "export": BASE | RUN | {"artifacts", "backends", "models", "data"},
    "report": BASE | RUN | {"artifacts"},
    "pipeline": BASE | RUN | {"artifacts", "models", "data", "corruptions", "energy", "train", "grow", "backends", "evaluate", "export",
                              "report"},
    "sweep": BASE | RUN | {"data", "grow", "pipeline"},
    "cli": BASE | RUN | {"artifacts", "models", "data", "corruptions", "energy", "train", "grow", "backends", "runtime", "evaluate",
                         "export", "report", "pipeline", "sweep"},
    "__main__": {"cli"},
}
NEVER: dict[str, set[str]] = {
    "models": {"train", "grow", "pipeline", "export", "backends", "cli"},
    "artifacts": {"train", "grow", "pipeline", "export", "backends", "evaluate", "data", "models", "cli"},
    "backends": {"train", "grow", "pipeline", "cli"},
    "runtime": {"train", "grow", "pipeline", "models", "data", "cli"},
    "grow": {"pipeline", "export", "backends", "cli"},
}


def part_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imports(source: str, here: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, part of gear_trt) of every import in `source`, the module gear_trt/<here>.py (or its
    __init__). `from gear_trt import __version__` names no part."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = ["gear_trt", *here[: len(here) - node.level]]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from gear_trt import x` imports the part x (if x is one)
            names = [f"{module}.{a.name}" for a in node.names] if module == "gear_trt" else [module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "gear_trt" and len(parts) > 1 and ((PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file()):
                found.append((node.lineno, parts[1]))
    return found


def imported_parts(path: Path) -> list[tuple[int, str]]:
    return imports(path.read_text(encoding="utf-8"), path.relative_to(PACKAGE).with_suffix("").parts)


FILES = sorted(p for p in PACKAGE.rglob("*.py") if part_of(p) != "__init__")


def test_every_part_has_a_row() -> None:
    parts = {part_of(p) for p in FILES}
    missing = sorted(parts - set(LAYERS))
    assert not missing, (f"gear_trt/{missing} has no row in LAYERS (tests/test_layering.py): add one saying what it may import, "
                         "and a line in docs/design.md's layer section")


def test_imports_follow_the_layers() -> None:
    bad = []
    for path in FILES:
        part = part_of(path)
        allowed = LAYERS.get(part, set()) | {part}
        for line, target in imported_parts(path):
            if target not in allowed:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {part} -> {target}")
    assert not bad, "imports that cross the layers (tests/test_layering.py LAYERS, docs/design.md):\n" + "\n".join(bad)


def test_root_package_imports_nothing() -> None:
    """`import gear_trt` (and so `gear-trt --help`) stays cheap: the root holds the version only."""
    assert imported_parts(PACKAGE / "__init__.py") == []


@pytest.mark.parametrize("part", sorted(NEVER))
def test_table_keeps_the_architecture_rules(part: str) -> None:
    assert not LAYERS[part] & NEVER[part], f"LAYERS lets {part} import {sorted(LAYERS[part] & NEVER[part])}"


def test_nothing_below_the_cli_imports_it() -> None:
    assert [p for p, allowed in LAYERS.items() if "cli" in allowed] == ["__main__"]


def test_no_loops_between_parts() -> None:
    """The table is a hierarchy: no part may reach itself through the parts it may import."""
    def reach(part: str, seen: frozenset[str]) -> None:
        for nxt in LAYERS.get(part, set()):
            assert nxt not in seen, f"a loop: {' -> '.join([*seen, nxt])}"
            reach(nxt, seen | {nxt})

    for part in LAYERS:
        reach(part, frozenset({part}))


def test_the_reader_sees_every_kind_of_import() -> None:
    """The analysis is not blind: imports inside functions, under TYPE_CHECKING, relative ones and
    `from gear_trt import x` all count."""
    source = """
import gear_trt.spec
from typing import TYPE_CHECKING
from gear_trt import models, __version__
if TYPE_CHECKING:
    from gear_trt.data.imageset import ImageSet
def f():
    from gear_trt.train import train
    from ..pipeline import stages
    from . import onnxrt
"""
    assert sorted(imports(source, ("backends", "tensorrt"))) == [(2, "spec"), (4, "models"), (6, "data"), (8, "train"), (9, "pipeline"),
                                                                 (10, "backends")]
