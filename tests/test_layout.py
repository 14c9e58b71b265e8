"""The shape of the code: no import circles in expmae/, every module on its floor (a lower floor never
imports a higher one), modules and functions of readable size, no test module importing another, and a
dry run that leaves results/ untouched."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.workflow import ROOT, placeholder_workflow, smk

PKG = ROOT / "expmae"
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 80
SHORT_FUNCTIONS = ("mae/pretrain.py", "report/", "train/")  # where every function must stay short
# The package's floors, lowest first: a module imports (lazily too) only modules of its own floor or
# below. A name is a module or a package (all its modules); a new module must be placed here.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("base: files, config, numerics", ("expmae", "expmae.config", "expmae.io", "expmae.weights", "expmae.device",
                                        "expmae.encoder_format", "expmae.npnet", "expmae.imaging", "expmae.labels",
                                        "expmae.manifest", "expmae.registry", "expmae.shard_hash", "expmae.ingest",
                                        "expmae.lock", "expmae.guard", "expmae.cache")),
    ("per-video stages", ("expmae.faces", "expmae.mae")),
    ("features", ("expmae.features", "expmae.models")),
    ("training", ("expmae.train",)),
    ("evaluation and use", ("expmae.probe", "expmae.report", "expmae.tracks", "expmae.predict", "expmae.export")),
    ("entry points", ("expmae.check", "expmae.dag", "expmae.cli", "expmae.__main__", "expmae.demo",
                      "expmae.docs_config")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """expmae modules that `path` imports anywhere (top level or inside functions: a lazy import
    is still a dependency). `from pkg import name` counts pkg.name when that is a module, else pkg."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            subs = {f"{base}.{a.name}" for a in node.names} & modules
            out |= subs or {base}  # `from . import track` depends on the module track, not on the package
    return {m for m in out if m in modules and m != me}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def import_graph() -> dict[str, set[str]]:
    files = sorted(PKG.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imports_of(f, modules) for f in files}


def floor_of(module: str, floors: list[tuple[str, tuple[str, ...]]] = FLOORS) -> int | None:
    """Index of the floor naming `module` or its closest package (expmae.train.cv -> expmae.train)."""
    best: tuple[int, int] | None = None  # (length of the matching name, floor)
    for i, (_, names) in enumerate(floors):
        for n in names:
            inside = module.startswith(n + ".") and n != "expmae"  # the root names its __init__ only
            if (module == n or inside) and (best is None or len(n) > best[0]):
                best = (len(n), i)
    return None if best is None else best[1]


def floor_violations(graph: dict[str, set[str]], floors: list[tuple[str, tuple[str, ...]]] = FLOORS) -> list[str]:
    """'a (floor) imports b (higher floor)' for every import that goes up, and the modules on no floor."""
    out = [f"{m} is on no floor: add it to FLOORS" for m in sorted(graph) if floor_of(m, floors) is None]
    for a in sorted(graph):
        fa = floor_of(a, floors)
        for b in sorted(graph[a]):
            fb = floor_of(b, floors)
            if fa is not None and fb is not None and fb > fa:
                out.append(f"{a} ({floors[fa][0]}) imports {b} ({floors[fb][0]})")
    return out


def test_no_import_circle_in_the_package():
    graph = import_graph()
    assert "expmae.train.cv" in graph, "layout changed: update this test"
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph))}"


def test_no_floor_imports_a_higher_one():
    assert not floor_violations(import_graph()), floor_violations(import_graph())


def test_the_floor_check_finds_inversions():
    floors = [("low", ("p.a",)), ("high", ("p.b",))]
    assert floor_violations({"p.a.x": {"p.b.y"}, "p.b.y": set()}, floors) == ["p.a.x (low) imports p.b.y (high)"]
    assert floor_violations({"p.b.y": {"p.a.x"}, "p.a.x": set()}, floors) == []
    assert floor_violations({"p.c": set()}, floors) == ["p.c is on no floor: add it to FLOORS"]
    assert floor_of("expmae") == 0 and floor_of("expmae.not_placed") is None  # the root is its __init__ only


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_modules_and_functions_stay_readable():
    long_modules, long_functions = [], []
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(PKG).as_posix()
        text = f.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            long_modules.append(f"{rel}: {text.count(chr(10))} lines")
        if rel.startswith(SHORT_FUNCTIONS):
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    n = node.end_lineno - node.lineno + 1
                    if n > MAX_FUNCTION_LINES:
                        long_functions.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
    assert not long_modules, long_modules
    assert not long_functions, long_functions


def test_no_test_module_imports_another():
    tests = {p.stem for p in (ROOT / "tests").glob("test_*.py")}
    bad = []
    for p in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{p.name} imports {n}" for n in names if n.split(".")[0] in tests]
    assert not bad, bad


@pytest.mark.e2e
def test_dry_run_lint_and_report_write_nothing_under_results(tmp_path):
    wd = placeholder_workflow(tmp_path / "wf")
    jobs = smk(wd, "-n")
    assert "ingest_shard" in jobs.stdout + jobs.stderr  # a dry run that did plan the jobs
    smk(wd, "--lint")  # exit code 1 on any finding
    assert not (wd / "results").exists(), sorted(p.name for p in (wd / "results").rglob("*"))


def test_rule_files_are_snakefmt_clean():
    p = subprocess.run([str(Path(sys.executable).with_name("snakefmt")), "--check", "Snakefile", "workflow/rules"],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
