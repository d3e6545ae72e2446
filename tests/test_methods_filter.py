"""data.methods: keep reals + the listed fake methods, in train, num_examples and eval.

Counts are checked against the files the test writes (an independent count by walking the
folder), and every yielded image is identified by its pixel value (each file is a solid colour
that encodes its own id), so the check does not trust the pipeline's index.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from _data_config import data_config

from aird_jax.data import index, pipeline

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
# (folder, split) -> number of single images; plus one multi-frame video of FaceSwap in train.
LAYOUT = {
    "real": {"train": 7, "val": 3, "test": 5},
    "fake/Deepfakes": {"train": 4, "val": 1, "test": 2},
    "fake/Face2Face": {"train": 3, "val": 2, "test": 3},
    "fake/FaceSwap": {"train": 2, "val": 1, "test": 1},
    "fake/NeuralTextures": {"train": 5, "val": 2, "test": 4},
}
VIDEO_FRAMES = 5  # fake/FaceSwap/train_vid/train_00000{0..4}.png


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, Path]:
    top = tmp_path_factory.mktemp("faces")
    uid = 1
    for rel, per_split in LAYOUT.items():
        for split, n in per_split.items():
            for i in range(n):
                _write(top / rel / f"{split}_{i:03d}.png", uid)
                uid += 1
    for f in range(VIDEO_FRAMES):
        _write(top / "fake/FaceSwap/train_vid" / f"train_{f:06d}.png", uid)
        uid += 1
    return top, tmp_path_factory.mktemp("root")


def _write(path: Path, uid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 0], img[..., 1] = uid % 256, uid // 256  # BGR on disk; solid colour = id
    cv2.imwrite(str(path), img)


def _id_of(image: np.ndarray) -> int:
    """uid back from a float RGB image in [0, 1] (the pipeline converts BGR -> RGB)."""
    px = np.rint(image[0, 0] * 255).astype(int)
    return int(px[2] + 256 * px[1])


def _expected(top: Path, split: str, methods: tuple[str, ...]) -> dict[int, int]:
    """uid -> label of the files of ``split`` under real/ and the kept methods (walks disk)."""
    out = {}
    folders = [(top / "real", 0)] + [(top / "fake" / m, 1) for m in methods]
    for d, label in folders:
        for p in sorted(d.rglob(f"{split}_*.png")):
            img = cv2.imread(str(p))
            out[int(img[0, 0, 0]) + 256 * int(img[0, 0, 1])] = label
    return out


def _cfg(folder, methods: str, **kw):
    top, root = folder
    fields = dict(
        name="face_folder",
        config="",
        root=str(root),
        manual_dir=str(top),
        image_size=8,
        frames_per_video=0,
        max_examples=0,
        augment=False,
        methods=methods,
    )
    return data_config(**{**fields, **kw})


@pytest.mark.parametrize(
    "methods",
    ["", "NeuralTextures", "Deepfakes, Face2Face,FaceSwap", "FaceSwap,real"],
)
def test_counts_and_contents_match_the_files(folder, methods):
    top, _ = folder
    kept = index.parse_methods(methods.replace("real", "")) or METHODS
    cfg = _cfg(folder, methods)
    for split in ("train", "val", "test"):
        exp = _expected(top, split, kept)
        assert pipeline.num_examples(cfg, split) == len(exp), split
        n_fake = sum(exp.values())
        assert pipeline.class_counts(cfg, split) == {0: len(exp) - n_fake, 1: n_fake}, split
        got = {}
        for b in pipeline.eval_loader(cfg, split, batch_size=4):
            for img, lab, ok in zip(b["image"], b["label"], b["mask"]):
                if ok:
                    got[_id_of(img)] = int(lab)
        assert got == exp, split
    # One training epoch (batch = the whole epoch) is a permutation of the kept train files.
    exp = _expected(top, "train", kept)
    batch = next(iter(pipeline.train_loader(cfg, seed=0, batch_size=len(exp))))
    ids = [_id_of(img) for img in batch["image"]]
    assert sorted(ids) == sorted(exp)
    assert [exp[i] for i in ids] == batch["label"].tolist()


def test_filter_composes_with_frame_sampling_and_cap(folder):
    top, _ = folder
    # FaceSwap train: 2 single images + a 5-frame video sampled down to 2 frames.
    cfg = _cfg(folder, "FaceSwap", frames_per_video=2)
    n_real = LAYOUT["real"]["train"]
    assert pipeline.num_examples(cfg, "train") == n_real + LAYOUT["fake/FaceSwap"]["train"] + 2
    capped = _cfg(folder, "NeuralTextures", max_examples=6)
    exp = _expected(top, "test", ("NeuralTextures",))
    got = [
        _id_of(img)
        for b in pipeline.eval_loader(capped, "test", batch_size=4)
        for img, ok in zip(b["image"], b["mask"])
        if ok
    ]
    assert len(got) == 6 and set(got) <= set(exp)  # the cap draws from the kept records only


def test_unknown_method_is_a_clear_error(folder):
    with pytest.raises(ValueError) as e:
        pipeline.num_examples(_cfg(folder, "Deepfakes,Neuraltextures"), "train")
    msg = str(e.value)
    assert "Neuraltextures" in msg and all(m in msg for m in METHODS)
    with pytest.raises(ValueError, match="NeuralTexture"):
        pipeline.train_loader(_cfg(folder, "NeuralTexture"), seed=0, batch_size=2)
    with pytest.raises(ValueError, match="NeuralTexture"):
        pipeline.eval_loader(_cfg(folder, "NeuralTexture"), "test", batch_size=2)


def test_index_without_method_falls_back_to_a_scan(folder):
    """Builds made before the index carried ``method``: one scan adds it, same result."""
    top, _ = folder
    cfg = _cfg(folder, "Face2Face")
    builder = index.prepared_builder(cfg)
    for split in ("train", "val", "test"):
        path = Path(builder.data_dir) / f"aird_index_{split}.npz"
        with np.load(path) as z:
            old = {k: z[k] for k in z.files if k != "method"}
        np.savez(path, **old)
    for split in ("train", "val", "test"):
        assert pipeline.num_examples(cfg, split) == len(_expected(top, split, ("Face2Face",)))
    with np.load(Path(builder.data_dir) / "aird_index_test.npz") as z:
        assert "method" in z.files
