"""Blended-face fakes (aird_jax/data/blend.py) and the SBI training option (data.fakes=sbi).

References are independent: the X-ray and the blend recomputed naively in float64 from the
returned mask and source, scipy's min/max filters for "away from the boundary", the face files
the build was made from for "only real sources", a worker-free loader for workers=2.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from _data_config import data_config, with_
from scipy import ndimage

from aird_jax.data import augment, blend, index, pipeline, preprocess

SIZE = 32


def _face(size: int = 48, seed: int = 0) -> np.ndarray:
    """A textured uint8 RGB image (smooth gradient + noise: colour and frequency ops show)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([yy, xx, 1 - yy * xx], -1) * 200 + 20
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def test_xray_is_4m1m_of_the_mask_and_zero_away_from_the_boundary():
    for seed in range(4):
        r = blend.self_blend(_face(64, seed), np.random.default_rng(seed))
        m = r.mask.astype(np.float64)
        np.testing.assert_allclose(r.xray, 4 * m * (1 - m), atol=1e-6)
        # Where the hard mask is constant over the blur window, M is flat: X-ray exactly 0.
        k = r.blur_ksize
        lo = ndimage.minimum_filter(r.hard_mask, size=k, mode="nearest")
        hi = ndimage.maximum_filter(r.hard_mask, size=k, mode="nearest")
        flat = lo == hi
        assert flat.mean() > 0.3 and (~flat).any()
        assert np.all(r.xray[flat] == 0.0)
        assert r.xray.max() > 0.9  # the boundary itself (M crosses 1/2) is marked
        assert set(np.unique(r.mask[flat])) <= {0.0, 1.0}


def test_same_seed_reproduces_other_seeds_differ():
    face = _face(48)
    a = blend.self_blend(face, np.random.default_rng([7, 0, 3]))
    b = blend.self_blend(face, np.random.default_rng([7, 0, 3]))
    c = blend.self_blend(face, np.random.default_rng([8, 0, 3]))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.xray, b.xray)
    assert not np.array_equal(a.image, c.image) and not np.array_equal(a.xray, c.xray)


def test_blended_image_is_m_source_plus_1m_target_naively():
    target = _face(24, 1)
    r = blend.self_blend(target, np.random.default_rng(3))
    assert r.image.dtype == np.uint8 and r.label == 1
    assert not np.array_equal(r.source, target)  # the source was transformed
    naive = np.zeros(target.shape, np.float64)
    for i in range(24):
        for j in range(24):
            m = float(r.mask[i, j])
            for c in range(3):
                naive[i, j, c] = m * float(r.source[i, j, c]) + (1 - m) * float(target[i, j, c])
    diff = np.abs(r.image.astype(np.int64) - np.rint(naive).astype(np.int64))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99  # float32 vs float64 rounding ties
    outside = r.mask == 0
    np.testing.assert_array_equal(r.image[outside], target[outside])
    # blend_faces takes any aligned source, and blend() is the same formula.
    other = _face(24, 2)
    r2 = blend.blend_faces(target, other, np.random.default_rng(3))
    np.testing.assert_array_equal(r2.image, blend.blend(target, other, r2.mask))


def test_face_region_follows_the_landmarks():
    # The hull contains the five points; a 90-degree rotation of the points rotates the mask.
    five = blend.crop_landmarks(64, 64)
    m = blend.face_region(64, 64, five)
    for x, y in np.round(five).astype(int):
        assert m[y, x] == 1.0
    assert 0.3 < m.mean() < 0.8
    rot = np.stack([five[:, 1], 63 - five[:, 0]], -1)  # (x, y) -> (y, 63 - x): np.rot90
    m_rot = blend.face_region(64, 64, rot)
    assert (np.rot90(m) != m_rot).mean() < 0.02  # up to the rounding of hull vertices


def test_blend_landmarks_option_places_the_mask_and_rejects_bad_values():
    # Landmarks given as crop fractions move the face region: here into the top-left quarter.
    frac = blend.crop_landmarks(64, 64) / 64 * 0.5
    text = ",".join(f"{v:.4f}" for v in frac.ravel())
    np.testing.assert_allclose(blend.parse_landmarks(text), frac, atol=1e-4)
    assert blend.parse_landmarks("") is None
    face = _face(64)
    for k in range(8):  # some of these keys give fakes
        _, m, y = blend.sbi_example(face, (0, 0, k), blend.parse_landmarks(text))
        assert (y == 1) == bool(m.any())
        if y:
            assert m[:32, :32].sum() > 0.9 * m.sum()
    for bad in ("1,2,3", "0.1," * 9 + "x", "0.5," * 9 + "1.5"):
        with pytest.raises(ValueError, match="blend_landmarks"):
            blend.parse_landmarks(bad)


