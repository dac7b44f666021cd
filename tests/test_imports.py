"""What imports what: the package graph has no circle through tracking, the registry or the stage
helper, and the stages that handle data only (update, validate) import no model code.

The static half reads imports with ast (tests/test_dvc_deps.py's reader); the other half imports the
two stage scripts in a fresh interpreter and looks at sys.modules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

from test_dvc_deps import ROOT, SRC, absolute, module_file, module_name, required_files

MODEL_CODE = ("src/flipgate/models/", "src/flipgate/mitigation/", "src/flipgate/gate/")
# mitigation builds on models (classifier, training loop); models never imports mitigation: the pyfunc
# finds Gated Fusion's loader through an entry point (a plugin, not an import), and fit.py's accuracy
# interval is in metrics.


def package(name: str) -> str:
    """flipgate.a.b -> flipgate.a: the unit whose circles count (a top-level module is its own unit)."""
    return ".".join(name.split(".")[:2])


def imports(path) -> set[str]:
    """The flipgate modules `path` imports anywhere in its body, and the loader strings ("module:name") it
    names. Unlike the deps walk it skips a plain string that happens to read as a module (tracking's tag
    name "flipgate.stage"): a circle must be made of real imports."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node, path)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and ":" in node.value:
            out.add(node.value.split(":")[0])
    return {m for m in out if module_file(m)}


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in (SRC / "flipgate").rglob("*.py"):
        src = package(module_name(path))
        for name in imports(path):
            dst = package(name)
            if dst not in (src, "flipgate"):
                graph.setdefault(src, set()).add(dst)
    return graph


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected parts of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = set()
            while True:
                w = stack.pop()
                part.add(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(part)

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_between_packages():
    found = [sorted(c) for c in circles(package_graph())]
    assert not found, f"import circles between packages: {found}"


def test_the_circle_finder_finds_one():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_tracking_and_the_stage_helper_import_no_model_code():
    for module in ("tracking.py", "stage.py"):
        rel = [str(p.relative_to(ROOT)) for p in required_files(SRC / "flipgate" / module)]
        assert not [r for r in rel if r.startswith(MODEL_CODE)], f"{module} imports model code: {rel}"


def test_data_stages_import_no_torch_nor_model_code():
    """update and validate, imported as a run imports them, plus tracking (which stage.run imports to log
    the run): no torch, transformers or flipgate model, mitigation or registry module gets loaded."""
    code = textwrap.dedent(
        """
        import importlib.util, sys
        for name in ("update", "validate"):
            spec = importlib.util.spec_from_file_location(f"stage_{name}", f"stages/{name}.py")
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        import flipgate.tracking
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")
                     or m.startswith(("flipgate.models", "flipgate.mitigation", "flipgate.gate")))
        assert not bad, bad
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


# The pure core: the flip arithmetic and intervals, the mitigation maths and the gate's decision (every rule
# that decides a promotion). It decides and computes; tracking, pipelines, data checks and drawing are the edge.
CORE = ("flipgate.metrics", "flipgate.metrics.flips", "flipgate.metrics.intervals", "flipgate.metrics.table",
        "flipgate.mitigation.bcwi", "flipgate.mitigation.selection_rule", "flipgate.mitigation.ensemble",
        "flipgate.gate.policy")
EDGE = ("mlflow", "dvc", "great_expectations", "matplotlib")
EDGE_MODULES = ("flipgate.tracking", "flipgate.stage", "flipgate.report", "flipgate.data.validate", "flipgate.gate.render")


def test_the_core_imports_no_tracking_pipeline_data_checks_or_plotting():
    code = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {CORE!r}:
            importlib.import_module(name)
        bad = sorted({{m.split(".")[0] for m in sys.modules}} & set({EDGE!r}))
        bad += sorted(m for m in sys.modules if m.startswith({EDGE_MODULES!r}))
        assert not bad, bad
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_core_check_sees_an_edge_import():
    """The check above is only as good as its look at sys.modules: the report's plots do load matplotlib."""
    code = "import sys, flipgate.report.plots; assert 'matplotlib' in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_only_stage_scripts_import_the_pipeline_package():
    """flipgate.pipeline is the edge (a stage's body): the library below it never reaches up into it."""
    up = sorted(str(p.relative_to(ROOT)) for p in (SRC / "flipgate").rglob("*.py")
                if "pipeline" not in p.relative_to(SRC / "flipgate").parts
                and any(m.startswith("flipgate.pipeline") for m in imports(p)))
    assert not up, f"library modules that import flipgate.pipeline: {up}"
