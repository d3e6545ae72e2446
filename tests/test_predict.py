"""predict: a real FF++ video, a corrupt file, an unsupported file, a face-less image."""

from __future__ import annotations

import csv
import json

import cv2
import jax
import numpy as np
import pytest
from _eval_shared import SHARED_DATA, tiny_run_dir

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
