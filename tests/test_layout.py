"""The package's structure: public interfaces between modules, no import cycles, names, version.

Static checks over the source (``ast``), so they see every module whether or not
a test imports it:

* no module imports another nstjax module's ``_private`` name, or reaches one as
  ``module._name``;
* the module-level imports between nstjax modules form no cycle (importing
  ``a.b.c`` from outside ``a.b`` also runs ``a`` and ``a.b``, so those count);
* no package exports a name that is also one of its submodules' names (the old
  ``nstjax.stylize`` function hid the ``nstjax.stylize`` module);
* every import, those inside functions included, goes down the order that
  docs/architecture.md states.
"""

from __future__ import annotations

import subprocess
import sys
import ast
import importlib
import importlib.metadata
import pkgutil
from pathlib import Path

from typer.testing import CliRunner

import nstjax

ROOT = Path(nstjax.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
PACKAGES = {name for name, p in MODULES.items() if p.name == "__init__.py"}


def resolve(importer: str, module: str | None, level: int) -> str:
    """The absolute module name of ``from <level dots><module> import …`` inside ``importer``."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    if importer not in PACKAGES:  # a plain module: its package is the base
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(name: str, *, module_level_only: bool) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for each nstjax import in module ``name``."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    if module_level_only:  # what runs at import: module-level statements, if/try blocks included
        scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        nodes = [n for top in tree.body if not isinstance(top, scopes) for n in ast.walk(top)]
    else:
        nodes = list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "nstjax"]
        elif isinstance(node, ast.ImportFrom):
            target = resolve(name, node.module, node.level)
            if target.split(".")[0] != "nstjax":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:  # `from package import module`
                    found.append((sub, None, node.lineno))
                else:
                    found.append((target, alias.name, node.lineno))
    return found


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_modules_were_found():
    assert {"nstjax", "nstjax.nst.run", "nstjax.models.vgg", "nstjax.cli"} <= set(MODULES)


def test_no_module_uses_another_modules_private_names():
    problems = []
    for name in MODULES:
        module_aliases: dict[str, str] = {}  # local name -> nstjax module it refers to
        tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
        for target, imported, line in imports_of(name, module_level_only=False):
            if imported is not None and is_private(imported) and target != name:
                problems.append(f"{name}:{line} imports {target}.{imported}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = resolve(name, node.module, node.level)
                for alias in node.names:
                    if f"{target}.{alias.name}" in MODULES:
                        module_aliases[alias.asname or alias.name] = f"{target}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES and alias.asname:
                        module_aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases
                and is_private(node.attr)
                and module_aliases[node.value.id] != name
            ):
                problems.append(f"{name}:{node.lineno} uses {module_aliases[node.value.id]}.{node.attr}")
    assert not problems, "\n".join(problems)


def test_the_private_name_check_catches_a_violation(tmp_path, monkeypatch):
    # The check above must be able to fail: a fake module importing a private name is caught.
    fake = tmp_path / "nstjax" / "fake.py"
    fake.parent.mkdir()
    fake.write_text("from .nst.run import _secret\nfrom .nst import engine\nx = engine._hidden\n")
    monkeypatch.setitem(MODULES, "nstjax.fake", fake)
    found = [imp for imp in imports_of("nstjax.fake", module_level_only=False) if imp[1] and is_private(imp[1])]
    assert found == [("nstjax.nst.run", "_secret", 1)]


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name in MODULES:
        own_ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for target, _, _ in imports_of(name, module_level_only=True):
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                step = ".".join(parts[:i])
                if step in MODULES and step not in own_ancestors and step != name:
                    graph[name].add(step)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def architecture_order() -> dict[str, int]:
    """Rank of each top-level unit (``cli``, ``nst``, ``hub``, …) in docs/architecture.md's list; equal ranks
    share a line (``fast/ adain/``)."""
    doc = (ROOT.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = doc.split("```", 2)[1]
    rank: dict[str, int] = {}
    entries = [line for line in block.splitlines() if line.startswith("  ") and not line.startswith("    ")]
    for i, line in enumerate(entries):
        for token in line.split():
            if not (token.endswith("/") or token.endswith(".py")):
                break
            rank[token.rstrip("/").removesuffix(".py")] = i
    return rank


def upward_imports(rank: dict[str, int]) -> list[tuple[str, str, int]]:
    """(importer, imported, line) for every import, at any depth, from a unit to one above it in ``rank``."""

    def unit(module: str) -> str:
        return module.split(".")[1] if "." in module else ""

    found = []
    for name in MODULES:
        for target, _, line in imports_of(name, module_level_only=False):
            a, b = unit(name), unit(target)
            if a != b and a in rank and b in rank and rank[b] < rank[a]:
                found.append((name, target, line))
    return found


def test_imports_only_go_down_the_architecture_list():
    rank = architecture_order()
    units = {name.split(".")[1] for name in MODULES if "." in name}
    assert units <= set(rank), f"units missing from docs/architecture.md's list: {sorted(units - set(rank))}"
    problems = [f"{a}:{line} imports {b}" for a, b, line in upward_imports(rank)]
    assert not problems, "\n".join(problems)


def test_the_web_server_imports_nothing_from_the_cli():
    # Both are generated from the systems' settings schemas; neither reads the other's tables.
    assert rank_of("serve") > rank_of("cli")
    assert not [t for name in MODULES if name.startswith("nstjax.serve") for t, _, _ in
                imports_of(name, module_level_only=False) if t.startswith("nstjax.cli")]


def rank_of(unit: str) -> int:
    return architecture_order()[unit]


MAX_MODULE_LINES = 600


def test_no_module_is_longer_than_one_sitting():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by job): {long}"


def test_the_order_check_catches_an_import_inside_a_function(tmp_path, monkeypatch):
    # An upward import hidden in a function body (models importing nst) is caught.
    fake = tmp_path / "nstjax" / "models" / "fake.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from ..nst import run\n    return run\n")
    monkeypatch.setitem(MODULES, "nstjax.models.fake", fake)
    assert ("nstjax.models.fake", "nstjax.nst.run", 2) in upward_imports(architecture_order())


def test_no_package_exports_a_name_that_is_one_of_its_modules():
    problems = []
    for package in sorted(PACKAGES):
        module = importlib.import_module(package)
        submodules = {info.name for info in pkgutil.iter_modules(module.__path__)}
        for exported in getattr(module, "__all__", ()):
            if exported in submodules:
                value = getattr(module, exported)
                if getattr(value, "__name__", None) != f"{package}.{exported}":
                    problems.append(f"{package}.{exported} is both a submodule and an exported {type(value).__name__}")
    assert not problems, "\n".join(problems)


def test_version_comes_from_the_installed_metadata():
    assert nstjax.__version__ == importlib.metadata.version("nstjax")
    from nstjax.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"nstjax {importlib.metadata.version('nstjax')}"


def test_public_names_resolve_lazily():
    # Every name in nstjax.__all__ is reachable (the lazy table points at the right modules).
    for name in nstjax.__all__:
        assert getattr(nstjax, name) is not None, name


def test_the_cli_starts_without_jax():
    # Every option is generated from the settings schemas at start-up; package __init__s re-export lazily
    # (nstjax.lazy) and the schemas import only JAX-free modules, so `nstjax --help` never pays for JAX.
    code = "import sys, nstjax.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'optax')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
