"""Input-pipeline throughput: images/s for decode + augment + batch, vs. a plain OpenCV loop.

    python scripts/bench_pipeline.py [--images 512] [--batch 32] [--batches 20] [--workers 1,2,4]

Data: 224x224 PNG faces (what scripts/extract_faces.py writes) made from
../shared/data/ffpp_faces299 when present, else from scikit-image photographs, in a temporary
face_folder build. Prints, side by side: the reference (a bare loop of cv2.imdecode + resize
over in-memory bytes, no augmentation), the pipeline at each worker count, and a per-stage
breakdown of one in-process example, so you can see where the time goes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from aird_jax.config import load_config
from aird_jax.data import augment, pipeline, preprocess

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "ffpp_faces299"


def make_folder(root: Path, n: int, size: int) -> str:
    files = sorted(SHARED.glob("**/*.jpg")) if SHARED.is_dir() else []
    if files:
        src = "ffpp_faces299 (JPEG 299 -> PNG 224)"
        pick = [files[i] for i in np.linspace(0, len(files) - 1, n).astype(int)]
        imgs = [cv2.imread(str(p)) for p in pick]
        labels = [0 if "/real/" in p.as_posix() else 1 for p in pick]
    else:
        import skimage.data

        src = "skimage photographs (no ../shared data)"
        base = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
        rng = np.random.default_rng(0)
        imgs, labels = [], []
        for i in range(n):
            b = base[i % 3]
            y, x = rng.integers(0, 64, 2)
            imgs.append(cv2.cvtColor(b[y : y + 256, x : x + 256], cv2.COLOR_RGB2BGR))
            labels.append(i % 2)
    for i, (img, lab) in enumerate(zip(imgs, labels)):
        d = root / ("real" if lab == 0 else "fake/m") / f"v{i:05d}"
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(
            str(d / "000000.png"), cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        )
    return src


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


def bench_loader(cfg, batch: int, batches: int) -> float:
    it = iter(pipeline.train_loader(cfg, seed=0, batch_size=batch))
    for _ in range(2 if cfg.workers == 0 else 2 * max(1, cfg.workers)):  # warm-up
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - t)


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--workers", default="1,2,4")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = make_folder(tmp / "faces", args.images, args.size)
        cfg = load_config("configs/late_supcon.py").data  # the paper's data settings
        cfg.name, cfg.config, cfg.root = "face_folder", "", str(tmp / "root")
        cfg.manual_dir, cfg.image_size = str(tmp / "faces"), args.size
        pipeline.num_examples(cfg, "train")  # build once
        blobs = [p.read_bytes() for p in sorted((tmp / "faces").glob("**/*.png"))]
        n = args.batch * args.batches
        print(f"data: {len(blobs)} images from {src}, {args.size}x{args.size} PNG, "
              f"batch {args.batch}, {n} images timed")  # fmt: skip
        ref = bench_reference(blobs, args.size, n)
        print(f"{'reference: cv2.imdecode + float loop (1 process)':58s} {ref:8.0f} img/s   1.00x")
        bare = bench_bare_augment(blobs, args.size, n, args.batch)
        print(f"{'bare loop: decode + same augment + stack (no tfds/grain)':58s} {bare:8.0f} img/s"
              f"   {bare / ref:.2f}x")  # fmt: skip
        rows = [("pipeline, in-process (workers=0)", 0)] + [
            (f"pipeline, workers={w}", int(w)) for w in args.workers.split(",") if w
        ]
        for name, w in rows:
            cfg.workers = w
            ips = bench_loader(cfg, args.batch, args.batches)
            print(f"{name + ' (decode+augment+batch)':58s} {ips:8.0f} img/s   {ips / ref:.2f}x")
        print("\nper-example stage cost, in-process (mean us; JPEG/noise averaged incl. skips):")
        for k, v in breakdown(blobs, args.size).items():
            print(f"  {k:16s} {v:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
