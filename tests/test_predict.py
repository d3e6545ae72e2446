"""predict: a real FF++ video, a corrupt file, an unsupported file, a face-less image, real face
crops (scored whole, not re-cropped), huge and tiny images, a model not trained on faces, and
one-line errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import cv2
import jax
import numpy as np
import pytest
from _eval_shared import ROOT, SHARED_DATA, tiny_run_dir

from aird_jax import evaluate as ev
from aird_jax import predict


def _small_real_video():
    folder = SHARED_DATA / "ffpp_videos"
    if not folder.is_dir():
        pytest.skip(f"{folder} absent: the real-video predict test needs ../shared/data")
    vids = sorted(folder.rglob("*.mp4"), key=lambda p: p.stat().st_size)
    return vids[0]


def _reference_scores(run, crops: list[np.ndarray]) -> np.ndarray:
    """Independent forward: model.apply + softmax, no padding/batching/jit of our own."""
    x = np.stack(crops).astype(np.float32) / 255.0
    logits = run.model.apply(run.variables, x, train=False)["logits"]
    return np.asarray(jax.nn.softmax(logits, axis=-1)[:, 1])


def test_predict_video_and_bad_inputs(tmp_path, capsys):
    video = _small_real_video()
    (tmp_path / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "notes.txt").write_text("not media")
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((120, 160, 3), 128, np.uint8))
    out = tmp_path / "pred"
    workdir = tiny_run_dir()
    rc = predict.main(
        [
            "--workdir",
            str(workdir),
            "--frames",
            "2",
            "--out",
            str(out),
            str(video),
            str(tmp_path / "broken.mp4"),
            str(tmp_path / "notes.txt"),
            str(tmp_path / "blank.png"),
            str(tmp_path / "missing.jpg"),
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    rows = {r["path"]: r for r in csv.DictReader(open(f"{out}.csv"))}
    assert rows[str(tmp_path / "broken.mp4")]["status"] == "unreadable"
    assert rows[str(tmp_path / "notes.txt")]["status"] == "unsupported"
    assert rows[str(tmp_path / "blank.png")]["status"] == "no_face"
    assert rows[str(tmp_path / "missing.jpg")]["status"] == "missing"
    v = rows[str(video)]
    assert v["status"] == "ok" and v["kind"] == "video" and int(v["frames_read"]) == 2
    assert v["face_source"] == "detected"
    assert "unreadable" in printed and "no_face" in printed

    meta = json.loads(open(f"{out}.json").read())
    run = ev.load_run_or_explain(workdir)
    assert meta["threshold"] == pytest.approx(run.val_metrics["threshold"])
    (vj,) = [f for f in meta["files"] if f["path"] == str(video)]
    frame_scores = [f["p_fake"] for f in vj["frames"]]
    assert vj["p_fake"] == pytest.approx(np.mean(frame_scores), abs=1e-6)
    assert vj["verdict"] == ("fake" if vj["p_fake"] >= meta["threshold"] else "real")
    # Same crops through an independent forward give the same P(fake).
    from aird_jax.data.faces import FaceExtractor
    from aird_jax.data.video import read_frames

    fx = FaceExtractor(image_size=int(run.config.data.image_size))
    crops, idx = [], []
    for i, rgb in read_frames(video, n=2):
        face = fx.extract(rgb)
        if face is not None:
            crops.append(face.image)
            idx.append(i)
    assert idx == [f["frame"] for f in vj["frames"]]
    np.testing.assert_allclose(frame_scores, _reference_scores(run, crops), atol=1e-5)
    frames_csv = list(csv.DictReader(open(f"{out}_frames.csv")))
    assert len(frames_csv) == len(idx)


def test_predict_folder_no_detect(tmp_path):
    src = SHARED_DATA / "ffpp_faces299" / "fake" / "Deepfakes"
    if not src.is_dir():
        pytest.skip(f"{src} absent: needs ../shared/data")
    folder = tmp_path / "crops"
    (folder / "sub").mkdir(parents=True)
    files = sorted(src.glob("test_*.jpg"))[:3]
    for f in files:
        (folder / "sub" / f.name).symlink_to(f)
    run = ev.load_run_or_explain(tiny_run_dir())
    results, thr = predict.predict_paths(run, [folder], detect=False, batch_size=2)
    assert [r.status for r in results] == ["ok"] * 3
    s = run.config.data.image_size
    crops = [
        cv2.resize(
            cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB),
            (s, s),
            interpolation=cv2.INTER_AREA,
        )
        for f in files
    ]
    np.testing.assert_allclose(
        [r.p_fake for r in results], _reference_scores(run, crops), atol=1e-5
    )


def test_predict_no_detect_equals_evaluate(tmp_path):
    """The same face crops score the same through predict --no-detect and evaluate (to 1e-6):
    one preprocessing and one scoring path. Odd, non-square sizes (one side smaller than the
    run's image size, one larger) are the case where predict once resized differently."""
    workdir = tiny_run_dir()
    run = ev.load_run_or_explain(workdir)
    size = int(run.config.data.image_size)
    rng = np.random.default_rng(0)
    shapes = [(size - 8, size + 8), (size + 25, size - 1), (size, size), (3 * size, 2 * size)]
    files = {}
    for split in ("train", "test"):
        for group in ("real", "fake/m"):
            d = tmp_path / "faces" / split / group
            d.mkdir(parents=True)
            for i, (h, w) in enumerate(shapes):
                img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                f = d / f"{split}{i}.png"
                cv2.imwrite(str(f), img)
                files[f"{group.split('/')[-1]}/{f.stem}"] = f
    data_cfg = ev.eval_data_config(
        run.config, "face_folder", manual_dir=str(tmp_path / "faces"), root=str(tmp_path / "d")
    )
    res = ev.evaluate_run(
        workdir, data_cfg, "test", output_dir=tmp_path / "eval", progress=False, run=run
    )
    with np.load(res["files"]["scores"]) as z:
        evaluated = dict(zip(z["video_ids"].tolist(), z["scores"].tolist()))
    assert len(evaluated) == 2 * len(shapes)
    paths = [files[v] for v in evaluated]
    results, _ = predict.predict_paths(run, paths, detect=False, batch_size=3)
    assert [r.status for r in results] == ["ok"] * len(paths)
    np.testing.assert_allclose(
        [r.p_fake for r in results], list(evaluated.values()), atol=1e-6, rtol=0
    )


def _real_crop():
    src = SHARED_DATA / "ffpp_faces299" / "real"
    if not src.is_dir():
        pytest.skip(f"{src} absent: the face-crop predict test needs ../shared/data")
    return sorted(src.glob("test_*.jpg"))[0]


def test_predict_face_crop_is_scored_whole_not_recropped(tmp_path):
    """An FF++ face crop: the detected box covers most of it, so it is scored as a crop (the
    same P(fake) as --no-detect), not re-aligned into a small face in a black frame. The same
    face pasted small into a large canvas is still detected, aligned and cropped."""
    crop_file = _real_crop()
    crop = cv2.imread(str(crop_file))
    h, w = crop.shape[:2]
    canvas = np.full((3 * h, 3 * w, 3), 127, np.uint8)
    canvas[h : 2 * h, w : 2 * w] = crop
    scene = tmp_path / "scene.png"
    cv2.imwrite(str(scene), canvas)
    run = ev.load_run_or_explain(tiny_run_dir())
    (as_crop, in_scene), _ = predict.predict_paths(run, [crop_file, scene], batch_size=2)
    (no_detect,), _ = predict.predict_paths(run, [crop_file], detect=False, batch_size=2)
    assert as_crop.status == in_scene.status == "ok"
    assert as_crop.face_source == "whole-image crop" and as_crop.frames[0].face_score > 0.9
    assert in_scene.face_source == "detected"
    assert no_detect.face_source == "no-detect"
    # Whole-image crop == the image itself through the model (independent forward).
    s = int(run.config.data.image_size)
    ref = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), (s, s), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(as_crop.p_fake, _reference_scores(run, [ref])[0], atol=1e-5)
    assert as_crop.p_fake == pytest.approx(no_detect.p_fake, abs=1e-6)
    # The scene's face: what FaceExtractor aligns from the full-resolution frame.
    from aird_jax.data.faces import FaceExtractor

    face = FaceExtractor(image_size=s).extract(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB))
    np.testing.assert_allclose(in_scene.p_fake, _reference_scores(run, [face.image])[0], atol=1e-5)


