"""Shared, once-per-session state for the eval tests (test_evaluate/test_reproduce/test_predict).

Training even a tiny run costs seconds of compilation, so the smoke reproduction runs are
trained ONCE per pytest process into a temporary results folder and reused by every eval test
(a plain module-level cache: pytest would re-create a session fixture per importing module).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from aird_jax.experiments.reproduce import Options, reproduce
from aird_jax.experiments.runs import OURS, ensure_trained

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@functools.cache
def results_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="aird_eval_tests_"))
    atexit.register(shutil.rmtree, d, True)
    return d


@functools.cache
def smoke_table(n: int) -> dict:
    """reproduce --table n --smoke --seeds 0 into the shared results folder (once)."""
    opts = Options(results=results_dir(), seeds=(0,), smoke=True)
    log: list[str] = []
    out = reproduce(n, opts, log=log.append)
    return {**out, "log": log, "opts": opts}


def tiny_run_dir() -> Path:
    """The smoke run of the full method (late fusion + SupCon), seed 0: trained on demand."""
    opts = Options(results=results_dir(), seeds=(0,), smoke=True)
    return ensure_trained(OURS, 0, opts, log=lambda s: None)
