"""The resumable face-extraction job: layout, manifest, bad media, resume, settings check.

The robustness checks use videos the test writes; one real FF++ sample video from
../shared/data/ffpp_videos is added when present (to check the faces written to disk).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from aird_jax.data.extract import extract_dataset, extract_video, face_relpath, read_manifest
from aird_jax.data.faces import FaceExtractor
from aird_jax.data.preprocess import load_image
from aird_jax.data.video import VideoReadError, count_frames, read_frames, sample_frame_indices

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ffpp_videos"
SAMPLE_FAKE = "fake/ffpp_Deepfakes/c40_720_672.mp4"


@pytest.fixture(scope="module")
def extractor() -> FaceExtractor:
    cv2.setNumThreads(1)
    return FaceExtractor(image_size=224, margin=0.3, threshold=0.95)


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 25) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), "OpenCV cannot write mp4v video here"
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def test_face_relpath_layout():
    assert face_relpath("manipulated/Deepfakes/000_003.mp4", 7) == (
        "manipulated/Deepfakes/000_003/000007.png"
    )
    assert face_relpath("000.mp4", 123456) == "000/123456.png"


def test_dataset_job_records_bad_videos_and_resumes(tmp_path, extractor):
    videos = tmp_path / "videos"
    (videos / "real").mkdir(parents=True)
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(12)]
    _write_video(videos / "real" / "noface.mp4", noise)
    _write_video(tmp_path / "whole.mp4", noise)
    data = (tmp_path / "whole.mp4").read_bytes()
    # MP4 writers put the index (moov) last, so cutting the file makes it unopenable.
    (videos / "real" / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (videos / "empty.mp4").write_bytes(b"")
    has_real = VIDEOS.is_dir()
    if has_real:
        (videos / "fake").mkdir()
        (videos / "fake" / "a.mp4").write_bytes((VIDEOS / SAMPLE_FAKE).read_bytes())

    with pytest.raises(VideoReadError, match="cannot open"):
        list(read_frames(videos / "real" / "truncated.mp4", 3))
    assert count_frames(tmp_path / "whole.mp4") == 12

    out = tmp_path / "faces" / "toy"
    s1 = extract_dataset(videos, out, frames=2, workers=1, progress=False)
    recs = read_manifest(out)
    assert recs["real/truncated.mp4"]["status"] == "unreadable"
    assert "truncated" in recs["real/truncated.mp4"]["error"]
    assert recs["empty.mp4"]["status"] == "unreadable"
    nf = recs["real/noface.mp4"]
    assert nf["status"] == "no_face" and nf["frames_read"] == 2
    assert nf["frames_without_face"] == sample_frame_indices(12, 2)
    assert nf["method"] == "real" and nf["video_id"] == "noface"
    assert s1["status"]["unreadable"] == 2 and s1["status"]["no_face"] == 1
    assert s1["frames_without_face"] == sum(len(r["frames_without_face"]) for r in recs.values())
    if has_real:
        r = recs["fake/a.mp4"]
        assert r["status"] == "ok" and r["faces_found"] == 2
        assert s1["faces_found"] == 2
        for entry in r["faces"]:
            png = out / entry["file"]
            assert png.parent == out / "fake" / "a"
            assert png.name == f"{entry['frame']:06d}.png"
            img = load_image(png)
            assert img.shape == (224, 224, 3)
        # Lossless: the PNG holds exactly what the extractor returns for that frame.
        first = r["faces"][0]
        frame = dict(read_frames(VIDEOS / SAMPLE_FAKE, 2))[first["frame"]]
        np.testing.assert_array_equal(
            load_image(out / first["file"]), extractor.extract(frame).image
        )

    # Resume: nothing is redone; a torn last line (interrupted write) is tolerated.
    with open(out / "manifest.jsonl", "a") as fh:
        fh.write('{"video": "real/noface.mp4", "sta')
    s2 = extract_dataset(videos, out, frames=2, workers=1, progress=False)
    assert s2["processed_now"] == 0 and s2["skipped_already_done"] == s1["videos"]
    # Retrying failures redoes only the unreadable ones.
    s3 = extract_dataset(videos, out, frames=2, workers=1, progress=False, retry_failed=True)
    assert s3["processed_now"] == 2
    # Other settings into the same folder are refused, not mixed.
    with pytest.raises(ValueError, match="other settings"):
        extract_dataset(videos, out, frames=5, workers=1, progress=False)
    settings = json.loads((out / "extraction.json").read_text())
    assert settings["threshold"] == 0.95 and settings["image_size"] == 224


def test_corrupt_stream_is_recorded_not_fatal(tmp_path, extractor):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(40)]
    good = tmp_path / "good.mp4"
    _write_video(good, frames)
    data = bytearray(good.read_bytes())
    moov = data.find(b"moov")
    # Wipe the second half of the frame data, keep the index: opens, then stops decoding.
    start = 48 + (moov - 48) // 2
    data[start : moov - 8] = bytes(moov - 8 - start)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    rec = extract_video(bad, extractor, frames=10)
    assert rec["status"] in ("no_face", "ok")
    assert rec["frames_read"] < rec["frames_sampled"] == 10
    assert rec["decode_errors"], rec


def test_missing_folder_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="data/README.md"):
        extract_dataset(tmp_path / "nope", tmp_path / "out", progress=False)


def _alive(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _pngs(folder: Path) -> set[Path]:
    return set(folder.rglob("*.png"))


def test_workers_die_with_a_killed_parent(tmp_path):
    """kill -9 of scripts/extract_faces.py must not leave its workers writing PNGs that no
    manifest line records. With the real sample video the frames hold a face (PNGs are written
    while it runs); without it, noise frames (the process check alone)."""
    psutil = pytest.importorskip("psutil")
    if VIDEOS.is_dir():
        face = next(iter(dict(read_frames(VIDEOS / SAMPLE_FAKE, 1)).values()))
        base = cv2.resize(face, (face.shape[1] // 2, face.shape[0] // 2))
    else:
        base = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    videos, out = tmp_path / "videos", tmp_path / "faces"
    videos.mkdir()
    rng = np.random.default_rng(0)
    for v in range(4):  # 120 frames each: several seconds of work per video and worker
        noise = [rng.integers(-3, 4, base.shape) for _ in range(120)]
        _write_video(
            videos / f"v{v}.mp4", [np.clip(base + n, 0, 255).astype(np.uint8) for n in noise]
        )
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(root / "scripts" / "extract_faces.py"), "--videos", str(videos)]
    cmd += ["--out", str(out), "--workers", "2", "--frames", "0", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    descendants: list = []
    try:
        parent = psutil.Process(proc.pid)
        deadline, started = time.monotonic() + 120, None
        # Wait until both workers run and are mid-video (a face written, or 4 s after start).
        while time.monotonic() < deadline and proc.poll() is None:
            workers = [c for c in parent.children() if "spawn_main" in " ".join(c.cmdline())]
            if len(workers) == 2:
                started = started or time.monotonic()
                if VIDEOS.is_dir() and _pngs(out) or time.monotonic() - started > 4:
                    break
            time.sleep(0.1)
        assert started and proc.poll() is None, "the extraction did not get going"
        descendants = parent.children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(2.0)
        survivors = [p.pid for p in descendants if _alive(p)]
        assert not survivors, f"worker processes outlived the killed parent: {survivors}"
        before = _pngs(out)
        time.sleep(1.0)
        assert _pngs(out) == before  # nothing is written after the kill
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in descendants:  # only the processes this test started
            if _alive(p):
                p.kill()


def test_script_bad_input_is_one_error_line(tmp_path):
    """scripts/extract_faces.py on a missing folder: exit 2, one ``error:`` line naming it."""
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(root / "scripts" / "extract_faces.py")]
    cmd += ["--videos", str(tmp_path / "nope"), "--out", str(tmp_path / "out"), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("AIRD_VERBOSE", None)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: Video folder"), r.stderr
    assert str(tmp_path / "nope") in lines[0] and "Traceback" not in r.stderr
