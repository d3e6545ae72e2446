"""Score your own images and videos with a trained run: P(fake) per face/frame and per file.

  python -m aird_jax.predict --workdir runs/X [--checkpoint best] [--threshold T]
      [--frames 32|all] [--no-detect] [--out predictions] PATH [PATH ...]

PATH is an image, a video or a folder (searched recursively). Faces are extracted exactly as for
training data (MTCNN, five-point alignment, 30% margin, the run's image size; the most confident
face per frame); ``--no-detect`` skips detection for inputs that are already face crops. A video's
score is the mean of its frames' scores (paper IV-B). The verdict uses ``--threshold``, by default
the threshold chosen on the run's own validation set.

Which path each face took is reported (``face_source``): ``detected`` (found, aligned, cropped
with margin), ``whole-image crop`` (the detected face covers more than half of the image: it is
already a face crop, and re-cropping it with a 30% margin would give a small face in a black
frame the model never saw, so the image is scored as a crop, as ``--no-detect`` does) or
``no-detect``. Detection runs on a copy whose longest side is at most 1920 px (area-averaged),
and the face is then cropped from the full-resolution original: a huge image costs no more memory
than a 1080p frame. An image smaller than 16 px on a side is ``too_small``, never a verdict.

A file that is unreadable, has no face, is too small or is not a supported type is reported
(status column) and the rest carry on. A run trained on data that are not real faces (the
quickstart's ``synthetic_upsampling``) says so next to the verdicts. Writes ``<out>.csv`` (one
row per file), ``<out>_frames.csv`` (one row per scored face) and ``<out>.json`` (both).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from aird_jax import cli, host_memory, inference
from aird_jax import evaluate as ev
from aird_jax.data.faces import FaceExtractor
from aird_jax.data.preprocess import data_crop, load_image
from aird_jax.data.video import VIDEO_EXTENSIONS, ReadReport, VideoReadError, read_frames

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_FRAMES = 32
DETECT_MAX_SIDE = 1920  # detection runs on a copy no larger than this (longest side)
WHOLE_IMAGE_FRACTION = 0.5  # a face box covering more of the image => it is a face crop
MIN_SIDE = 16  # smaller images carry no face the model can judge
# Face sources: how the scored face was obtained.
DETECTED, WHOLE_IMAGE, NO_DETECT = "detected", "whole-image crop", "no-detect"
# Datasets of real faces; a run trained on anything else (e.g. synthetic_upsampling) is flagged.
FACE_DATASETS = ("ffpp", "celeb_df_v2", "dfdc_preview", "deeper_forensics", "face_folder")


@dataclass
class FrameScore:
    frame: int  # frame index in the video (0 for an image)
    p_fake: float
    face_score: float | None  # detector confidence (None with --no-detect)
    face_source: str = DETECTED  # detected | whole-image crop | no-detect


@dataclass
class FileResult:
    path: str
    kind: str  # image | video | unknown
    status: str  # ok | no_face | too_small | unreadable | unsupported | missing
    message: str = ""
    frames_read: int = 0
    faces: int = 0
    p_fake: float | None = None  # mean over faces
    verdict: str = ""  # fake | real | ""
    face_source: str = ""  # the frames' face sources, "+"-joined (e.g. "detected")
    frames: list[FrameScore] = field(default_factory=list)


def model_warning(run) -> str:
    """A warning when the run was not trained on real faces (its verdicts mean little there)."""
    name = str(run.config.data.name)
    if name in FACE_DATASETS:
        return ""
    return (
        f"this model was trained on {name!r}, not on real faces: its P(fake) on face images "
        "is not a deepfake verdict (train on ffpp, celeb_df_v2, ... or face_folder for that)"
    )


def detection_copy(rgb: np.ndarray, max_side: int = DETECT_MAX_SIDE) -> tuple[np.ndarray, float]:
    """``rgb`` shrunk (area-averaged) so its longest side is at most ``max_side``, and the
    factor (original px per copy px; 1.0 when no shrinking was needed)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb, 1.0
    f = max(h, w) / float(max_side)
    size = (max(1, round(w / f)), max(1, round(h / f)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return small, max(h, w) / float(max(small.shape[:2]))


def _to_original(xy: np.ndarray, factor: float) -> np.ndarray:
    """Copy-pixel coordinates -> original-pixel coordinates (pixel centres at integers)."""
    xy = np.asarray(xy, np.float64)
    return xy if factor == 1.0 else (xy + 0.5) * factor - 0.5


def box_fraction(box: np.ndarray, shape: tuple[int, ...]) -> float:
    """Fraction of the image area covered by ``box`` (x1, y1, x2, y2), clipped to the image."""
    h, w = shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    cw = max(0.0, min(x2, w) - max(x1, 0.0))
    ch = max(0.0, min(y2, h) - max(y1, 0.0))
    return cw * ch / float(h * w)


def _kind(path: Path) -> str:
    ext = path.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return "unknown"


def expand_paths(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Files given directly, and every file under given folders (sorted, hidden ones skipped)."""
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts):
                    yield f
        else:
            yield p


class Predictor:
    """A loaded run + face extractor; scores frames in fixed-size batches (one compile)."""

    def __init__(self, run, *, detect: bool = True, batch_size: int = 16, extractor=None):
        self.run = run
        self.image_size = int(run.config.data.image_size)
        self.crop = data_crop(run.config.data)
        self.batch_size = int(batch_size)
        self.detect = detect
        self.extractor = extractor
        if detect and extractor is None:
            self.extractor = FaceExtractor(image_size=self.image_size)
        self.scorer = inference.Scorer(run.model, run.variables)

    def _crop(self, rgb: np.ndarray) -> tuple[np.ndarray | None, float | None, str]:
        """The face to score (uint8 RGB), the detector's confidence and the face source."""
        if not self.detect:
            return rgb, None, NO_DETECT  # already a face crop: preprocessed as in training
        small, factor = detection_copy(rgb)
        boxes, landmarks = self.extractor.detect(small)
        if len(boxes) == 0:
            return None, None, ""
        box = _to_original(np.asarray(boxes[0][:4]).reshape(2, 2), factor).reshape(-1)
        score = float(boxes[0][4])
        if box_fraction(box, rgb.shape) > WHOLE_IMAGE_FRACTION:
            return rgb, score, WHOLE_IMAGE  # a face crop: score it as one (as --no-detect)
        crop, _ = self.extractor.align(rgb, _to_original(landmarks[0], factor))
        return crop, score, DETECTED

    def score_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """P(fake) of uint8 RGB crops, through the pipeline's preprocessing and scoring path."""
        images = inference.prepare_batch(crops, self.image_size, self.crop)
        return inference.score_images(self.scorer, images, self.batch_size)

    def predict_file(self, path: Path, frames: int | None, threshold: float) -> FileResult:
        kind = _kind(path)
        res = FileResult(str(path), kind, "ok")
        if not path.exists():
            res.status, res.message = "missing", "no such file"
            return res
        if kind == "unknown":
            res.status = "unsupported"
            res.message = (
                f"extension {path.suffix or '(none)'!r} is neither an image "
                f"{IMAGE_EXTENSIONS} nor a video"
            )
            return res
        crops, idx, conf, sources = [], [], [], []
        notes = []
        too_small = []
        try:
            if kind == "image":
                items: Iterable[tuple[int, np.ndarray]] = [(0, load_image(path))]
            else:
                report = ReadReport()
                items = read_frames(path, n=frames, report=report)
            for i, rgb in items:
                res.frames_read += 1
                if min(rgb.shape[:2]) < MIN_SIDE:
                    too_small.append(f"{rgb.shape[1]}x{rgb.shape[0]}")
                    continue
                crop, score, source = self._crop(rgb)
                if crop is not None:
                    crops.append(crop)
                    idx.append(int(i))
                    conf.append(score)
                    sources.append(source)
            if kind == "video" and report.decode_errors:
                notes.append("; ".join(report.decode_errors))
        except (VideoReadError, ValueError, OSError) as e:
            res.status, res.message = "unreadable", str(e).splitlines()[0]
            return res
        if kind == "video" and res.frames_read == 0:
            res.status = "unreadable"
            res.message = "; ".join(notes) or "no frame could be decoded"
            return res
        if too_small and len(too_small) == res.frames_read:
            res.status = "too_small"
            res.message = (
                f"{'image' if kind == 'image' else 'frames'} of {too_small[0]} px: smaller than "
                f"{MIN_SIDE} px on a side, too small to score"
            )
            return res
        if not crops:
            res.status = "no_face"
            res.message = f"no face found in {res.frames_read} frame(s)" + (
                f" ({'; '.join(notes)})" if notes else ""
            )
            if kind == "image":
                res.message += "; if the image is already a face crop, use --no-detect"
            return res
        scores = self.score_crops(crops)
        res.frames = [
            FrameScore(i, float(s), c, src) for i, s, c, src in zip(idx, scores, conf, sources)
        ]
        res.face_source = "+".join(dict.fromkeys(sources))
        res.faces = len(crops)
        res.p_fake = float(np.mean(scores))
        res.verdict = "fake" if res.p_fake >= threshold else "real"
        if too_small:
            notes.append(f"{len(too_small)} frame(s) too small to score")
        if res.faces + len(too_small) < res.frames_read:
            notes.append(f"{res.frames_read - res.faces - len(too_small)} frame(s) without a face")
        res.message = "; ".join(notes)
        return res


def format_table(results: list[FileResult], threshold: float, warning: str = "") -> str:
    w = max([len(r.path) for r in results] + [4])
    w = min(w, 60)
    lines = [
        f"{'file':<{w}}  {'kind':<7} {'faces':>5} {'P(fake)':>8}  {'verdict':<7} "
        f"{'face':<16} status",
        "-" * (w + 64),
    ]
    for r in results:
        name = r.path if len(r.path) <= w else "..." + r.path[-(w - 3) :]
        p = f"{r.p_fake:8.4f}" if r.p_fake is not None else f"{'-':>8}"
        status = r.status + (f" ({r.message})" if r.message else "")
        lines.append(
            f"{name:<{w}}  {r.kind:<7} {r.faces:>5} {p}  {r.verdict:<7} "
            f"{r.face_source or '-':<16} {status}"
        )
    lines.append(f"threshold {threshold:.4f}: P(fake) >= threshold => fake")
    if warning:
        lines.append(f"WARNING: {warning}")
    return "\n".join(lines)


def write_outputs(prefix: Path, results: list[FileResult], meta: dict[str, Any]) -> list[Path]:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    files_csv = prefix.with_name(prefix.name + ".csv")
    frames_csv = prefix.with_name(prefix.name + "_frames.csv")
    json_path = prefix.with_name(prefix.name + ".json")
    with files_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "path",
                "kind",
                "status",
                "frames_read",
                "faces",
                "p_fake",
                "verdict",
                "face_source",
                "message",
            ]
        )
        for r in results:
            w.writerow(
                [
                    r.path,
                    r.kind,
                    r.status,
                    r.frames_read,
                    r.faces,
                    "" if r.p_fake is None else f"{r.p_fake:.6f}",
                    r.verdict,
                    r.face_source,
                    r.message,
                ]
            )
    with frames_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "frame", "p_fake", "face_score", "face_source"])
        for r in results:
            for fs in r.frames:
                w.writerow(
                    [
                        r.path,
                        fs.frame,
                        f"{fs.p_fake:.6f}",
                        "" if fs.face_score is None else f"{fs.face_score:.4f}",
                        fs.face_source,
                    ]
                )
    json_path.write_text(json.dumps({**meta, "files": [asdict(r) for r in results]}, indent=2))
    return [files_csv, frames_csv, json_path]