class _RecordingExtractor:
    """A stand-in detector: records the size it is given, finds one face at a fixed place in
    the image it sees (a box covering ``cover`` of its width/height)."""

    def __init__(self, cover: float, image_size: int):
        self.cover, self.image_size = cover, image_size
        self.detect_shapes, self.align_calls = [], []

    def detect(self, rgb):
        self.detect_shapes.append(rgb.shape)
        hh, ww = rgb.shape[:2]
        x1, y1 = 0.1 * ww, 0.1 * hh
        box = np.array([[x1, y1, x1 + self.cover * ww, y1 + self.cover * hh, 0.99]])
        lm = np.array([[[x1 + 10.0, y1 + 20.0]] * 5])
        return box, lm

    def align(self, rgb, landmarks):
        self.align_calls.append((rgb.shape, np.array(landmarks)))
        s = self.image_size
        return np.full((s, s, 3), 90, np.uint8), np.eye(2, 3)


def test_predict_huge_image_detects_on_a_bounded_copy(tmp_path):
    run = ev.load_run_or_explain(tiny_run_dir())
    s = int(run.config.data.image_size)
    big = tmp_path / "big.jpg"
    h, w = 4000, 6000
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 1] = (np.arange(w) % 251).astype(np.uint8)
    cv2.imwrite(str(big), img)
    fx = _RecordingExtractor(cover=0.2, image_size=s)
    (res,), _ = predict.predict_paths(run, [big], extractor=fx, batch_size=1)
    assert res.status == "ok" and res.face_source == "detected"
    (shape,) = fx.detect_shapes
    assert max(shape[:2]) <= 1920 and shape[:2] == (1280, 1920)
    # The crop is taken from the ORIGINAL, with landmarks mapped back (pixel centres).
    ((orig_shape, lm),) = fx.align_calls
    f = w / 1920.0
    expected = (np.array([0.1 * 1920 + 10.0, 0.1 * 1280 + 20.0]) + 0.5) * f - 0.5
    assert orig_shape[:2] == (h, w)
    np.testing.assert_allclose(lm, np.tile(expected, (5, 1)), rtol=1e-9)

    # A box covering most of the image: scored whole, without an alignment.
    fx2 = _RecordingExtractor(cover=0.85, image_size=s)
    (res2,), _ = predict.predict_paths(run, [big], extractor=fx2, batch_size=1)
    assert res2.face_source == "whole-image crop" and fx2.align_calls == []
    assert max(fx2.detect_shapes[0][:2]) <= 1920


