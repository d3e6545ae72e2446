"""Spectral baselines (dct_stats, frank_dct, durall_spectrum): features against independent
computations, and a scikit-learn fit that is an ordinary run folder for evaluate/predict."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aird_jax import checkpoint, config, evaluate, spectral_fit
from aird_jax.data import pipeline
from aird_jax.models import build_model, spectral, validate_model_config

REPO = Path(__file__).resolve().parents[1]
FFPP = REPO.parent / "shared" / "data" / "ffpp_faces299"
BT601 = np.array([0.299, 0.587, 0.114])


def _images(n=2, size=32, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size, 3)).astype(np.float32)


def _gray64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float64) @ BT601


# ------------------------------------------------------------------------------ features
@pytest.mark.parametrize("cutoff", [0, 4])
def test_dct_stats_matches_scipy_blocks(cutoff):
    x = _images(size=40)  # 5 x 5 blocks
    got = np.asarray(spectral.dct_stats_features(jnp.asarray(x), cutoff))
    g = _gray64(x)
    want = []
    for img in g:
        logs = [
            np.log(np.abs(scipy.fft.dctn(img[i : i + 8, j : j + 8], norm="ortho")) + 1e-6)
            for i in range(0, 40, 8)
            for j in range(0, 40, 8)
        ]
        mean = np.mean(logs, axis=0)  # [8, 8] per frequency (u, v)
        keep = [mean[u, v] for u in range(8) for v in range(8) if u >= cutoff or v >= cutoff]
        want.append(keep)
    want = np.asarray(want)
    assert got.shape == want.shape == (2, 64 - cutoff * cutoff)
    np.testing.assert_allclose(got, want, atol=2e-3)


def test_frank_dct_matches_scipy_dctn():
    x = _images(size=32)
    got = np.asarray(spectral.frank_features(jnp.asarray(x)))
    coeffs = np.stack([scipy.fft.dctn(img, norm="ortho") for img in _gray64(x)])
    want = np.log(np.abs(coeffs) + 1e-12).reshape(2, -1)
    assert got.shape == want.shape == (2, 32 * 32)
    np.testing.assert_allclose(np.exp(got), np.abs(coeffs).reshape(2, -1), atol=2e-5)
    big = np.abs(coeffs).reshape(2, -1) > 1e-2  # the log is ill-conditioned near zero
    assert big.mean() > 0.9
    np.testing.assert_allclose(got[big], want[big], atol=1e-3)


def test_durall_spectrum_matches_naive_radial_loop():
    size = 32
    x = _images(size=size)
    got = np.asarray(spectral.durall_features(jnp.asarray(x)))
    want = []
    for img in _gray64(x):
        mag = 20 * np.log(np.abs(np.fft.fftshift(np.fft.fft2(img))) + 1e-8)
        sums, counts = {}, {}
        c = size // 2  # the DC sample after fftshift (even size)
        for i in range(size):
            for j in range(size):
                r = int(np.floor(np.hypot(i - c, j - c)))
                sums[r] = sums.get(r, 0.0) + mag[i, j]
                counts[r] = counts.get(r, 0) + 1
        prof = np.array([sums[r] / counts[r] for r in range(max(sums) + 1)])
        want.append((prof - prof.min()) / (prof.max() - prof.min()))
    want = np.asarray(want)
    assert got.shape == want.shape == (2, int(np.floor(np.hypot(c, c))) + 1)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_models_registered_and_validated():
    cfg = config.load_config("configs/spectral.py:durall_spectrum")
    for name in spectral.SPECTRAL_MODELS:
        cfg.model.name = name
        validate_model_config(cfg.model)
        model = build_model(cfg.model)
        out = model.apply(
            spectral_fit.init_variables(model, 32), jnp.asarray(_images()), train=False
        )
        n = spectral.num_features(name, 32, cfg.model.dct_cutoff)
        assert out["logits"].shape == (2, 2) and out["features"].shape == (2, n)
        np.testing.assert_allclose(out["logits"], 0.0)  # unfitted: P(fake) = 0.5
    cfg.model.name, cfg.model.dct_cutoff = "dct_stats", 8
    with pytest.raises(ValueError, match="dct_cutoff"):
        validate_model_config(cfg.model)
    with pytest.raises(ValueError, match="variant"):
        config.load_config("configs/spectral.py:dct_stats,frank_dct")


# ------------------------------------------------------------------------------- fitting
SIZE = 32


def _face(rng, fake: bool) -> np.ndarray:
    """A smooth random 'face' (low-frequency noise); fakes add a high-frequency checkerboard."""
    small = rng.random((4, 4, 3))
    img = cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC) * 0.6 + 0.2
    img = img + rng.normal(0, 0.01, img.shape)
    if fake:
        yy, xx = np.mgrid[:SIZE, :SIZE]
        img = img + 0.04 * ((yy + xx) % 2 * 2 - 1)[..., None]
    return np.clip(img * 255, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("spectral_faces")
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("val", 12), ("test", 20)):
        for group, fake in (("real", False), ("fake/checker", True)):
            d = root / split / group
            d.mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(d / f"{split}_{i}.png"), _face(rng, fake))
    return root


def _config(name: str, folder: Path, data_root: Path):
    cfg = config.load_config(f"configs/spectral.py:{name}")
    for key, value in (
        ("data.name", "face_folder"),
        ("data.config", ""),
        ("data.manual_dir", str(folder)),
        ("data.root", str(data_root)),
        ("data.image_size", SIZE),
        ("data.frames_per_video", 0),
        ("train.eval_batch_size", 16),
        ("train.progress", False),
    ):
        config.set_path(cfg, key, value)
    return cfg


@pytest.mark.parametrize("name", spectral.SPECTRAL_MODELS)
def test_fit_is_a_run_folder_scored_like_sklearn(name, synthetic_folder, tmp_path_factory):
    data_root = tmp_path_factory.getbasetemp() / "spectral_root"
    cfg = _config(name, synthetic_folder, data_root)
    workdir = tmp_path_factory.mktemp(f"run_{name}")
    summary = spectral_fit.fit_spectral(cfg, workdir)
    assert summary["converged"] and summary["val_metrics"]["frame_auc"] > 0.9

    run = checkpoint.load_run(workdir)  # what evaluate and predict load
    assert run.config.model.name == name and run.step == spectral_fit.FIT_STEP
    assert run.val_metrics["threshold"] == pytest.approx(summary["val_metrics"]["threshold"])
    res = evaluate.evaluate_run(workdir, split="test", progress=False, batch_size=16)
    assert res["metrics"]["frame"]["auc"] > 0.9
    with np.load(res["files"]["scores"]) as z:
        scores, labels = z["scores"], z["labels"]

    # Independent scikit-learn pipeline on the same features (the model's own feature output).
    model = build_model(cfg.model)
    v0 = spectral_fit.init_variables(model, SIZE)
    d = cfg.data

    def feats(split):
        loader = pipeline.eval_loader(d, split, batch_size=16)
        return spectral_fit.extract_features(model, v0, loader)

    x_tr, y_tr, _ = feats("train")
    keep = spectral_fit.informative_features(x_tr)  # constant up to float32 rounding: left out
    assert summary["n_constant_features"] == int((~keep).sum())
    ref = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=cfg.fit.C, max_iter=cfg.fit.max_iter, tol=cfg.fit.tol, random_state=0),
    ).fit(x_tr[:, keep], y_tr)
    x_te, y_te, _ = feats("test")
    np.testing.assert_array_equal(y_te, labels)
    np.testing.assert_allclose(scores, ref.predict_proba(x_te[:, keep])[:, 1], atol=1e-5)


def test_fit_cli_then_predict(synthetic_folder, tmp_path):
    """The command line writes a run folder (config.json, fit_summary.json, checkpoints/best)
    that ``python -m aird_jax.predict`` scores like any trained run; bad values end in one line."""
    workdir = tmp_path / "cli_run"
    args = [
        sys.executable, "-m", "aird_jax.spectral_fit",
        "--config", "configs/spectral.py:dct_stats",
        "--workdir", str(workdir),
        "--config.data.name=face_folder",
        "--config.data.config=",
        f"--config.data.manual_dir={synthetic_folder}",
        f"--config.data.root={tmp_path / 'root'}",
        f"--config.data.image_size={SIZE}",
        "--config.data.frames_per_video=0",
        "--config.train.progress=False",
    ]  # fmt: skip
    r = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "validation frame AUC" in r.stdout
    saved = json.loads((workdir / "config.json").read_text())["config"]
    assert saved["model"]["name"] == "dct_stats"
    assert json.loads((workdir / "fit_summary.json").read_text())["n_train"] == 80
    bad = subprocess.run(args[:6] + [str(tmp_path / "bad"), "--config.fit.C=-1"], cwd=REPO,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert bad.returncode == 2 and "fit.C must be > 0" in bad.stderr
    out = tmp_path / "pred"
    pred = subprocess.run(
        [sys.executable, "-m", "aird_jax.predict", "--workdir", str(workdir), "--no-detect",
         "--out", str(out), str(synthetic_folder / "test")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert pred.returncode == 0, pred.stderr[-3000:]
    rows = list(csv.DictReader(open(f"{out}.csv")))
    assert len(rows) == 40


# ------------------------------------------------------------------------------ real data
def test_dct_stats_on_ffpp_faces299(tmp_path):
    """A fast fit on a subset of the FF++ crops (the full-split number is in the README)."""
    if not (FFPP / "real").is_dir():
        pytest.skip(f"{FFPP} absent: the real-data spectral test needs ../shared/data")
    t0 = time.perf_counter()
    cfg = config.load_config("configs/spectral.py:dct_stats,faces299")
    config.set_path(cfg, "data.manual_dir", str(FFPP))
    config.set_path(cfg, "data.root", str(tmp_path / "root"))
    config.set_path(cfg, "data.image_size", 128)
    config.set_path(cfg, "data.max_examples", 600)
    config.set_path(cfg, "train.progress", False)
    summary = spectral_fit.fit_spectral(cfg, tmp_path / "run")
    res = evaluate.evaluate_run(tmp_path / "run", split="test", progress=False, batch_size=64)
    auc = res["metrics"]["frame"]["auc"]
    assert summary["n_features"] == 48 and np.isfinite(auc) and 0.4 < auc < 1.0
    assert time.perf_counter() - t0 < 120
