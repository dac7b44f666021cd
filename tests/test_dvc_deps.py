"""Every dvc.yaml stage depends on every flipgate module its script imports, transitively.

A module missing from a stage's `deps` lets `dvc repro` keep that stage's old outputs after the module
changes (edit the NFR arithmetic and `reports/gate.json` stays as it was). The imports are read with
`ast`, nothing is imported: module-level and function-level `import` / `from ... import`, relative
imports, and string references to a flipgate module (`importlib.import_module("flipgate.x")`, loader
strings such as `"flipgate.models.pyfunc:load_hf"`). A string that names a module is counted even where
it is only a logger name: an extra edge can only ask for more deps, never hide a missing one. A module
that names an entry-point group of pyproject.toml (models/pyfunc.py reads "flipgate.model_kinds") runs
the modules registered in it, so they count as its imports.

Importing `flipgate.a.b` also runs `flipgate/__init__.py` and `flipgate/a/__init__.py`. A package
`__init__.py` must be a dep when a stage takes a name from it or when it does more than hold a docstring
and dunder constants (`__version__`); its imports are followed either way.
"""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
MODULE_STRING = re.compile(r"flipgate(?:\.\w+)*(?::[\w.]+)?")
ENTRY_POINTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("entry-points", {})


def module_file(name: str) -> Path | None:
    """The file of module `name` (a module or a package's __init__.py), None when it is not a flipgate module."""
    if name.split(".")[0] != "flipgate":
        return None
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def parents_of(name: str) -> list[str]:
    """The packages importing `name` runs first: flipgate.a.b -> flipgate, flipgate.a."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def absolute(node: ast.ImportFrom, path: Path) -> str:
    """The module an ImportFrom reads from, with a relative import resolved against `path`."""
    if not node.level:
        return node.module or ""
    package = module_name(path).split(".")
    if not is_package(path):
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


@cache
def direct_imports(path: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(modules `path` imports anywhere in its body, packages it takes a non-module name from)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    names_from: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node, path)
            modules.add(base)
            for alias in node.names:
                if module_file(f"{base}.{alias.name}"):
                    modules.add(f"{base}.{alias.name}")
                else:
                    names_from.add(base)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            for target in ENTRY_POINTS.get(node.value, {}).values():
                modules.add(target.split(":")[0])
            if MODULE_STRING.fullmatch(node.value):
                name = node.value.split(":")[0]
                if module_file(name):
                    modules.add(name)
    flipgate = {m for m in modules if module_file(m)}
    return frozenset(flipgate), frozenset(n for n in names_from if module_file(n))


def trivial_init(path: Path) -> bool:
    """An __init__.py that only holds a docstring and dunder constants: running it changes nothing."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if (
            isinstance(node, ast.Assign)
            and all(isinstance(t, ast.Name) and t.id.startswith("__") for t in node.targets)
            and isinstance(node.value, ast.Constant)
        ):
            continue
        return False
    return True


def required_files(script: Path) -> set[Path]:
    """Every flipgate source file the script runs (or reads a name from), transitively."""
    seen: set[Path] = set()
    required: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        modules, names_from = direct_imports(path)
        for name in modules:
            for package in parents_of(name):
                todo.append(module_file(package))
            todo.append(module_file(name))
        for name in names_from:
            required.add(module_file(name))
    for path in seen - {script}:
        if not (is_package(path) and trivial_init(path)):
            required.add(path)
    return required


def stages() -> dict[str, tuple[Path, list[str]]]:
    """name -> (stage script, deps) for every stage in dvc.yaml, `foreach`/`do` stages included."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    out = {}
    for name, stage in spec["stages"].items():
        body = stage.get("do", stage)
        scripts = [w for w in shlex.split(body["cmd"]) if w.startswith("stages/") and w.endswith(".py")]
        assert len(scripts) == 1, f"stage {name}: expected one stages/*.py in its cmd, found {scripts}"
        deps = [next(iter(d)) if isinstance(d, dict) else d for d in body.get("deps", [])]
        out[name] = (ROOT / scripts[0], deps)
    return out


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


STAGES = stages()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_its_imports(name):
    script, deps = STAGES[name]
    assert covered(script, deps), f"stage {name}: its script {script.relative_to(ROOT)} is not a dep"
    missing = sorted(str(p.relative_to(ROOT)) for p in required_files(script) if not covered(p, deps))
    assert not missing, f"stage {name} imports modules missing from its deps: {missing}"


def test_deps_name_existing_sources():
    """A src/ or stages/ dep that does not exist (a renamed module) covers nothing."""
    stale = sorted(
        f"{name}: {d}"
        for name, (_, deps) in STAGES.items()
        for d in deps
        if d.startswith(("src/", "stages/")) and not (ROOT / d).exists()
    )
    assert not stale, f"deps that name no file: {stale}"


def test_the_import_walk_sees_lazy_and_string_imports():
    """The walk is only as good as what it sees: stage.py imports params.py and tracking.py inside
    functions, the train stage gate/champion.py, and pyfunc.py loads gated_fusion.py through the entry
    points pyproject.toml registers in the group it names."""
    rel = {str(p.relative_to(ROOT)) for p in required_files(SRC / "flipgate" / "models" / "pyfunc.py")}
    assert "src/flipgate/mitigation/gated_fusion.py" in rel
    rel = {str(p.relative_to(ROOT)) for p in required_files(SRC / "flipgate" / "stage.py")}
    assert {"src/flipgate/params.py", "src/flipgate/tracking.py"} <= rel
    rel = {str(p.relative_to(ROOT)) for p in required_files(ROOT / "stages" / "train.py")}
    assert "src/flipgate/gate/champion.py" in rel
