"""Builders on small layouts made here (FF++ with the real official split files from ../shared)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from aird_jax.data.builders import DatasetMissingError, get_builder_class

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")


def _png(path: Path, seed: int, size: int = 8) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", img)
    path.write_bytes(buf.tobytes())
    return buf.tobytes()


def _video(folder: Path, frames, seed: int) -> None:
    for f in frames:
        _png(folder / f"{f:06d}.png", seed * 1000 + f)


def _read(builder, split: str) -> list[dict]:
    ds = builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
    out = []
    for i in range(len(ds)):
        r = ds[i]
        out.append(
            {k: (v.decode() if isinstance(v, bytes) and k != "image" else v) for k, v in r.items()}
        )
    return out


def _assert_no_doubled_prefix(video_id: str) -> None:
    parts = video_id.split("/")
    assert len(parts) < 2 or parts[0] != parts[1], video_id


def _shared(rel: str) -> Path:
    p = SHARED / rel
    if not p.exists():
        pytest.skip(f"{p} absent (real test data lives in ../shared/data; see DEVELOPERS.md)")
    return p


def test_ffpp_official_split(tmp_path):
    split_dir = _shared("splits/ffpp")
    manual, faces = tmp_path / "manual", tmp_path / "faces"
    (manual / "splits").mkdir(parents=True)
    expected = {}
    seed = 0
    for split in ("train", "val", "test"):
        pairs = json.loads((split_dir / f"{split}.json").read_text())
        (manual / "splits" / f"{split}.json").write_text(json.dumps(pairs))
        # Faces for the first two pairs of each split only (the rest "not extracted yet").
        exp = {}
        for a, b in pairs[:2]:
            for vid in (a, b):
                seed += 1
                _video(faces / "original_sequences/youtube/c23/videos" / vid, [3, 7], seed)
                exp[f"real/{vid}"] = 0
            for m in METHODS:
                for vid in (f"{a}_{b}", f"{b}_{a}"):
                    seed += 1
                    _video(faces / "manipulated_sequences" / m / "c23/videos" / vid, [0, 5], seed)
                    exp[f"{m}/{vid}"] = 1
        expected[split] = exp
    # A c40 decoy that must not leak into the c23 build.
    _video(faces / "original_sequences/youtube/c40/videos/999", [0], 99999)
    FFPP = get_builder_class("ffpp")
    b = FFPP(config="c23", data_dir=tmp_path / "tfds", manual_dir=manual, faces_dir=faces)
    b.download_and_prepare()
    for split, exp in expected.items():
        recs = _read(b, split)
        # The index written at build time matches the records read back one by one.
        with np.load(Path(b.data_dir) / f"aird_index_{split}.npz") as z:
            assert z["video_id"].tolist() == [r["video_id"] for r in recs]
            assert z["label"].tolist() == [int(r["label"]) for r in recs]
            assert z["frame_index"].tolist() == [int(r["frame_index"]) for r in recs]
        got = {}
        for r in recs:
            got[r["video_id"]] = int(r["label"])
            assert r["method"] == r["video_id"].split("/")[0]
        assert got == exp, split
        assert len(recs) == 2 * len(exp)  # two frames per video
        assert sorted({int(r["frame_index"]) for r in recs}) == [0, 3, 5, 7]
    # The three official splits are disjoint in real ids.
    reals = [{v for v in expected[s] if v.startswith("real/")} for s in expected]
    assert not (reals[0] & reals[1]) and not (reals[0] & reals[2])


def test_ffpp_missing_manual_dir_is_a_clear_error(tmp_path):
    FFPP = get_builder_class("ffpp")
    b = FFPP(config="c40", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "nowhere")
    with pytest.raises(DatasetMissingError) as e:
        b.download_and_prepare()
    msg = str(e.value)
    assert "github.com/ondyari/FaceForensics" in msg and "splits" in msg
    with pytest.raises(ValueError, match="c23"):
        FFPP(config="c99", data_dir=tmp_path / "tfds")


def test_celeb_df_test_list_one_means_real(tmp_path):
    lst = _shared("splits/celebdf_v2/List_of_testing_videos.txt")
    lines = [ln for ln in lst.read_text().splitlines() if ln.strip()]
    chosen = [ln for ln in lines if ln.startswith("1 ")][:2] + [
        ln for ln in lines if ln.startswith("0 ")
    ][:2]
    manual, faces = tmp_path / "manual", tmp_path / "faces"
    manual.mkdir()
    (manual / "List_of_testing_videos.txt").write_text("\n".join(chosen) + "\n")
    expected_test = {}
    for i, ln in enumerate(chosen):
        flag, rel = ln.split(" ", 1)
        key = rel.strip()[: -len(".mp4")]
        _video(faces / key, [0, 1], i)
        # file: 1 = real; project: 0 = real. video_id = <method>/<video>: reals get the method
        # "real" in front of their folder; a fake's key already starts with its method
        # (Celeb-synthesis/...), which is not doubled.
        vid = f"real/{key}" if flag == "1" else key
        expected_test[vid] = 1 - int(flag)
    _video(faces / "Celeb-real/id98_0001", [0], 50)  # training-only videos
    _video(faces / "Celeb-synthesis/id98_id99_0001", [0], 51)
    b = get_builder_class("celeb_df_v2")(
        data_dir=tmp_path / "tfds", manual_dir=manual, faces_dir=faces
    )
    b.download_and_prepare()
    test = {r["video_id"]: int(r["label"]) for r in _read(b, "test")}
    assert test == expected_test
    assert sorted(expected_test.values()) == [0, 0, 1, 1]
    train = {r["video_id"]: int(r["label"]) for r in _read(b, "train")}
    assert train == {"real/Celeb-real/id98_0001": 0, "Celeb-synthesis/id98_id99_0001": 1}
    for r in _read(b, "test") + _read(b, "train"):
        assert r["video_id"].startswith(r["method"] + "/")
        _assert_no_doubled_prefix(r["video_id"])


def test_dfdc_preview_set_field(tmp_path):
    manual, faces = tmp_path / "manual", tmp_path / "faces"
    manual.mkdir()
    meta = {
        "original_videos/1/1_A/a.mp4": {"label": "real", "set": "train"},
        "method_A/1/1_A/b.mp4": {"label": "fake", "set": "train"},
        "method_B/2/2_B/c.mp4": {"label": "fake", "set": "test"},
        "original_videos/2/2_B/d.mp4": {"label": "real", "set": "test"},
        "method_A/3/3_A/e.mp4": {"label": "fake", "set": "test"},  # not extracted
    }
    (manual / "dataset.json").write_text(json.dumps(meta))
    for i, k in enumerate(list(meta)[:4]):
        _video(faces / k[: -len(".mp4")], [0], i)
    b = get_builder_class("dfdc_preview")(
        data_dir=tmp_path / "tfds", manual_dir=manual, faces_dir=faces
    )
    b.download_and_prepare()
    got = {s: {(r["video_id"], int(r["label"])) for r in _read(b, s)} for s in ("train", "test")}
    # video_id = <method>/<video>; a fake's path key already starts with its method folder.
    assert got["train"] == {("real/original_videos/1/1_A/a", 0), ("method_A/1/1_A/b", 1)}
    assert got["test"] == {("method_B/2/2_B/c", 1), ("real/original_videos/2/2_B/d", 0)}


def test_deeper_forensics_pairs_fakes_with_ffpp_reals(tmp_path):
    manual, faces = tmp_path / "manual" / "deeper_forensics", tmp_path / "faces"
    (manual / "lists/splits").mkdir(parents=True)
    names = {"train": ["000_M101", "001_M102"], "val": ["002_W103"], "test": ["003_M104"]}
    for s, ns in names.items():
        (manual / "lists/splits" / f"{s}.txt").write_text("\n".join(n + ".mp4" for n in ns))
    for i, n in enumerate(sum(names.values(), [])):
        _video(faces / "deeper_forensics/manipulated_videos/end_to_end" / n, [0], i)
        _video(faces / "deeper_forensics/manipulated_videos/end_to_end_level_3" / n, [0], 50 + i)
        _video(faces / "ffpp/original_sequences/youtube/c23/videos" / n[:3], [0], 100 + i)
    b = get_builder_class("deeper_forensics")(
        data_dir=tmp_path / "tfds", manual_dir=manual, faces_dir=faces / "deeper_forensics"
    )
    b.download_and_prepare()
    for s, ns in names.items():
        got = {(r["video_id"], int(r["label"])) for r in _read(b, s)}
        exp = {(f"end_to_end/{n}", 1) for n in ns} | {(f"real/{n[:3]}", 0) for n in ns}
        assert got == exp


def test_face_folder_on_shared_ffpp_faces(tmp_path):
    src = _shared("ffpp_faces299")
    root = tmp_path / "faces299"
    picked = {}
    for folder, label in [("real", 0)] + [(f"fake/{m}", 1) for m in METHODS]:
        files = sorted((src / folder).glob("*.jpg"))
        files = [f for f in files if f.name.startswith("train_")][:6] + [
            f for f in files if f.name.startswith("test_")
        ][:3]
        (root / folder).mkdir(parents=True)
        for f in files:
            shutil.copyfile(f, root / folder / f.name)
            picked[f"{folder.split('/')[-1]}/{f.stem}"] = (label, f.read_bytes(), f.name[:4])
    b = get_builder_class("face_folder")(data_dir=tmp_path / "tfds", manual_dir=root)
    b.download_and_prepare()
    seen = {}
    for split in ("train", "val", "test"):
        for r in _read(b, split):
            label, data, prefix = picked[r["video_id"]]
            assert int(r["label"]) == label
            assert r["image"] == data  # original bytes, no re-encoding
            # test_ files stay in test; train_ files go to train or the carved-out val.
            assert (split == "test") == (prefix == "test")
            seen[r["video_id"]] = split
    assert set(seen) == set(picked)
    assert 0 < sum(v == "val" for v in seen.values()) < sum(v == "train" for v in seen.values())


def test_face_folder_without_fakes_is_a_clear_error(tmp_path):
    _png(tmp_path / "d/real/a.png", 0)
    b = get_builder_class("face_folder")(data_dir=tmp_path / "tfds", manual_dir=tmp_path / "d")
    with pytest.raises(DatasetMissingError, match="fake/<method>"):
        b.download_and_prepare()
