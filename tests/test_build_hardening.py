"""Issue 10, data side: a build follows its folder, corrupt images are skipped and reported, the
first build prints one line of its own, dataset names fail clearly, video ids are not doubled.

Expectations are computed from the files the test writes (listed independently with os.walk and
decoded with OpenCV), not from the builders.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds
from _data_config import data_config

from aird_jax.data import index
from aird_jax.data.builders import (
    DATASETS,
    DatasetMissingError,
    StaleBuildError,
    get_builder_class,
)
from aird_jax.data.builders.base import FACES_MANIFEST, REPORT, source_fingerprint

BUILDERS_DIR = Path(__file__).resolve().parents[1] / "aird_jax" / "data" / "builders"


def _png(path: Path, seed: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    path.write_bytes(buf.tobytes())


def _tree(top: Path, files: list[str], seed: int) -> None:
    for i, rel in enumerate(files):
        _png(top / rel, seed * 100 + i)


def _expected(top: Path) -> set[tuple[str, int]]:
    """(video_id, label) of every decodable image under a flat real/ + fake/<method>/ tree
    (optionally below train/ val/ test/), listed with os.walk and decoded with OpenCV."""
    out = set()
    for dirpath, _dirs, files in os.walk(top):
        for f in files:
            path = Path(dirpath) / f
            parts = path.relative_to(top).parts
            if parts[0] in ("train", "val", "test"):
                parts = parts[1:]
            if cv2.imread(str(path)) is None:
                continue
            method, label = ("real", 0) if parts[0] == "real" else (parts[1], 1)
            out.add((f"{method}/{path.stem}", label))
    return out


def _served(builder) -> set[tuple[str, int]]:
    out = set()
    for split in builder.info.splits.keys():
        src = builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
        for i in range(len(src)):
            r = src[i]
            vid = r["video_id"]
            out.add((vid.decode() if isinstance(vid, bytes) else str(vid), int(r["label"])))
    return out


def _cfg(tmp_path: Path, folder: Path):
    return data_config(
        name="face_folder",
        config="",
        root=str(tmp_path / "root"),
        manual_dir=str(folder),
        frames_per_video=0,
        max_examples=0,
    )


# -- 1. a face_folder build follows the folder it was built from ---------------------------------
def test_face_folder_build_follows_its_folder(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    _tree(a, [f"real/ra{i}.png" for i in range(4)] + [f"fake/FakeA/fa{i}.png" for i in range(4)], 1)
    _tree(b, [f"real/rb{i}.png" for i in range(5)] + [f"fake/FakeB/fb{i}.png" for i in range(3)], 2)
    exp_a, exp_b = _expected(a), _expected(b)
    assert exp_a and exp_b and not exp_a & exp_b

    built_a = index.prepared_builder(_cfg(tmp_path, a))
    assert _served(built_a) == exp_a
    # Same root, another folder: B's records, not A's build reused.
    built_b = index.prepared_builder(_cfg(tmp_path, b))
    assert _served(built_b) == exp_b
    assert built_a.data_dir != built_b.data_dir
    # Both builds coexist: back to A, without rebuilding.
    assert _served(index.prepared_builder(_cfg(tmp_path, a))) == exp_a
    # The per-split record index lives with each build and agrees with its folder.
    vids_b = set()
    for split in built_b.info.splits.keys():
        vids_b.update(index.record_index(built_b, split)["video_id"].tolist())
    assert vids_b == {v for v, _ in exp_b}

    # The folder changes in place (a new image, one replaced): the next use sees it, also within
    # this process (the prepared-builder cache is keyed by the content fingerprint).
    _png(b / "fake/FakeB/fb_new.png", 999)
    _png(b / "real/rb0.png", 998, size=9)
    exp_b2 = _expected(b)
    assert exp_b2 != exp_b
    rebuilt = index.prepared_builder(_cfg(tmp_path, b))
    assert _served(rebuilt) == exp_b2
    report = json.loads((Path(rebuilt.data_dir) / REPORT).read_text())
    assert report["source"] == str(b) and report["skipped"] == []


def test_a_copy_of_the_folder_is_the_same_source_and_reuses_its_build(tmp_path):
    """The build key follows the images' content, not their mtimes: a copied or re-mounted
    folder (fresh mtimes) reuses the build and every evaluation cached on it; a changed image
    of the same size is a new source."""
    a = tmp_path / "A"
    _tree(a, [f"real/r{i}.png" for i in range(3)] + [f"fake/F/f{i}.png" for i in range(3)], 4)
    built = index.prepared_builder(_cfg(tmp_path, a))
    copy = tmp_path / "copy"
    shutil.copytree(a, copy, copy_function=shutil.copyfile)  # new files, new mtimes
    for p in copy.rglob("*.png"):
        os.utime(p, ns=(1, 1))
    assert source_fingerprint(copy) == source_fingerprint(a)
    assert index.prepared_builder(_cfg(tmp_path, copy)).data_dir == built.data_dir
    # Same names, same sizes, other pixels: another source.
    p = copy / "real/r1.png"
    data = bytearray(p.read_bytes())
    data[-20] ^= 0xFF
    p.write_bytes(bytes(data))
    os.utime(p, ns=(1, 1))
    assert source_fingerprint(copy) != source_fingerprint(a)


# -- 2. a corrupt image is skipped at build time, listed and printed once --------------------------
def test_corrupt_image_is_skipped_listed_and_printed_once(tmp_path, capfd):
    top = tmp_path / "faces"
    _tree(
        top / "train", [f"real/r{i}.png" for i in range(3)] + ["fake/X/f0.png", "fake/X/f1.png"], 3
    )
    _tree(top / "test", ["real/r5.png", "fake/X/f5.png", "fake/X/f6.png"], 13)
    good = (top / "train/real/r0.png").read_bytes()
    bad = [top / "train/real/r9.png", top / "train/fake/X/f9.jpg", top / "test/fake/X/f8.png"]
    bad[0].write_bytes(good[: len(good) // 2])  # truncated PNG
    bad[1].write_bytes(b"\xff\xd8\xff" + bytes(3000))  # a JPEG header and then nothing
    bad[2].write_bytes(b"")
    for p in bad:
        assert cv2.imread(str(p)) is None  # OpenCV itself cannot read them
    expected = _expected(top)
    assert len(expected) == 8

    b = get_builder_class("face_folder")(data_dir=tmp_path / "tfds", manual_dir=top)
    b.download_and_prepare()
    assert _served(b) == expected
    report = json.loads((Path(b.data_dir) / REPORT).read_text())
    assert sorted(x["path"] for x in report["skipped"]) == sorted(map(str, bad))
    assert sum(report["records"].values()) == 8
    err = capfd.readouterr().err
    for p in bad:
        assert err.count(str(p)) == 1, err  # printed once, with its path
    assert str(Path(b.data_dir) / REPORT) in err


def test_split_left_empty_by_corrupt_images_names_the_split(tmp_path):
    top = tmp_path / "faces"
    _tree(top / "train", ["real/a.png", "fake/X/b.png"], 4)
    for rel in ("test/real/c.png", "test/fake/X/d.png"):
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_bytes(b"not an image")
    b = get_builder_class("face_folder")(data_dir=tmp_path / "tfds", manual_dir=top)
    with pytest.raises(ValueError, match=r"split 'test' is undecodable") as e:
        b.download_and_prepare()
    assert str(top / "test/real/c.png") in str(e.value)


def _dfdc_two_videos(tmp_path: Path) -> tuple[Path, Path]:
    """A DFDC Preview list of one real and one fake training video; (manual, faces) folders."""
    manual, faces = tmp_path / "manual", tmp_path / "faces"
    manual.mkdir()
    meta = {
        "original_videos/1/a.mp4": {"label": "real", "set": "train"},
        "method_A/1/b.mp4": {"label": "fake", "set": "train"},
    }
    (manual / "dataset.json").write_text(json.dumps(meta))
    return manual, faces


def test_corrupt_frame_of_an_extracted_video_is_skipped(tmp_path):
    """The shared path (base.video_frames) of the video builders, here DFDC Preview."""
    manual, faces = _dfdc_two_videos(tmp_path)
    _tree(faces, ["original_videos/1/a/000000.png", "original_videos/1/a/000001.png"], 5)
    _tree(faces, ["method_A/1/b/000000.png", "method_A/1/b/000003.png"], 6)
    corrupt = faces / "method_A/1/b/000007.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    b = get_builder_class("dfdc_preview")(
        data_dir=tmp_path / "tfds", manual_dir=manual, faces_dir=faces
    )
    b.download_and_prepare()
    src = b.as_data_source("train", decoders={"image": tfds.decode.SkipDecoding()})
    frames = sorted((src[i]["video_id"].decode(), int(src[i]["frame_index"])) for i in range(4))
    assert len(src) == 4
    assert frames == [("method_A/1/b", 0), ("method_A/1/b", 3)] + [
        ("real/original_videos/1/a", 0),
        ("real/original_videos/1/a", 1),
    ]
    report = json.loads((Path(b.data_dir) / REPORT).read_text())
    assert [x["path"] for x in report["skipped"]] == [str(corrupt)]


def test_video_build_made_before_more_faces_were_extracted_is_named(tmp_path):
    """Video builds are keyed by name/config, not by their faces: faces extracted after the
    build (the extraction manifest changed) must not be silently left out."""
    from aird_jax.data import extract

    assert FACES_MANIFEST == extract.MANIFEST  # the file scripts/extract_faces.py writes
    manual, faces = _dfdc_two_videos(tmp_path)
    _tree(faces, ["original_videos/1/a/000000.png", "method_A/1/b/000000.png"], 8)
    (faces / FACES_MANIFEST).write_text('{"video": "a"}\n{"video": "b"}\n')
    cfg = data_config(
        name="dfdc_preview",
        config="",
        root=str(tmp_path / "root"),
        manual_dir=str(manual),
        faces_dir=str(faces),
        frames_per_video=0,
        max_examples=0,
    )
    built = index.prepared_builder(cfg)
    index._prepared.cache_clear()
    assert index.prepared_builder(cfg).data_dir == built.data_dir  # unchanged: reused
    # More faces extracted (extract_faces.py appends to the manifest): the old build is named.
    _tree(faces, ["method_A/1/b/000005.png"], 9)
    with open(faces / FACES_MANIFEST, "a") as f:
        f.write('{"video": "b", "frames": 2}\n')
    index._prepared.cache_clear()
    with pytest.raises(StaleBuildError) as e:
        index.prepared_builder(cfg)
    msg = str(e.value)
    assert "\n" not in msg and f"rm -rf {built.data_dir}" in msg
    assert str(faces / FACES_MANIFEST) in msg


# -- 4. the first build prints one line of its own, no TFDS download talk ------------------------
def test_first_build_prints_its_own_line_not_tfds_noise(tmp_path, capfd, caplog):
    top = tmp_path / "faces"
    _tree(top, ["real/a.png", "real/b.png", "fake/X/c.png", "fake/X/d.png"], 7)
    with caplog.at_level(logging.INFO):
        index.prepared_builder(_cfg(tmp_path, top))
    out, err = capfd.readouterr()
    text = out + err + "\n".join(r.getMessage() for r in caplog.records)
    assert "Downloading and preparing" not in text
    assert "dataset_info.json" not in text
    assert "Using custom data configuration" not in text
    assert (out + err).count("Building face_folder (src_") == 1
    assert re.search(
        rf"Building face_folder \(src_\w+\) from {re.escape(str(top))} \(first use\)", err
    )
    # Reuse is silent.
    with caplog.at_level(logging.INFO):
        index.prepared_builder(_cfg(tmp_path, top))
    out, err = capfd.readouterr()
    assert "Building" not in out + err


# -- 5. dataset names ------------------------------------------------------------------------------
def _registered_names() -> set[str]:
    """Builder names declared in the builder modules (``name = "..."``), read from the source."""
    names = set()
    for f in BUILDERS_DIR.glob("*.py"):
        names.update(re.findall(r'^    name = "(\w+)"$', f.read_text(), flags=re.M))
    return names


def test_unknown_dataset_is_one_line_listing_the_valid_names(tmp_path):
    names = _registered_names()
    assert names == set(DATASETS)
    with pytest.raises(ValueError) as e:
        get_builder_class("ffppp")
    msg = str(e.value)
    assert "\n" not in msg and "'ffppp'" in msg and "did you mean 'ffpp'" in msg
    for n in names:
        assert n in msg
    # The same through the path a run takes (data.name in a config).
    cfg = data_config(name="ffppp", config="", root=str(tmp_path))
    with pytest.raises(ValueError, match="choose from") as e2:
        index.prepared_builder(cfg)
    assert "\n" not in str(e2.value)


def test_absent_face_folder_is_a_dataset_missing_error(tmp_path):
    cfg = _cfg(tmp_path, tmp_path / "nowhere")
    with pytest.raises(DatasetMissingError) as e:
        index.prepared_builder(cfg)
    assert isinstance(e.value, FileNotFoundError)  # a user error for aird_jax.cli
    assert str(tmp_path / "nowhere") in str(e.value) and "data.manual_dir" in str(e.value)


# -- 6. video ids ----------------------------------------------------------------------------------
def test_face_folder_video_ids_for_frame_folders(tmp_path):
    """``real/<video>/<frame>.png`` and ``fake/<method>/<video>/<frame>.png``: the id is
    ``<method>/<video>``, never ``real/real/...``; a video named like its method stays as is."""
    top = tmp_path / "faces"
    files = ["real/v1/000000.png", "real/v1/000004.png", "real/real_v2/000001.png"]
    files += ["fake/Deepfakes/Deepfakes_v3/000002.png", "fake/Deepfakes/v4/000000.png"]
    _tree(top, files, 8)
    b = get_builder_class("face_folder")(data_dir=tmp_path / "tfds", manual_dir=top)
    b.download_and_prepare()
    got = set()
    for split in b.info.splits.keys():
        src = b.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
        got.update(
            (src[i]["video_id"].decode(), int(src[i]["frame_index"])) for i in range(len(src))
        )
    expected = set()
    for rel in files:
        parts = Path(rel).parts
        method = "real" if parts[0] == "real" else parts[1]
        expected.add((f"{method}/{parts[-2]}", int(Path(rel).stem)))
    assert got == expected


def test_corrupt_record_of_an_old_build_is_named_when_read(tmp_path, monkeypatch):
    """A build made before the decode check (simulated: the check switched off) still holds a
    corrupt image; reading it names the record's video and the way out, not just a size."""
    from aird_jax.data import pipeline
    from aird_jax.data.builders import base
    from aird_jax.data.preprocess import ImageDecodeError

    top = tmp_path / "faces"
    _tree(top / "train", ["real/a.png", "real/b.png", "fake/X/c.png"], 9)
    _tree(top / "test", ["real/d.png", "fake/X/e.png"], 10)
    for split in ("train", "test"):
        (top / split / "fake/X/bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(3000))
    monkeypatch.setattr(base, "decode_image", lambda data: None)
    cfg = data_config(
        name="face_folder",
        config="",
        root=str(tmp_path / "root"),
        manual_dir=str(top),
        frames_per_video=0,
        max_examples=0,
        balance=False,
        workers=0,
    )
    assert pipeline.num_examples(cfg, "train") == 4  # the corrupt file got in
    monkeypatch.undo()
    with pytest.raises(ImageDecodeError, match=r"X/bad.*delete that build folder") as e:
        next(iter(pipeline.train_loader(cfg, seed=0, batch_size=4)))
    assert "'train'" in str(e.value)
    with pytest.raises(ImageDecodeError, match=r"X/bad.*'test'"):
        list(pipeline.eval_loader(cfg, "test", batch_size=3))
