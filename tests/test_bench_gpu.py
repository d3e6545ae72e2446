"""``scripts/bench_gpu.py`` on a machine without a GPU: one line saying so, exit status 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_gpu_without_gpu_says_so_and_exits_0():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    r = subprocess.run(
        [sys.executable, "scripts/bench_gpu.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("no GPU: ") and "Nothing measured" in r.stdout
