"""Fit a spectral baseline (``configs/spectral.py``) with scikit-learn into an ordinary run folder.

    python -m aird_jax.spectral_fit --config configs/spectral.py:dct_stats,faces299 \\
        --workdir runs/dct_stats_faces299 [--config.fit.C=0.1] [--config.data.image_size=128]
    python scripts/evaluate.py --workdir runs/dct_stats_faces299      # test AUC, EER, ...
    python -m aird_jax.predict --workdir runs/dct_stats_faces299 my_faces/

Steps: the model's own jitted features (``aird_jax.models.spectral``) over the training split
(``pipeline.eval_loader`` on ``data.train_split``: no augmentation, ``data.frames_per_video``
frames per video as training samples them) -> ``StandardScaler`` (features constant up to
float32 rounding are left out) -> ``LogisticRegression`` (L2, lbfgs, ``fit.C``,
``random_state=seed``: deterministic) -> the fitted numbers become the
model's parameters -> the validation split is scored through THE scoring path
(``inference.Scorer``) and summarised by ``train.validation_metrics`` (frame/video AUC, EER and
the Youden threshold the evaluation uses; never test data) -> ``config.json`` and
``checkpoints/best`` (Orbax, with ``val_metrics``) are written as training writes them, so
``checkpoint.load_run``, ``evaluate`` and ``predict`` load the run like any trained detector.
A ``fit_summary.json`` records the fit (C, iterations, counts, training AUC, seconds).

Flags and overrides as ``python -m aird_jax.main`` (``--config.x.y=v``; ``--verbose``). Refitting
the same ``--workdir`` with the same configuration redoes the fit; another configuration is
refused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, logging
from ml_collections import config_flags
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from aird_jax import cli, host_memory, inference, metrics, train
from aird_jax import config as cfg
from aird_jax import main as main_cli
from aird_jax.checkpoint import RunCheckpoints
from aird_jax.data import pipeline
from aird_jax.models import build_model
from aird_jax.models.spectral import SPECTRAL_MODELS

FIT_STEP = 1  # the checkpoint step of a fit (there is one "epoch")


def validate_fit_config(config: ml_collections.ConfigDict) -> None:
    """The checks of ``cfg.validate_config`` plus the spectral model and its ``fit`` block."""
    cfg.validate_config(config)
    if config.model.name not in SPECTRAL_MODELS:
        raise ValueError(
            f"model.name={config.model.name!r} is not a spectral baseline; choose one of "
            f"{list(SPECTRAL_MODELS)} (train networks with python -m aird_jax.main)"
        )
    f = config.get("fit")
    if f is None:
        raise ValueError("the config has no 'fit' block; use configs/spectral.py")
    if not float(f.C) > 0:
        raise ValueError(f"fit.C must be > 0 (inverse L2 strength), got {f.C}")
    if int(f.max_iter) < 1 or not float(f.tol) > 0:
        raise ValueError(f"fit.max_iter must be >= 1 and fit.tol > 0, got {f.max_iter}, {f.tol}")


def init_variables(model: Any, image_size: int) -> dict:
    """Unfitted variables (identity standardisation, zero classifier) as host arrays."""
    v = model.init(jax.random.key(0), jnp.zeros((1, image_size, image_size, 3), jnp.float32))
    return {"params": jax.tree.map(np.asarray, dict(v["params"])), "batch_stats": {}}


def extract_features(model: Any, variables: dict, batches, *, progress: bool = False,
                     total: int | None = None, desc: str = "features"):  # fmt: skip
    """(features float64 [N, F], labels int [N], video ids [N]) of the unmasked frames, computed
    by the model itself (its jitted ``features`` output)."""
    fwd = jax.jit(lambda v, x: model.apply(v, x, train=False)["features"])
    feats, labels, vids = [], [], []
    bar = tqdm(total=total, desc=desc, unit="img", disable=not progress, dynamic_ncols=True)
    try:
        for b in batches:
            m = np.asarray(b["mask"], bool)
            f = np.asarray(fwd(variables, np.asarray(b["image"], np.float32)))[m]
            feats.append(f.astype(np.float64))
            labels.append(np.asarray(b["label"])[m].astype(np.int64))
            vids.append(np.asarray(b["video_id"]).astype(str)[m])
            bar.update(int(m.sum()))
    finally:
        bar.close()
    if not feats:
        raise ValueError("the training split yielded no images")
    x = np.concatenate(feats)
    if not np.all(np.isfinite(x)):
        raise FloatingPointError("non-finite spectral features (an all-constant image?)")
    return x, np.concatenate(labels), np.concatenate(vids)


CONSTANT_RTOL = 1e-5  # a feature varying less than this (relative) is float32 rounding noise


def informative_features(x: np.ndarray) -> np.ndarray:
    """Mask of the features that vary over ``x`` by more than float32 rounding (e.g. Durall's
    min-max normalised DC bin is 1 in every image up to ~1e-8): standardising rounding noise
    would blow it up to unit variance, and the float32 model could not reproduce it."""
    return x.std(axis=0) > CONSTANT_RTOL * np.maximum(1.0, np.abs(x.mean(axis=0)))


def fit_classifier(x: np.ndarray, y: np.ndarray, fit_cfg, seed: int):
    """``StandardScaler`` + ``LogisticRegression`` on (x, y), x standardised IN PLACE.

    Constant features (see :func:`informative_features`) are zeroed after standardisation and
    get scale 1: their coefficient stays exactly 0, so the fit equals one without them.
    Returns (mean, scale, classifier, number of constant features)."""
    keep = informative_features(x)
    scaler = StandardScaler().fit(x)
    scale = np.where(keep, scaler.scale_, 1.0)
    x -= scaler.mean_
    x /= scale
    x[:, ~keep] = 0.0
    clf = LogisticRegression(
        C=float(fit_cfg.C),
        max_iter=int(fit_cfg.max_iter),
        tol=float(fit_cfg.tol),
        solver="lbfgs",
        random_state=int(seed),
    ).fit(x, y)
    return scaler.mean_, scale, clf, int((~keep).sum())


def fitted_variables(variables: dict, mean, scale, clf: LogisticRegression) -> dict:
    """The model's variables holding the scikit-learn fit."""
    p = dict(variables["params"])
    p["mean"] = np.asarray(mean, np.float32)
    p["scale"] = np.asarray(scale, np.float32)
    p["kernel"] = np.asarray(clf.coef_[0], np.float32)
    p["bias"] = np.asarray(clf.intercept_[0], np.float32)
    return {"params": p, "batch_stats": dict(variables.get("batch_stats", {}))}


