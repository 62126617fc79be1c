"""The layers import one way only: every import of every module, read with ``ast``.

``models`` <- ``stream.{wire,capture,detector}`` (and the shared ``stream.store``,
``config``, ``pipeline``, ``defaults``, ``times``, ``processes``) <- ``train`` <-
``stream.bench`` (the bench's measurements) <- ``stream.apps``;
``stream.dashboard`` reads ``stream.wire`` and the store only, and never loads MXNet.
Imports inside functions count as much as those at the top of a module.

No two modules import each other, directly or around a circle (:func:`circles`), but for
the circles named in :data:`ALLOWED_CIRCLES`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("models", "stream", "train")
#: The parts of stream below the commands (and below train).
RUNTIME = ("stream.wire", "stream.capture", "stream.detector", "stream.store", "stream.config",
           "stream.pipeline", "stream.dashboard", "stream.defaults", "stream.times",
           "stream.processes")
#: (importer prefixes, forbidden import prefixes, why).
RULES = (
    (("models",), ("stream", "train", "tests"), "models imports nothing of ours"),
    (RUNTIME, ("train", "stream.apps"), "only stream.apps imports train/ and the commands"),
    (("stream.dashboard",), ("stream.detector", "stream.capture", "models", "mxnet"),
     "the dashboard reads stream.wire and the store only, and never loads MXNet"),
    (("stream.defaults",), ("models", "mxnet"), "the defaults load nothing heavy"),
    (("train",), ("stream.apps",), "train sits below the commands"),
    (("stream.bench",), ("stream.apps",), "the bench's measurements sit below the commands"),
)


def _under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """Every module an import statement names, anywhere in the source (functions too):
    ``(line, module)``; ``from a import b`` names ``a`` and ``a.b`` (b may be a module),
    relative imports resolved against ``module``."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[:len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names
                      if alias.name != "*"]
    return found


def violations(path: Path, source: str, root: Path = ROOT) -> list[str]:
    """The forbidden imports of one file, each as ``file:line: module imports X (why)``."""
    module = module_name(path, root)
    out = []
    for line, imported in imports_of(source, module, path.name == "__init__.py"):
        for importers, forbidden, why in RULES:
            if _under(module, importers) and _under(imported, forbidden):
                out.append(f"{path.relative_to(root)}:{line}: {module} imports {imported} "
                           f"({why})")
    return sorted(set(out))


def test_no_module_imports_against_the_layers():
    files = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    assert len(files) > 50
    found = [v for path in files for v in violations(path, path.read_text())]
    assert found == [], "imports against the layers:\n" + "\n".join(found)


@pytest.mark.parametrize("relative, source, expected", [
    ("stream/wire/x.py", "def f():\n    from train.data import load\n",
     "stream/wire/x.py:2: stream.wire.x imports train.data"),
    ("stream/dashboard/x.py", "import mxnet as mx\n", "imports mxnet"),
    ("stream/dashboard/x.py", "from ..detector import loop\n",
     "stream.dashboard.x imports stream.detector"),
    ("stream/dashboard/x.py", "from stream import apps\n", "imports stream.apps"),
    ("models/x.py", "import stream.wire.topics\n", "models.x imports stream.wire.topics"),
    ("train/x.py", "class A:\n    def f(self):\n        import stream.apps.cli\n",
     "train/x.py:3: train.x imports stream.apps.cli"),
])
def test_a_forbidden_import_is_named_with_its_file_and_line(relative, source, expected):
    found = violations(ROOT / relative, source)
    assert found and expected in found[0]


def test_allowed_directions_pass():
    assert violations(ROOT / "train/x.py", "from stream.detector.engine import Engine\n"
                      "from models.scoring import Scorer\n") == []
    assert violations(ROOT / "stream/apps/x.py", "from train.trainer import train\n") == []
    assert violations(ROOT / "stream/dashboard/x.py", "from stream.wire.topics import "
                      "decode_topic\nfrom stream.store import EventStore\n") == []


#: Import circles still to be broken, each named by its modules (lazily imported on one
#: side, so they load, but the two halves cannot be read or tested apart). Remove an entry
#: once its circle is gone; the test below fails on any other circle, and on an entry whose
#: circle no longer exists.
ALLOWED_CIRCLES: tuple[frozenset[str], ...] = ()


def circles(sources: dict[str, tuple[str, bool]]) -> list[list[str]]:
    """The import circles among ``sources`` (module -> (source, is a package)): every set
    of two or more modules that reach each other through imports (anywhere in a module,
    as :func:`imports_of` reads them), each sorted, largest first."""
    graph = {m: sorted({name for _, name in imports_of(src, m, pkg)} & sources.keys() - {m})
             for m, (src, pkg) in sources.items()}
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:   # Tarjan's strongly connected components
        order[v] = low[v] = len(order)
        stack.append(v)
        for w in graph[v]:
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in graph:
        if module not in order:
            visit(module)
    return sorted(found, key=lambda c: (-len(c), c))


def project_sources() -> dict[str, tuple[str, bool]]:
    return {module_name(p): (p.read_text(), p.name == "__init__.py")
            for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def test_no_import_circles_but_the_named_ones():
    found = circles(project_sources())
    new = [c for c in found if frozenset(c) not in ALLOWED_CIRCLES]
    assert new == [], ("import circles (break each: move what both halves need into a "
                       "module of its own, or pass it in):\n" + "\n".join(
                           " -> ".join(c) for c in new))
    gone = [sorted(c) for c in ALLOWED_CIRCLES if sorted(c) not in found]
    assert gone == [], f"these circles are gone: remove them from ALLOWED_CIRCLES: {gone}"


@pytest.mark.parametrize("sources, expected", [
    ({"a.x": ("import a.y\n", False), "a.y": ("from a import x\n", False)}, [["a.x", "a.y"]]),
    ({"a.x": ("def f():\n    from a.y import g\n", False),
      "a.y": ("from a.z import h\n", False), "a.z": ("from .x import k\n", False),
      "a.w": ("import a.x\n", False)}, [["a.x", "a.y", "a.z"]]),
    ({"a.x": ("import a.y\n", False), "a.y": ("import numpy\n", False)}, []),
])
def test_a_circle_is_found_through_function_level_and_relative_imports(sources, expected):
    assert circles(sources) == expected
