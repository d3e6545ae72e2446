"""Face X-ray baseline (models/baselines/face_xray.py): its X-ray loss against a naive numpy BCE,
its outputs, the config rule that it trains on blended fakes, and a few real training steps of
``face_xray_tiny`` through train.make_train_step on self-blended batches."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from aird_jax import losses, optim, train
from aird_jax.config import load_config, validate_config
from aird_jax.data import blend
from aird_jax.experiments.runs import BASELINES, implemented, run_config
from aird_jax.models import build_model, is_backbone_path, registered_models
from aird_jax.models.efficientnet import EfficientNet
from aird_jax.parallel import make_parallel


def _naive_bce(logits: np.ndarray, target: np.ndarray) -> float:
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    t = target.astype(np.float64)
    return float(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))))


def test_xray_loss_is_the_naive_pixelwise_bce():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (3, 5, 7)).astype(np.float32)
    t = rng.uniform(0, 1, (3, 5, 7)).astype(np.float32)
    t[0] = 0.0  # a real face: all-zero target
    np.testing.assert_allclose(float(losses.xray_loss(z, t)), _naive_bce(z, t), rtol=1e-5)
    keep = np.array([True, False, True])
    np.testing.assert_allclose(
        float(losses.xray_loss(z, t, keep)), _naive_bce(z[keep], t[keep]), rtol=1e-5
    )


def _cfg(**model):
    cfg = load_config("configs/late_supcon.py:smoke")
    cfg.model.name, cfg.data.fakes = "face_xray_tiny", "sbi"
    cfg.model.update(model)
    return cfg


def test_registered_outputs_and_config_rule():
    assert {"face_xray", "face_xray_tiny"} <= set(registered_models())
    cfg = _cfg()
    validate_config(cfg)
    model = build_model(cfg.model)
    x = jax.ShapeDtypeStruct((2, 32, 48, 3), np.float32)
    v = jax.eval_shape(model.init, jax.random.key(0), x)
    out = jax.eval_shape(model.apply, v, x)
    assert out["logits"].shape == (2, 2) and out["embedding"].shape == (2, 128)
    assert out["xray_logits"].shape == (2, 32, 48)  # one boundary value per input pixel
    # The trunk's maps: strides 2, 4, 8, 16, 32 (the head uses the last three).
    eff = EfficientNet("efficientnet_tiny", return_maps=True)
    pooled, maps = jax.eval_shape(eff.init_with_output, jax.random.key(0), x)[0]
    assert [32 // m.shape[1] for m in maps] == [2, 4, 8, 16, 32] and pooled.ndim == 2
    cfg.data.fakes = ""
    with pytest.raises(ValueError, match="data.fakes=sbi"):
        validate_config(cfg)
    cfg.data.fakes = "bi"
    with pytest.raises(ValueError, match="data.fakes must be"):
        validate_config(cfg)
    # The reproduce harness trains it (smoke: the tiny variant) on self-blended fakes.
    spec = BASELINES["Face X-ray"]
    assert implemented(spec, registered_models(), smoke=True)
    rc = run_config(spec, 0, smoke=True)
    assert rc.model.name == "face_xray_tiny" and rc.data.fakes == "sbi"
    validate_config(rc)


def _batch(n: int = 8, size: int = 32):
    """Half real faces (all-zero X-ray), half self-blended fakes with their X-ray."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images, labels, xrays = [], [], []
    for i in range(n):
        base = np.stack([yy, xx, 1 - yy * xx], -1) * 200 + 20 + rng.normal(0, 10, (size, size, 3))
        face = np.clip(base, 0, 255).astype(np.uint8)
        if i % 2:
            r = blend.self_blend(face, np.random.default_rng(i))
            face, xr = r.image, r.xray
        else:
            xr = np.zeros((size, size), np.float32)
        images.append(face.astype(np.float32) / 255)
        labels.append(i % 2)
        xrays.append(xr)
    return {"image": np.stack(images), "label": np.asarray(labels, np.int32),
            "xray": np.stack(xrays)}  # fmt: skip


def _fill(shapes, seed: int = 1):
    """Concrete variables for a shape tree: kernels N(0, 1/fan_in), BN scale/var 1, the rest 0."""
    rng = np.random.default_rng(seed)

    def leaf(path, s):
        name = path[-1].key
        if name == "kernel":
            return rng.normal(0, np.prod(s.shape[:-1]) ** -0.5, s.shape).astype(s.dtype)
        return (np.ones if name in ("scale", "var") else np.zeros)(s.shape, s.dtype)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


def test_face_xray_tiny_trains_with_the_xray_term(monkeypatch):
    calls = []
    real = train.losses.xray_loss
    monkeypatch.setattr(train.losses, "xray_loss", lambda *a: calls.append(1) or real(*a))
    cfg = _cfg(dropout=0.0)
    cfg.optim.lr = 1e-3
    par = make_parallel(cfg)
    # Variables from shapes + numpy (compiling Flax's init costs as much as the step itself).
    model = build_model(cfg.model, axis_name=train.AXIS)
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), np.float32)
    v = _fill(jax.eval_shape(build_model(cfg.model).init, jax.random.key(0), x))
    tx, _ = optim.make_optimizer(cfg.optim, 100, v["params"], is_backbone_path)
    hs = {"step": np.zeros((), np.int32), "params": v["params"],
          "batch_stats": v["batch_stats"], "opt_state": tx.init(v["params"])}  # fmt: skip
    step = par.compile_step(train.make_train_step(cfg, model, tx))
    st, key = par.put_state(hs), par.put_state(train.seed_key_data(0))
    batch = par.put_batch(_batch())
    hist = []
    for _ in range(8):
        st, m = step(st, batch, key)
        hist.append(par.get_metrics(m))
    assert calls, "the step did not use losses.xray_loss"
    w, lam = cfg.loss.xray_weight, cfg.loss.lam
    for m in hist:  # the reported loss is eq. 7 plus w x the X-ray BCE
        np.testing.assert_allclose(m["loss"], m["ce"] + lam * m["supcon"] + w * m["xray"],
                                   rtol=1e-5)  # fmt: skip
    assert hist[-1]["loss"] < hist[0]["loss"] and hist[-1]["xray"] < hist[0]["xray"], hist
