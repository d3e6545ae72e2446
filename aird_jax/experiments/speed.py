"""The JAX side of ``scripts/bench_gpu.py``: zero-argument callables for a forward pass, a
train step and the whole training loop, and the timers that measure them (any backend).

Speed only: weights are random draws of the right shapes, and the faces of the end-to-end loop
are the benchmarks' small PNG folder (:mod:`aird_jax.data.bench_faces`).
"""

from __future__ import annotations

import tempfile
import time
import types
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from aird_jax import train
from aird_jax.config import load_config
from aird_jax.data import pipeline
from aird_jax.data.bench_faces import make_face_folder
from aird_jax.models.efficientnet import EfficientNet
from aird_jax.parallel import make_parallel

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def timings(fn: Callable[[], Any], iters: int, sync: Callable) -> tuple[float, np.ndarray]:
    """(seconds of the first call, which compiles; per-call seconds of ``iters`` timed calls
    after one more warm-up call)."""
    t0 = time.perf_counter()
    sync(fn())
    first = time.perf_counter() - t0
    sync(fn())
    per = []
    for _ in range(iters):
        t0 = time.perf_counter()
        sync(fn())
        per.append(time.perf_counter() - t0)
    return first, np.asarray(per)


def throughput(
    fn: Callable[[], Any], batch: int, iters: int, sync: Callable
) -> tuple[float, float]:
    """(images/s over ``iters`` back-to-back calls, compile seconds)."""
    t0 = time.perf_counter()
    sync(fn())
    compile_s = time.perf_counter() - t0
    sync(fn())
    t0 = time.perf_counter()
    for _ in range(iters):
        out = fn()
    sync(out)
    return batch * iters / (time.perf_counter() - t0), compile_s


def jax_forward(backbone: str, size: int, batch: int, dtype: str) -> Callable[[], Any]:
    """A zero-argument jitted EfficientNet forward (random weights: only speed is measured)."""
    model = EfficientNet(backbone, dtype=DTYPES[dtype])
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(batch, size, size, 3)), jnp.float32)
    shapes = jax.eval_shape(partial(model.init, train=False), jax.random.key(0), x)
    variables = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.05, s.shape), s.dtype), shapes)
    variables["batch_stats"] = jax.tree.map(jnp.abs, variables["batch_stats"])
    fwd = jax.jit(partial(model.apply, train=False))
    return lambda: fwd(variables, x)


def _train_config(backbone: str, size: int, batch: int):
    """The detector config of both training rows: one builder, so that their compiled steps are
    the same program (the end-to-end row is served from the compilation cache)."""
    cfg = load_config("configs/late_supcon.py")
    cfg.model.backbone, cfg.data.image_size = backbone, size
    cfg.model.dtype, cfg.model.pretrained = "bfloat16", ""
    n = jax.local_device_count()
    cfg.train.batch_size, cfg.train.eval_batch_size = max(n, batch // n * n), n
    return cfg


def jax_train(backbone: str, size: int, batch: int, schedule_steps: int) -> Callable[[], Any]:
    """A zero-argument detector train step (bfloat16, donated state), as train.py runs it.
    ``schedule_steps``: the learning-rate schedule's steps per epoch (part of the compiled step:
    give the end-to-end row's, and a compilation cache serves that row the same executable)."""
    cfg = _train_config(backbone, size, batch)
    par = make_parallel(cfg)
    model, hs, tx, _ = train.init_state(cfg, schedule_steps)
    step = par.compile_step(train.make_train_step(cfg, model, tx))
    box = {"state": par.put_state(hs)}
    key = par.put_state(train.seed_key_data(0))
    rng = np.random.default_rng(0)
    b = cfg.train.batch_size
    xb = par.put_batch(
        {
            "image": rng.uniform(0, 1, (b, size, size, 3)).astype(np.float32),
            "label": (np.arange(b) % 2).astype(np.int32),
        }
    )

    def run():
        box["state"], m = step(box["state"], xb, key)  # the old state is donated
        return m

    return run


def jax_end_to_end(
    backbone: str, size: int, batch: int, steps: int, images: int, workers: int
) -> dict[str, Any]:
    """Images/s of the training loop as a run trains (``train.Trainer``: input pipeline over the
    decoded cache with ``workers`` augmentation processes, prefetch, the bfloat16 step) on
    ``images`` PNG faces: one epoch of ``steps`` steps compiles and warms up, the second is
    timed. ``compile_s``: data build + first epoch."""
    cfg = _train_config(backbone, size, batch)
    cfg.train.progress = False
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = make_face_folder(tmp / "faces", images, size)
        d = cfg.data
        d.name, d.config, d.root, d.manual_dir = (
            "face_folder",
            "",
            str(tmp / "tfds"),
            str(tmp / "faces"),
        )
        d.cache, d.workers = "decoded", workers
        t0 = time.perf_counter()
        pipeline.num_examples(d, "train")  # the face_folder build (PNG bytes), once
        trainer = train.Trainer(cfg, tmp / "run", make_parallel(cfg), pipeline, steps)
        no_sigterm = types.SimpleNamespace(flag=False)
        trainer.train_epoch(no_sigterm)  # compiles; the decoded cache was built when opened
        setup_s = time.perf_counter() - t0
        trainer.loop.step_in_epoch = 0
        t0 = time.perf_counter()
        trainer.train_epoch(no_sigterm)  # ends with the metrics fetched: the steps are done
        ips = steps * cfg.train.batch_size / (time.perf_counter() - t0)
    return {"jax_img_s": ips, "compile_s": setup_s, "workers": workers, "faces": src}