def _check_two_classes(data_cfg, split: str, role: str) -> dict[int, int]:
    counts = pipeline.class_counts(data_cfg, split)
    if not counts[0] or not counts[1]:
        raise ValueError(
            train.class_counts_message(role, split, counts[0], counts[1], " (before fitting)")
        )
    return counts


def fit_spectral(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
    """Fit ``config`` (a ``configs/spectral.py`` config) into ``workdir``; returns the summary."""
    validate_fit_config(config)
    workdir = Path(workdir).resolve()
    cfg.check_workdir(workdir)
    cfg.check_run_config(config, workdir)
    d, t0 = config.data, time.perf_counter()
    train_counts = _check_two_classes(d, d.train_split, "training")
    val_counts = _check_two_classes(d, d.val_split, "validation")
    model = build_model(config.model, axis_name=None)
    variables = init_variables(model, int(d.image_size))
    progress = bool(config.train.progress)
    batch = int(config.train.eval_batch_size)
    fpv = int(d.frames_per_video) or None
    loader = pipeline.eval_loader(d, d.train_split, batch_size=batch, frames_per_video=fpv)
    x, y, _ = extract_features(
        model, variables, loader, progress=progress, total=loader.num_examples, desc="train"
    )
    t_feat = time.perf_counter() - t0
    mean, scale, clf, n_constant = fit_classifier(x, y, config.fit, int(config.seed))
    train_auc = metrics.summarize(y, clf.predict_proba(x)[:, 1])["auc"]
    del x
    fitted = fitted_variables(variables, mean, scale, clf)
    scorer = inference.Scorer(model, fitted)
    val_loader = pipeline.eval_loader(d, d.val_split, batch_size=batch)
    val = train.validation_metrics(train.score_split(scorer, val_loader))
    summary = {
        "model": str(config.model.name),
        "n_features": int(mean.size),
        "n_constant_features": n_constant,
        "C": float(config.fit.C),
        "n_iter": int(np.max(clf.n_iter_)),
        "converged": bool(np.max(clf.n_iter_) < int(config.fit.max_iter)),
        "n_train": int(y.size),
        "train_counts": train_counts,
        "val_counts": val_counts,
        "train_frame_auc": float(train_auc),
        "val_metrics": val,
        "feature_seconds": round(t_feat, 3),
        "seconds": round(time.perf_counter() - t0, 3),
        "workdir": str(workdir),
    }
    cfg.write_run_config(config, workdir)
    ckpt = RunCheckpoints(workdir, keep=1)
    meta = {"val_metrics": val, "epoch": 1, "step": FIT_STEP, "fit": summary}
    ckpt.save_best(FIT_STEP, fitted, json.loads(json.dumps(meta, default=cfg.jsonable)))
    ckpt.wait()
    (workdir / "fit_summary.json").write_text(
        json.dumps(summary, indent=2, default=cfg.jsonable) + "\n"
    )
    return summary


def format_summary(s: dict[str, Any]) -> str:
    v = s["val_metrics"]
    return (
        f"{s['model']}: {s['n_features']} features, {s['n_train']} training images, C={s['C']:g}"
        f" ({s['n_iter']} lbfgs iterations{'' if s['converged'] else ', NOT converged'}); "
        f"train frame AUC {s['train_frame_auc']:.4f}, validation frame AUC "
        f"{v['frame_auc']:.4f} (threshold {v['threshold']:.4f}); {s['seconds']:.1f}s -> "
        f"{s['workdir']}"
    )


def _run() -> None:
    logging.set_verbosity(logging.WARNING)
    flags = main_cli.FLAGS
    config = flags.config
    workdir = flags.workdir or main_cli.default_workdir(
        config_flags.get_config_filename(flags["config"])
    )
    try:
        validate_fit_config(config)
    except ValueError as e:
        raise ValueError(f"invalid configuration: {e}") from e
    print(format_summary(fit_spectral(config, workdir)), flush=True)


def _main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    return cli.run(_run, argv=["--verbose"] if main_cli.FLAGS.verbose else [])


def cli_main(argv: list[str] | None = None) -> None:
    """``python -m aird_jax.spectral_fit ...`` (the flags of ``python -m aird_jax.main``)."""
    app.run(_main, argv=argv, flags_parser=main_cli.parse_flags)


if __name__ == "__main__":
    host_memory.relaunch_under_allocator()  # under tcmalloc where chosen (host_memory.py)
    cli_main()