@pytest.fixture(scope="module")
def sbi_cfg(tmp_path_factory):
    """A small face_folder build (a TFDS build of a few PNGs: seconds, unlike the synthetic
    one): 4 real videos x 6 frames and 2 fake videos x 6 frames of 32 px textured images."""
    tree, root = tmp_path_factory.mktemp("ff"), tmp_path_factory.mktemp("aird_sbi")
    for v, rel in enumerate(["real/r0", "real/r1", "real/r2", "real/r3",
                             "fake/Deepfakes/f0", "fake/FaceSwap/f1"]):  # fmt: skip
        for f in range(6):
            p = tree / "train" / rel / f"{f:06d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(p), _face(SIZE, 10 * v + f)[..., ::-1])
    cfg = data_config(name="face_folder", config="", root=str(root), manual_dir=str(tree),
                      image_size=SIZE, frames_per_video=0, max_examples=0, augment=False,
                      workers=0, fakes="sbi")  # fmt: skip
    pipeline.num_examples(cfg, "train")  # builds once for the module
    return cfg


def _tree_images(cfg) -> tuple[list[bytes], list[bytes]]:
    """The model inputs of the tree's real and fake PNGs (read from the files, not the build)."""
    out = {"real": [], "fake": []}
    for p in sorted(Path(cfg.manual_dir).rglob("*.png")):
        img = preprocess.prepare(preprocess.load_image(p), SIZE)
        out[p.relative_to(cfg.manual_dir).parts[1]].append(img.tobytes())
    return out["real"], out["fake"]


def test_sbi_batches_real_sources_half_fakes_and_workers_agree(sbi_cfg):
    real_list, fake_list = _tree_images(sbi_cfg)
    assert pipeline.num_examples(sbi_cfg, "train") == len(real_list)  # no method fakes read
    reals, fakes = set(real_list), set(fake_list)
    assert pipeline.num_examples(with_(sbi_cfg, fakes=""), "train") > len(reals)
    batches = [b for _, b in zip(range(6), pipeline.train_loader(sbi_cfg, seed=3, batch_size=8))]
    labels = np.concatenate([b["label"] for b in batches])
    assert 0.3 <= labels.mean() <= 0.7, labels  # ~50/50 (48 coin flips)
    for b in batches:
        assert b["xray"].shape == (8, SIZE, SIZE)
        for img, y, xr in zip(b["image"], b["label"], b["xray"]):
            assert img.tobytes() not in fakes
            if y == 0:
                assert img.tobytes() in reals and not xr.any()
            else:
                assert img.tobytes() not in reals and xr.max() > 0.5
    par = [b for _, b in zip(range(6), pipeline.train_loader(with_(sbi_cfg, workers=2),
                                                            seed=3, batch_size=8))]  # fmt: skip
    for x, y in zip(batches, par):
        for k in ("image", "label", "xray"):
            np.testing.assert_array_equal(x[k], y[k])


def test_face_folder_builder_survives_pickling(sbi_cfg):
    # grain's worker processes unpickle the builder: it used to refuse its own config there.
    builder = index.prepared_builder(sbi_cfg)
    again = pickle.loads(pickle.dumps(builder))
    assert again.data_dir == builder.data_dir and again.info.splits["train"].num_examples == 36


def test_sbi_augmented_xray_follows_the_image(sbi_cfg):
    """With augmentation, each fake's X-ray is 4M(1-M) of the mask drawn from its key, mirrored
    exactly when the augmentation flipped the image (recomputed here from the record)."""
    cfg, seed = with_(sbi_cfg, augment=True), 1
    b = next(iter(pipeline.train_loader(cfg, seed=seed, batch_size=16)))
    builder = index.prepared_builder(cfg)
    idx, labels = pipeline._select_train(builder, cfg)
    order = pipeline._epoch_order(labels, seed, 0, cfg.balance)
    src = index.data_source(builder, cfg.train_split)
    flips = set()
    for g in range(16):  # one host: position g of epoch 0 has key (seed, 0, g)
        rec = index.read_many(src, [int(idx[order[g]])])[0]
        rgb, mask, label = blend.sbi_example(preprocess.decode_image(rec["image"]), (seed, 0, g))
        assert b["label"][g] == label
        flip = augment.draw(np.random.default_rng([seed, 0, g])).flip
        want = blend.xray(preprocess.fit(mask, SIZE))
        np.testing.assert_allclose(b["xray"][g], want[:, ::-1] if flip else want, atol=1e-6)
        flips.add((label, flip))
    assert {(1, True), (1, False)} <= flips  # both cases were exercised
