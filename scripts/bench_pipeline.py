"""Input-pipeline throughput: the training loader at 224 with the paper's augmentations, before
(PNG decode every epoch) and after (the decoded-frame cache, ``data.cache="decoded"``), side by
side in one process, at 0 (in-process), 1 and 2 worker processes.

    python scripts/bench_pipeline.py [--images 512] [--batch 32] [--batches 20] [--workers 1,2]
    python scripts/bench_pipeline.py --json   # last line: one JSON object

Data: 224x224 PNG faces (what scripts/extract_faces.py writes) made from
../shared/data/ffpp_faces299 when present, else from scikit-image photographs, in a temporary
face_folder build. Each loader row gives wall img/s and img per CPU-second (this process and
its worker processes, all threads): the latter is the cost per core, which a loaded machine
does not distort; ``images_per_s_per_core`` in the JSON is that figure for the cached loader in
one process. Also printed: a bare OpenCV decode loop (reference) and a per-stage breakdown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import psutil

from aird_jax.config import load_config
from aird_jax.data import augment, pipeline, preprocess
from aird_jax.data.bench_faces import make_face_folder


def bench_reference(blobs: list[bytes], size: int, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(blobs[i % len(blobs)], np.uint8), 1), 4)
        if rgb.shape[0] != size:
            rgb = cv2.resize(rgb, (size, size))
        _ = rgb.astype(np.float32) / 255.0
    return n / (time.perf_counter() - t)


def bench_bare_augment(blobs: list[bytes], size: int, n: int, batch: int) -> float:
    """The pipeline's per-example work in a bare loop (no tfds, no grain): its overhead."""
    t = time.perf_counter()
    for s in range(0, n, batch):
        imgs = []
        for i in range(s, s + batch):
            rgb = preprocess.resize(preprocess.decode_image(blobs[i % len(blobs)]), size)
            imgs.append(augment.apply(rgb, augment.draw(np.random.default_rng([0, 0, i]))))
        np.stack(imgs)
    return n / (time.perf_counter() - t)


def _cpu_seconds() -> float:
    """CPU seconds of this process and its (grain worker) children, all threads."""
    procs = [psutil.Process()]
    procs += procs[0].children(recursive=True)
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def bench_loader(cfg, batch: int, batches: int) -> tuple[float, float]:
    """(wall img/s, img per CPU-second) of the training loader after a warm-up."""
    it = iter(pipeline.train_loader(cfg, seed=0, batch_size=batch))
    for _ in range(2 if cfg.workers == 0 else 2 * max(1, cfg.workers)):  # warm-up
        next(it)
    t, c = time.perf_counter(), _cpu_seconds()
    for _ in range(batches):
        next(it)
    n = batches * batch
    wall, cpu = time.perf_counter() - t, _cpu_seconds() - c
    return n / wall, n / max(cpu, 1e-9)