def predict_paths(
    run,
    paths: Iterable[str | os.PathLike],
    *,
    threshold: float | None = None,
    frames: int | None = DEFAULT_FRAMES,
    detect: bool = True,
    batch_size: int = 16,
    extractor=None,
) -> tuple[list[FileResult], float]:
    """Python API: score every file under ``paths``; returns (results, threshold used)."""
    if threshold is None:
        threshold = ev.validation_threshold(run)
    if int(batch_size) <= 0:
        raise ev.EvaluationError(f"--batch-size must be a positive integer, got {batch_size}.")
    pred = Predictor(run, detect=detect, batch_size=batch_size, extractor=extractor)
    return [pred.predict_file(p, frames, threshold) for p in expand_paths(paths)], threshold


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m aird_jax.predict", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image, video or folder")
    p.add_argument("--workdir", required=True, help="run folder written by aird_jax.main")
    p.add_argument("--checkpoint", default="best", help="best | latest | a step number")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="P(fake) decision threshold (default: the run's validation threshold)",
    )
    p.add_argument(
        "--frames",
        default=str(DEFAULT_FRAMES),
        help=f"frames sampled evenly per video: N or all (default {DEFAULT_FRAMES})",
    )
    p.add_argument(
        "--no-detect",
        action="store_true",
        help="inputs are already face crops: resize instead of detecting faces",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--out",
        default="predictions",
        help="output prefix: writes PREFIX.csv, PREFIX_frames.csv, PREFIX.json",
    )
    p.add_argument("--show-frames", action="store_true", help="also print per-frame scores")
    p.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = p.parse_args(argv)
    return cli.run(lambda: _main(args), argv)


