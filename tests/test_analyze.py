"""The analysis figures (aird_jax/analyze.py): DCT saliency reparametrisation against scipy's
DCT, Grad-CAM against a hand computation, silhouettes against a naive loop and sklearn, the
EfficientNet hooks leave the model unchanged, and the CLI end to end on a tiny untrained run."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft
from sklearn.metrics import silhouette_score

from aird_jax import analyze
from aird_jax.analysis import gradcam, gradients, saliency, tsne
from aird_jax.checkpoint import RunCheckpoints
from aird_jax.config import load_config, write_run_config
from aird_jax.models import build_model

BT601 = np.array([0.299, 0.587, 0.114])


def _blockwise_dctn(img: np.ndarray, inverse: bool = False) -> np.ndarray:
    """scipy's orthonormal 2-D DCT-II (or its inverse) of every 8x8 tile of a 2-D array."""
    out = np.empty_like(img)
    f = scipy.fft.idctn if inverse else scipy.fft.dctn
    for i in range(0, img.shape[0], 8):
        for j in range(0, img.shape[1], 8):
            out[i : i + 8, j : j + 8] = f(img[i : i + 8, j : j + 8], norm="ortho")
    return out


def test_dct_reparametrisation_is_the_identity_and_matches_scipy():
    x = np.random.default_rng(0).random((2, 16, 24, 3)).astype(np.float32)
    c0, to_image = saliency.reparametrize(jnp.asarray(x))
    gray = x.astype(np.float64) @ BT601
    for b in range(2):
        np.testing.assert_allclose(np.asarray(c0)[b, :, :, 0], _blockwise_dctn(gray[b]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(to_image(c0)), x, atol=0)  # x(C0) is x exactly
    # Moving one coefficient moves the gray image by that DCT basis function (scipy's inverse).
    dc = np.zeros(c0.shape, np.float32)
    dc[1, 8 + 2, 16 + 5, 0] = 0.3
    moved = np.asarray(to_image(c0 + dc), np.float64)
    want = 0.3 * _blockwise_dctn(dc[1, :, :, 0] / 0.3, inverse=True)
    np.testing.assert_allclose(moved[1] @ BT601 - gray[1], want, atol=1e-5)
    for ch in range(3):  # every channel moves by the same amount (BT.601 weights sum to 1)
        np.testing.assert_allclose(moved[1, :, :, ch] - x[1, :, :, ch], want, atol=1e-5)


def test_coefficient_gradient_of_a_linear_function():
    """score(x) = <W, x>: dscore/dC = blockwise DCT of the channel-summed pixel gradient W."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 16, 16, 3)).astype(np.float32)
    x = rng.random((3, 16, 16, 3)).astype(np.float32)

    def apply(variables, im, mutable=()):  # a model.apply-like linear function, no hooks
        return {"y": jnp.sum(im * w, axis=(1, 2, 3))}, {}

    res = gradients.fake_logit_pass(apply, {}, jnp.asarray(x), lambda o: o["y"])
    g = res["coefficient_grad"]
    assert "feature_map" not in res
    np.testing.assert_allclose(np.asarray(res["outputs"]["y"]), (x * w).sum((1, 2, 3)), rtol=1e-5)
    for b in range(3):
        want = _blockwise_dctn(w[b].astype(np.float64).sum(-1))
        np.testing.assert_allclose(np.asarray(g)[b, :, :, 0], want, atol=1e-5)
    # Per-frequency saliency: mean |.| over the blocks, by a loop over blocks.
    maps = np.asarray(saliency.per_frequency(g), np.float64)
    ga = np.abs(np.asarray(g)[0, :, :, 0])
    blocks = [ga[i : i + 8, j : j + 8] for i in (0, 8) for j in (0, 8)]
    np.testing.assert_allclose(maps[0], np.mean(blocks, axis=0), rtol=1e-6)
    groups = saliency.by_method(maps, np.array(["real", "A", "A"]), cutoff=4)
    np.testing.assert_allclose(groups["A"]["mean_abs_grad"], maps[1:].mean(0), rtol=1e-6)
    low = maps[0][:4, :4].sum()
    assert groups["real"]["highpass_share"] == pytest.approx(1 - low / maps[0].sum(), rel=1e-6)


class _Toy(nn.Module):
    """Linear 3x3 conv (no bias) -> hooked feature map A -> y = sum(U * A^2) / 2."""

    @nn.compact
    def __call__(self, x):
        a = nn.Conv(4, (3, 3), padding="VALID", use_bias=False, name="conv")(x)
        if not self.is_initializing():
            self.sow("intermediates", "feature_map", a)
            a = self.perturb("feature_map", a)
        u = self.param("u", nn.initializers.normal(1.0), a.shape[1:])
        return {"y": 0.5 * jnp.sum(u * a**2, axis=(1, 2, 3))}


def test_grad_cam_and_saliency_match_a_hand_computation():
    x = np.random.default_rng(2).random(size=(2, 16, 16, 3)).astype(np.float32)
    model = _Toy()
    variables = model.init(jax.random.key(0), jnp.asarray(x))
    k = np.asarray(variables["params"]["conv"]["kernel"], np.float64)  # [3, 3, 3, 4]
    u = np.asarray(variables["params"]["u"], np.float64)
    # By hand: A[i, j, f] = sum_{di, dj, c} x[i+di, j+dj, c] k[di, dj, c, f]; dy/dA = U * A.
    a = np.zeros((2, 14, 14, 4))
    for i in range(14):
        for j in range(14):
            a[:, i, j] = np.einsum("bxyc,xycf->bf", x[:, i : i + 3, j : j + 3], k)
    alpha = (u * a).mean(axis=(1, 2))  # [B, K]: spatial mean of the gradient
    want = np.maximum((a * alpha[:, None, None, :]).sum(-1), 0)
    res = gradients.fake_logit_pass(model.apply, variables, jnp.asarray(x), lambda o: o["y"])
    np.testing.assert_allclose(np.asarray(res["feature_map"]), a, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(res["feature_grad"]), u * a, rtol=1e-4, atol=1e-4)
    cam = gradcam.grad_cam(res["feature_map"], res["feature_grad"])
    np.testing.assert_allclose(np.asarray(cam), want, rtol=1e-4, atol=1e-4)
    assert (want == 0).any() and (want > 0).any()  # the ReLU is exercised
    # The same pass's DCT gradient: the pixel gradient (dy/dx, by hand: the conv's transpose
    # applied to U * A, summed over channels) pushed through scipy's block DCT.
    gx = np.zeros((2, 16, 16, 3))
    for i in range(14):
        for j in range(14):
            gx[:, i : i + 3, j : j + 3] += np.einsum("bf,xycf->bxyc", (u * a)[:, i, j], k)
    for b in range(2):
        want_c = _blockwise_dctn(gx[b].sum(-1))
        np.testing.assert_allclose(
            np.asarray(res["coefficient_grad"])[b, :, :, 0], want_c, rtol=1e-4, atol=1e-4
        )


def _naive_silhouette(x: np.ndarray, groups: np.ndarray) -> float:
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    s = []
    for i in range(len(x)):
        same = (groups == groups[i]) & (np.arange(len(x)) != i)
        if not same.any():
            s.append(0.0)
            continue
        a = d[i, same].mean()
        b = min(d[i, groups == g].mean() for g in set(groups) if g != groups[i])
        s.append((b - a) / max(a, b))
    return float(np.mean(s))


def test_separation_silhouettes():
    rng = np.random.default_rng(3)
    methods = np.array(["real"] * 10 + ["A"] * 6 + ["B"] * 8)
    centre = {"real": 0.0, "A": 2.0, "B": 2.5}
    emb = np.stack([rng.normal(centre[m], 1.0, size=5) for m in methods])
    sep = tsne.separation(emb, methods)
    fake = methods != "real"
    want_m = _naive_silhouette(emb[fake], methods[fake])
    want_rf = _naive_silhouette(emb, np.where(fake, "fake", "real"))
    assert sep["silhouette_methods_among_fakes"] == pytest.approx(want_m, abs=1e-9)
    assert sep["silhouette_real_vs_fake"] == pytest.approx(want_rf, abs=1e-9)
    assert sep["silhouette_methods_among_fakes"] == pytest.approx(
        silhouette_score(emb[fake], methods[fake]), abs=1e-12
    )
    assert (sep["n_real"], sep["n_fake"]) == (10, 14)
    one = tsne.separation(emb[:16], methods[:16])  # a single method: undefined, not a crash
    assert one["silhouette_methods_among_fakes"] is None


def _untrained_run(workdir, variant: str = "smoke") -> None:
    """A run folder (config.json + a 'best' checkpoint of seeded random weights): the CLI's
    plumbing without training. The variables' shapes come from tracing ``init`` abstractly,
    so nothing is compiled but the analysis itself."""
    config = load_config(f"configs/late_supcon.py:{variant}")
    model = build_model(config.model)
    x = jnp.zeros((1, config.data.image_size, config.data.image_size, 3), jnp.float32)
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    shapes = jax.eval_shape(lambda k, x: model.init(k, x, train=False), keys, x)
    assert set(shapes) == {"params", "batch_stats"}  # the Grad-CAM hooks add nothing at init
    rng = np.random.default_rng(0)

    def fill(path, s):
        name = jax.tree_util.keystr(path[-1:])
        if "scale" in name or "var" in name:  # BatchNorm: unit scale and variance
            return np.ones(s.shape, s.dtype)
        return (0.2 * rng.standard_normal(s.shape)).astype(s.dtype)

    v = jax.tree_util.tree_map_with_path(fill, {k: shapes[k] for k in ("params", "batch_stats")})
    ckpt = RunCheckpoints(workdir)
    ckpt.save_best(1, v, {"val_metrics": {"threshold": 0.5}})
    ckpt.wait()
    write_run_config(config, workdir)


def test_cli_writes_the_four_figures(tmp_path, capsys):
    _untrained_run(tmp_path / "run")
    out = tmp_path / "fig"
    rc = analyze.main(["--workdir", str(tmp_path / "run"), "--compare-workdir",
                       str(tmp_path / "run"), "--out", str(out), "--max-faces", "24"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    for stem in ("fig2_dct_filtering", "fig3_tsne", "gradcam", "dct_saliency"):
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        json.loads((out / f"{stem}.json").read_text())
    panels = json.loads((out / "fig3_tsne.json").read_text())["panels"]
    # The same run twice: embeddings of the gradient pass (Grad-CAM hooks active) and of the
    # plain forward agree (to float32 rounding: the programs differ).
    assert len(panels) == 2
    for key in ("silhouette_methods_among_fakes", "silhouette_real_vs_fake"):
        assert panels[0]["separation"][key] == pytest.approx(panels[1]["separation"][key], 1e-4)
    sal = json.loads((out / "dct_saliency.json").read_text())["methods"]
    assert sum(g["n"] for g in sal.values()) == len(panels[0]["methods"]) == 24
    assert np.asarray(sal["real"]["mean_abs_grad"]).shape == (8, 8)
    cam = json.loads((out / "gradcam.json").read_text())
    assert cam["feature_map_shape"] == [1, 1] and len(cam["faces"]) == 8  # 32 px / stride 32

    capsys.readouterr()
    rc = analyze.main(["--workdir", str(tmp_path / "missing"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: --workdir")
