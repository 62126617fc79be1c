"""The layers import one way only: every import of every module, read with ``ast``.

``models`` <- ``stream.{wire,capture,detector}`` (and the shared ``stream.store``,
``config``, ``pipeline``, ``defaults``, ``times``) <- ``train`` <- ``stream.apps``;
``stream.dashboard`` reads ``stream.wire`` and the store only, and never loads MXNet.
Imports inside functions count as much as those at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("models", "stream", "train")
#: The parts of stream below the commands (and below train).
RUNTIME = ("stream.wire", "stream.capture", "stream.detector", "stream.store", "stream.config",
           "stream.pipeline", "stream.dashboard", "stream.defaults", "stream.times")
#: (importer prefixes, forbidden import prefixes, why).
RULES = (
    (("models",), ("stream", "train", "tests"), "models imports nothing of ours"),
    (RUNTIME, ("train", "stream.apps"), "only stream.apps imports train/ and the commands"),
    (("stream.dashboard",), ("stream.detector", "stream.capture", "models", "mxnet"),
     "the dashboard reads stream.wire and the store only, and never loads MXNet"),
    (("stream.defaults",), ("models", "mxnet"), "the defaults load nothing heavy"),
    (("train",), ("stream.apps",), "train sits below the commands"),
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