def test_predict_tiny_images_and_non_face_model_warning(tmp_path, capsys):
    """--no-detect on a 1x1 / 10x40 image: status too_small, no verdict. The tiny run is
    trained on synthetic_upsampling: the printout and the JSON say it is no face model."""
    run = ev.load_run_or_explain(tiny_run_dir())
    assert run.config.data.name == "synthetic_upsampling"
    rng = np.random.default_rng(0)
    files = {}
    for name, shape in {"dot": (1, 1), "strip": (10, 40), "ok": (48, 40)}.items():
        files[name] = tmp_path / f"{name}.png"
        cv2.imwrite(str(files[name]), rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
    out = tmp_path / "pred"
    rc = predict.main(
        ["--workdir", str(tiny_run_dir()), "--no-detect", "--out", str(out)]
        + [str(f) for f in files.values()]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    rows = {r["path"]: r for r in csv.DictReader(open(f"{out}.csv"))}
    for name in ("dot", "strip"):
        r = rows[str(files[name])]
        assert r["status"] == "too_small" and r["verdict"] == "" and r["p_fake"] == ""
        assert "too small" in r["message"]
    ok = rows[str(files["ok"])]
    assert ok["status"] == "ok" and ok["verdict"] in ("fake", "real")
    assert ok["face_source"] == "no-detect"
    meta = json.loads(open(f"{out}.json").read())
    assert meta["trained_on"] == "synthetic_upsampling" and meta["trained_on_faces"] is False
    assert "not on real faces" in meta["warning"]
    assert "WARNING" in printed and "not on real faces" in printed


def test_predict_cli_errors_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AIRD_VERBOSE", raising=False)
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    workdir = str(tiny_run_dir())
    cases = {
        "missing run": ["--workdir", str(tmp_path / "nope")],
        "bad checkpoint": ["--workdir", workdir, "--checkpoint", "bestest"],
        "absent checkpoint": ["--workdir", workdir, "--checkpoint", "987654"],
        "bad frames": ["--workdir", workdir, "--frames", "-3"],
        "bad batch size": ["--workdir", workdir, "--batch-size", "0", "--no-detect"],
    }
    for name, argv in cases.items():
        rc = predict.main([*argv, "--out", str(tmp_path / "p"), str(img)])
        err = capsys.readouterr().err
        assert rc == 2, name
        assert err.startswith("error: "), (name, err)
        assert "Traceback" not in err and err.count("error:") == 1, (name, err)
    # As users run it: python -m aird_jax.predict.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    env.pop("AIRD_VERBOSE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "aird_jax.predict", "--workdir", str(tmp_path / "nope"), str(img)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    # (library start-up chatter may precede it on stderr; the error itself is one line)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "does not exist" in proc.stderr
