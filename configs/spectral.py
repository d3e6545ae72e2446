"""Classic spectral baselines (issue 12): fixed frequency features + logistic regression.

    python -m aird_jax.spectral_fit --config configs/spectral.py:dct_stats --workdir runs/dct_stats
    python -m aird_jax.spectral_fit --config configs/spectral.py:frank_dct,faces299 \\
        --workdir runs/frank_dct_faces299
    python scripts/evaluate.py --workdir runs/frank_dct_faces299          # like any trained run

Model variants (exactly one; default ``dct_stats``): ``dct_stats`` (mean log|8x8 block DCT|
per frequency, low ``model.dct_cutoff`` corner removed), ``frank_dct`` (Frank et al., ICML 2020:
log|full-image DCT|), ``durall_spectrum`` (Durall et al., CVPR 2020: azimuthally averaged log
spectrum). Features: ``aird_jax/models/spectral.py``. Data variant ``faces299``: the FF++ face
crops in ``../shared/data/ffpp_faces299`` as a ``face_folder`` dataset (its ``test_`` files are
the test split; validation is 1 in 10 training images, by md5).

The classifier: features standardised on the training split, then scikit-learn's
``LogisticRegression`` (L2, lbfgs, ``fit.C``; seeded and deterministic). Frank et al.'s 50,176
log-DCT features at 224 px are many more than training images, so that variant is strongly
regularised (C = 1e-5 on standardised features; the defaults of C were chosen on validation,
see ``_C``). The validation split gives the run's
``val_metrics`` and its threshold (Youden's J), exactly as for a trained run; no test data is
used for any choice.

The data, train, optim and loss blocks are those of ``configs/late_supcon.py`` (read from it, not
copied), so ``aird_jax.config.validate_config`` and every reader of a run's config.json
(evaluate, predict) work unchanged; optim and loss are not used by a fit (there is no gradient
training), and of ``train`` only ``eval_batch_size`` is (the batch of the feature pass).
"""

from __future__ import annotations

from pathlib import Path

import ml_collections

from aird_jax.config import config_module

MODEL_VARIANTS = ("dct_stats", "frank_dct", "durall_spectrum")
DATA_VARIANTS = ("faces299",)

# The logistic regression's inverse L2 strength per model (standardised features), chosen by
# validation frame AUC on ffpp_faces299 (faces299 variant, 224 px; validation = 1 in 10 training
# crops, never test) over C in {1e-3, ..., 100} (frank_dct: {1e-7, ..., 1e-4}):
#   dct_stats  0.619 0.633 0.622 0.617 0.617 0.616  -> 0.01
#   durall     0.597 0.609 0.604 0.579 0.568        -> 0.01 (C = 100 not run)
#   frank_dct  0.602 0.650 0.651 0.607              -> 1e-5
_C = {"dct_stats": 0.01, "frank_dct": 1e-5, "durall_spectrum": 0.01}


def _base() -> ml_collections.ConfigDict:
    # Data, train, optim and loss come from the paper's config (their one home); a fit uses
    # only the data block and train.eval_batch_size (the batch of the feature pass).
    c = config_module(str(Path(__file__).with_name("late_supcon.py"))).get_config()
    paper = c.model
    c.model = ml_collections.ConfigDict(
        {
            "name": "dct_stats",
            # dct_stats: low k x k corner of every 8x8 block left out, as in the detector.
            "dct_cutoff": paper.dct_cutoff,
            # Fields every model config carries (aird_jax.models.registry.validate_model_config).
            "embed_dim": paper.embed_dim,
            "dtype": paper.dtype,
            "param_dtype": paper.param_dtype,
            "depthwise": paper.depthwise,
            "pretrained": "",
        }
    )
    f = c.fit = ml_collections.ConfigDict()
    f.C = _C["dct_stats"]
    f.max_iter = 5000
    f.tol = 1e-6
    c.data.augment = False  # features come from the un-augmented images
    c.loss.lam = 0.0  # no gradient training (recorded as such in config.json)
    return c


def _apply_data(c: ml_collections.ConfigDict, name: str) -> None:
    if name == "faces299":
        c.data.name, c.data.config = "face_folder", ""
        c.data.manual_dir = "../shared/data/ffpp_faces299"  # relative to the repo root
        c.data.frames_per_video = 0  # still images: every crop is its own one-frame video


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """``dct_stats`` on FF++ c23 at 224 px, modified by the comma-separated variants in ``arg``
    (at most one model variant and one data variant)."""
    c = _base()
    names = [a.strip() for a in (arg or "").split(",") if a.strip()]
    valid = MODEL_VARIANTS + DATA_VARIANTS
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(
            f"unknown config variant(s) {unknown}; valid variants: {', '.join(valid)} "
            "(comma-separated, e.g. 'frank_dct,faces299')"
        )
    models = [n for n in names if n in MODEL_VARIANTS]
    datas = [n for n in names if n in DATA_VARIANTS]
    if len(models) > 1 or len(datas) > 1:
        raise ValueError(f"choose at most one model and one data variant, got {names}")
    for n in models:
        c.model.name = n
        c.fit.C = _C[n]
    for n in datas:
        _apply_data(c, n)
    c.variant = ",".join(names) if names else "dct_stats"
    return c