def _main(args: argparse.Namespace) -> int:
    frames = ev.parse_frames(args.frames)
    run = ev.load_run_or_explain(args.workdir, ev.parse_checkpoint(args.checkpoint))
    threshold = args.threshold
    if threshold is None:
        threshold = ev.validation_threshold(run)
    results, threshold = predict_paths(
        run,
        args.paths,
        threshold=threshold,
        frames=frames or None,
        detect=not args.no_detect,
        batch_size=args.batch_size,
    )
    warning = model_warning(run)
    meta = {
        "workdir": str(args.workdir),
        "checkpoint_step": int(run.step),
        "threshold": threshold,
        "threshold_source": "--threshold" if args.threshold is not None else "run validation set",
        "image_size": int(run.config.data.image_size),
        "face_detection": not args.no_detect,
        "frames_per_video": "all" if not frames else frames,
        "trained_on": str(run.config.data.name),
        "trained_on_faces": not warning,
        "warning": warning,
    }
    print(format_table(results, threshold, warning))
    if args.show_frames:
        for r in results:
            for fs in r.frames:
                print(f"  {r.path} frame {fs.frame}: P(fake) {fs.p_fake:.4f}")
    written = write_outputs(Path(args.out), results, meta)
    print("wrote " + ", ".join(map(str, written)))
    return 0 if any(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    host_memory.relaunch_under_allocator()  # under tcmalloc where chosen (host_memory.py)
    sys.exit(main())
