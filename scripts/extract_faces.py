"""Extract aligned MTCNN faces from every video of a dataset folder (paper Section IV-B).

    python scripts/extract_faces.py --videos /path/to/FaceForensics++ --dataset ffpp \
        [--frames 10] [--workers 8] [--root data]

Writes ``<root>/faces/<dataset>/<method>/<video_id>/<frame:06d>.png`` (lossless PNG; JPEG
would add the very artefacts the detector studies) plus ``manifest.jsonl`` (one line per
video: frames read, faces found, frames without a face, decode errors, per-face score, box and
landmarks), ``extraction.json`` (settings) and ``summary.json``. ``<method>/<video_id>`` mirrors
the input tree (folder of the video relative to --videos / file stem). Re-running the same
command resumes: finished videos are skipped. Corrupt, truncated and face-less videos are
recorded and skipped, never fatal.

Frames: ``--frames 10`` samples 10 evenly spaced frames per video (the paper's training
setting); ``--frames 0`` takes every frame (the paper's evaluation setting).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from aird_jax import cli, host_memory
from aird_jax.data.builders import default_root
from aird_jax.data.extract import extract_dataset


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--videos", required=True, help="dataset folder holding the videos (searched recursively)"
    )
    ap.add_argument("--dataset", default="", help="output name, e.g. ffpp, celeb_df_v2")
    ap.add_argument("--root", default="", help="data root (default $AIRD_DATA_DIR or <repo>/data)")
    ap.add_argument("--out", default="", help="output folder (default <root>/faces/<dataset>)")
    ap.add_argument(
        "--frames", type=int, default=10, help="frames per video, evenly spaced; 0 = all"
    )
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument(
        "--margin", type=float, default=0.3, help="box enlargement in total (0.3 = 1.3x)"
    )
    ap.add_argument("--threshold", type=float, default=0.95, help="MTCNN O-Net confidence")
    ap.add_argument("--min-face-size", type=int, default=20, help="MTCNN minimum face size (px)")
    ap.add_argument(
        "--retry-failed", action="store_true", help="retry videos recorded as unreadable/error"
    )
    ap.add_argument("--limit", type=int, default=0, help="only the first N videos (smoke runs)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="tracebacks on errors")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Bad input (missing folder, other settings in --out) ends in one ``error:`` line."""
    ap = _parser()
    args = ap.parse_args(argv)
    return cli.run(lambda: _extract(ap, args), argv)


def _extract(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:

    if not args.dataset and not args.out:
        ap.error("give --dataset NAME (output <root>/faces/NAME) or --out FOLDER")
    root = Path(args.root) if args.root else default_root()
    out = Path(args.out) if args.out else root / "faces" / args.dataset
    summary = extract_dataset(
        args.videos,
        out,
        frames=args.frames,
        workers=args.workers,
        image_size=args.image_size,
        margin=args.margin,
        threshold=args.threshold,
        min_face_size=args.min_face_size,
        retry_failed=args.retry_failed,
        limit=args.limit,
        progress=not args.no_progress,
    )
    short = {k: v for k, v in summary.items() if k not in ("failed_videos", "no_face_videos")}
    print(json.dumps(short, indent=2))
    for key in ("failed_videos", "no_face_videos"):
        if summary[key]:
            print(f"{key} ({len(summary[key])}): " + ", ".join(summary[key][:20]))
    print(f"manifest: {out / 'manifest.jsonl'}")
    return 0


if __name__ == "__main__":
    host_memory.relaunch_under_allocator()  # under tcmalloc where chosen (host_memory.py)
    raise SystemExit(main())
