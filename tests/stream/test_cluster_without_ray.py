"""Without the ``cluster`` extra, every cluster command says so in one line (no traceback).

Ray is made unimportable for the real ``vadstream`` subprocess by a ``ray`` package first
on its ``PYTHONPATH`` whose import fails, as a missing install does.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow   # starts processes


@pytest.fixture
def no_ray(tmp_path):
    shim = tmp_path / "shim" / "ray"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'ray'\", "
                                      "name='ray')\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(shim.parent), str(ROOT)]))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("args", [
    ("cluster", "drill", "--nodes", "2", "--streams", "1"),
    ("cluster", "status"),
    ("run", "--config", "configs/cluster.yaml"),
], ids=["drill", "status", "run"])
def test_a_cluster_command_without_ray_names_the_cluster_extra(no_ray, args):
    out = subprocess.run([sys.executable, "-m", "stream.apps.cli", *args], cwd=ROOT,
                         env=no_ray, capture_output=True, text=True, timeout=100)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "`cluster` extra" in lines[0] and 'pip install -e ".[cluster]"' in lines[0]
