"""The package's structure, checked from its source: no import loop, no import of the benchmark scripts, small
modules, block names only in their owner, no path outside the repository."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "bnncc"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every bnncc module ``name`` imports, at module level or inside a function (a lazy import is still a
    dependency): the deepest module an import statement names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def test_no_import_loop():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    cycles = []

    def visit(m, stack, state):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(" → ".join([*stack[stack.index(n):], n]))
            elif n not in state:
                visit(n, [*stack, n], state)
        state[m] = 2

    state: dict[str, int] = {}
    for m in sorted(graph):
        if m not in state:
            visit(m, [m], state)
    assert not cycles, "import loops:\n" + "\n".join(cycles)
    assert graph["bnncc.pipeline"] and "bnncc.tune.log" in graph["bnncc.pipeline"]  # the walk sees lazy imports


def test_package_does_not_import_benchmarks():
    offenders = [str(p.relative_to(ROOT)) for p in PKG.rglob("*.py")
                 if re.search(r"^\s*(from|import)\s+benchmarks\b", p.read_text(), re.M) or "sys.path.insert" in
                 p.read_text()]
    assert not offenders


def test_modules_are_small():
    big = {str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_block_names_only_in_their_owner():
    """The TE block names are constants of the op modules (bnncc/relay_ops); everyone else imports them."""
    import bnncc.relay_ops as ops

    names = {getattr(ops, n) for n in dir(ops) if n.endswith("_BLOCK")}
    assert {"bnncc_bconv", "bnncc_bdense", "bnncc_bitpack", "bnncc_bmaxpool", "bnncc_output", "bnncc_pad"} <= names
    found = []
    for path in PKG.rglob("*.py"):
        if (PKG / "relay_ops") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "\n".join(found)


def test_nothing_points_outside_the_repository():
    outside = "shared"  # the workspace folder beside the checkout (spelled in parts so this file does not match)
    pattern = rf"\.\./{outside}\|/work/{outside}"
    out = subprocess.run(["git", "grep", "-n", "-I", pattern], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1 and not out.stdout, out.stdout  # git grep: 1 = no match


def test_tests_mirror_the_package():
    for sub in ("relay_ops", "schedules", "frontend", "tune", "device", "rpc", "compare"):
        assert (PKG / sub).is_dir(), sub
        assert list((ROOT / "tests" / sub).glob("test_*.py")), f"tests/{sub}/ has no tests"
