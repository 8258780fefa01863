"""The package's import graph, read from the source with ``ast`` (nothing is imported): data flows one way.

Every ``import`` and ``from ... import`` counts, at module level and inside functions (a deferred import is
still a dependency), ``if TYPE_CHECKING:`` blocks included; relative imports are resolved against the
importing module's package. ``from photofeh.a import b`` is an edge to the module ``photofeh.a.b`` when that
is a module, else to ``photofeh.a``.

The stages, lowest first (docs/architecture.md): a module may import its own stage and any stage of a lower
tier, never a stage of its own tier (siblings stay independent) or of a higher one.

- base: ``_version``, ``bands``, ``schema``, ``errors``, ``processes`` (the package's top-level modules);
- ``io/``: catalogues, presets, validation, dust, cross-match, training sets, locks;
- ``model/`` and ``simulate/``, side by side. DESIGN.md puts the mock survey "beside io", but it writes its
  catalogue with ``io.catalog`` and locks with ``io.locking``, so it stands on io, and only ``report/`` (the
  mock's laws drawn beside a measured profile) and the command line import it;
- ``scale/`` and ``galaxy/``, side by side: both use the model; neither uses the other;
- ``report/``: figures and the HTML page, reading what the stages below wrote;
- the package root (``photofeh/__init__.py``), which re-exports ``load_model`` from ``model/``;
- ``cli``: the command line, which composes all of the above.

The test prints the offending edges (``importer -> imported (file:line)``). It also holds every module to
600 lines (one job per module, DESIGN.md).
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "photofeh"
BASE = {"_version", "bands", "schema", "errors", "processes"}
TIERS = (("base",), ("io",), ("model", "simulate"), ("scale", "galaxy"), ("report",), (PACKAGE,), ("cli",))
TIER = {stage: rank for rank, stages in enumerate(TIERS) for stage in stages}
MAX_LINES = 600

# Edges that break the rules today, each with why and what removes it. The list only shrinks: an entry whose
# edge has gone fails the test until it is deleted here.
PENDING: dict[tuple[str, str], str] = {}


def modules(src: Path = SRC) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its ``__init__.py``)."""
    out = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def stage(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return PACKAGE
    return "base" if parts[1] in BASE else parts[1]


def imports(mods: dict[str, Path], src: Path = SRC) -> dict[tuple[str, str], list[str]]:
    """(importer, imported) -> the places (``file:line``) where the importer imports it."""
    def known(name: str) -> str | None:  # the module itself, else the nearest enclosing package or module
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        where = path.relative_to(src.parent)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [known(a.name) for a in node.names if a.name.split(".")[0] == PACKAGE]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] != PACKAGE:
                    continue
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in mods else known(source)
                           for a in node.names]
            for target in dict.fromkeys(targets):
                if target is not None and target != name:
                    edges[(name, target)].append(f"{where}:{node.lineno}")
    return edges


def cycles(edges) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def shown(edges, pairs) -> str:
    return "\n".join(f"  {a} -> {b}  ({', '.join(edges[(a, b)])})" for a, b in sorted(pairs))


@functools.cache
def package_graph() -> tuple[dict[str, Path], dict[tuple[str, str], list[str]]]:
    mods = modules()
    return mods, imports(mods)


def test_the_reader_finds_deferred_and_relative_imports(tmp_path):
    """The graph reader itself, on a small package: imports inside functions, relative imports from a module
    and from a package's ``__init__``, ``from package import module``, and names that are not modules."""
    files = {
        "__init__.py": "",
        "bands.py": "X = 1\n",
        "io/__init__.py": "from . import readers\n",
        "io/readers.py": "def f():\n    from ..bands import X\n    return X\n",
        "io/dust.py": "from .readers import f\nfrom photofeh import bands\n",
        "model/__init__.py": "",
        "model/fit.py": "import photofeh.io.dust\n\ndef g():\n    from photofeh.io import dust, readers\n",
    }
    for name, text in files.items():
        path = tmp_path / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    edges = set(imports(modules(tmp_path), tmp_path))
    assert edges == {("photofeh.io", "photofeh.io.readers"), ("photofeh.io.readers", "photofeh.bands"),
                     ("photofeh.io.dust", "photofeh.io.readers"), ("photofeh.io.dust", "photofeh.bands"),
                     ("photofeh.model.fit", "photofeh.io.dust"), ("photofeh.model.fit", "photofeh.io.readers")}
    assert cycles(edges | {("photofeh.io.readers", "photofeh.io.dust")}) == [["photofeh.io.dust",
                                                                           "photofeh.io.readers"]]


def test_every_stage_has_a_tier():
    mods, _ = package_graph()
    unknown = sorted({stage(m) for m in mods} - set(TIER))
    assert not unknown, f"stages without a place in TIERS (add them, and to docs/architecture.md): {unknown}"


def test_no_import_cycle():
    _, edges = package_graph()
    live = {e: w for e, w in edges.items() if e not in PENDING}
    found = cycles(live)
    message = "\n".join(
        f"import cycle among {', '.join(c)}:\n" + shown(live, [(a, b) for a, b in live if a in c and b in c])
        for c in found)
    print(message)
    assert not found, message


def test_no_upward_import_between_stages():
    _, edges = package_graph()
    upward = [(a, b) for a, b in edges if stage(a) != stage(b) and TIER[stage(b)] >= TIER[stage(a)]]
    new = [e for e in upward if e not in PENDING]
    message = ("imports of a stage at the same tier or above (order: "
               + " -> ".join("/".join(t) for t in TIERS) + "):\n" + shown(edges, new))
    print(message)
    assert not new, message


def test_pending_exceptions_still_exist():
    """Each pending exception names an edge that is still there: once it has gone, delete the entry."""
    _, edges = package_graph()
    gone = [f"  {a} -> {b}" for a, b in PENDING if (a, b) not in edges]
    assert not gone, "no longer imported: delete from PENDING in tests/test_import_graph.py\n" + "\n".join(gone)


def test_no_module_over_600_lines():
    mods, _ = package_graph()
    long = {str(p.relative_to(SRC / PACKAGE)): n for p in mods.values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, "modules over 600 lines (split them by job): " + ", ".join(
        f"{f} ({n})" for f, n in sorted(long.items()))
