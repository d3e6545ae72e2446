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

The data, train, optim and loss blocks mirror ``configs/late_supcon.py`` so that
``aird_jax.config.validate_config`` and every reader of a run's config.json (evaluate, predict)
work unchanged; optim and loss are not used by a fit (there is no gradient training), and of
``train`` only ``eval_batch_size`` is (the batch of the feature pass).
"""

from __future__ import annotations

import ml_collections

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
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.parallel = "shard_map"
    c.num_devices = 0
    c.variant = "dct_stats"
    c.scaled_down = ""

    m = c.model = ml_collections.ConfigDict()
    m.name = "dct_stats"
    m.dct_cutoff = 4  # dct_stats: low k x k corner of every 8x8 block left out (as the detector)
    # Fields every model config carries (aird_jax.models.registry.validate_model_config).
    m.embed_dim = 128
    m.dtype = "float32"
    m.param_dtype = "float32"
    m.depthwise = "auto"
    m.pretrained = ""

    f = c.fit = ml_collections.ConfigDict()
    f.C = _C["dct_stats"]
    f.max_iter = 5000
    f.tol = 1e-6

    d = c.data = ml_collections.ConfigDict()
    d.name = "ffpp"
    d.config = "c23"
    d.root = ""
    d.manual_dir = ""
    d.faces_dir = ""
    d.train_split = "train"
    d.val_split = "val"
    d.image_size = 224
    d.frames_per_video = 10  # frames per training video the fit sees (as training does)
    d.balance = False
    d.augment = False  # never used: features come from the un-augmented images
    d.workers = 0
    d.max_examples = 0
    d.methods = ""

    o = c.optim = ml_collections.ConfigDict()  # unused by a fit; kept for validate_config
    o.lr = 1e-4
    o.backbone_lr_mult = 0.1
    o.b1 = 0.9
    o.b2 = 0.999
    o.eps = 1e-8
    o.weight_decay = 1e-5
    o.restart_epochs = 10
    o.min_lr = 1e-6
    o.clip_norm = 1.0

    t = c.train = ml_collections.ConfigDict()
    t.batch_size = 32
    t.eval_batch_size = 64  # the batch of the feature pass
    t.epochs = 1
    t.patience = 1
    t.steps_per_epoch = 0
    t.checkpoint_every_steps = 0
    t.keep_checkpoints = 1
    t.log_every_steps = 20
    t.progress = True

    lo = c.loss = ml_collections.ConfigDict()  # unused by a fit; kept for validate_config
    lo.lam = 0.0
    lo.temperature = 0.07
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
