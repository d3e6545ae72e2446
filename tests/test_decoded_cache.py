"""data.cache="decoded": the same batches as decoding each time (bitwise), pixels equal to a
plain OpenCV decode, and a cache that never serves another build or geometry."""

from __future__ import annotations

import json
import os
import pickle

import cv2
import numpy as np
import pytest
import skimage.data
import tensorflow_datasets as tfds
from _data_config import data_config, with_

from aird_jax.data import decoded_cache, index, pipeline


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    # A face_folder of 36x44 photograph crops, trained at 16 px: "resize" really resamples and
    # "native" really takes windows (non-square faces).
    tmp = tmp_path_factory.mktemp("cache_data")
    photo = skimage.data.astronaut()[..., ::-1]
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("val", 12)):
        for i in range(n):
            y, x = rng.integers(0, 400, 2)
            kind = "real" if i % 2 else "fake/m"
            (tmp / "faces" / split / kind).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(
                str(tmp / "faces" / split / kind / f"{i:03d}.png"), photo[y : y + 36, x : x + 44]
            )
    c = data_config(
        name="face_folder",
        config="",
        root=str(tmp / "root"),
        manual_dir=str(tmp / "faces"),
        image_size=16,
        augment=True,
        workers=0,
        max_examples=0,
    )
    pipeline.num_examples(c, "train")
    return c


def _batches(cfg, n=3, seed=2):
    it = iter(pipeline.train_loader(cfg, seed=seed, batch_size=16))
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("crop", ["resize", "native"])
def test_cached_batches_equal_decoded_ones_bitwise(cfg, crop):
    plain = _batches(with_(cfg, crop=crop))
    cached = _batches(with_(cfg, crop=crop, cache="decoded"))
    for a, b in zip(plain, cached):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    folder = decoded_cache.cache_dir(index.prepared_builder(cfg), "train", 16, crop)
    assert (folder / "meta.json").is_file()


def test_cached_batches_with_workers_and_eval_batches(cfg):
    plain = _batches(cfg, n=2)
    cached = _batches(with_(cfg, cache="decoded", workers=2), n=2)
    for a, b in zip(plain, cached):
        np.testing.assert_array_equal(a["image"], b["image"])
    ev = [
        next(iter(pipeline.eval_loader(c, "val", batch_size=32)))
        for c in (cfg, with_(cfg, cache="decoded"))
    ]
    np.testing.assert_array_equal(ev[0]["image"], ev[1]["image"])
    np.testing.assert_array_equal(ev[0]["video_id"], ev[1]["video_id"])


def test_stored_pixels_are_a_plain_opencv_decode(cfg):
    builder = index.prepared_builder(cfg)
    src = builder.as_data_source("train", decoders={"image": tfds.decode.SkipDecoding()})
    cached = pipeline._records(builder, "train", with_(cfg, cache="decoded"))
    for k in (0, 7, len(src) - 1):
        bgr = cv2.imdecode(np.frombuffer(src[k]["image"], np.uint8), cv2.IMREAD_COLOR)
        ref = cv2.resize(bgr[..., ::-1], (16, 16), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(cached[k]["image"], ref)
        assert cached[k]["label"] == int(src[k]["label"])
    native = pipeline._records(builder, "train", with_(cfg, cache="decoded", crop="native"))
    bgr = cv2.imdecode(np.frombuffer(src[3]["image"], np.uint8), cv2.IMREAD_COLOR)
    assert bgr.shape == (36, 44, 3)
    np.testing.assert_array_equal(native[3]["image"], bgr[..., ::-1])  # native: untouched


def test_a_cache_from_another_build_is_rebuilt_not_served(cfg):
    c = with_(cfg, cache="decoded", augment=False)
    builder = index.prepared_builder(c)
    good = _batches(c, n=1)[0]["image"]
    folder = decoded_cache.cache_dir(builder, "train", 16, "resize")
    # Pretend the build was remade since (a record file changed) and poison the pixels.
    meta = json.loads((folder / "meta.json").read_text())
    meta["record_files"][0][2] -= 1
    (folder / "meta.json").write_text(json.dumps(meta))
    with open(folder / "pixels.u8", "r+b") as f:
        f.write(b"\xff" * 4096)
    np.testing.assert_array_equal(_batches(c, n=1)[0]["image"], good)  # rebuilt
    assert json.loads((folder / "meta.json").read_text()) != meta
    # Another geometry never shares a folder.
    assert decoded_cache.cache_dir(builder, "train", 24, "resize") != folder
    assert decoded_cache.cache_dir(builder, "train", 16, "native") != folder


def test_a_truncated_cache_is_refused_with_the_way_out(cfg):
    c = with_(cfg, cache="decoded", image_size=8)
    builder = index.prepared_builder(c)
    pipeline._records(builder, "train", c)
    folder = decoded_cache.cache_dir(builder, "train", 8, "resize")
    os.truncate(folder / "pixels.u8", 100)
    with pytest.raises(ValueError, match="incomplete.*delete that folder"):
        pipeline._records(builder, "train", c)


def test_face_folder_sources_survive_pickling_for_worker_processes(cfg):
    # Regression: the unpickled face_folder builder (what a grain worker gets) was re-made from
    # tfds' record of its arguments, which names a derived config it refuses.
    for c in (cfg, with_(cfg, cache="decoded")):
        src = pipeline._records(index.prepared_builder(c), "train", c)
        again = pickle.loads(pickle.dumps(src))
        assert len(again) == len(src)
        for k in (0, len(src) - 1):
            a, b = src[k]["image"], again[k]["image"]
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
