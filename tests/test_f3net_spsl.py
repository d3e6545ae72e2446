"""F3-Net and SPSL baselines: their spectral pieces against scipy/numpy in float64, MixBlock
against a naive per-channel loop, parameter counts against independent counts, the ImageNet stem
adaptation, and a few real training steps (train.py's step) on a learnable toy batch."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.fft

from aird_jax import optim, train
from aird_jax.config import load_config
from aird_jax.models import build_model, count_params, is_backbone_path, load_pretrained
from aird_jax.models import port as _port
from aird_jax.models.baselines import f3net, spsl
from aird_jax.parallel import AXIS, make_parallel

XCEPTION_PARAMS = 20_806_952  # timm legacy_xception without its classifier (test_baselines.py)
GRAY = np.array([0.299, 0.587, 0.114])


@functools.cache
def _smoke_model() -> dict:
    return load_config("configs/late_supcon.py:smoke").model.to_dict()


def _cfg(name: str, **kw) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(_smoke_model() | {"name": name} | kw)


def _shapes(name: str, size: int):
    model = build_model(_cfg(name))
    x = jnp.zeros((2, size, size, 3))
    v = jax.eval_shape(model.init, {"params": jax.random.key(0)}, x)
    return model, v, jax.eval_shape(lambda v, x: model.apply(v, x), v, x)


# ------------------------------------------------------------------------ spectral pieces


def test_fad_decompose_matches_scipy_dct(x64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 12, 10, 3))
    filt = rng.normal(size=(4, 12, 10))
    got = np.asarray(f3net.fad_decompose(jnp.asarray(x), jnp.asarray(filt)))
    assert got.dtype == np.float64 and got.shape == (2, 12, 10, 12)
    for b in range(2):
        for c in range(3):
            coef = scipy.fft.dctn(x[b, :, :, c], norm="ortho")
            for k in range(4):
                want = scipy.fft.idctn(coef * filt[k], norm="ortho")
                np.testing.assert_allclose(got[b, :, :, k * 3 + c], want, atol=1e-12)


def test_fad_bands_partition_the_spectrum_by_area():
    m = f3net.fad_band_masks(299, 299)
    np.testing.assert_array_equal(m[0] + m[1] + m[2], 1.0)  # low, middle, high: a partition
    np.testing.assert_array_equal(m[3], 1.0)
    # Area fractions 1/16, 1/16 (1/8 - 1/16), 7/8 up to the grid's rounding; DC is "low".
    np.testing.assert_allclose(m[:3].mean(axis=(1, 2)), [1 / 16, 1 / 16, 7 / 8], atol=3e-3)
    assert m[0, 0, 0] == 1 and m[2, -1, -1] == 1
    # Anti-diagonal bands: i + j <= 299 / sqrt(8) is low (square grids).
    i, j = np.indices((299, 299))
    np.testing.assert_array_equal(m[0] == 1, i + j <= 299 / math.sqrt(8))


def test_window_dct_and_lfs_statistics_match_naive_loop(x64):
    rng = np.random.default_rng(1)
    gray = rng.uniform(0, 255, size=(2, 13, 11))
    got = np.asarray(f3net.window_dct(jnp.asarray(gray[..., None])))
    s, st, pad = f3net.LFS_WINDOW, f3net.LFS_STRIDE, f3net.LFS_PAD
    assert got.shape == (2, f3net.lfs_output_size(13), f3net.lfs_output_size(11), s * s)
    padded = np.pad(gray, ((0, 0), (pad, pad), (pad, pad)))
    filt = f3net.lfs_band_masks() + 0.3 * rng.normal(size=(f3net.LFS_BANDS, s, s))
    want_q = np.zeros(got.shape[:3] + (f3net.LFS_BANDS,))
    for b in range(2):
        for oi in range(got.shape[1]):
            for oj in range(got.shape[2]):
                win = padded[b, oi * st : oi * st + s, oj * st : oj * st + s]
                coef = scipy.fft.dctn(win, norm="ortho")
                np.testing.assert_allclose(got[b, oi, oj], coef.ravel(), atol=1e-9)
                for m in range(f3net.LFS_BANDS):
                    n = f3net.lfs_band_masks()[m].sum()
                    val = np.sum(np.abs(coef) * filt[m]) / n
                    want_q[b, oi, oj, m] = np.log10(abs(val) + f3net.LFS_EPS)
    q = f3net.lfs_statistics(jnp.asarray(got), jnp.asarray(filt))
    np.testing.assert_allclose(np.asarray(q), want_q, atol=1e-10)
    # Bands: equal-width ranges of u + v that together cover the window's spectrum once.
    masks = f3net.lfs_band_masks()
    np.testing.assert_array_equal(masks.sum(axis=0), 1.0)
    # Band m holds the diagonals u + v = d with m * 20/6 <= d < (m + 1) * 20/6; diagonal d of a
    # 10 x 10 grid has min(d + 1, 19 - d) entries.
    per_diag = [min(d + 1, 19 - d) for d in range(19)]
    want = [
        sum(n for d, n in enumerate(per_diag) if m * 20 / 6 <= d < (m + 1) * 20 / 6)
        for m in range(6)
    ]
    assert masks.sum(axis=(1, 2)).tolist() == want


def test_phase_image_matches_numpy(x64):
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(2, 16, 12, 3))
    gray = x @ GRAY
    ref = np.real(np.fft.ifft2(np.exp(1j * np.angle(np.fft.fft2(gray))))).astype(np.float64)
    ref = (ref - ref.mean(axis=(1, 2), keepdims=True)) / ref.std(axis=(1, 2), keepdims=True)
    got = np.asarray(spsl.phase_image(jnp.asarray(x)))
    assert got.shape == (2, 16, 12, 1)
    np.testing.assert_allclose(got[..., 0], ref, atol=1e-9)


# ------------------------------------------------------------------------------ MixBlock


def _mix_reference(p, st, xf, xl):
    """Naive per-(image, channel) MixBlock in float64 numpy, eval-mode BatchNorm."""
    dense = lambda name, x: x @ p[name]["kernel"] + p[name]["bias"]
    qf, kf = dense("fad_query", xf), dense("fad_key", xf)
    ql, kl = dense("lfs_query", xl), dense("lfs_key", xl)
    gate = lambda g: 2 / (1 + np.exp(-p[g])) - 1
    yf, yl = xf.copy(), xl.copy()
    for b in range(xf.shape[0]):
        for c in range(xf.shape[-1]):
            e = qf[b, :, :, c] @ kf[b, :, :, c].T + ql[b, :, :, c] @ kl[b, :, :, c].T
            a = np.exp(e - e.max(axis=1, keepdims=True))
            a /= a.sum(axis=1, keepdims=True)
            for src, dst, g, side in ((xl, yf, "lfs_gamma", "fad"), (xf, yl, "fad_gamma", "lfs")):
                m = a @ src[b, :, :, c] * gate(g)
                m = m * p[f"{side}_conv"]["scale"][c] + p[f"{side}_conv"]["bias"][c]
                bn, s = p[f"{side}_bn"], st[f"{side}_bn"]
                m = (m - s["mean"][c]) / np.sqrt(s["var"][c] + 1e-5) * bn["scale"][c] + bn["bias"][
                    c
                ]
                dst[b, :, :, c] += m
    return yf, yl


def test_mixblock_matches_naive_loop_and_counts(x64):
    rng = np.random.default_rng(3)
    xf, xl = rng.normal(size=(2, 5, 4, 6)), rng.normal(size=(2, 5, 4, 6))
    block = f3net.MixBlock(dtype=jnp.float64, param_dtype=jnp.float64)
    shapes = jax.eval_shape(block.init, jax.random.key(0), xf, xl)
    assert count_params(shapes["params"]) == f3net.mixblock_param_count(6)
    v = jax.tree.map(lambda s: rng.normal(size=s.shape), shapes)
    v["batch_stats"] = jax.tree.map(lambda a: np.abs(a) + 0.5, v["batch_stats"])
    apply = jax.jit(block.apply)  # one compile instead of one per op
    yf, yl = apply(v, jnp.asarray(xf), jnp.asarray(xl))
    rf, rl = _mix_reference(v["params"], v["batch_stats"], xf, xl)
    np.testing.assert_allclose(np.asarray(yf), rf, atol=1e-10)
    np.testing.assert_allclose(np.asarray(yl), rl, atol=1e-10)
    # Freshly initialised (gates 0) it is the identity: the pretrained streams start undisturbed.
    v0 = jax.jit(block.init)(jax.random.key(1), xf, xl)
    y0 = apply(v0, jnp.asarray(xf), jnp.asarray(xl))
    np.testing.assert_allclose(np.asarray(y0[0]), xf, atol=1e-12)
    np.testing.assert_allclose(np.asarray(y0[1]), xl, atol=1e-12)


# ------------------------------------------------------------------ full-size architecture


def test_full_size_parameter_counts_and_outputs():
    _, v, out = _shapes("spsl", 224)
    p = v["params"]
    # Xception + one more input channel in the 3x3x32 stem.
    assert count_params(p["rgb_backbone"]) == XCEPTION_PARAMS + 3 * 3 * 32
    assert out["features"].shape == (2, 2048) and out["logits"].shape == (2, 2)
    _, v, out = _shapes("f3net", 299)
    p = v["params"]
    # Two Xceptions; stems of 12 (FAD) and 6 (LFS) input channels instead of 3.
    assert count_params(p["rgb_backbone"]) == 2 * XCEPTION_PARAMS + 3 * 3 * 32 * (9 + 3)
    assert count_params(p["fad_head"]) == 4 * 299 * 299  # one learnable filter per band
    assert count_params(p["lfs_head"]) == 6 * 10 * 10
    assert count_params(p["mix1"]) == f3net.mixblock_param_count(728) == 2_128_674
    assert count_params(p["mix2"]) == f3net.mixblock_param_count(1024) == 4_206_594
    assert out["features"].shape == (2, 4096) and out["embedding"].shape == (2, 128)
    assert set(p) == {
        "fad_head", "lfs_head", "rgb_backbone", "mix1", "mix2", "classifier", "projection"
    }  # fmt: skip


@pytest.mark.parametrize("name", ["f3net_tiny", "spsl_tiny"])
def test_pretrained_stem_adaptation(tmp_path, name):
    """A ported trunk file (here: random xception_tiny variables) loads into both models."""
    rng = np.random.default_rng(4)
    _, xv, _ = _shapes("xception_tiny", 32)
    src = {c: jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), xv[c])
           for c in ("params", "batch_stats")}  # fmt: skip
    src = {c: t["rgb_backbone"] for c, t in src.items()}
    _port.save_variables(src, tmp_path / "w.msgpack", {"model": "legacy_xception"})
    cfg = _cfg(name, pretrained=str(tmp_path / "w.msgpack"))
    model = build_model(cfg)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    v = load_pretrained(jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes), cfg)
    k = src["params"]["conv1"]["kernel"]
    if name == "spsl_tiny":
        trunks = {"": v["params"]["rgb_backbone"]}
        got = trunks[""]["conv1"]["kernel"]
        np.testing.assert_array_equal(got[:, :, :3], k)
        np.testing.assert_allclose(got[:, :, 3], k.mean(axis=2), rtol=1e-6)
    else:
        trunks = v["params"]["rgb_backbone"]
        fad, lfs = trunks["fad"]["conv1"]["kernel"], trunks["lfs"]["conv1"]["kernel"]
        np.testing.assert_allclose(fad, np.concatenate([k] * 4, axis=2) / 2, rtol=1e-6)
        np.testing.assert_allclose(lfs, np.repeat(k.sum(2, keepdims=True) / 6, 6, 2), rtol=1e-6)
        # With the learnable residuals at 0 the FAD stem computes the ImageNet stem's response.
        x = jnp.asarray(rng.normal(size=(1, 32, 32, 3)), jnp.float32)
        bands = f3net.fad_decompose(x, jnp.asarray(f3net.fad_band_masks(32, 32), jnp.float32))
        conv = lambda a, w: jax.lax.conv(
            a.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), (2, 2), "VALID"
        )
        np.testing.assert_allclose(conv(bands, fad), conv(x, jnp.asarray(k)), atol=1e-3)
    want_dw = src["params"]["block2"]["rep_1"]["conv1"]["kernel"]
    for t in trunks.values():  # every other leaf as ported
        np.testing.assert_array_equal(t["block2"]["rep_1"]["conv1"]["kernel"], want_dw)


# ---------------------------------------------------------------------------- training


def _toy_batch(n: int = 8, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random images; the "fakes" carry a faint checkerboard (an up-sampling trace)."""
    rng = np.random.default_rng(5)
    low = rng.uniform(size=(n, size // 8, size // 8, 3))
    x = np.repeat(np.repeat(low, 8, axis=1), 8, axis=2)
    y = np.arange(n) % 2
    checker = (np.indices((size, size)).sum(0) % 2)[None, :, :, None] * 0.1
    x = np.clip(x * 0.8 + y[:, None, None, None] * checker, 0, 1).astype(np.float32)
    return x, y.astype(np.int32)


def _fill(shapes, seed: int):
    """Variables from shapes without compiling Flax's init (which costs more than the step):
    kernels N(0, 1/fan_in), BN scale/var 1, the rest 0 (as tests/test_baselines.py)."""
    rng = np.random.default_rng(seed)

    def leaf(path, s):
        name = path[-1].key
        if name == "kernel":
            return rng.normal(0, np.prod(s.shape[:-1]) ** -0.5, s.shape).astype(s.dtype)
        return (np.ones if name in ("scale", "var") else np.zeros)(s.shape, s.dtype)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


@pytest.fixture
def fast_compile():
    """XLA without most optimisations for one test: the compile of a two-trunk backward pass
    is 2x faster, the handful of steps slower; restored afterwards."""
    prev = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", prev)


@pytest.mark.parametrize("module", [f3net.F3Net, spsl.SPSL])
def test_trains_with_the_project_step(module, fast_compile):
    """train.py's step, unchanged, drives the model's loss down on a learnable toy batch. The
    tiny trunk without its middle flow (middle_blocks=0) keeps the XLA compile to seconds; the
    registered tiny variants run end to end in `reproduce.py --smoke`."""
    cfg = load_config("configs/late_supcon.py:smoke")
    cfg.optim.lr = 1e-3
    kw = {"embed_dim": 128, "depthwise": "native", "dropout": 0.0, "width": 0.25}
    model = module(**kw, middle_blocks=0, axis_name=AXIS)
    x, y = _toy_batch()
    v = _fill(jax.eval_shape(module(**kw, middle_blocks=0).init, jax.random.key(0), x), 0)
    tx, _ = optim.make_optimizer(cfg.optim, 100, v["params"], is_backbone_path)
    par = make_parallel(cfg)
    hs = {"step": np.zeros((), np.int32), "params": v["params"]}
    hs |= {"batch_stats": v["batch_stats"], "opt_state": tx.init(v["params"])}
    step = par.compile_step(train.make_train_step(cfg, model, tx))
    st, key = par.put_state(hs), par.put_state(train.seed_key_data(0))
    batch = par.put_batch({"image": x, "label": y})
    losses = []
    for _ in range(6):  # the loss halves within ~4 steps at lr 1e-3
        st, m = step(st, batch, key)
        losses.append(par.get_metrics(m)["loss"])
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], losses
