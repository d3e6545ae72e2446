"""grain pipelines on the tiny synthetic build and a small face_folder video tree."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds
from _data_config import data_config, with_

from aird_jax.data import index, pipeline, synthetic
from aird_jax.data.builders import DatasetMissingError
from aird_jax.data.builders.synthetic_upsampling import SyntheticUpsampling
from aird_jax.data.degrade import degrade
from aird_jax.data.video import sample_frame_indices

SIZE = 32


@pytest.fixture(scope="module")
def syn_cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("aird_data")
    cfg = data_config(
        name="synthetic_upsampling",
        config="tiny",
        root=str(root),
        image_size=SIZE,
        augment=True,
        workers=0,
        max_examples=0,
    )
    pipeline.num_examples(cfg, "train")  # builds once for the module
    return cfg


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_same_seed_same_batches_and_resume(syn_cfg):
    a = _take(iter(pipeline.train_loader(syn_cfg, seed=3, batch_size=16)), 3)
    b = _take(iter(pipeline.train_loader(syn_cfg, seed=3, batch_size=16)), 3)
    c = _take(iter(pipeline.train_loader(syn_cfg, seed=4, batch_size=16)), 3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])
    assert not np.array_equal(a[0]["image"], c[0]["image"])
    assert a[0]["image"].dtype == np.float32 and a[0]["image"].shape == (16, SIZE, SIZE, 3)
    assert a[0]["label"].dtype == np.int32
    assert 0.0 <= a[0]["image"].min() and a[0]["image"].max() <= 1.0
    # Checkpoint after one batch, restore in a fresh iterator: the same continuation.
    it = iter(pipeline.train_loader(syn_cfg, seed=3, batch_size=16))
    next(it)
    state = it.get_state()
    assert isinstance(state, dict)
    rest = _take(it, 2)
    it2 = iter(pipeline.train_loader(syn_cfg, seed=3, batch_size=16))
    it2.set_state(state)
    for x, y in zip(rest, _take(it2, 2)):
        np.testing.assert_array_equal(x["image"], y["image"])


def test_epochs_cover_the_split_with_new_order(syn_cfg):
    cfg = with_(syn_cfg, augment=False)
    n = pipeline.num_examples(cfg, "train")
    loader = pipeline.train_loader(cfg, seed=0, batch_size=n)
    it = iter(loader)
    e0, e1 = next(it), next(it)
    # Independent reference: the split's images decoded with OpenCV, resized (no-op here).
    builder = index.prepared_builder(cfg)
    src = builder.as_data_source("train", decoders={"image": tfds.decode.SkipDecoding()})
    ref = sorted(
        cv2.cvtColor(cv2.imdecode(np.frombuffer(src[i]["image"], np.uint8), 1), 4).tobytes()
        for i in range(len(src))
    )

    def keys(batch):
        return sorted(np.rint(batch["image"] * 255).astype(np.uint8)[i].tobytes() for i in range(n))

    assert keys(e0) == ref and keys(e1) == ref  # each example exactly once per epoch
    assert not np.array_equal(e0["image"], e1["image"])  # reshuffled


def test_sharding_splits_each_epoch(syn_cfg):
    cfg = with_(syn_cfg, augment=False)
    n = pipeline.num_examples(cfg, "train")
    halves = [
        next(
            iter(
                pipeline.train_loader(cfg, seed=1, batch_size=n // 2, shard_index=s, shard_count=2)
            )
        )
        for s in (0, 1)
    ]
    full = next(iter(pipeline.train_loader(cfg, seed=1, batch_size=n)))
    both = np.concatenate([h["image"] for h in halves])
    assert sorted(x.tobytes() for x in both) == sorted(x.tobytes() for x in full["image"])


def test_worker_processes_do_not_change_batches(syn_cfg):
    a = _take(iter(pipeline.train_loader(syn_cfg, seed=5, batch_size=8)), 2)
    b = _take(iter(pipeline.train_loader(with_(syn_cfg, workers=2), seed=5, batch_size=8)), 2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])


def test_eval_loader_padding_mask_video_ids_and_shards(syn_cfg):
    split = "test_heldout"
    n = pipeline.num_examples(syn_cfg, split)
    idx = index.record_index(index.prepared_builder(syn_cfg), split)
    batches = list(pipeline.eval_loader(syn_cfg, split, batch_size=50))
    assert len(batches) == -(-n // 50)
    assert all(b["image"].shape == (50, SIZE, SIZE, 3) for b in batches)
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.sum() == n and mask[:n].all()
    vids = np.concatenate([b["video_id"] for b in batches])[:n]
    labels = np.concatenate([b["label"] for b in batches])[:n]
    np.testing.assert_array_equal(vids, idx["video_id"])
    np.testing.assert_array_equal(labels, idx["label"])
    assert set(np.char.partition(vids, "/")[:, 0]) == {"real", "bilinear_conv", "pixel_shuffle"}
    shards = [
        list(pipeline.eval_loader(syn_cfg, split, batch_size=24, shard_index=s, shard_count=3))
        for s in range(3)
    ]
    assert len({len(s) for s in shards}) == 1  # same number of batches on every host
    got = np.concatenate([b["video_id"][b["mask"]] for s in shards for b in s])
    np.testing.assert_array_equal(got, idx["video_id"])


def test_eval_degradation_uses_degrade(syn_cfg):
    clean = next(iter(pipeline.eval_loader(syn_cfg, "val", batch_size=4)))
    deg = next(iter(pipeline.eval_loader(syn_cfg, "val", batch_size=4, degradation="jpeg50")))
    for c, d in zip(clean["image"], deg["image"]):
        ref = degrade(np.rint(c * 255).astype(np.uint8), "jpeg50")
        np.testing.assert_array_equal(np.rint(d * 255).astype(np.uint8), ref)
    with pytest.raises(ValueError, match="blur2"):
        pipeline.eval_loader(syn_cfg, "val", batch_size=4, degradation="blurry")
    with pytest.raises(ValueError, match="test_heldout"):
        pipeline.eval_loader(syn_cfg, "nope", batch_size=4)


def test_synthetic_build_is_deterministic_and_learned(syn_cfg, tmp_path):
    a = index.prepared_builder(syn_cfg)
    synthetic.make_dataset.cache_clear()  # force a genuinely new build
    b = SyntheticUpsampling(config="tiny", data_dir=tmp_path / "tfds")
    b.download_and_prepare()
    for split in ("train", "val", "test_indomain", "test_heldout"):
        sa, sb = (x.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
                  for x in (a, b))  # fmt: skip
        assert len(sa) == len(sb) > 0
        for i in range(len(sa)):
            assert sa[i]["image"] == sb[i]["image"] and sa[i]["video_id"] == sb[i]["video_id"]
    # Fakes are reconstructions of their real patch: close (PSNR well above unrelated
    # patches) but not identical.
    src = a.as_data_source("test_indomain", decoders={"image": tfds.decode.SkipDecoding()})
    recs = {}
    for i in range(len(src)):
        r = src[i]
        vid = r["video_id"].decode()
        recs[vid] = cv2.imdecode(np.frombuffer(r["image"], np.uint8), 1).astype(np.float64)
    psnr_pair, psnr_other = [], []
    reals = sorted(v for v in recs if v.startswith("real/"))
    for k, v in enumerate(reals):
        pid = v.split("/", 1)[1]
        fake = next(recs[f] for f in (f"{fam}/{pid}" for fam in synthetic.FAMILIES) if f in recs)
        src_img = pid.split("_s")[0]  # a patch of ANOTHER source image as the baseline
        other = recs[next(r for r in reals[k:] + reals[:k] if not r.startswith(f"real/{src_img}_"))]
        psnr_pair.append(10 * np.log10(255**2 / max(np.mean((recs[v] - fake) ** 2), 1e-9)))
        psnr_other.append(10 * np.log10(255**2 / max(np.mean((recs[v] - other) ** 2), 1e-9)))
    assert np.median(psnr_pair) > np.median(psnr_other) + 3
    assert np.median(psnr_pair) < 60  # not a copy


def _face_folder_videos(root: Path) -> dict[str, list[int]]:
    frames = {
        "real/v1": [0, 2, 4, 6, 8, 10, 12],
        "real/v2": [5],
        "fake/Deepfakes/v1": list(range(9)),
    }
    frames["fake/FaceSwap/v3"] = [1, 3, 40, 41]
    rng = np.random.default_rng(0)
    for rel, fs in frames.items():
        for f in fs:
            p = root / "train" / rel / f"{f:06d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(p), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    return frames


def test_frames_per_video_and_balance(tmp_path):
    frames = _face_folder_videos(tmp_path / "ff")
    cfg = data_config(
        name="face_folder",
        config="",
        root=str(tmp_path / "root"),
        manual_dir=str(tmp_path / "ff"),
        image_size=8,
        frames_per_video=3,
        max_examples=0,
        augment=False,
    )
    builder = index.prepared_builder(cfg)
    idx, labels = index.select(builder, "train", 3, 0)
    meta = index.record_index(builder, "train")
    # The build-time index equals a scan of the records (the fallback for older builds).
    (Path(builder.data_dir) / "aird_index_train.npz").unlink()
    scanned = index.record_index(builder, "train")
    for k in ("label", "video_id", "frame_index"):
        np.testing.assert_array_equal(meta[k], scanned[k])
    got: dict[str, list[int]] = {}
    for i in idx:
        got.setdefault(str(meta["video_id"][i]), []).append(int(meta["frame_index"][i]))
    expected = {}
    for rel, fs in frames.items():
        method = "real" if rel.startswith("real") else rel.split("/")[1]
        vid = f"{method}/{rel.rsplit('/', 1)[1]}"
        expected[vid] = [sorted(fs)[k] for k in sample_frame_indices(len(fs), 3)]
    assert {k: sorted(v) for k, v in got.items()} == expected
    # 4 real frames vs 6 fake frames selected; balanced epochs: 6 + 6.
    assert pipeline.num_examples(cfg, "train") == 10
    assert pipeline.num_examples(with_(cfg, balance=True), "train") == 12
    order = pipeline._epoch_order(labels, seed=0, epoch=0, balance=True)
    assert np.bincount(labels[order]).tolist() == [6, 6]
    counts = np.bincount(order, minlength=len(labels))
    assert set(counts[labels == 1]) == {1} and set(counts[labels == 0]) <= {1, 2}
    batch = next(iter(pipeline.train_loader(with_(cfg, balance=True), seed=0, batch_size=12)))
    assert np.bincount(batch["label"]).tolist() == [6, 6]


def test_missing_dataset_says_where_to_put_it(tmp_path):
    cfg = data_config(name="celeb_df_v2", config="", root=str(tmp_path))
    with pytest.raises(DatasetMissingError, match="List_of_testing_videos.txt") as e:
        pipeline.num_examples(cfg, "test")
    assert str(tmp_path / "manual" / "celeb_df_v2") in str(e.value)
    with pytest.raises(ValueError, match="synthetic_upsampling"):
        pipeline.num_examples(with_(cfg, name="ffpp++"), "test")


def test_orbax_grain_checkpoint_roundtrip(syn_cfg, tmp_path):
    """The train loop saves the iterator with grain.checkpoint.CheckpointSave (Orbax)."""
    import grain
    import orbax.checkpoint as ocp

    it = iter(pipeline.train_loader(syn_cfg, seed=2, batch_size=8))
    next(it)
    with ocp.CheckpointManager(tmp_path / "ckpt", item_names=("data",)) as mgr:
        mgr.save(1, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        mgr.wait_until_finished()
        want = [next(it) for _ in range(2)]
        it2 = iter(pipeline.train_loader(syn_cfg, seed=2, batch_size=8))
        mgr.restore(1, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(it2)))
    for w in want:
        np.testing.assert_array_equal(next(it2)["image"], w["image"])
