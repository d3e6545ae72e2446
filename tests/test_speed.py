"""The JAX side of scripts/bench_gpu.py (aird_jax.experiments.speed) and the benchmarks' face
folder: the rows run end to end on CPU with the tiny backbone (speed itself is never asserted)."""

from __future__ import annotations

import math
import os

import cv2
import jax
import numpy as np

from aird_jax.data.bench_faces import make_face_folder
from aird_jax.experiments import speed


def test_bench_face_folder_is_the_layout_face_folder_reads(tmp_path):
    src = make_face_folder(tmp_path, 10, 24, source=tmp_path / "absent")
    assert src.startswith("skimage")
    real = sorted((tmp_path / "real").glob("*/000000.png"))
    fake = sorted((tmp_path / "fake" / "m").glob("*/000000.png"))
    assert len(real) == len(fake) == 5
    assert cv2.imread(str(real[0])).shape == (24, 24, 3)


def test_timers_count_calls_and_images():
    calls = []
    first, per = speed.timings(lambda: calls.append(1), 4, lambda _: None)
    assert len(calls) == 1 + 1 + 4 and per.shape == (4,) and first >= 0
    ips, compile_s = speed.throughput(lambda: calls.append(1), 8, 5, lambda _: None)
    assert len(calls) == 6 + 1 + 1 + 5 and ips > 0 and compile_s >= 0


def _step_programs() -> set[str]:
    """The train-step executables in the persistent compilation cache (conftest sets it)."""
    return {n for n in os.listdir(jax.config.jax_compilation_cache_dir) if n.startswith("jit_step")}


def test_rows_run_and_end_to_end_reuses_the_train_rows_compiled_step():
    out = speed.jax_forward("efficientnet_tiny", 32, 2, "bfloat16")()
    assert out.shape[0] == 2 and np.isfinite(np.asarray(out, np.float32)).all()
    step = speed.jax_train("efficientnet_tiny", 32, 8, schedule_steps=2)
    m = jax.device_get(step())
    assert all(math.isfinite(float(v)) for v in jax.tree.leaves(m))
    programs = _step_programs()
    assert programs  # the train row's step went to the cache
    row = speed.jax_end_to_end("efficientnet_tiny", 32, 8, steps=2, images=48, workers=0)
    assert row["jax_img_s"] > 0 and row["workers"] == 0 and row["compile_s"] > 0
    # The training loop's step is the same program (same schedule length, same HLO): on a GPU,
    # minutes of autotuning the end-to-end row does not pay again.
    assert _step_programs() == programs