def breakdown(blobs: list[bytes], size: int, n: int = 200) -> dict[str, float]:
    """Mean microseconds per example for each stage (JPEG/noise timed when they fire)."""
    out = {k: 0.0 for k in ("decode", "resize", "flip+jitter", "jpeg (p=.3)", "noise (p=.2)")}
    for i in range(n):
        t0 = time.perf_counter()
        rgb = preprocess.decode_image(blobs[i % len(blobs)])
        t1 = time.perf_counter()
        rgb = preprocess.resize(rgb, size)
        t2 = time.perf_counter()
        d = augment.draw(np.random.default_rng([0, 0, i]))
        base = dict(
            flip=d.flip,
            brightness=d.brightness,
            contrast=d.contrast,
            jpeg_quality=d.jpeg_quality,
            noise_seed=d.noise_seed,
        )
        augment.apply(rgb, augment.Draws(jpeg=False, noise=False, **base))
        t3 = time.perf_counter()
        if d.jpeg:
            preprocess.jpeg_reencode(rgb, d.jpeg_quality)
        t4 = time.perf_counter()
        if d.noise:
            x = np.random.default_rng(d.noise_seed).standard_normal(rgb.shape, dtype=np.float32)
            np.clip(rgb * np.float32(1 / 255) + 0.01 * x, 0, 1)
        t5 = time.perf_counter()
        for k, dt in zip(out, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            out[k] += dt * 1e6 / n
    return out


def bench_paths(cfg, args) -> dict:
    """Both input paths (PNG decode vs decoded cache) at every worker count, side by side."""
    out = {}
    rows = [0] + [int(w) for w in args.workers.split(",") if w]
    for path, cache in (("before", ""), ("after", "decoded")):
        cfg.cache, cfg.workers = cache, 0
        t = time.perf_counter()
        pipeline.num_examples(cfg, "train")
        if cache:  # the one-time build of the cache, reported apart
            pipeline.train_loader(cfg, seed=0, batch_size=args.batch)
        out[f"{path}_setup_s"] = round(time.perf_counter() - t, 2)
        for w in rows:
            cfg.workers = w
            out[f"{path}_w{w}"] = bench_loader(cfg, args.batch, args.batches)
    print(f"\n{'training loader, 224, paper augmentations':44s} {'PNG decode':>22s} "
          f"{'decoded cache':>22s}   (wall img/s | img per CPU-s)")  # fmt: skip
    for w in rows:
        b, a = out[f"before_w{w}"], out[f"after_w{w}"]
        name = "in-process (workers=0)" if w == 0 else f"workers={w}"
        print(f"  {name:42s} {b[0]:9.0f} | {b[1]:9.0f}   {a[0]:9.0f} | {a[1]:9.0f}")
    print(f"  cache build (one-time): {out['after_setup_s']:.1f} s")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = make_face_folder(tmp / "faces", args.images, args.size)
        cfg = load_config("configs/late_supcon.py").data  # the paper's data settings
        cfg.name, cfg.config, cfg.root = "face_folder", "", str(tmp / "root")
        cfg.manual_dir, cfg.image_size = str(tmp / "faces"), args.size
        pipeline.num_examples(cfg, "train")  # build once
        blobs = [p.read_bytes() for p in sorted((tmp / "faces").glob("**/*.png"))]
        n = args.batch * args.batches
        print(f"data: {len(blobs)} images from {src}, {args.size}x{args.size} PNG, "
              f"batch {args.batch}, {n} images timed; {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        ref = bench_reference(blobs, args.size, n)
        print(f"{'reference: cv2.imdecode + float loop (1 process)':58s} {ref:8.0f} img/s   1.00x")
        bare = bench_bare_augment(blobs, args.size, n, args.batch)
        print(f"{'bare loop: decode + same augment + stack (no tfds/grain)':58s} {bare:8.0f} img/s"
              f"   {bare / ref:.2f}x")  # fmt: skip
        res = bench_paths(cfg, args)
        print("\nper-example stage cost, in-process (mean us; JPEG/noise averaged incl. skips):")
        for k, v in breakdown(blobs, args.size).items():
            print(f"  {k:16s} {v:8.1f}")
    ws = [int(w) for w in args.workers.split(",") if w]
    summary = {
        # img per CPU-second, in one process: the cost per core, whatever the machine's load
        "images_per_s_per_core": round(res["after_w0"][1], 1),
        "images_per_s_per_core_before": round(res["before_w0"][1], 1),
        "images_per_s_wall_in_process": round(res["after_w0"][0], 1),
        "images_per_s_wall_in_process_before": round(res["before_w0"][0], 1),
        "workers": ws,
        "images_per_s_by_workers": {w: round(res[f"after_w{w}"][0], 1) for w in ws},
        "images_per_s_by_workers_before": {w: round(res[f"before_w{w}"][0], 1) for w in ws},
        "cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "image_size": args.size,
        "batch": args.batch,
        "cache_build_s": res["after_setup_s"],
    }
    if 1 in ws and 2 in ws:
        summary["scaling_1_to_2"] = round(res["after_w2"][0] / res["after_w1"][0], 2)
        summary["scaling_1_to_2_before"] = round(res["before_w2"][0] / res["before_w1"][0], 2)
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
